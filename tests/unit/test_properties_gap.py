"""The bundled GAP's property table against its DFT level (PBE), PW91 and experiment
(slow: ~30 s; ``pytest --run-slow tests/unit/test_properties_gap.py -rP`` prints the table).

Where the GAP is known to miss, the test is a strict xfail naming the miss, so that a
refitted potential that fixes it turns the test red until the mark is removed.
"""

from __future__ import annotations

import math

import pytest

from conftest import GAP_XML, needs_quippy
from pytest_mlpval.assertions import format_table
from pytest_mlpval.comparison import assert_properties, compare
from pytest_mlpval.references import MissingReferenceError, load_references

pytestmark = [pytest.mark.slow, needs_quippy]

PROPERTIES = [
    "lattice_parameter_A", "bulk_modulus_GPa", "C11_GPa", "C12_GPa", "C44_GPa",
    "C44_clamped_GPa", "phonon_gamma_LTO_THz", "phonon_X_TA_THz", "phonon_X_LA_LO_THz",
    "phonon_X_TO_THz", "phonon_L_TA_THz", "phonon_L_LA_THz", "phonon_L_LO_THz",
    "phonon_L_TO_THz", "vacancy_formation_eV", "surface_energy_100_J_m2",
    "surface_energy_110_J_m2", "surface_energy_111_J_m2", "energy_beta_sn_vs_diamond_per_atom_eV",
    "diamond_beta_sn_transition_GPa",
]


@pytest.fixture(scope="module")
def si():
    return load_references("Si")


@pytest.fixture(scope="module")
def gap():
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.protocols.properties import (elastic_constants, equation_of_state,
                                                    phonons, polymorph_energies,
                                                    relaxed_lattice, surface_energy,
                                                    vacancy_formation)

    calc = load_potential(str(GAP_XML)).calculator
    results = {"lattice": relaxed_lattice(calc),
               "eos": equation_of_state(calc, strain_span=0.01),
               "eos_wide": equation_of_state(calc, strain_span=0.05),
               "elastic": elastic_constants(calc),
               "phonons": phonons(calc),
               "vacancy": vacancy_formation(calc, supercell=2),
               "polymorphs": polymorph_energies(calc, names=["beta-Sn"])}
    for facet in ("100", "110", "111"):
        results[f"surface_{facet}"] = surface_energy(calc, facet=facet)
    results["surface_100_2x1"] = surface_energy(calc, facet="100", reconstruction="2x1")
    merged = {}
    for result in results.values():
        merged.update(result.metrics())
    merged["bulk_modulus_GPa"] = results["eos"].bulk_modulus_GPa  # not the wide span's
    return results, merged


def _reference(si, name, kind):
    try:
        return si.get(name, kind).value
    except MissingReferenceError:
        return math.nan


def test_print_the_property_table(gap, si):
    results, values = gap
    rows = []
    for name in PROPERTIES:
        refs = [_reference(si, name, k) for k in ("PBE", "PW91", "experiment")]
        rows.append([name, values[name], *refs,
                     *[f"{100 * (values[name] - r) / abs(r):+.1f}%" if math.isfinite(r)
                       else "" for r in refs]])
    print("\nbundled GAP (gap_si_mlearn.xml) vs references")
    print("\n".join(format_table(["property", "GAP", "PBE", "PW91", "exp", "vs PBE",
                                  "vs PW91", "vs exp"], rows)))
    extra = {"B from +-5 % (GPa)": results["eos_wide"].bulk_modulus_GPa,
             "B = (C11 + 2 C12)/3 (GPa)": results["elastic"].bulk_modulus_GPa,
             "surface (100) 2x1 (J/m^2)": values["surface_energy_100_2x1_J_m2"],
             "vacancy unrelaxed (eV)": values["vacancy_formation_unrelaxed_eV"]}
    print("\n".join(f"{k}: {v:.4g}" for k, v in extra.items()))
    assert all(math.isfinite(values[name]) for name in PROPERTIES)


def test_gap_is_stable(gap):
    results, _ = gap
    assert results["phonons"].stable and results["elastic"].born_stable


def test_gap_matches_its_dft_level_where_pbe_has_numbers(gap, si):
    # a0 to 0.5 %, the elastic constants to 5 %: the fit's accuracy on its Elastic group
    assert_properties(gap[1], si, {"lattice_parameter_A": {"rel": 0.005},
                                   "C11_GPa": {"rel": 0.05},
                                   "C44_clamped_GPa": {"rel": 0.05}},
                      "PBE", training_level="PBE")


def test_gap_bulk_modulus_matches_pbe(gap, si):
    # the first version of the GAP, fitted without virials, missed both (98 and 73 GPa)
    assert_properties(gap[1], si, {"bulk_modulus_GPa": {"rel": 0.05},
                                   "C12_GPa": {"rel": 0.10}}, "PBE", training_level="PBE")


def test_gap_phonons_close_to_pw91_flagged_as_other_level(gap, si):
    tolerances = {name: {"rel": 0.10} for name in PROPERTIES
                  if name.startswith("phonon_") and name != "phonon_L_TA_THz"}
    checks = assert_properties(gap[1], si, tolerances, "PW91", training_level="PBE")
    assert all(c.level_mismatch for c in checks)


def test_gap_l_ta_phonon_close_to_gga(gap, si):
    # measured 3.55 THz (+6 %); the first version of the GAP had 2.93 (-12 %)
    assert_properties(gap[1], si, {"phonon_L_TA_THz": {"rel": 0.10}}, "PW91",
                      training_level="PBE")


def test_gap_surface_energies_close_to_gga(gap, si):
    # measured -3.6, +0.1 and -6.3 %; the first version of the GAP had -17 to -19 %
    assert_properties(gap[1], si, {f"surface_energy_{f}_J_m2": {"rel": 0.10}
                                   for f in ("100", "110", "111")},
                      "PW91", training_level="PBE")


@pytest.mark.xfail(strict=True, reason="the bundled GAP's relaxed vacancy (3.30 eV in 64 "
                   "atoms) is 10.0 % below PW91's 3.67 (216 atoms): the mlearn data hold no "
                   "relaxed vacancy, only AIMD snapshots")
def test_gap_vacancy_close_to_gga(gap, si):
    assert_properties(gap[1], si, {"vacancy_formation_eV": {"rel": 0.10}},
                      "PW91", training_level="PBE")


@pytest.mark.xfail(strict=True, reason="the bundled GAP's beta-Sn softens under compression "
                   "(B' 0.5): the mlearn data hold nothing denser than diamond; the "
                   "transition comes at 9.3 GPa against experiment's 11.5")
def test_gap_transition_pressure_in_the_experimental_range(gap, si):
    check = compare(gap[1], si, "diamond_beta_sn_transition_GPa", "experiment", abs=2.0)
    assert check.passed, check.row()


def test_gap_amplitude_spreads_are_far_below_the_limit(gap):
    """The bundled GAP is smooth on the scale of the finite amplitudes: its relative
    spreads (measured 0.0045 elastic, 0.0026 EoS, 0.0003 phonons) lie 10x below the
    default limit of 5 %."""
    from pytest_mlpval.protocols.properties import MAX_AMPLITUDE_SPREAD

    results, merged = gap
    for name in ("elastic", "eos", "phonons"):
        fraction, worst = results[name].amplitude_spread
        assert 0 < fraction < MAX_AMPLITUDE_SPREAD / 10, (name, worst, fraction)
        results[name].assert_amplitude_independent()
    assert merged["C11_amplitude_spread_GPa"] < 0.5
    assert merged["phonon_gamma_LTO_amplitude_spread_THz"] < 0.01
