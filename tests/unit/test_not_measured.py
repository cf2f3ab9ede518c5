"""Which NaN metrics of a protocol result are gaps (``not_measured()``: a transition not
in the range searched, an onset never reached, a label the data does not have) and which
are faults that fail the test (the calculator's NaN, a run that stopped, a fold or a fit
that failed, no usable minimum). Results are built directly or by tiny runs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from pytest_mlpval.protocols.compression import classify_frames
from pytest_mlpval.protocols.fitting.crossval import CrossValidationResult, FoldResult
from pytest_mlpval.protocols.properties.eos import (EosResult, PolymorphResult, TransitionResult,
                               transition_pressure)
from pytest_mlpval.fixture import not_measured
from pytest_mlpval.protocols.fitting.learning_curve import LearningCurveResult, LearningPoint
from pytest_mlpval.protocols.properties.liquid import PairCorrelation
from pytest_mlpval.protocols.md.settings import MDFrame
from pytest_mlpval.protocols.properties import PropertyError
from pytest_mlpval.protocols.properties.campaign import PropertySet
from pytest_mlpval.protocols.rss import RssMinimum, RssResult, RssSettings

NAN = math.nan


def _nan(result) -> set[str]:
    return {k for k, v in result.metrics().items() if v != v}


# -- the plugin's rule -------------------------------------------------------------------

class _Undeclared:
    """A library-looking result without ``not_measured()``."""

    def metrics(self):
        return {"a": NAN, "b": 1.0}


_Undeclared.__module__ = "pytest_mlpval.some_protocol"


class _Declared(_Undeclared):
    def not_measured(self):
        return {"a", "b", "c"}


def test_no_module_is_exempt_only_a_declared_nan_is_a_gap():
    assert not_measured(_Undeclared(), _Undeclared().metrics()) == set()
    # only NaN metrics, and only those declared
    assert not_measured(_Declared(), _Declared().metrics()) == {"a"}
    assert not_measured(_Declared(), {"a": 1.0, "c": math.inf}) == set()


# -- property protocols ------------------------------------------------------------------

def _eos(crystal, v0, e0, b_prime=4.2):
    volumes = tuple(v0 * (1 + s) for s in np.linspace(-0.05, 0.05, 7))
    return EosResult(crystal, "Si", volumes, (0.0,) * 7, v0, e0, 98.0, b_prime, 5.43, 0.02,
                     0.1, True, 10, 0.1, 0.2)


def test_a_transition_not_found_is_a_gap_a_nan_enthalpy_is_an_error():
    low, high = _eos("diamond", 20.0, -4.3), _eos("beta-Sn", 15.0, -4.0)
    none = transition_pressure(low, high, max_pressure_GPa=1.0)
    assert not none.found and none.not_measured() == _nan(none) \
        == {"diamond_beta_sn_transition_GPa"}
    found = TransitionResult("diamond", "beta-Sn", 11.0, 20.0, 15.0, -4.0, False)
    assert found.not_measured() == set()
    polymorphs = PolymorphResult("Si", "diamond", (low, high), (none,), 20, 0.1, 0.2)
    assert polymorphs.not_measured() == {"diamond_beta_sn_transition_GPa"}
    assert _eos("diamond", 20.0, -4.3).not_measured() == set()  # every property: none
    with pytest.raises(PropertyError, match="enthalpy difference beta-Sn - diamond is not "
                                            "finite"):
        transition_pressure(low, _eos("beta-Sn", 15.0, -4.0, b_prime=NAN))


def test_property_set_declares_only_the_gaps_of_what_ran():
    none = TransitionResult("diamond", "beta-Sn", NAN, NAN, NAN, NAN, False)
    found = PolymorphResult("Si", "diamond", (), (none,), 20, 0.1, 0.2)
    ran = PropertySet({"polymorphs": found}, {"eos": "PropertyError: relaxing"}, (), 1.0)
    assert ran.not_measured() == {"diamond_beta_sn_transition_GPa"}


def _pair(md_status):
    return PairCorrelation("liquid", (2.3,), (2.0,), (2.0,), (1.5,), 0.05, 2.5, 2.4, 2.5,
                           2.9, 3.8, 4.5, 2.9, 2.7, 3, 64,
                           **({"temperature_K": 1800.0, "msd_A2": 3.0,
                               "md_status": md_status} if md_status else {}))


def test_given_frames_have_no_temperature_a_run_always_has():
    assert _pair("").not_measured() == _nan(_pair("")) \
        == {"liquid_temperature_K", "liquid_msd_A2"}
    assert _pair("completed").not_measured() == set() == _nan(_pair("completed"))


# -- structure search --------------------------------------------------------------------

def _search(statuses, references):
    params = RssSettings(n_structures=len(statuses), atoms_per_cell=(2, 2))
    minima = tuple(
        RssMinimum(i, s, 2, **({"energy_per_atom_eV": -4.3, "volume_per_atom_A3": 20.0,
                                "enthalpy_per_atom_eV": -4.3, "n_steps": 5,
                                "total_seconds": 1.0, "calculator_seconds": 0.5,
                                "cpu_seconds": 1.0} if s == "converged" else {}))
        for i, s in enumerate(statuses))
    return RssResult(params, "x", None, minima, references)


DIAMOND = {"diamond": {"energy_per_atom_eV": -4.33, "enthalpy_per_atom_eV": -4.33,
                       "volume_per_atom_A3": 20.0}}


def test_rss_gaps_and_faults():
    good = _search(["converged", "failed"], DIAMOND)
    assert _nan(good) == set() and good.not_measured() == set()
    # no diamond asked for: its two metrics do not apply
    plain = _search(["converged"], {})
    assert _nan(plain) == plain.not_measured() == {"diamond_like_fraction",
                                                   "lowest_minus_diamond_eV"}
    # every structure failed: no minimum is a fault, its timings only a gap
    failed = _search(["failed", "exploded"], DIAMOND)
    faults = _nan(failed) - failed.not_measured()
    assert faults == {"lowest_energy_per_atom_eV", "lowest_volume_per_atom_A3",
                      "lowest_minus_diamond_eV", "median_volume_per_atom_A3"}
    # the candidate could not relax diamond: a fault
    broken = _search(["converged"], {"diamond": {"error": "NonFiniteResult: energy"}})
    assert _nan(broken) - broken.not_measured() == {"diamond_like_fraction",
                                                     "lowest_minus_diamond_eV"}


# -- MD ----------------------------------------------------------------------------------

def test_md_stability_has_no_gaps_a_stopped_run_is_a_fault():
    from pytest_mlpval.protocols.md.stability import run_md_stability
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.testing import FaultyCalculator

    sw = load_potential("sw").calculator
    small = dict(repeat=1, nvt_steps=3, nve_steps=3, sample_every=2)
    good = run_md_stability(sw, **small)
    assert _nan(good) == set() and good.not_measured() == set()
    bad = run_md_stability(FaultyCalculator(sw, "nan", 2), **small)
    assert bad.status == "unstable" and bad.not_measured() == set()
    assert "energy_drift_per_atom_eV_ps" in _nan(bad)


def _frames(coordination, sh):
    n = len(sh)
    return [MDFrame(step=10 * i, time_fs=20.0 * i, phase="compress", temperature_K=500.0,
                    target_temperature_K=500.0, pressure_GPa=2.0 * i,
                    target_pressure_GPa=2.0 * i, volume_per_atom_A3=20.0 - 0.3 * i,
                    potential_energy_per_atom_eV=-4.0, kinetic_energy_per_atom_eV=0.06,
                    conserved_energy_per_atom_eV=NAN, min_distance_A=2.2,
                    analysis={"coordination_mean": coordination[i], "sh_fraction": sh[i],
                              "sh_fraction_fixed": 0.0 if sh[i] == sh[i] else NAN})
            for i in range(n)]


def test_compression_onset_and_collapse_not_reached_are_gaps_a_stopped_run_is_not():
    from pytest_mlpval.protocols.compression import CompressionResult

    # stays four-fold and amorphous: neither onset nor collapse happened
    amorphous = classify_frames(_frames([4.0] * 6, [0.0] * 6), expected_phase="sh")
    assert amorphous.outcome == "amorphous"
    assert _nan(amorphous) == amorphous.not_measured() == {"onset_pressure_GPa",
                                                           "collapse_pressure_GPa"}
    crystal = classify_frames(_frames([4, 5, 6, 6, 6, 6], [0, 0, .5, .9, .9, .9]))
    assert _nan(crystal) == set() == crystal.not_measured()
    for status in ("unstable", "cut_short"):
        stopped = classify_frames(_frames([4.0] * 6, [0.0] * 6), status=status)
        assert stopped.not_measured() == set() and "crystalline_fraction" in _nan(stopped)
    # a NaN fraction (a reference the candidate could not relax) is a fault
    lost = classify_frames(_frames([4.0] * 6, [NAN] * 6), expected_phase="sh")
    assert "crystalline_fraction" in _nan(lost) - lost.not_measured()
    result = CompressionResult("x", 0, None, None, None, {}, {}, amorphous, 0.0, False)
    assert result.not_measured() == amorphous.not_measured()


# -- fitting recipes ---------------------------------------------------------------------

class _Errors(SimpleNamespace):
    """An ErrorReport's metrics() and len() (2 structures)."""

    def metrics(self):
        return dict(vars(self))

    def __len__(self):
        return 2


def _errors(**metrics):
    return _Errors(**metrics)


LABELLED = dict(energy_rmse=0.01, energy_mae=0.01, energy_max=0.02,
                energy_offset_removed_rmse=0.01, energy_offset_removed_mae=0.01,
                energy_offset_removed_max=0.02, force_rmse=0.1, force_mae=0.1, force_max=0.3)


def test_cross_validation_gaps_are_missing_labels_never_failed_folds():
    ok = FoldResult(0, "fold 0", 4, 2, True, errors=_errors(**LABELLED))
    failed = FoldResult(1, "fold 1", 4, 2, False, error="fit exited with status 3")
    assert ok.not_measured() == _nan(ok) == {"stress_rmse", "stress_mae"}
    assert failed.not_measured() == set() and _nan(failed)
    cv = CrossValidationResult("d", "0" * 64, None, "fit", (ok, failed),
                               pooled=_errors(**LABELLED))
    assert cv.not_measured() == _nan(cv) == {"stress_rmse", "stress_mae", "stress_max",
                                             "stress_rmse_fold_mean",
                                             "stress_rmse_fold_std"}
    nothing = CrossValidationResult("d", "0" * 64, None, "fit", (failed,))
    assert nothing.not_measured() == set() and "force_rmse" in _nan(nothing)


def test_learning_curve_gaps_are_missing_labels_and_exact_fits_not_failed_sizes():
    def point(n, ok=True, force=0.1):
        return LearningPoint(n, 0, ok, metrics={"energy_rmse": 0.0, "force_rmse": force}
                             if ok else {})

    curve = LearningCurveResult("d", "t", "0" * 64, 10, (2, 4), (0,),
                                (point(2, force=0.2), point(4)), "fit")
    # no stress label; energies predicted exactly (no log-log slope)
    assert curve.not_measured() == _nan(curve) == {
        "stress_rmse_at_max_size", "stress_rmse_at_min_size", "stress_rmse_slope",
        "energy_rmse_slope"}
    lost = LearningCurveResult("d", "t", "0" * 64, 10, (2, 4), (0,),
                               (point(2, force=0.2), point(4, ok=False)), "fit")
    faults = _nan(lost) - lost.not_measured()
    assert faults == {"energy_rmse_at_max_size", "energy_rmse_slope",
                      "force_rmse_at_max_size", "force_rmse_slope"}


# -- errors of a candidate on its own snapshots or by similarity -------------------------

def test_binned_errors_gap_is_an_empty_side_or_a_missing_label():
    from pytest_mlpval.protocols.domain.errors import BinnedErrors

    empty = np.zeros(1)
    # forces: 10 atoms inside, none outside; no energy labels
    binned = BinnedErrors(np.array([0.0, 1.0]), empty, empty, empty, empty, 0.9,
                          (0.1, NAN, 10, 0))
    assert binned.not_measured() == _nan(binned) == {
        "force_rmse_outside", "energy_rmse_inside", "energy_rmse_outside"}
    # atoms outside whose RMSE is NaN: a fault
    broken = BinnedErrors(np.array([0.0, 1.0]), empty, empty, empty, empty, 0.9,
                          (0.1, NAN, 10, 2), (0.01, 0.02, 3, 1))
    assert _nan(broken) - broken.not_measured() == {"force_rmse_outside"}


def test_meltquench_errors_gap_is_a_missing_label():
    from pytest_mlpval.protocols.md.meltquench_errors import MeltQuenchErrors

    forces_only = dict(force_rmse=0.1, force_mae=0.1, force_max=0.3)
    report = SimpleNamespace(metrics=lambda: dict(forces_only),
                             subset_by_config_type=lambda phase: SimpleNamespace(
                                 metrics=lambda: dict(forces_only, force_max=NAN)))
    errors = MeltQuenchErrors("x", "sw", report, ("melt",), ("melt",), *[np.zeros(1)] * 5)
    energy = {"energy_rmse", "energy_mae", "energy_offset_removed_rmse"}
    assert errors.not_measured() == energy | {f"melt_{k}" for k in energy}
    assert _nan(errors) - errors.not_measured() == {"melt_force_max"}


def test_level_comparison_gap_is_a_reference_the_table_lacks():
    from pytest_mlpval.comparison import LevelComparison

    exp = SimpleNamespace(value=79.6)  # an experimental ReferenceValue
    only_exp = LevelComparison("C44_GPa", "GPa", 56.0, None, exp, NAN, NAN, 56.0 - 79.6)
    assert only_exp.not_measured() == _nan(only_exp) == {"C44_GPa_fit_error",
                                                         "C44_GPa_ground_truth_error"}
    # the candidate's own value is NaN: a fault
    broken = LevelComparison("C44_GPa", "GPa", NAN, None, exp, NAN, NAN, NAN)
    assert _nan(broken) - broken.not_measured() == {"C44_GPa_total_error"}
