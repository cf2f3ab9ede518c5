"""Per-element energy offsets and per-element force errors (issue 18).

The SiC labels here are J. Tersoff's SiC potential's (the ``tersoff`` builtin,
Phys. Rev. B 39, 5566 (1989)), not DFT: they only have to differ from a candidate by known
per-element energies.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_mlpval.assertions import (
    MissingMetricError,
    MlpvalAssertionError,
    assert_errors_within,
)
from pytest_mlpval.baseline import compare_metrics
from pytest_mlpval.data import DatasetSpec, ReferenceSet, read_dataset
from pytest_mlpval.evaluate import Predictions, predict
from pytest_mlpval.metrics import (
    compute_errors,
    fit_element_offsets,
    is_offset_metric,
    metric_unit,
    split_element,
)
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.verdict import threshold_excess

SILICON_TEST = (Path(__file__).parents[2] / "example_suites" / "silicon" / "data"
                / "mlearn_Si_test.xyz")
SHIFTS = {"C": -0.37, "Si": 0.81}  # eV/atom, candidate minus labels


def _shifted(base, shifts, c_force_scale=1.0):
    """``base`` plus ``shifts[element]`` eV per atom of that element (forces and stress
    unchanged, bar the carbon forces scaled by ``c_force_scale``)."""
    from ase.calculators.calculator import Calculator, all_changes

    class PerElementShift(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = base
            energy = work.get_potential_energy() + sum(
                shifts.get(s, 0.0) for s in work.get_chemical_symbols())
            forces = work.get_forces()
            forces[work.numbers == 6] *= c_force_scale
            self.results = {"energy": energy, "free_energy": energy, "forces": forces,
                            "stress": work.get_stress()}

    return PerElementShift()


@pytest.fixture(scope="module")
def tersoff():
    return load_potential("tersoff").calculator


@pytest.fixture(scope="module")
def sic_reference(tmp_path_factory, tersoff) -> ReferenceSet:
    """Eight rattled SiC cells of varying composition (0 to 3 substitutions), labelled
    by Tersoff's SiC potential, in two config_types."""
    import ase.io
    from ase.build import bulk

    rng = np.random.default_rng(5)
    frames = []
    for i in range(8):
        atoms = bulk("SiC", "zincblende", a=4.36, cubic=True)
        for k in range(i % 4):  # Si -> C or C -> Si substitutions: new compositions
            atoms.numbers[k] = 6 if i < 4 else 14
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        atoms.calc = tersoff
        atoms.info["dft_energy"] = atoms.get_potential_energy()
        atoms.arrays["dft_forces"] = atoms.get_forces()
        atoms.info["config_type"] = "carbon_rich" if i < 4 else "silicon_rich"
        atoms.calc = None
        frames.append(atoms)
    path = tmp_path_factory.mktemp("sic") / "sic.xyz"
    ase.io.write(path, frames)
    return read_dataset(f"sic={path},energy=dft_energy,forces=dft_forces")


def test_one_element_gives_todays_mean_removed_number_on_the_silicon_test_set():
    reference = read_dataset(f"t={SILICON_TEST},energy=dft_energy,forces=dft_forces")
    report = compute_errors(reference, predict(load_potential("sw").calculator, reference))
    e = report.energy_error
    assert report.species == ("Si",)
    assert report.element_offsets == {"Si": report.energy_offset}
    assert report.metrics()["energy_offset_removed_rmse"] == pytest.approx(
        float(np.sqrt(np.mean((e - np.mean(e)) ** 2))), rel=1e-13)
    assert not any(split_element(name)[1] for name in report.metrics())  # one element


def test_per_element_shifts_are_fitted_and_removed_exactly(sic_reference, tersoff):
    report = compute_errors(sic_reference, predict(_shifted(tersoff, SHIFTS), sic_reference))
    assert report.species == ("C", "Si") and report.offsets_determined
    # to the rounding of the labels in the file (about 1e-8 eV/atom)
    assert report.element_offsets == pytest.approx(SHIFTS, abs=1e-6)
    m = report.metrics()
    assert m["energy_offset_removed_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert m["energy_offset_C"] == pytest.approx(-0.37, abs=1e-6)
    assert m["energy_offset_Si"] == pytest.approx(0.81, abs=1e-6)
    # one mean offset would have left a composition-dependent residual
    e = report.energy_error
    assert np.sqrt(np.mean((e - np.mean(e)) ** 2)) > 0.05
    for name in ("energy_offset_C", "force_rmse_C", "force_mae_Si", "force_max_Si"):
        assert metric_unit(name) == ("eV/atom" if "offset" in name else "eV/Å")
    assert m["force_rmse_C"] == pytest.approx(0, abs=1e-5)
    assert m["force_max_Si"] == pytest.approx(0, abs=1e-5)
    # subsets (config types) keep the dataset's offsets
    for sub in report.by_config_type.values():
        assert sub.element_offsets == report.element_offsets
        assert sub.metrics()["energy_offset_removed_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert_errors_within(report, energy_offset_removed_rmse=1e-6, energy_offset_C=0.4,
                         force_rmse_Si=1e-5)


def test_force_errors_per_element_locate_the_element(sic_reference, tersoff):
    report = compute_errors(sic_reference,
                            predict(_shifted(tersoff, {}, c_force_scale=1.1), sic_reference))
    m = report.metrics()
    assert m["force_rmse_Si"] < 1e-5 and m["force_rmse_C"] > 0.1
    assert m["force_max_C"] == pytest.approx(m["force_max"])
    with pytest.raises(MlpvalAssertionError, match=r"force_rmse_C .* > 0\.01"):
        assert_errors_within(report, force_rmse_C=0.01, force_rmse_Si=0.01)
    with pytest.raises(MissingMetricError, match="has elements C, Si"):
        assert_errors_within(report, force_rmse_O=0.01)


def test_offset_metrics_are_signed_everywhere(sic_reference, tersoff):
    report = compute_errors(sic_reference, predict(_shifted(tersoff, SHIFTS), sic_reference))
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, energy_offset_C=0.3, energy_rmse=0.01)
    message = str(info.value)
    assert "energy_offset_C" in message and "-37%" not in message and "+23%" in message
    assert "per-element energy offsets fitted" in message and "-0.37" in message
    assert is_offset_metric("energy_offset_C") and not is_offset_metric(
        "energy_offset_removed_rmse")
    assert threshold_excess({"metric": "energy_offset_C", "value": -0.6, "limit": 0.3,
                             "passed": False}) == pytest.approx(1.0)
    [c] = compare_metrics({"energy_offset_C": -0.37}, {"energy_offset_C": "eV/atom"},
                          {"energy_offset_C": {"value": 0.37, "unit": "eV/atom"}}, [])
    assert c.status == "unchanged"


# --- in memory: compositions and shifts at random ----------------------------------------

def _reference(compositions, energy, forces=None, config_types=None) -> ReferenceSet:
    import ase

    structures = tuple(ase.Atoms(numbers=n) for n in compositions)
    n_atoms = np.array([len(n) for n in compositions])
    return ReferenceSet(
        name="mixed", spec=DatasetSpec("mixed", "/nonexistent/mixed.xyz"), sha256="0" * 64,
        structures=structures, n_atoms=n_atoms,
        config_types=tuple(config_types or ["default"] * len(compositions)),
        energy=np.asarray(energy, dtype=float), forces=forces, stress=None)


def _predictions(energy) -> Predictions:
    return Predictions(dataset="mixed", energy=np.asarray(energy, dtype=float), forces=None,
                       stress=None)


ELEMENTS = (1, 8, 14, 26)
counts = st.lists(st.integers(0, 5), min_size=3, max_size=3).filter(lambda c: sum(c) > 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(counts, min_size=1, max_size=9),
       st.lists(st.floats(-5, 5, allow_nan=False), min_size=3, max_size=3),
       st.lists(st.floats(-100, 100, allow_nan=False), min_size=9, max_size=9))
def test_random_compositions_and_shifts(rows, shifts, base):
    compositions = [np.repeat(ELEMENTS[:3], row) for row in rows]
    reference_energy = np.array(base[:len(rows)])
    shift = {z: s for z, s in zip(ELEMENTS, shifts)}
    predicted = reference_energy + [sum(shift[z] for z in n) for n in compositions]
    report = compute_errors(_reference(compositions, reference_energy),
                            _predictions(predicted))
    present = sorted({int(z) for n in compositions for z in n})
    assert len(report.element_offsets) == len(present)
    assert report.metrics()["energy_offset_removed_max"] == pytest.approx(0.0, abs=1e-8)
    fractions = np.array([[np.mean(n == z) for z in present] for n in compositions])
    determined = np.linalg.matrix_rank(fractions) == len(present)
    assert report.offsets_determined == determined
    if determined:
        from ase.data import chemical_symbols

        assert report.element_offsets == pytest.approx(
            {chemical_symbols[z]: shift[z] for z in present}, abs=1e-8)


def test_one_stoichiometry_is_the_minimum_norm_fit_not_a_crash():
    sio2 = [np.array([14, 8, 8]), np.array([14, 14, 8, 8, 8, 8])]
    report = compute_errors(_reference(sio2, [0.0, 0.0]), _predictions([0.3, 0.6]))
    assert not report.offsets_determined
    assert report.metrics()["energy_offset_removed_rmse"] == pytest.approx(0.0, abs=1e-12)
    offsets = report.element_offsets  # minimum norm: proportional to the fractions
    assert offsets["Si"] / offsets["O"] == pytest.approx(0.5)
    assert offsets["O"] / 3 * 2 + offsets["Si"] / 3 == pytest.approx(0.1)
    with pytest.raises(MlpvalAssertionError, match="minimum-norm split"):
        assert_errors_within(report, energy_rmse=0.01)


def test_a_nonfinite_energy_is_counted_not_fitted():
    mixed = [np.array([14, 8]), np.array([14, 8, 8]), np.array([14, 14, 8]),
             np.array([8, 8, 8, 14])]
    report = compute_errors(_reference(mixed, [0.0] * 4, config_types=["a", "a", "b", "b"]),
                            _predictions([0.4, math.nan, 1.0, 0.0]))  # Si 0.6, O -0.2
    m = report.metrics()
    assert math.isnan(m["energy_offset"]) and math.isnan(m["energy_offset_Si"])
    assert report.stats["energy_offset_removed"].n_nonfinite == 1
    assert list(report.nonfinite_structures("energy_offset_removed")) == [1]
    per = report.per_structure("energy_offset_removed")
    assert np.isfinite(per[[0, 2, 3]]).all()  # the fit used the finite three
    assert report.element_offsets == pytest.approx({"O": -0.2, "Si": 0.6}, abs=1e-12)
    b = report.subset_by_config_type("b").metrics()
    assert b["energy_offset_removed_rmse"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(b["energy_offset_O"])  # the dataset's offset, NaN as reported
    assert fit_element_offsets(np.ones((2, 1)), np.array([math.nan, math.nan]))[1] is False
