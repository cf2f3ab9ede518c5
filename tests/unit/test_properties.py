"""Property protocols, shared machinery: relaxed lattice, counting, equation of state,
transition pressure, JSON round trip and cached campaigns (Stillinger-Weber)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pytest_mlpval.errors import ProtocolError
from pytest_mlpval.protocols import base
from pytest_mlpval.protocols.base import (CampaignOptions, SymmetryChangedError, counting,
                                          result_from_dict)
from pytest_mlpval.protocols.properties import (
    EosResult,
    PropertyError,
    compute_properties,
    equation_of_state,
    polymorph_energies,
    relaxed_lattice,
    transition_pressure,
)
from pytest_mlpval.units import EV_PER_A3_TO_GPA


@pytest.fixture(scope="module")
def sw():
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw")


@pytest.fixture(scope="module")
def eos_sw(sw):
    return equation_of_state(sw.calculator, strain_span=0.02, n_points=7)


def _diamond(a):
    from ase.build import bulk

    return bulk("Si", "diamond", a=a, cubic=True)


# -- relaxed lattice -------------------------------------------------------------------

def test_lattice_of_sw_diamond_and_beta_sn(sw):
    # SW puts the pair minimum 2^(1/6) sigma at the diamond bond: a0 = 4 / sqrt(3) *
    # 2^(1/6) * 2.0951 Å = 5.4310 Å (Stillinger and Weber, Phys. Rev. B 31, 5262 (1985))
    expected = 4 / np.sqrt(3) * 2 ** (1 / 6) * 2.0951
    start = _diamond(5.30)  # compressed by 2.4 %: the relaxation has work to do
    result = relaxed_lattice(sw.calculator, atoms=start)
    assert result.lattice_parameter_A == pytest.approx(expected, abs=5e-4)
    assert result.spacegroup_before == result.spacegroup_after == "Fd-3m (227)"
    assert result.steps > 0 and result.n_force_calls >= result.steps
    assert result.units()["lattice_parameter_A"] == "Å"
    tin = relaxed_lattice(sw.calculator, crystal="beta-Sn")
    assert tin.spacegroup_after == "I4_1/amd (141)"
    assert {"lattice_c_A", "lattice_b_A"} <= set(tin.metrics())
    assert tin.metrics()["lattice_c_A"] != pytest.approx(tin.lattice_parameter_A, rel=0.05)


def test_relaxation_that_cannot_finish_is_an_error(sw):
    with pytest.raises(PropertyError, match=r"did not relax to fmax 0.001 eV/Å within "
                       r"steps=2 \(residual"):
        relaxed_lattice(sw.calculator, atoms=_diamond(5.6), steps=2)


def test_nan_and_raising_calculators_are_reported(sw):
    from ase.calculators.calculator import Calculator

    from pytest_mlpval.testing import BrokenCalculator

    # NN distance 2.25 Å < 2.3 Å: the broken calculator returns NaN
    with pytest.raises(PropertyError, match="NonFiniteResultError: the calculator returned "
                       "a non-finite energy for a Si8 structure"):
        relaxed_lattice(BrokenCalculator(sw.calculator, "nan"), atoms=_diamond(5.2))

    class Raising(Calculator):
        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            raise RuntimeError("model server went away")

    with pytest.raises(PropertyError, match="model server went away"):
        equation_of_state(Raising())


def test_symmetry_change_is_detected(sw, monkeypatch):
    groups = iter([(227, "Fd-3m"), (141, "I4_1/amd")])
    monkeypatch.setattr(base, "space_group", lambda atoms, symprec=1e-3: next(groups))
    with pytest.raises(SymmetryChangedError, match=r"Fd-3m \(227\) -> I4_1/amd \(141\)"):
        relaxed_lattice(sw.calculator)


# -- counting ----------------------------------------------------------------------------

def test_counting_is_exact_and_never_reuses_stale_results(sw):
    from ase.calculators.calculator import Calculator, all_changes

    class Lazy(Calculator):
        """Like quippy: computes the stress only when asked, and skips work when its own
        check says nothing changed (keeping whatever results it has)."""

        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            if not self.calculation_required(atoms, properties):
                return
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = sw.calculator
            self.results.update(energy=work.get_potential_energy(), forces=work.get_forces())
            if "stress" in properties:
                self.results["stress"] = work.get_stress()

    wrapped = counting(Lazy())
    outer = counting(wrapped)
    for a in (5.40, 5.45):
        atoms = _diamond(a)
        atoms.calc = outer
        atoms.get_potential_energy()
        stress = atoms.get_stress()
        fresh = _diamond(a)
        fresh.calc = sw.calculator
        np.testing.assert_allclose(stress, fresh.get_stress(), rtol=1e-10)
    # energy then stress of each structure: 2 calls each, then the stress is kept computing
    assert outer.n_calls == wrapped.n_calls == 3
    assert outer.seconds >= wrapped.seconds > 0


# -- equation of state ---------------------------------------------------------------------

def test_eos_bulk_modulus_matches_an_independent_fit(sw, eos_sw):
    """Recompute E(V) here on the recorded volumes and fit a cubic polynomial in V:
    B = V0 E''(V0) must agree with the Birch-Murnaghan B of the protocol."""
    v = np.array(eos_sw.volumes_per_atom_A3)
    energies = []
    for volume in v:
        atoms = _diamond((8 * volume) ** (1 / 3))
        atoms.calc = sw.calculator
        energies.append(atoms.get_potential_energy() / 8)
    np.testing.assert_allclose(energies, eos_sw.energies_per_atom_eV, atol=1e-9)
    poly = np.polynomial.Polynomial.fit(v, energies, 3)
    v0 = [r.real for r in poly.deriv().roots() if v.min() < r.real < v.max()][0]
    b_independent = v0 * poly.deriv(2)(v0) * EV_PER_A3_TO_GPA
    assert eos_sw.bulk_modulus_GPa == pytest.approx(b_independent, rel=5e-3)
    assert eos_sw.volume_per_atom_A3 == pytest.approx(v0, rel=1e-4)
    # SW: B = 101.4 GPa (= (C11 + 2 C12)/3 with C11 = 151.4, C12 = 76.4 GPa)
    assert eos_sw.bulk_modulus_GPa == pytest.approx(101.4, abs=1.0)
    assert eos_sw.strain_span == 0.02 and len(v) == 7
    assert v.max() / v.min() == pytest.approx((1.02 / 0.98) ** 3)
    assert 2 < eos_sw.bulk_modulus_derivative < 6 and eos_sw.fit_rms_per_atom_meV < 0.1


@pytest.mark.parametrize("kwargs, message", [({"strain_span": 0.0}, "strain_span"),
                                             ({"n_points": 4}, "n_points")])
def test_eos_bad_arguments(sw, kwargs, message):
    with pytest.raises(ValueError, match=message):
        equation_of_state(sw.calculator, **kwargs)


def _bm(name, e0, v0, b_gpa, bp, span=0.15):
    volumes = tuple(np.linspace(v0 * (1 - span), v0 * (1 + span), 9))
    return EosResult(name, "Si", volumes, (0.0,) * 9, v0, e0, b_gpa, bp, 0.0, 0.05, 0.0, True,
                     0, 0.0, 0.0)


def test_transition_pressure_is_a_common_tangent():
    low, high = _bm("diamond", -4.3, 20.0, 100.0, 4.0), _bm("beta-Sn", -4.0, 16.0, 110.0, 4.5)
    result = transition_pressure(low, high)
    p = result.pressure_GPa / EV_PER_A3_TO_GPA
    va, vb = result.volume_low_per_atom_A3, result.volume_high_per_atom_A3
    ea, eb = float(low.energy(va)), float(high.energy(vb))
    h = 1e-5
    # the tangent of each curve at its volume has slope -P, and joins the two points
    assert (float(low.energy(va + h)) - float(low.energy(va - h))) / (2 * h) == \
        pytest.approx(-p, rel=1e-4)
    assert (float(high.energy(vb + h)) - float(high.energy(vb - h))) / (2 * h) == \
        pytest.approx(-p, rel=1e-4)
    assert (eb - ea) / (vb - va) == pytest.approx(-p, rel=1e-4)
    assert result.enthalpy_per_atom_eV == pytest.approx(ea + p * va, abs=1e-8)
    assert not result.extrapolated and result.found
    never = transition_pressure(low, _bm("fcc", 0.0, 19.0, 50.0, 4.0))
    assert not never.found and math.isnan(never.metrics()["diamond_fcc_transition_GPa"])


def test_a_fit_with_negative_b_prime_gets_no_enthalpy_outside_its_samples():
    """B' < 0 turns a Birch-Murnaghan E(V) down under strong compression; minimised over
    0.5-1.5 V0 such a curve found spurious low enthalpies (a GAP gave 6.0 GPa, 2.6 GPa
    for another fit). Only the sampled volumes count, and a minimum on their edge is
    flagged as an extrapolation and refused by assert_physical_eos."""
    from pytest_mlpval.assertions import MlpvalAssertionError
    from pytest_mlpval.protocols.properties.eos import PolymorphResult, assert_physical_eos

    low = _bm("diamond", -4.3, 20.0, 100.0, 4.0)
    soft = _bm("beta-Sn", -4.0, 16.0, 80.0, -3.0, span=0.05)
    result = transition_pressure(low, soft)
    assert result.found and result.extrapolated
    sampled = soft.volumes_per_atom_A3
    assert min(sampled) <= result.volume_high_per_atom_A3 <= max(sampled)
    assert result.metrics()["diamond_beta_sn_transition_extrapolated"] == 1.0
    polymorphs = PolymorphResult("Si", "diamond", (low, soft), (result,), 0, 0.0, 0.0)
    with pytest.raises(MlpvalAssertionError) as info:
        assert_physical_eos(polymorphs)
    text = str(info.value)
    assert "B' outside 1-10 for beta-Sn" in text and "extrapolation" in text
    assert "-3" in text  # the table shows the offending B'
    # a physical pair passes: B' in range and the crossing inside both sampled ranges
    good = _bm("beta-Sn", -4.0, 16.0, 110.0, 4.5)
    fine = transition_pressure(low, good)
    assert not fine.extrapolated
    assert_physical_eos(PolymorphResult("Si", "diamond", (low, good), (fine,), 0, 0.0, 0.0))
    with pytest.raises(MlpvalAssertionError, match="B' outside 1-10 for diamond"):
        assert_physical_eos(_bm("diamond", -4.3, 20.0, 100.0, 12.0))


def test_polymorphs_of_sw(sw):
    result = polymorph_energies(sw.calculator, names=["beta-Sn"], n_points=7)
    metrics = result.metrics()
    assert [e.crystal for e in result.eos] == ["diamond", "beta-Sn"]
    # SW: beta-Sn 0.206 eV/atom above diamond, 14 % denser
    assert metrics["energy_beta_sn_vs_diamond_per_atom_eV"] == pytest.approx(0.2056, abs=0.005)
    assert metrics["volume_beta_sn_per_atom_A3"] / metrics["volume_diamond_per_atom_A3"] == \
        pytest.approx(0.862, abs=0.01)
    assert 10 < metrics["diamond_beta_sn_transition_GPa"] < 30
    assert result.units()["energy_beta_sn_vs_diamond_per_atom_eV"] == "eV/atom"
    assert result.n_force_calls == sum(e.n_force_calls for e in result.eos)


# -- results as data, campaigns ------------------------------------------------------------

def test_results_round_trip_through_json(sw, eos_sw):
    from pytest_mlpval.protocols.properties.defects import vacancy_formation

    vacancy = vacancy_formation(sw.calculator, seed=3)
    for result in (eos_sw, relaxed_lattice(sw.calculator), vacancy):
        back = result_from_dict(json.loads(json.dumps(result.as_dict())))
        assert back == result and type(back) is type(result)
    with pytest.raises(ValueError, match="not a protocol result"):
        result_from_dict({"type": "Nothing"})


def test_same_seed_same_vacancy(sw):
    from pytest_mlpval.protocols.properties.defects import vacancy_formation

    one = vacancy_formation(sw.calculator, seed=7, start_shifts_A=(0.4,))
    two = vacancy_formation(sw.calculator, seed=7, start_shifts_A=(0.4,))
    assert one.start_formation_eV == two.start_formation_eV
    assert one.max_displacement_A == two.max_displacement_A


def test_compute_properties_caches_each_protocol(sw, tmp_path):
    names = ["lattice", "eos", "phonons"]
    params = {"eos": {"strain_span": 0.02}, "phonons": {"mesh": [4, 4, 4]}}
    options = CampaignOptions(cache_dir=tmp_path)
    first = compute_properties(sw, names, params, options=options)
    assert first.errors == {} and first.from_cache == ()
    again = compute_properties(sw, names + ["surface_111"], params, options=options)
    assert set(again.from_cache) == set(names)
    for name in names:
        assert again[name] == first[name]
    metrics, units = again.metrics(), again.units()
    assert metrics["surface_energy_111_J_m2"] == pytest.approx(1.360, abs=1e-3)
    assert units["phonon_gamma_LTO_THz"] == "THz" and metrics["n_failed_protocols"] == 0


def test_compute_properties_reports_failures_and_bad_names(sw):
    result = compute_properties(sw, ["lattice", "eos"], {"eos": {"strain_span": 0.5}})
    assert "lattice" in result.results and "SettingsError" in result.errors["eos"]
    with pytest.raises(PropertyError, match="'eos' failed: SettingsError: strain_span"):
        result["eos"]
    assert PropertyError is ProtocolError  # the family's old name catches every failure
    with pytest.raises(ValueError, match="unknown property protocol.*'elastics'"):
        compute_properties(sw, ["elastics"])


def test_compute_properties_in_a_worker_process(sw, tmp_path):
    result = compute_properties(sw, ["lattice"],
                                options=CampaignOptions(workers=1, cache_dir=tmp_path))
    assert result.errors == {}
    assert result["lattice"].lattice_parameter_A == pytest.approx(5.431, abs=1e-3)


def test_results_rebuild_in_a_fresh_process(eos_sw, tmp_path):
    """A cached result is read back in a fresh process that imported the family's public
    module only (which registers every result type of the family)."""
    import subprocess
    import sys

    path = tmp_path / "eos.json"
    path.write_text(json.dumps(eos_sw.as_dict()), encoding="utf-8")
    code = ("import json, sys; import pytest_mlpval.protocols.properties; "
            "from pytest_mlpval.protocols.base import result_from_dict; "
            "r = result_from_dict(json.load(open(sys.argv[1]))); "
            "print(type(r).__name__, r.bulk_modulus_GPa)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == "EosResult" and float(out[1]) == eos_sw.bulk_modulus_GPa
