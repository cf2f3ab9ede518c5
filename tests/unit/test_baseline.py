"""Unit tests of pytest_mlpval.baseline: the tolerance grammar, comparison statuses,
baseline files (validation, atomic writes) and the regression message."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from pytest_mlpval import baseline as bl
from pytest_mlpval import fileio
from pytest_mlpval.baseline import (
    DEFAULT_TOLERANCE,
    NOISE_FLOOR,
    SCHEMA,
    BaselineError,
    Comparison,
    Tolerance,
    baseline_entries,
    compare_metrics,
    entry_key,
    load_baseline,
    parse_tolerance,
    regression_message,
    resolve_tolerance,
    write_baseline,
)

NAN = float("nan")
INF = float("inf")


# --- parse_tolerance ---------------------------------------------------------------------

@pytest.mark.parametrize("text, metric, relative", [
    ("force_rmse:5%", "force_rmse", 0.05),
    ("force_rmse:0.5%", "force_rmse", 0.005),
    (" energy_rmse : 12 % ", "energy_rmse", 0.12),
    ("*:2%", "*", 0.02),
    ("*:150%", "*", 1.5),
    ("translation:10%", "translation", 0.10),  # a physics check is a metric too
    ("time_per_atom_us:25%", "time_per_atom_us", 0.25),  # and a cost
])
def test_parse_percentages(text, metric, relative):
    tol = parse_tolerance(text)
    assert tol.metric == metric
    assert tol.relative == pytest.approx(relative, rel=1e-12)
    assert tol.absolute is None
    assert tol.text == text.strip()
    assert tol.allowed(-2.0) == pytest.approx(2.0 * relative)  # of |baseline|


@pytest.mark.parametrize("text, metric, absolute", [
    # a plain number is in the metric's own unit
    ("force_rmse:0.002", "force_rmse", 0.002),
    ("stress_rmse:.5", "stress_rmse", 0.5),
    ("force_rmse:1e-3", "force_rmse", 1e-3),
    ("force_rmse:0", "force_rmse", 0.0),
    # energies per atom are in eV/atom, forces in eV/Å, stresses in GPa, angles in degrees
    ("energy_rmse:0.5meV", "energy_rmse", 0.5e-3),
    ("energy_rmse:2 meV", "energy_rmse", 2e-3),
    ("energy_rmse:2meV/atom", "energy_rmse", 2e-3),
    ("energy_offset:0.01eV", "energy_offset", 0.01),
    ("energy_cell_rmse:0.1eV", "energy_cell_rmse", 0.1),
    ("force_rmse:1e-3eV/Å", "force_rmse", 1e-3),
    ("force_rmse:20meV/Å", "force_rmse", 0.02),
    ("force_rmse:20meV/A", "force_rmse", 0.02),
    ("force_mae:0.03eV/A", "force_mae", 0.03),
    ("stress_rmse:0.1GPa", "stress_rmse", 0.1),
    ("stress_rmse:50MPa", "stress_rmse", 0.05),
    ("stress_max:2kbar", "stress_max", 0.2),
    ("stress_rmse:2KBAR", "stress_rmse", 0.2),  # units are case-insensitive
    ("force_angle_rmse:1.5deg", "force_angle_rmse", 1.5),
])
def test_parse_absolute_amounts_in_the_metric_unit(text, metric, absolute):
    tol = parse_tolerance(text)
    assert tol.metric == metric
    assert tol.relative is None
    assert tol.absolute == pytest.approx(absolute, rel=1e-12, abs=0)
    assert tol.text == text.strip()
    # an absolute tolerance does not depend on the baseline
    assert tol.allowed(1000.0) == tol.allowed(0.0) == pytest.approx(absolute, abs=0)


@pytest.mark.parametrize("text, match", [
    ("force_rmse", "expected METRIC:AMOUNT"),
    ("force_rmse:", "expected METRIC:AMOUNT"),
    (":5%", "expected METRIC:AMOUNT"),
    ("", "expected METRIC:AMOUNT"),
    ("force_rmse:five", "expected METRIC:AMOUNT"),
    ("force_rmse:-5%", "expected METRIC:AMOUNT"),
    ("force_rmse:5%%", "expected METRIC:AMOUNT"),
    ("force_rmse:5 % extra", "expected METRIC:AMOUNT"),
    ("force_rmse=5%", "expected METRIC:AMOUNT"),
    ("force_rsme:5%", "unknown metric 'force_rsme'"),
    ("forces:5%", "unknown metric 'forces'"),
    ("FORCE_RMSE:5%", "unknown metric 'FORCE_RMSE'"),
    ("force_rmse:5parsec", "unknown unit 'parsec'"),
    ("stress_rmse:1bar", "unknown unit 'bar'"),
    ("energy_rmse:1kcal/mol", "unknown unit 'kcal/mol'"),
    # a unit must fit the metric's dimension
    ("energy_rmse:0.1GPa", "a stress unit does not fit energy_rmse"),
    ("force_rmse:1meV", "an? energy unit does not fit force_rmse"),
    ("stress_rmse:0.01eV/Å", "a force unit does not fit stress_rmse"),
    ("force_angle_rmse:1meV", "an? energy unit does not fit force_angle_rmse"),
    ("*:0.5meV", "'\\*' takes % or a plain number"),
])
def test_parse_errors(text, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_tolerance(text)
    assert repr(text) in str(info.value)  # the message quotes what was given
    assert not isinstance(info.value, BaselineError)


def test_parse_error_shows_the_grammar():
    with pytest.raises(ValueError) as info:
        parse_tolerance("force_rmse 5%")
    message = str(info.value)
    for example in ("force_rmse:5%", "energy_rmse:0.5meV", "stress_rmse:0.1GPa", "*:2%"):
        assert example in message


def test_unknown_unit_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        parse_tolerance("force_rmse:1furlong")
    for unit in ("%", "meV", "eV", "GPa", "MPa", "kbar"):
        assert unit in str(info.value)


# --- resolve_tolerance -------------------------------------------------------------------

def test_resolve_default_is_one_percent():
    tol = resolve_tolerance("force_rmse", [])
    assert tol.relative == pytest.approx(0.01)
    assert tol.text == DEFAULT_TOLERANCE == "*:1%"


def test_resolve_named_beats_star_beats_default():
    star5, named2, star10, other = (parse_tolerance(t) for t in (
        "*:5%", "force_rmse:2%", "*:10%", "energy_rmse:0.5meV"))
    tolerances = [star5, named2, star10, other]
    # the named one, though a '*' comes after it
    assert resolve_tolerance("force_rmse", tolerances) is named2
    # the last '*' for metrics no tolerance names
    assert resolve_tolerance("stress_rmse", tolerances) is star10
    assert resolve_tolerance("energy_rmse", tolerances) is other
    # the last of several naming the same metric
    again = parse_tolerance("force_rmse:7%")
    assert resolve_tolerance("force_rmse", [named2, again, star5]) is again
    # no '*': the default for the others
    assert resolve_tolerance("stress_rmse", [named2]).text == DEFAULT_TOLERANCE


# --- Comparison --------------------------------------------------------------------------

def compare(metric, now, baseline, tolerance="*:1%"):
    return Comparison(metric, now, baseline, "eV/Å", parse_tolerance(tolerance))


@pytest.mark.parametrize("now, baseline, tolerance, status", [
    (0.100, 0.100, "*:1%", "unchanged"),
    (0.1009, 0.100, "*:1%", "unchanged"),  # within 1%
    (0.1011, 0.100, "*:1%", "regressed"),
    (0.0989, 0.100, "*:1%", "improved"),
    (0.0991, 0.100, "*:1%", "unchanged"),
    (0.150, 0.100, "*:60%", "unchanged"),
    (0.150, 0.100, "*:40%", "regressed"),
    (0.040, 0.100, "*:60%", "improved"),
    (0.105, 0.100, "*:0.01", "unchanged"),  # absolute, in the metric's unit
    (0.115, 0.100, "*:0.01", "regressed"),
    (0.085, 0.100, "*:0.01", "improved"),
    (0.1001, 0.100, "*:0", "regressed"),  # zero tolerance: any growth regresses
    (0.100, 0.100, "*:0", "unchanged"),
    (5.0, None, "*:1%", "new"),
    (NAN, None, "*:1%", "new"),
    (NAN, 0.100, "*:1%", "regressed"),  # NaN now, finite before: broken
    (NAN, 0.100, "*:1000%", "regressed"),
    (NAN, NAN, "*:1%", "unchanged"),
    (0.100, NAN, "*:1%", "improved"),  # finite now, NaN accepted: better, not "off"
    (INF, 0.100, "*:1000%", "regressed"),
    (INF, INF, "*:1%", "unchanged"),
    (0.100, INF, "*:1%", "improved"),
    (NAN, INF, "*:1%", "regressed"),
])
def test_status(now, baseline, tolerance, status):
    assert compare("force_rmse", now, baseline, tolerance).status == status


def test_change_and_nan_change():
    assert compare("force_rmse", 0.15, 0.10).change == pytest.approx(0.05)
    assert compare("force_rmse", 0.05, 0.10).change == pytest.approx(-0.05)
    assert math.isnan(compare("force_rmse", 0.15, None).change)
    assert math.isnan(compare("force_rmse", NAN, 0.1).change)


@pytest.mark.parametrize("now, baseline, status", [
    (0.010, -0.010, "unchanged"),  # same magnitude, sign flipped
    (-0.010, 0.010, "unchanged"),
    (-0.020, 0.010, "regressed"),  # |offset| doubled although it went down
    (-0.020, -0.010, "regressed"),  # went down, but |offset| grew
    (0.005, -0.010, "improved"),
    (-0.005, -0.010, "improved"),  # went up, but |offset| shrank
])
def test_energy_offset_compared_by_absolute_value(now, baseline, status):
    comparison = Comparison("energy_offset", now, baseline, "eV/atom",
                            parse_tolerance("*:1%"))
    assert comparison.status == status
    assert comparison.change == pytest.approx(abs(now) - abs(baseline))


def test_other_metrics_are_signed():
    # only energy_offset is compared by magnitude: a signed metric going from -0.010 to
    # -0.020 improves (smaller is better)
    assert compare("force_rmse", -0.020, -0.010).status == "improved"


@pytest.mark.parametrize("now, status", [
    (0.0, "unchanged"),
    (1e-13, "unchanged"),  # float noise on a zero baseline
    (0.9 * NOISE_FLOOR, "unchanged"),
    (1e-11, "regressed"),
    (-1e-13, "unchanged"),
    (-1e-11, "improved"),
])
def test_noise_floor_on_a_zero_baseline(now, status):
    # a relative tolerance allows nothing on a zero baseline: the floor decides
    assert compare("force_rmse", now, 0.0, "*:5%").status == status


def test_noise_floor_with_zero_absolute_tolerance():
    assert compare("force_rmse", 0.1 + 1e-13, 0.1, "*:0").status == "unchanged"
    assert compare("force_rmse", 0.1 + 1e-9, 0.1, "*:0").status == "regressed"


def test_as_dict():
    tol = parse_tolerance("force_rmse:5%")
    d = Comparison("force_rmse", 0.2, 0.1, "eV/Å", tol).as_dict()
    assert d == {"metric": "force_rmse", "now": 0.2, "baseline": 0.1,
                 "change": pytest.approx(0.1), "unit": "eV/Å",
                 "tolerance": "force_rmse:5%", "status": "regressed"}
    # NaN becomes None (strict JSON); the default tolerance is named
    d = Comparison("force_rmse", NAN, 0.1, "eV/Å", resolve_tolerance("x", [])).as_dict()
    assert d["now"] is None and d["change"] is None and d["baseline"] == 0.1
    assert d["tolerance"] == "*:1%" and d["status"] == "regressed"
    json.dumps(d, allow_nan=False)
    d = Comparison("force_rmse", 0.2, None, "eV/Å", tol).as_dict()
    assert d["baseline"] is None and d["change"] is None and d["status"] == "new"
    # a Tolerance made without text is shown as the default grammar
    bare = Comparison("force_rmse", 0.2, 0.1, "eV/Å", Tolerance("*", relative=0.01))
    assert bare.as_dict()["tolerance"] == DEFAULT_TOLERANCE


# --- compare_metrics ---------------------------------------------------------------------

NOW = {"force_rmse": 0.15, "energy_rmse": 0.002, "stress_rmse": NAN}
UNITS = {"force_rmse": "eV/Å", "energy_rmse": "eV/atom", "stress_rmse": "GPa"}


def test_compare_metrics_missing_entry_is_all_new():
    comparisons = compare_metrics(NOW, UNITS, None, [])
    assert [c.metric for c in comparisons] == list(NOW)
    assert {c.status for c in comparisons} == {"new"}
    assert all(c.baseline is None for c in comparisons)
    assert [c.unit for c in comparisons] == ["eV/Å", "eV/atom", "GPa"]


def test_compare_metrics_against_an_entry():
    entry = {"force_rmse": {"value": 0.10, "unit": "eV/Å"},
             "energy_rmse": {"value": 0.002, "unit": "eV/atom"},
             "stress_rmse": {"value": 0.5, "unit": "GPa"},
             "force_mae": {"value": 0.05, "unit": "eV/Å"}}  # not measured now: ignored
    tolerances = [parse_tolerance("force_rmse:60%")]
    by_metric = {c.metric: c for c in compare_metrics(NOW, UNITS, entry, tolerances)}
    assert set(by_metric) == set(NOW)
    assert by_metric["force_rmse"].status == "unchanged"  # +50% < 60%
    assert by_metric["force_rmse"].tolerance.text == "force_rmse:60%"
    assert by_metric["energy_rmse"].status == "unchanged"
    assert by_metric["energy_rmse"].tolerance.text == DEFAULT_TOLERANCE
    assert by_metric["stress_rmse"].status == "regressed"  # NaN now


def test_compare_metrics_metric_missing_from_entry_or_nan():
    entry = {"force_rmse": {"value": NAN, "unit": "eV/Å"}}  # as load_baseline reads NaN
    by_metric = {c.metric: c for c in compare_metrics(
        {"force_rmse": 0.1, "force_mae": 0.1, "energy_rmse": None}, {}, entry, [])}
    assert math.isnan(by_metric["force_rmse"].baseline)
    assert by_metric["force_rmse"].status == "improved"
    assert by_metric["force_mae"].status == "new"
    assert math.isnan(by_metric["energy_rmse"].now)  # None now is NaN
    assert by_metric["energy_rmse"].unit == ""


@pytest.mark.parametrize("value", [None, "0.1", [0.1], {"value": 0.1}, True])
def test_compare_metrics_refuses_a_baseline_value_that_is_not_a_number(value):
    """A null (or any non-number) never switches the gate off."""
    with pytest.raises(BaselineError, match="baseline value of 'force_rmse' is not a number"):
        compare_metrics({"force_rmse": 0.5}, {}, {"force_rmse": {"value": value}}, [])


# --- identity: what a record was measured on -----------------------------------------------

def test_record_identity_keeps_what_identifies_the_data():
    rec = {"dataset": {"name": "ref", "path": "/home/me/ref.xyz", "sha256": "cd" * 32,
                       "keys": {"energy": "dft_energy"}, "index": ":", "n_structures": 6,
                       "description": "prose"}}
    assert bl.record_identity(rec) == {"dataset": {
        "sha256": "cd" * 32, "keys": {"energy": "dft_energy"}, "index": ":",
        "n_structures": 6}}
    assert bl.record_identity({**rec, "parameters": {"T_K": 300}})["parameters"] == {
        "T_K": 300}
    # a cross-validation: the training data, the split (not its notes) and the fit
    cv = {"dataset": {"name": "cv-random-k3", "training": "train", "training_sha256": "ef",
                      "split": {"k": 3, "digest": "12", "notes": ["prose"]},
                      "fitter": "gap_fit at_file={train}", "description": "prose"}}
    assert bl.record_identity(cv) == {"dataset": {
        "training_sha256": "ef", "split": {"k": 3, "digest": "12"},
        "fitter": "gap_fit at_file={train}"}}


def test_identity_changes():
    old = {"dataset": {"sha256": "a", "keys": {"energy": "e"}, "index": ":"}}
    assert bl.identity_changes(old, old) == []
    new = {"dataset": {"sha256": "b", "keys": {"energy": "E"}, "index": ":"}}
    assert bl.identity_changes(old, new) == [
        "dataset.keys.energy: 'e' (baseline) -> 'E' (now)",
        "dataset.sha256: 'a' (baseline) -> 'b' (now)"]
    assert bl.identity_changes(old, {"dataset": {**old["dataset"], "format": "extxyz"}}) == [
        "dataset.format: (absent) (baseline) -> 'extxyz' (now)"]
    # a record made by hand from a report knows nothing of its data: no claim either way
    assert bl.identity_changes({"dataset": {}}, new) == []
    assert bl.identity_changes(old, {"dataset": {"format": None}}) == []


def test_identity_message():
    rec = {"potential": {"name": "sw"}, "dataset": {"name": "ref"}, "subset": "bulk"}
    text = bl.identity_message([(rec, ["dataset.sha256: 'a' (baseline) -> 'b' (now)"])],
                               "/x/base.json", regenerated=False)
    assert text.splitlines() == [
        "baseline /x/base.json was measured on other data than this run for potential "
        "'sw' on 'ref', bulk: not compared",
        "  dataset.sha256: 'a' (baseline) -> 'b' (now)",
        "if the data changed on purpose, accept the new data with --mlpval-regen-baseline "
        "(rewrites the baseline with this run's values)"]
    regen = bl.identity_message([(rec, ["x"])], "/x/base.json", regenerated=True)
    assert "is rewritten with this run's values and data" in regen


# --- baseline_entries, write_baseline, load_baseline --------------------------------------

def record(subset="all", kind="errors", force_rmse=0.1, potential="sw", dataset="ref"):
    return {"kind": kind, "potential": {"name": potential, "sha256": "ab" * 32},
            "dataset": {"name": dataset, "sha256": "cd" * 32}, "subset": subset,
            "metrics": {"force_rmse": force_rmse, "energy_offset": -0.001},
            "units": {"force_rmse": "eV/Å", "energy_offset": "eV/atom"}, "thresholds": []}


def test_baseline_entries():
    entries = baseline_entries([
        ("t.py::test_a[sw-ref]", record()),
        ("t.py::test_a[sw-ref]", record(subset="bulk", force_rmse=NAN)),
        ("t.py::test_cost[sw]", record(kind="cost")),  # not compared by default
        ("t.py::test_checks[sw]", record(kind="checks", dataset="checks")),
    ])
    assert set(entries) == {
        entry_key("t.py::test_a[sw-ref]", "sw", "ref", "all", "errors"),
        entry_key("t.py::test_a[sw-ref]", "sw", "ref", "bulk", "errors"),
        entry_key("t.py::test_checks[sw]", "sw", "checks", "all", "checks"),
    }
    entry = entries[entry_key("t.py::test_a[sw-ref]", "sw", "ref", "all", "errors")]
    assert entry == {
        "nodeid": "t.py::test_a[sw-ref]", "potential": "sw", "dataset": "ref",
        "subset": "all", "kind": "errors", "potential_sha256": "ab" * 32,
        "dataset_sha256": "cd" * 32, "identity": {"dataset": {"sha256": "cd" * 32}},
        "metrics": {"force_rmse": {"value": 0.1, "unit": "eV/Å"},
                    "energy_offset": {"value": -0.001, "unit": "eV/atom"}}}
    bulk = entries[entry_key("t.py::test_a[sw-ref]", "sw", "ref", "bulk", "errors")]
    assert math.isnan(bulk["metrics"]["force_rmse"]["value"])  # written under non_finite
    assert baseline_entries([("t.py::test_cost[sw]", record(kind="cost"))],
                            kinds=("cost",))


def test_entry_key_separates_every_field():
    keys = {entry_key("n", "p", "d", "s", "errors"), entry_key("n", "p", "d", "s", "checks"),
            entry_key("m", "p", "d", "s", "errors"), entry_key("n", "q", "d", "s", "errors"),
            entry_key("n", "p", "e", "s", "errors"), entry_key("n", "p", "d", "t", "errors")}
    assert len(keys) == 6


META = {"version": "0.1.0", "datetime": "2026-01-01T00:00:00+00:00",
        "machine_info": {"node": "x"}, "potentials": {"sw": {"name": "sw"}},
        "datasets": {"ref": {"name": "ref"}}}


def sample_entries():
    return baseline_entries([("t.py::test_b[sw-ref]", record(force_rmse=0.2)),
                             ("t.py::test_a[sw-ref]", record()),
                             ("t.py::test_a[sw-ref]", record(subset="bulk", force_rmse=NAN))])


def test_write_then_load_round_trip(tmp_path):
    entries = sample_entries()
    path = write_baseline(tmp_path / "sub" / "base.json", entries, META)
    assert path == tmp_path / "sub" / "base.json"  # the folder is made
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["schema"] == SCHEMA == "pytest-mlpval-baseline/2"
    assert isinstance(raw["entries"], list) and len(raw["entries"]) == 3
    # strict JSON: NaN is not a null among the metrics but listed apart
    bulk = raw["entries"][2]
    assert "force_rmse" not in bulk["metrics"]
    assert bulk["non_finite"] == {"force_rmse": {"value": "nan", "unit": "eV/Å"}}
    # sorted by key: stable files, small diffs
    assert [(e["subset"], e["nodeid"]) for e in raw["entries"]] == [
        ("all", "t.py::test_a[sw-ref]"), ("all", "t.py::test_b[sw-ref]"),
        ("bulk", "t.py::test_a[sw-ref]")]
    loaded = load_baseline(path)
    assert json.dumps(loaded["entries"], sort_keys=True) == json.dumps(entries, sort_keys=True)
    for key, value in META.items():
        assert loaded[key] == value
    assert loaded["schema"] == SCHEMA
    # the loaded entries compare as unchanged with the values they were made from
    entry = loaded["entries"][entry_key("t.py::test_a[sw-ref]", "sw", "ref", "all", "errors")]
    statuses = {c.status for c in compare_metrics(
        record()["metrics"], record()["units"], entry["metrics"], [])}
    assert statuses == {"unchanged"}


def test_load_accepts_a_str_path_and_default_kind(tmp_path):
    path = tmp_path / "b.json"
    entry = {"nodeid": "n", "potential": "p", "dataset": "d", "subset": "all",
             "identity": {}, "metrics": {"force_rmse": {"value": 0.1, "unit": "eV/Å"}}}
    path.write_text(json.dumps({"schema": SCHEMA, "entries": [entry]}))
    loaded = load_baseline(str(path))
    assert list(loaded["entries"]) == [entry_key("n", "p", "d", "all", "errors")]


def write_json_text(path: Path, document) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


GOOD_ENTRY = {"nodeid": "n", "potential": "p", "dataset": "d", "subset": "all",
              "kind": "errors", "identity": {}, "metrics": {"force_rmse": {"value": 0.1, "unit": "eV/Å"}}}


@pytest.mark.parametrize("document, match", [
    ({"schema": SCHEMA, "entries": {"a": GOOD_ENTRY}}, "'entries' must be a list"),
    ({"schema": SCHEMA}, "'entries' must be a list"),
    ({"schema": SCHEMA, "entries": None}, "'entries' must be a list"),
    ({"schema": SCHEMA, "entries": [GOOD_ENTRY, {**GOOD_ENTRY, "nodeid": None}]},
     r"entry 1 \(None, potential 'p', dataset 'd', subset 'all'\) is malformed: "
     r"'nodeid' must be text, got null"),
    ({"schema": SCHEMA, "entries": [{k: v for k, v in GOOD_ENTRY.items() if k != "nodeid"}]},
     r"entry 0 \(None, .*\) is malformed: no 'nodeid'"),
    ({"schema": SCHEMA, "entries": [{k: v for k, v in GOOD_ENTRY.items()
                                     if k != "metrics"}]}, r"entry 0 \(n, .*\) is malformed: no 'metrics'"),
    ({"schema": SCHEMA, "entries": ["n::p"]},
     r"entry 0 is malformed: expected an object, got \"n::p\""),
    ({"schema": SCHEMA, "entries": [None]}, r"entry 0 is malformed: expected an object"),
    ({"schema": SCHEMA, "entries": [{**GOOD_ENTRY, "metrics": [0.1]}]},
     r"entry 0 \(n, .*\) is malformed: 'metrics' must map metric names to \{value, unit\}"),
    ({"schema": SCHEMA, "entries": [{**GOOD_ENTRY, "metrics": {"force_rmse": 0.1}}]},
     r"is malformed: metric 'force_rmse': expected \{value, unit\}, got 0.1"),
    ({"schema": SCHEMA, "entries": [{**GOOD_ENTRY, "metrics": {"force_rmse": {"unit": "x"}}}]},
     r"is malformed: metric 'force_rmse': no 'value'"),
    ({"schema": SCHEMA, "entries": [{k: v for k, v in GOOD_ENTRY.items() if k != "identity"}]},
     r"is malformed: no 'identity'"),
    ({"schema": SCHEMA, "entries": [{**GOOD_ENTRY, "non_finite": {"force_rmse": {
        "value": "nan"}}}]}, r"'force_rmse' is under both 'metrics' and 'non_finite'"),
    ({"schema": SCHEMA, "entries": [{**GOOD_ENTRY, "non_finite": {"force_mae": {
        "value": "NaN"}}}]}, r"non_finite metric 'force_mae': value \"NaN\" is not one of"),
    ({"schema": SCHEMA, "entries": [{**GOOD_ENTRY, "metrics": {"force_rmse": {
        "value": None}}}]}, r"metric 'force_rmse': value null is not a finite number"),
])
def test_load_rejects_malformed_entries(tmp_path, document, match):
    path = write_json_text(tmp_path / "b.json", document)
    with pytest.raises(BaselineError, match=match) as info:
        load_baseline(path)
    assert str(path) in str(info.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(BaselineError, match="baseline file not found: .*missing.json"):
        load_baseline(tmp_path / "missing.json")
    # a folder is not a baseline either
    with pytest.raises(BaselineError, match="baseline file not found"):
        load_baseline(tmp_path)


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"schema": "pytest-mlpval-base',
                                     b"\xff\xfe\x00garbage", b"NaN]"])
def test_load_invalid_json(tmp_path, content):
    path = tmp_path / "b.json"
    path.write_bytes(content)
    with pytest.raises(BaselineError, match="is not valid JSON") as info:
        load_baseline(path)
    assert str(path) in str(info.value)


PYTEST_BENCHMARK = {"machine_info": {"node": "x"}, "commit_info": {"id": "abc"},
                    "benchmarks": [], "datetime": "2026-01-01T00:00:00",
                    "version": "4.0.0"}


@pytest.mark.parametrize("document", [PYTEST_BENCHMARK, [1, 2], "text", 3, None,
                                      {"entries": []}])
def test_load_rejects_json_without_schema(tmp_path, document):
    path = write_json_text(tmp_path / "b.json", document)
    with pytest.raises(BaselineError, match=r"is not a pytest-mlpval baseline") as info:
        load_baseline(path)
    assert str(path) in str(info.value)


def test_load_rejects_the_results_json_as_another_schema(tmp_path):
    """The --mlpval-json output is not a baseline, though it is ours and has entries of a
    sort: it has schema 'pytest-mlpval/1'."""
    from pytest_mlpval.results import SCHEMA as RESULTS_SCHEMA, RunResults

    document = RunResults().json_document()
    assert document["schema"] == RESULTS_SCHEMA == "pytest-mlpval/1"
    path = write_json_text(tmp_path / "mlpval.json", document)
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    message = str(info.value)
    assert str(path) in message
    assert "'pytest-mlpval/1'" in message
    assert "not a pytest-mlpval baseline" in message
    # regenerating would overwrite somebody's results file: not suggested
    assert "--mlpval-regen-baseline" not in message


@pytest.mark.parametrize("schema", ["pytest-mlpval-baseline/0", "pytest-mlpval-baseline/1",
                                    "pytest-mlpval-baseline/3"])
def test_load_rejects_another_schema_version(tmp_path, schema):
    path = write_json_text(tmp_path / "b.json", {"schema": schema, "entries": []})
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    message = str(info.value)
    assert repr(schema) in message and repr(SCHEMA) in message and str(path) in message
    assert "--mlpval-regen-baseline" in message  # the way out
    assert isinstance(info.value, bl.BaselineVersionError)


def test_baseline_error_is_a_value_error():
    assert issubclass(BaselineError, ValueError)
    assert issubclass(bl.MlpvalRegressionError, AssertionError)


# --- atomic writes -----------------------------------------------------------------------

def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "base.json")


def test_write_is_atomic_when_the_rename_fails(tmp_path, monkeypatch):
    path = write_baseline(tmp_path / "base.json", sample_entries(), META)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(fileio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        write_baseline(path, {}, {"version": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []  # no temporary file left behind
    assert len(load_baseline(path)["entries"]) == 3


def test_write_is_atomic_when_writing_fails_midway(tmp_path, monkeypatch):
    path = write_baseline(tmp_path / "base.json", sample_entries(), META)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    written = []

    class HalfWriter:
        """Writes half of what it is given, then fails (a full disk)."""

        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            written.append(len(data) // 2)
            raise OSError(28, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        write_baseline(path, {**sample_entries(), **baseline_entries(
            [("t.py::test_c[sw-ref]", record())])}, META)
    monkeypatch.undo()
    assert written and written[0] > 0  # something was written, to the temporary file
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_failed_write_leaves_the_old_file(tmp_path):
    path = write_baseline(tmp_path / "base.json", sample_entries(), META)
    before = path.read_bytes()
    entries = sample_entries()
    key = next(iter(entries))
    entries[key] = {**entries[key], "identity": {"dataset": {"sha256": object()}}}
    with pytest.raises(TypeError):
        write_baseline(path, entries, META)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


# --- regression_message ------------------------------------------------------------------

def test_regression_message():
    rec = {"potential": {"name": "sw"}, "dataset": {"name": "ref"}, "subset": "all"}
    bulk = {**rec, "subset": "bulk"}
    comparisons = [compare("force_rmse", 0.15, 0.10), compare("force_mae", 0.3, 0.10),
                   compare("force_max", 1.0, None)]
    text = regression_message([(rec, comparisons), (bulk, comparisons[:1])],
                              "/x/base.json", regenerated=False)
    lines = text.splitlines()
    assert lines[0] == ("3 metrics regressed against baseline /x/base.json for potential "
                        "'sw' on 'ref'")
    assert lines[1].split() == ["metric", "baseline", "now", "change", "change", "%",
                                "tolerance", "unit", "status"]
    rows = {line.split()[0]: line.split() for line in lines[3:6]}
    # largest relative change first; new ones (no baseline) on top
    assert [line.split()[0] for line in lines[3:6]] == ["force_max", "force_mae",
                                                        "force_rmse"]
    assert rows["force_rmse"] == ["force_rmse", "0.1", "0.15", "0.05", "+50.0%", "*:1%",
                                  "eV/Å", "regressed"]
    assert rows["force_mae"][4] == "+200.0%"
    assert rows["force_max"][1] == "-" and rows["force_max"][4] == "-"
    assert "for potential 'sw' on 'ref', bulk" in text
    assert "--mlpval-regen-baseline" in lines[-1] and "--mlpval-compare-tolerance" in lines[-1]

    regen = regression_message([(rec, comparisons)], "/x/base.json", regenerated=True)
    assert regen.startswith("3 metrics changed or are new against baseline /x/base.json")
    assert regen.splitlines()[-1] == (
        "baseline /x/base.json is rewritten with these values at the end of this run; "
        "the next run compares against them")


def test_regression_message_is_truncated():
    rec = {"potential": {"name": "sw"}, "dataset": {"name": "ref"}, "subset": "all"}
    many = [compare("force_rmse", 1.0 + i, 0.5) for i in range(bl.MAX_ROWS + 3)]
    text = regression_message([(rec, many)], "b.json", regenerated=False)
    assert "... and 3 more" in text
    assert sum(line.rstrip().endswith("regressed") for line in text.splitlines()) \
        == bl.MAX_ROWS
