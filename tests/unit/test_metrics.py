"""Unit tests of pytest_mlpval.metrics: error statistics, normalisations, subsets, units."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_mlpval.data import DatasetSpec, ReferenceSet, read_dataset
from pytest_mlpval.evaluate import Predictions, predict
from pytest_mlpval.metrics import (
    EV_PER_A3_TO_GPA,
    QUANTITIES,
    STATS,
    ErrorStats,
    compute_errors,
    metric_unit,
)
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.testing import PerturbedCalculator, sw_forces_scaled, sw_shifted

NAN = float("nan")


# --- helpers ----------------------------------------------------------------------------

def make_reference(n_atoms, config_types=None, energy=None, forces=None, stress=None,
                   name="synthetic") -> ReferenceSet:
    """A ReferenceSet built directly (no file): only what compute_errors reads matters."""
    import ase

    n_atoms = np.asarray(n_atoms, dtype=int)
    if config_types is None:
        config_types = ("default",) * len(n_atoms)
    return ReferenceSet(
        name=name,
        spec=DatasetSpec(name, f"/nonexistent/{name}.xyz"),
        sha256="0" * 64,
        structures=tuple(ase.Atoms(f"Si{n}") for n in n_atoms),
        n_atoms=n_atoms,
        config_types=tuple(config_types),
        energy=None if energy is None else np.asarray(energy, dtype=float),
        forces=None if forces is None else tuple(np.asarray(f, dtype=float) for f in forces),
        stress=None if stress is None else np.asarray(stress, dtype=float),
    )


def make_predictions(energy=None, forces=None, stress=None, name="synthetic") -> Predictions:
    return Predictions(
        dataset=name,
        energy=None if energy is None else np.asarray(energy, dtype=float),
        forces=None if forces is None else tuple(np.asarray(f, dtype=float) for f in forces),
        stress=None if stress is None else np.asarray(stress, dtype=float),
    )


@pytest.fixture(scope="module")
def reference(reference_file) -> ReferenceSet:
    return read_dataset(
        f"ref={reference_file},energy=dft_energy,forces=dft_forces,stress=dft_stress")


@pytest.fixture(scope="module")
def sw_calc():
    return load_potential("sw").calculator


@pytest.fixture(scope="module")
def exact_reference(reference, sw_calc) -> ReferenceSet:
    """The reference structures labelled with SW in memory (no rounding through the file),
    so that errors of perturbed SW calculators are exact up to float round-off."""
    labels = predict(sw_calc, reference)
    return dataclasses.replace(reference, energy=labels.energy, forces=labels.forces,
                               stress=labels.stress)


# --- ErrorStats.of: properties ----------------------------------------------------------

# No subnormal / tiny values: their squares underflow and rmse >= mae would not hold
# in floating point for reasons unrelated to the code.
finite = st.floats(min_value=-1e100, max_value=1e100, allow_nan=False,
                   allow_subnormal=False).filter(lambda x: x == 0.0 or abs(x) > 1e-100)
with_nan = st.one_of(finite, st.just(NAN))
samples = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0,
                                                  max_side=8), elements=with_nan)

REL = 1e-12


@given(samples)
def test_error_stats_orderings(errors):
    stats = ErrorStats.of(errors, "eV")
    assert stats.n == errors.size  # never a smaller sample
    assert stats.n_nonfinite == int(np.isnan(errors).sum())
    assert stats.unit == "eV"
    if errors.size == 0 or stats.n_nonfinite:
        assert all(math.isnan(getattr(stats, s)) for s in STATS)
        return
    assert stats.rmse >= stats.mae * (1 - REL)
    assert stats.max >= stats.p95 * (1 - REL)
    assert stats.p95 >= stats.median * (1 - REL)
    assert stats.median >= 0.0
    assert stats.max >= stats.rmse * (1 - REL)
    assert stats.max == float(np.max(np.abs(errors)))
    assert stats.mae == pytest.approx(float(np.mean(np.abs(errors))), rel=1e-12)


@given(samples)
def test_error_stats_sign_and_order_invariant(errors):
    stats = ErrorStats.of(errors, "eV")
    flipped = ErrorStats.of(-errors[::-1] if errors.ndim == 1 else -errors, "eV")
    for s in STATS:
        a, b = getattr(stats, s), getattr(flipped, s)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)
    assert stats.n == flipped.n


@given(hnp.arrays(np.float64, st.integers(1, 30),
                  elements=st.floats(-1e3, 1e3, allow_subnormal=False)),
       st.integers(1, 10), st.sampled_from([NAN, math.inf, -math.inf]))
def test_error_stats_non_finite_is_never_dropped(errors, n_bad, bad):
    padded = np.concatenate([errors, np.full(n_bad, bad)])
    np.random.default_rng(0).shuffle(padded)
    stats = ErrorStats.of(padded, "x")
    assert (stats.n, stats.n_nonfinite, stats.n_excluded) == (padded.size, n_bad, 0)
    assert all(math.isnan(getattr(stats, s)) for s in STATS)


@given(hnp.arrays(np.float64, st.integers(1, 30),
                  elements=st.floats(-1e3, 1e3, allow_subnormal=False)),
       st.integers(0, 10))
def test_error_stats_excluded_mask(errors, n_excluded):
    padded = np.concatenate([errors, np.full(n_excluded, NAN)])
    mask = np.isnan(padded)
    a, b = ErrorStats.of(errors, "x"), ErrorStats.of(padded, "x", excluded=mask)
    assert (b.n, b.n_excluded, b.n_nonfinite) == (errors.size, n_excluded, 0)
    assert (a.rmse, a.mae, a.max, a.median, a.p95) == pytest.approx(
        (b.rmse, b.mae, b.max, b.median, b.p95), rel=1e-12, abs=0)


@pytest.mark.parametrize("errors", [[], [NAN], [NAN, NAN, NAN], np.empty((0, 3))])
def test_error_stats_empty_is_nan(errors):
    errors = np.asarray(errors, dtype=float)
    stats = ErrorStats.of(errors, "GPa", excluded=np.isnan(errors))
    assert stats.n == 0
    assert stats.n_excluded == errors.size
    assert stats.unit == "GPa"
    for s in STATS:
        assert math.isnan(getattr(stats, s)), s


def test_error_stats_hand_computed():
    errors = np.array([3.0, -4.0, NAN, 0.0, 1.0])
    stats = ErrorStats.of(errors, "eV", excluded=np.isnan(errors))
    assert stats.n == 4 and stats.n_excluded == 1
    assert stats.rmse == pytest.approx(math.sqrt((9 + 16 + 0 + 1) / 4))
    assert stats.mae == pytest.approx(2.0)
    assert stats.max == 4.0
    assert stats.median == pytest.approx(2.0)  # |e| sorted: 0 1 3 4
    # numpy linear percentile: position 0.95 * 3 = 2.85 between 3 and 4
    assert stats.p95 == pytest.approx(3.85)


# --- compute_errors: hand-computed values -----------------------------------------------

def test_energy_normalisations_hand_computed():
    # per-cell errors 0.4 and 0.0 eV on cells of 2 and 4 atoms
    ref = make_reference([2, 4], energy=[-10.0, -20.0])
    pred = make_predictions(energy=[-9.6, -20.0])
    report = compute_errors(ref, pred)
    np.testing.assert_allclose(report.energy_error, [0.2, 0.0], atol=1e-15)
    assert report.energy_offset == pytest.approx(0.1)
    m = report.metrics()
    assert m["energy_rmse"] == pytest.approx(math.sqrt(0.04 / 2))
    assert m["energy_mae"] == pytest.approx(0.1)
    assert m["energy_max"] == pytest.approx(0.2)
    assert m["energy_offset"] == pytest.approx(0.1)
    # offset removed: [0.1, -0.1]
    assert m["energy_offset_removed_rmse"] == pytest.approx(0.1)
    assert m["energy_offset_removed_mae"] == pytest.approx(0.1)
    assert m["energy_offset_removed_max"] == pytest.approx(0.1)
    # per cell: [0.4, 0.0] eV
    assert m["energy_cell_rmse"] == pytest.approx(math.sqrt(0.16 / 2))
    assert m["energy_cell_max"] == pytest.approx(0.4)
    # per sqrt(N): [0.4 / sqrt(2), 0]
    assert m["energy_sqrtn_rmse"] == pytest.approx(math.sqrt(0.08 / 2))
    assert m["energy_sqrtn_max"] == pytest.approx(0.4 / math.sqrt(2))
    assert report.stats["energy"].unit == "eV/atom"
    assert report.stats["energy_cell"].unit == "eV"
    assert report.stats["energy_sqrtn"].unit == "eV/atom^0.5"
    assert "force_rmse" not in m and "stress_rmse" not in m


def test_force_errors_hand_computed():
    ref_f = [[1.0, 0.0, 0.0],     # pred at 90 degrees, twice as long
             [2.0, 0.0, 0.0],     # pred opposite: 180 degrees
             [0.05, 0.0, 0.0],    # |F_ref| below angle_min_force: no angle
             [1.0, 0.0, 0.0]]     # pred zero: no angle
    pred_f = [[0.0, 2.0, 0.0],
              [-2.0, 0.0, 0.0],
              [1.0, 0.0, 0.0],
              [0.0, 0.0, 0.0]]
    ref = make_reference([4], forces=[ref_f])
    pred = make_predictions(forces=[pred_f])
    report = compute_errors(ref, pred)
    np.testing.assert_allclose(report.force_error[0], np.array(pred_f) - np.array(ref_f))
    np.testing.assert_allclose(report.force_magnitude_error[0], [1.0, 0.0, 0.95, -1.0])
    angles = report.force_angle_deg[0]
    assert angles[0] == pytest.approx(90.0)
    assert angles[1] == pytest.approx(180.0)
    assert np.isnan(angles[2]) and np.isnan(angles[3])
    m = report.metrics()
    components = np.array([-1, 2, 0, -4, 0, 0, 0.95, 0, 0, -1, 0, 0])
    assert m["force_rmse"] == pytest.approx(math.sqrt(np.mean(components**2)))
    assert m["force_mae"] == pytest.approx(np.mean(np.abs(components)))
    assert m["force_max"] == pytest.approx(4.0)
    assert report.stats["force"].n == 12
    assert m["force_magnitude_rmse"] == pytest.approx(math.sqrt((1 + 0 + 0.95**2 + 1) / 4))
    assert report.stats["force_magnitude"].n == 4
    assert report.stats["force_angle"].n == 2
    assert m["force_angle_mae"] == pytest.approx(135.0)
    assert m["force_angle_max"] == pytest.approx(180.0)
    assert m["force_angle_rmse"] == pytest.approx(math.sqrt((90.0**2 + 180.0**2) / 2))
    assert report.stats["force_angle"].unit == "degree"
    assert "energy_rmse" not in m and "energy_offset" not in m


def test_angle_threshold_is_configurable():
    ref = make_reference([1], forces=[[[0.05, 0.0, 0.0]]])
    pred = make_predictions(forces=[[[0.0, 0.05, 0.0]]])
    assert compute_errors(ref, pred).stats["force_angle"].n == 0
    report = compute_errors(ref, pred, angle_min_force_eV_A=0.01)
    assert report.stats["force_angle"].n == 1
    assert report.metrics()["force_angle_max"] == pytest.approx(90.0)


def test_stress_converted_to_gpa_hand_computed():
    ref = make_reference([2, 2], stress=np.zeros((2, 6)))
    pred = make_predictions(stress=[[1.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, -2.0]])
    report = compute_errors(ref, pred)
    assert report.stress_error_GPa[0, 0] == pytest.approx(160.21766208)
    assert report.stress_error_GPa[1, 5] == pytest.approx(-320.43532416)
    m = report.metrics()
    assert m["stress_max"] == pytest.approx(320.43532416)
    assert m["stress_rmse"] == pytest.approx(160.21766208 * math.sqrt(5 / 12))
    assert report.stats["stress"].unit == "GPa"
    assert report.stats["stress"].n == 12


def test_conversion_constant():
    # the same conversion as ASE's default units (stresses from ASE calculators)
    from ase import units

    assert EV_PER_A3_TO_GPA == pytest.approx(1 / units.GPa, rel=1e-12)
    # 1 eV/Å^3 = e J / 1e-30 m^3: ~160.2177 GPa whatever the CODATA release
    assert EV_PER_A3_TO_GPA == pytest.approx(160.2177, abs=1e-4)


def test_compute_errors_nothing_to_compare():
    ref = make_reference([2], energy=[1.0])
    with pytest.raises(ValueError, match="nothing to compare"):
        compute_errors(ref, make_predictions(forces=[np.zeros((2, 3))]))
    with pytest.raises(ValueError, match="synthetic"):
        compute_errors(ref, make_predictions())
    unlabelled = make_reference([2])
    with pytest.raises(ValueError, match="none"):
        compute_errors(unlabelled, make_predictions(energy=[1.0]))


def test_report_arrays_read_only():
    ref = make_reference([1, 1], energy=[0.0, 0.0], forces=[np.ones((1, 3))] * 2,
                         stress=np.zeros((2, 6)))
    report = compute_errors(ref, make_predictions(energy=[1.0, 2.0],
                                                  forces=[np.zeros((1, 3))] * 2,
                                                  stress=np.ones((2, 6))))
    with pytest.raises(ValueError):
        report.energy_error[0] = 5.0
    with pytest.raises(ValueError):
        report.force_error[0][0, 0] = 5.0
    with pytest.raises(ValueError):
        report.stress_error_GPa[0, 0] = 5.0


# --- compute_errors with perturbed SW on the reference file -----------------------------

def test_pure_energy_shift_offset_removed(reference):
    report = compute_errors(reference, predict(sw_shifted(), reference))
    m = report.metrics()
    # labels went through the file (positions rounded to 1e-8 Å): tolerance 1e-6
    assert m["energy_rmse"] == pytest.approx(0.010, abs=1e-6)
    assert m["energy_offset"] == pytest.approx(0.010, abs=1e-6)
    assert m["energy_offset_removed_rmse"] < 1e-6
    assert m["force_rmse"] < 1e-5


def test_pure_energy_shift_exact(exact_reference):
    report = compute_errors(exact_reference, predict(sw_shifted(), exact_reference))
    m = report.metrics()
    assert m["energy_rmse"] == pytest.approx(0.010, abs=1e-12)
    assert m["energy_mae"] == pytest.approx(0.010, abs=1e-12)
    assert m["energy_offset"] == pytest.approx(0.010, abs=1e-12)
    assert m["energy_offset_removed_rmse"] < 1e-12
    assert m["energy_offset_removed_max"] < 1e-12
    assert m["force_max"] == 0.0
    assert m["stress_max"] == 0.0


def test_energy_normalisations_on_dataset(exact_reference):
    n = exact_reference.n_atoms
    assert list(n) == [8, 16, 8, 16, 8, 16]
    m = compute_errors(exact_reference, predict(sw_shifted(), exact_reference)).metrics()
    # 0.01 eV/atom: per cell 0.08 and 0.16 eV; per sqrt(N) 0.01*sqrt(8) and 0.04
    assert m["energy_cell_rmse"] == pytest.approx(math.sqrt((0.08**2 + 0.16**2) / 2))
    assert m["energy_cell_mae"] == pytest.approx(0.12)
    assert m["energy_cell_max"] == pytest.approx(0.16)
    assert m["energy_cell_median"] == pytest.approx(0.12)
    assert m["energy_sqrtn_rmse"] == pytest.approx(math.sqrt((0.0008 + 0.0016) / 2))
    assert m["energy_sqrtn_max"] == pytest.approx(0.04)
    assert m["energy_sqrtn_mae"] == pytest.approx((0.01 * math.sqrt(8) + 0.04) / 2)


def test_force_scale_magnitude_and_angle(exact_reference):
    report = compute_errors(exact_reference, predict(sw_forces_scaled(), exact_reference))
    for ref_f, mag, ang, err in zip(exact_reference.forces, report.force_magnitude_error,
                                    report.force_angle_deg, report.force_error):
        np.testing.assert_allclose(mag, 0.5 * np.linalg.norm(ref_f, axis=1), atol=1e-12)
        np.testing.assert_allclose(err, 0.5 * ref_f, atol=1e-12)
        small = np.linalg.norm(ref_f, axis=1) < 0.1
        assert np.all(np.isnan(ang[small]))
        assert np.all(ang[~small] < 1e-4)
    m = report.metrics()
    all_f = np.concatenate(exact_reference.forces)
    assert m["force_rmse"] == pytest.approx(0.5 * math.sqrt(np.mean(all_f**2)), rel=1e-10)
    assert m["force_magnitude_max"] == pytest.approx(
        0.5 * np.max(np.linalg.norm(all_f, axis=1)), rel=1e-10)
    assert report.stats["force_angle"].n == int(
        np.sum(np.linalg.norm(all_f, axis=1) >= 0.1))
    assert report.stats["force_angle"].n > 0
    assert m["energy_rmse"] < 1e-12


def test_force_scale_on_file_labels(reference):
    report = compute_errors(reference, predict(sw_forces_scaled(), reference))
    for ref_f, mag in zip(reference.forces, report.force_magnitude_error):
        np.testing.assert_allclose(mag, 0.5 * np.linalg.norm(ref_f, axis=1), atol=1e-5)
    assert report.metrics()["force_angle_max"] < 1e-3


def test_stress_shift_in_gpa(exact_reference, sw_calc):
    calc = PerturbedCalculator(sw_calc, stress_shift_eV_A3=0.001)
    report = compute_errors(exact_reference, predict(calc, exact_reference))
    np.testing.assert_allclose(report.stress_error_GPa, 0.16021766208, rtol=1e-9)
    assert report.metrics()["stress_rmse"] == pytest.approx(0.16021766208, rel=1e-9)


# --- subsets, worst ---------------------------------------------------------------------

@pytest.fixture
def typed_report():
    # per-atom errors 0.1 (type a) and 0.3 (type b): dataset offset 0.2
    ref = make_reference([1, 2, 1, 2], config_types=["a", "b", "a", "b"],
                         energy=[0.0] * 4, stress=np.zeros((4, 6)))
    pred = make_predictions(energy=[0.1, 0.6, 0.1, 0.6],
                            stress=np.outer([1.0, 2.0, 3.0, 0.5], np.ones(6)) / 1000)
    return compute_errors(ref, pred)


def test_subset_keeps_dataset_offset(typed_report):
    assert typed_report.energy_offset == pytest.approx(0.2)
    a = typed_report.subset_by_config_type("a")
    b = typed_report.subset_by_config_type("b")
    assert a.subset == "a" and b.subset == "b"
    assert list(a.indices) == [0, 2] and list(b.indices) == [1, 3]
    assert list(b.n_atoms) == [2, 2]
    assert a.energy_offset == pytest.approx(0.2)
    assert b.energy_offset == pytest.approx(0.2)
    assert a.metrics()["energy_offset"] == pytest.approx(0.2)
    # offset removed within the subset: 0.1 - 0.2 and 0.3 - 0.2, not 0
    assert a.metrics()["energy_offset_removed_rmse"] == pytest.approx(0.1)
    assert b.metrics()["energy_offset_removed_rmse"] == pytest.approx(0.1)
    assert a.metrics()["energy_rmse"] == pytest.approx(0.1)
    assert b.metrics()["energy_rmse"] == pytest.approx(0.3)
    assert b.metrics()["energy_cell_max"] == pytest.approx(0.6)
    assert a.metrics()["stress_max"] == pytest.approx(3 * 0.16021766208)


def test_by_config_type(typed_report):
    groups = typed_report.by_config_type
    assert list(groups) == ["a", "b"]
    assert typed_report.config_type_names == ["a", "b"]
    assert len(groups["a"]) == 2 and len(groups["b"]) == 2
    assert groups["b"].energy_offset == pytest.approx(0.2)
    assert groups["b"].stats["energy"].n == 2
    assert len(typed_report) == 4


def test_subset_unknown_config_type(typed_report):
    with pytest.raises(KeyError, match="'c'.*has: a, b"):
        typed_report.subset_by_config_type("c")


def test_subset_of_dataset_offset_on_file(reference):
    report = compute_errors(reference, predict(sw_shifted(), reference))
    assert report.config_type_names == ["bulk", "rattled"]
    rattled = report.subset_by_config_type("rattled")
    assert list(rattled.indices) == [1, 3, 5]
    assert rattled.energy_offset == report.energy_offset


def test_worst_ordering(typed_report):
    worst = typed_report.worst("energy", k=3)
    assert {w[0] for w in worst[:2]} == {1, 3}
    assert worst[0][1] == "b" and worst[0][2] == 2
    assert worst[0][3] == pytest.approx(0.3)
    assert worst[2][3] == pytest.approx(0.1)
    stress = typed_report.worst("stress", k=2)
    assert [w[0] for w in stress] == [2, 1]
    assert stress[0][3] == pytest.approx(3 * 0.16021766208)
    # energy_cell ranks by N * error: structures 1, 3 (0.6 eV) before 0, 2 (0.1 eV)
    assert {w[0] for w in typed_report.worst("energy_cell", k=2)} == {1, 3}
    assert len(typed_report.worst("energy", k=10)) == 4


def test_worst_keeps_dataset_indices_in_subset():
    ref = make_reference([1] * 5, config_types=["a", "b", "a", "b", "a"], energy=[0.0] * 5)
    pred = make_predictions(energy=[0.5, 9.0, -0.7, 8.0, 0.1])
    b = compute_errors(ref, pred).subset_by_config_type("a")
    assert b.worst("energy") == [(2, "a", 1, pytest.approx(0.7)),
                                 (0, "a", 1, pytest.approx(0.5)),
                                 (4, "a", 1, pytest.approx(0.1))]


def test_worst_offset_removed_and_sqrtn():
    ref = make_reference([1, 4, 1], energy=[0.0] * 3)
    pred = make_predictions(energy=[1.0, 0.0, 2.0])  # per atom 1, 0, 2; offset 1
    report = compute_errors(ref, pred)
    removed = report.worst("energy_offset_removed")
    assert [w[0] for w in removed[:2]] in ([1, 2], [2, 1])
    assert removed[0][3] == pytest.approx(1.0) and removed[2][0] == 0
    assert removed[2][3] == pytest.approx(0.0)
    assert report.per_structure("energy_sqrtn") == pytest.approx([1.0, 0.0, 2.0])


def test_worst_force_nan_angles_last():
    ref = make_reference([1, 1, 1], forces=[[[1.0, 0, 0]], [[0.01, 0, 0]], [[1.0, 0, 0]]])
    pred = make_predictions(forces=[[[1.0, 0.1, 0]], [[0.0, 5.0, 0]], [[0.0, 1.0, 0]]])
    report = compute_errors(ref, pred)
    worst = report.worst("force_angle")
    assert [w[0] for w in worst] == [2, 0, 1]
    assert worst[0][3] == pytest.approx(90.0)
    assert math.isnan(worst[2][3])
    by_force = report.worst("force", k=1)
    assert by_force[0][0] == 1
    assert by_force[0][3] == pytest.approx(math.sqrt((0.01**2 + 25) / 3))


def test_worst_unknown_quantity(typed_report):
    with pytest.raises(KeyError):
        typed_report.worst("force")
    with pytest.raises(KeyError):
        typed_report.worst("nonsense")


# --- metric names and units -------------------------------------------------------------

EXPECTED_UNITS = {
    "energy": "eV/atom",
    "energy_offset_removed": "eV/atom",
    "energy_cell": "eV",
    "energy_sqrtn": "eV/atom^0.5",
    "force": "eV/Å",
    "force_magnitude": "eV/Å",
    "force_angle": "degree",
    "stress": "GPa",
}


@pytest.mark.parametrize("quantity", sorted(EXPECTED_UNITS))
@pytest.mark.parametrize("stat", ["rmse", "mae", "max", "median", "p95"])
def test_metric_unit_every_name(quantity, stat):
    assert metric_unit(f"{quantity}_{stat}") == EXPECTED_UNITS[quantity]


def test_metric_unit_offset_and_tables():
    assert metric_unit("energy_offset") == "eV/atom"
    assert set(QUANTITIES) == set(EXPECTED_UNITS)
    assert STATS == ("rmse", "mae", "max", "median", "p95")


@pytest.mark.parametrize("name", ["force", "rmse", "force_std", "energy_offset_rmse",
                                  "stress_rmse_GPa", "forces_rmse", "", "energy_offset_"])
def test_metric_unit_unknown(name):
    with pytest.raises(KeyError):
        metric_unit(name)


def test_metrics_names_all_have_units(reference):
    m = compute_errors(reference, predict(sw_shifted(), reference)).metrics()
    expected = {f"{q}_{s}" for q in EXPECTED_UNITS for s in STATS} | {"energy_offset"}
    assert set(m) == expected
    for name in m:
        metric_unit(name)
