"""Unit tests of pytest_mlpval.assertions: limits, pass/fail, the failure message."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_mlpval.assertions import (
    MissingMetricError,
    MlpvalAssertionError,
    ThresholdResult,
    assert_errors_within,
    evaluate_thresholds,
    format_table,
    validate_limits,
)
from pytest_mlpval.data import DatasetSpec, ReferenceSet, read_dataset
from pytest_mlpval.evaluate import Predictions, predict
from pytest_mlpval.metrics import compute_errors
from pytest_mlpval.testing import sw_forces_scaled


def make_report(n_atoms, config_types, ref_energy=None, pred_energy=None, forces=None,
                pred_forces=None, name="synthetic"):
    import ase

    n_atoms = np.asarray(n_atoms, dtype=int)
    ref = ReferenceSet(
        name=name, spec=DatasetSpec(name, f"/nonexistent/{name}.xyz"), sha256="0" * 64,
        structures=tuple(ase.Atoms(f"Si{n}") for n in n_atoms), n_atoms=n_atoms,
        config_types=tuple(config_types),
        energy=None if ref_energy is None else np.asarray(ref_energy, dtype=float),
        forces=None if forces is None else tuple(np.asarray(f, float) for f in forces),
        stress=None)
    pred = Predictions(
        name, None if pred_energy is None else np.asarray(pred_energy, dtype=float),
        None if pred_forces is None else tuple(np.asarray(f, float) for f in pred_forces),
        None)
    return compute_errors(ref, pred)


@pytest.fixture
def report():
    """Per-atom energy errors 0.1, 0.3, 0.1, -0.5 eV/atom on 1, 2, 1, 2 atoms."""
    return make_report([1, 2, 1, 2], ["a", "b", "a", "b"], [0.0] * 4,
                       [0.1, 0.6, 0.1, -1.0])


def rmse(values):
    return math.sqrt(np.mean(np.square(values)))


def section(message, title, start=None):
    """Header and data rows (split into cells) of the table after the line starting
    with ``title`` (or after line ``start``)."""
    lines = message.splitlines()
    if start is None:
        start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 3:]:  # title, header, dashes
        if not line.strip():
            break
        rows.append(line.split())
    return lines[start + 1].split(), rows


# --- validate_limits ----------------------------------------------------------------------

def test_validate_limits_ok():
    clean = validate_limits({"force_rmse": 0.1, "energy_offset": "0.005", "stress_max": 0,
                             "energy_offset_removed_p95": 1})
    assert clean == {"force_rmse": 0.1, "energy_offset": 0.005, "stress_max": 0.0,
                     "energy_offset_removed_p95": 1.0}
    assert all(type(v) is float for v in clean.values())


@pytest.mark.parametrize("name", ["force_rmsd", "forces_rmse", "energy", "rmse",
                                  "energy_offset_rmse", "force_angle"])
def test_validate_limits_unknown_metric(name):
    with pytest.raises(ValueError, match=f"my-ini: unknown metric '{name}'"):
        validate_limits({name: 1.0}, source="my-ini")


@pytest.mark.parametrize("value", ["abc", None, [1.0], {}, "1 eV"])
def test_validate_limits_not_a_number(value):
    with pytest.raises(ValueError, match="thresholds: force_rmse=.* is not a number"):
        validate_limits({"force_rmse": value})


@pytest.mark.parametrize("value", [-0.1, -1e-300, float("inf"), "inf", float("nan"),
                                   "-inf", "nan"])
def test_validate_limits_bad_value(value):
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        validate_limits({"energy_rmse": value})


def test_validate_limits_empty():
    assert validate_limits({}) == {}


# --- pass / fail --------------------------------------------------------------------------

def test_passes_and_returns_results(report):
    results = assert_errors_within(report, energy_rmse=1.0, energy_max=0.5)
    assert [r.metric for r in results] == ["energy_rmse", "energy_max"]
    assert all(isinstance(r, ThresholdResult) and r.passed for r in results)
    assert results[0].value == pytest.approx(rmse([0.1, 0.3, 0.1, -0.5]))
    assert results[1].value == pytest.approx(0.5)  # equal to the limit: passes
    assert results[0].unit == "eV/atom"
    assert results[0].subset == "all"
    assert results[0].as_dict() == {"metric": "energy_rmse", "subset": "all",
                                    "value": results[0].value, "limit": 1.0,
                                    "unit": "eV/atom", "passed": True}


def test_fails(report):
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, energy_max=0.49)
    assert isinstance(info.value, AssertionError)


def test_no_limits(report):
    with pytest.raises(ValueError, match="at least one limit"):
        assert_errors_within(report)


def test_unknown_limit_name(report):
    with pytest.raises(ValueError, match="assert_errors_within: unknown metric 'energy_rms'"):
        assert_errors_within(report, energy_rms=1.0)


def test_string_limits_accepted(report):
    assert assert_errors_within(report, energy_max="0.6")[0].limit == 0.6


# --- failure message ----------------------------------------------------------------------

def test_summary_line(report):
    value = rmse([0.1, 0.3, 0.1, -0.5])  # 0.3
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, potential="pot", energy_mae=1.0, energy_rmse=0.2,
                             energy_max=0.1)
    first = str(info.value).splitlines()[0]
    assert first == (
        "2 of 3 thresholds exceeded for potential 'pot' on dataset 'synthetic' "
        f"(4 structures, 6 atoms): energy_rmse {value:.4g} eV/atom > 0.2")


def test_summary_line_without_potential(report):
    with pytest.raises(MlpvalAssertionError,
                       match=r"^1 of 1 thresholds exceeded for dataset 'synthetic' \("):
        assert_errors_within(report, energy_max=0.1)


def test_metric_table(report):
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, energy_mae=1.0, energy_max=0.4, energy_rmse=0.0)
    header, rows = section(str(info.value), "", start=1)  # after the summary line
    assert header == ["metric", "value", "limit", "excess", "unit", "status"]
    by_metric = {row[0]: row for row in rows}
    assert by_metric["energy_mae"][-1] == "ok"
    # 0.5 against 0.4: +25%
    assert by_metric["energy_max"][1:] == ["0.5", "0.4", "+25%", "eV/atom", "FAIL"]
    assert by_metric["energy_rmse"][3] == "+inf%"  # limit 0
    assert by_metric["energy_rmse"][-1] == "FAIL"


def test_per_config_type_table(report):
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, energy_rmse=0.01, energy_max=0.1)
    message = str(info.value)
    header, rows = section(message, "per config_type")
    assert header == ["config_type", "n", "energy_rmse", "energy_max"]
    assert rows[0] == ["a", "2", f"{0.1:.4g}", f"{0.1:.4g}"]
    assert rows[1] == ["b", "2", f"{rmse([0.3, 0.5]):.4g}", "0.5"]


def test_no_per_config_type_table_for_one_type():
    single = make_report([1, 1], ["x", "x"], [0.0, 0.0], [1.0, 2.0])
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(single, energy_max=0.1)
    assert "per config_type" not in str(info.value)
    assert "worst structures by energy error" in str(info.value)


def test_worst_structures_table(report):
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, energy_rmse=0.01)
    header, rows = section(str(info.value), "worst structures by energy error (eV/atom)")
    assert header == ["index", "config_type", "atoms", "energy", "error"]
    assert [row[0] for row in rows[:2]] == ["3", "1"]  # |-0.5| then 0.3
    assert rows[0][1:] == ["b", "2", "0.5"]
    assert {row[0] for row in rows[2:]} == {"0", "2"}


def test_worst_table_once_per_quantity(report):
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, energy_rmse=0.01, energy_max=0.01, energy_mae=0.01,
                             energy_cell_max=0.01)
    message = str(info.value)
    assert message.count("worst structures by energy error") == 1
    assert message.count("worst structures by energy_cell error (eV)") == 1
    # per-cell ranking: 1.0 eV (structure 3) then 0.6 eV (structure 1)
    _, rows = section(message, "worst structures by energy_cell error")
    assert [row[0] for row in rows[:2]] == ["3", "1"]
    assert rows[0][3] == "1"


def test_worst_table_limited_to_five():
    many = make_report([1] * 8, ["x"] * 8, [0.0] * 8, [0.1 * i for i in range(8)])
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(many, energy_max=0.0)
    _, rows = section(str(info.value), "worst structures")
    assert [row[0] for row in rows] == ["7", "6", "5", "4", "3"]


def test_hint_at_the_end(report):
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, hint="see the docs", energy_max=0.1)
    assert str(info.value).splitlines()[-1] == "see the docs"


def test_force_failure_on_dataset(reference_file):
    ref = read_dataset(
        f"ref={reference_file},energy=dft_energy,forces=dft_forces,stress=dft_stress")
    errors = compute_errors(ref, predict(sw_forces_scaled(), ref))
    per_structure = [rmse(0.5 * f) for f in ref.forces]
    expected = rmse(0.5 * np.concatenate(ref.forces))
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(errors, potential="scaled", force_rmse=0.01, energy_rmse=0.001)
    message = str(info.value)
    assert message.splitlines()[0] == (
        "1 of 2 thresholds exceeded for potential 'scaled' on dataset 'ref' "
        f"(6 structures, 72 atoms): force_rmse {expected:.4g} eV/Å > 0.01")
    _, rows = section(message, "worst structures by force error (eV/Å)")
    order = np.argsort(per_structure)[::-1]
    assert [int(row[0]) for row in rows] == list(order[:5])
    assert float(rows[0][3]) == pytest.approx(max(per_structure), rel=1e-3)
    _, groups = section(message, "per config_type")
    assert [g[0] for g in groups] == ["bulk", "rattled"]
    # rattled cells have the larger forces, hence the larger errors
    assert float(groups[1][2]) > float(groups[0][2])


# --- energy_offset ------------------------------------------------------------------------

@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_energy_offset_by_absolute_value(sign):
    shifted = make_report([2, 2], ["x", "x"], [0.0, 0.0], [sign * 0.4, sign * 0.4])
    assert shifted.energy_offset == pytest.approx(sign * 0.2)
    results = assert_errors_within(shifted, energy_offset=0.25)
    assert results[0].value == pytest.approx(sign * 0.2)  # reported signed
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(shifted, energy_offset=0.15)
    assert "+33%" in str(info.value)
    assert "worst structures by energy error" in str(info.value)


# --- config_type selection ----------------------------------------------------------------

def test_config_type_selection(report):
    with pytest.raises(MlpvalAssertionError):
        assert_errors_within(report, energy_max=0.2)
    results = assert_errors_within(report, config_type="a", energy_max=0.2)
    assert results[0].subset == "a"
    assert results[0].value == pytest.approx(0.1)
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, config_type="b", energy_max=0.2)
    first = str(info.value).splitlines()[0]
    assert ", config_type 'b' (2 structures, 4 atoms): energy_max 0.5" in first
    _, rows = section(str(info.value), "worst structures")
    assert [row[0] for row in rows] == ["3", "1"]  # dataset indices, not subset ones


def test_config_type_subset_keeps_dataset_offset(report):
    # dataset offset: (0.1 + 0.3 + 0.1 - 0.5) / 4 = 0; subset 'a' alone would have 0.1
    assert assert_errors_within(report, config_type="a", energy_offset=0.01)[0].value == \
        pytest.approx(0.0, abs=1e-15)


def test_unknown_config_type(report):
    with pytest.raises(KeyError, match="'c'"):
        assert_errors_within(report, config_type="c", energy_max=1.0)


# --- missing metrics ----------------------------------------------------------------------

def test_stress_limits_without_stress(reference_file):
    ref = read_dataset(f"ref={reference_file},energy=dft_energy,forces=dft_forces")
    assert ref.stress is None
    errors = compute_errors(ref, predict(sw_forces_scaled(), ref, ("energy", "forces")))
    with pytest.raises(MissingMetricError, match=r"stress_rmse.*no stress errors.*'ref'"):
        assert_errors_within(errors, force_rmse=10.0, stress_rmse=1.0)
    assert not issubclass(MissingMetricError, AssertionError)


def test_energy_limits_without_energy():
    forces_only = make_report([1], ["x"], forces=[[[1.0, 0, 0]]], pred_forces=[[[1, 0, 0]]])
    for name in ("energy_offset", "energy_rmse", "energy_offset_removed_mae"):
        with pytest.raises(MissingMetricError, match=f"cannot check {name}: no energy"):
            assert_errors_within(forces_only, **{name: 1.0})


def test_force_limits_without_forces(report):
    with pytest.raises(MissingMetricError, match="no force errors"):
        evaluate_thresholds(report, {"force_angle_max": 10.0})


def test_force_angle_without_large_forces():
    tiny = make_report([1], ["x"], forces=[[[0.01, 0, 0]]], pred_forces=[[[0, 0.01, 0]]])
    assert_errors_within(tiny, force_max=1.0)
    with pytest.raises(MissingMetricError, match="force_angle_rmse"):
        assert_errors_within(tiny, force_angle_rmse=1.0)


# --- format_table -------------------------------------------------------------------------

def test_format_table():
    lines = format_table(["name", "value"], [("a", 1.5), ("longer", float("nan")),
                                             ("b", 123456.0), ("c", 7)])
    assert lines == [
        "name        value",
        "------  ---------",
        "a             1.5",
        "longer        n/a",
        "b       1.235e+05",
        "c               7",
    ]
