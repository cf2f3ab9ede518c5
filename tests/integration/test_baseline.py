"""Regression baselines end to end (like pytest-regressions' workflow test): save, compare,
a worse potential under the same name fails the tests that measured the worse metric,
a better one passes and is reported, regenerate, tolerances, ini keys, NAME baselines,
usage errors, xdist."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from pytest_mlpval.baseline import SCHEMA, entry_key, load_baseline

from .conftest import LABELS, SCALED, read_json, records_by_nodeid

SUITE = """
import pytest

@pytest.mark.mlpval_dataset("ref")
@pytest.mark.mlpval_thresholds(config_type="rattled", force_rmse=10.0)
def test_rattled(mlpval_errors):
    pass

@pytest.mark.mlpval_dataset("ref")
def test_whole_set(mlpval_errors):
    pass

@pytest.mark.mlpval_dataset("eonly")
def test_energy_only(mlpval_errors):
    pass

def test_plain():
    pass
"""

RATTLED = "test_suite.py::test_rattled[sw-ref]"
WHOLE = "test_suite.py::test_whole_set[sw-ref]"
ENERGY = "test_suite.py::test_energy_only[sw-eonly]"
SHIFTED = "pytest_mlpval.testing:sw_shifted"
#: force metrics that a 1.5x force scale changes (angles do not change)
FORCE_METRICS = {f"{q}_{s}" for q in ("force", "force_magnitude")
                 for s in ("rmse", "mae", "max", "median", "p95")}


def _args(reference_file, spec: str | None = None) -> list[str]:
    """Potential 'sw' (the built-in, or ``spec`` under the same name) on dataset 'ref'
    (energies, forces, stresses) and 'eonly' (the same file, energies only)."""
    return ["--potential=sw" if spec is None else f"--potential=sw={spec}",
            f"--mlpval-dataset=ref={reference_file},{LABELS}",
            f"--mlpval-dataset=eonly={reference_file},energy=dft_energy"]


def _counts_line(path, regressed=0, improved=0, new=0, compared=4, missing=0) -> str:
    return (f"baseline {path}: {regressed} regressed, {improved} improved, {new} new, "
            f"{compared} compared records, {missing} records without baseline entry "
            "(metrics unless noted)")


def _outcomes(json_path: Path) -> dict[str, str]:
    return {t["nodeid"]: t["outcome"] for t in read_json(json_path)["tests"]}


def _summary_rows(result: pytest.RunResult) -> list[list[str]]:
    """Rows of the 'mlpval baseline comparison' table: potential, dataset, subset,
    metric, baseline, now, unit, status."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "mlpval baseline comparison" in line)
    rows = []
    for line in lines[start + 4:]:
        parts = line.split()
        if len(parts) != 8 or parts[-1] not in ("regressed", "improved"):
            break
        rows.append(parts)
    return rows


def _pattern(nodeid: str) -> str:
    """``nodeid`` as an fnmatch pattern."""
    return nodeid.replace("[", "[[]")


def _save(run, reference_file, path="base.json"):
    result = run(*_args(reference_file), f"--mlpval-save-baseline={path}")
    result.assert_outcomes(passed=4)
    return result


def test_save_baseline_writes_every_record(pytester, run, reference_file):
    pytester.makepyfile(test_suite=SUITE)
    result = _save(run, reference_file, "baselines/accepted.json")
    path = pytester.path / "baselines" / "accepted.json"
    result.stdout.fnmatch_lines([f"mlpval: wrote {path}"])
    assert "mlpval baseline comparison" not in result.stdout.str()  # nothing compared
    doc = read_json(path)
    assert doc["schema"] == SCHEMA == "pytest-mlpval-baseline/2"
    assert set(doc) >= {"schema", "version", "datetime", "machine_info", "potentials",
                        "datasets", "entries"}
    assert doc["machine_info"]["packages"]["ase"]
    sha = doc["potentials"]["sw"]["sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", sha)
    digest = hashlib.sha256(reference_file.read_bytes()).hexdigest()
    assert doc["datasets"]["ref"]["sha256"] == doc["datasets"]["eonly"]["sha256"] == digest

    entries = doc["entries"]
    # test_plain records nothing; test_rattled records the whole set and 'rattled'
    assert sorted((e["nodeid"], e["dataset"], e["subset"]) for e in entries) == sorted([
        (RATTLED, "ref", "all"), (RATTLED, "ref", "rattled"), (WHOLE, "ref", "all"),
        (ENERGY, "eonly", "all")])
    for entry in entries:
        assert entry["potential"] == "sw" and entry["kind"] == "errors"
        assert entry["potential_sha256"] == sha and entry["dataset_sha256"] == digest
        assert entry["identity"]["dataset"]["sha256"] == digest
        assert "path" not in entry["identity"]["dataset"]  # differs between machines
        for metric in entry["metrics"].values():
            assert set(metric) == {"value", "unit"}
    whole = next(e for e in entries if e["nodeid"] == WHOLE)
    assert set(whole["metrics"]) >= FORCE_METRICS | {"energy_rmse", "stress_rmse",
                                                    "energy_offset", "force_angle_rmse"}
    assert whole["metrics"]["force_rmse"]["unit"] == "eV/Å"
    assert whole["metrics"]["stress_rmse"]["unit"] == "GPa"
    assert whole["metrics"]["force_rmse"]["value"] < 1e-6  # sw on its own labels
    energy_only = next(e for e in entries if e["nodeid"] == ENERGY)
    assert not any(m.startswith(("force", "stress")) for m in energy_only["metrics"])
    # it loads; no temporary file is left beside it
    assert len(load_baseline(path)["entries"]) == 4
    assert [p.name for p in path.parent.iterdir()] == ["accepted.json"]


def test_workflow(pytester, run, reference_file):
    """Save; compare (pass); a worse fit under the same name (fail, exactly where the
    worse metric was measured); regenerate (fail once); compare (pass); a better fit
    (pass, improvement reported)."""
    pytester.makepyfile(test_suite=SUITE)
    base = pytester.path / "base.json"
    out = pytester.path / "out.json"
    _save(run, reference_file)
    saved = base.read_bytes()

    # 1) the same potential: nothing changed
    same = run(*_args(reference_file), "--mlpval-compare=base.json")
    same.assert_outcomes(passed=4)
    same.stdout.fnmatch_lines(["*= mlpval baseline comparison =*", _counts_line(base)])
    assert _summary_rows(same) == []

    # 2) forces 50% too large under the same name: the tests that measured forces fail
    worse = run(*_args(reference_file, SCALED), "--mlpval-compare=base.json",
                f"--mlpval-json={out}", "-rf")
    worse.assert_outcomes(passed=2, failed=2)
    assert _outcomes(out) == {RATTLED: "failed", WHOLE: "failed", ENERGY: "passed"}
    worse.stdout.fnmatch_lines([f"FAILED {_pattern(RATTLED)} - *",
                                f"FAILED {_pattern(WHOLE)} - *"])
    text = worse.stdout.str()
    assert text.count(f"10 metrics regressed against baseline {base} for potential 'sw' "
                      "on 'ref'\n") == 2  # the whole set, for both tests
    # the config_type subset is compared too, in a table of its own
    assert (f"10 metrics regressed against baseline {base} for potential 'sw' on 'ref', "
            "rattled") in text
    assert text.count("if the change is intended, accept it with --mlpval-regen-baseline "
                      "(rewrites the baseline), or widen --mlpval-compare-tolerance") == 2
    worse.stdout.re_match_lines([
        r"^E?\s*metric\s+baseline\s+now\s+change\s+change %\s+tolerance\s+unit\s+status$",
        r"^E?\s*force_rmse\s+\d\.\d+e-0[78]\s+0\.8521\s+0\.8521\s+\+\d+\.\d%\s+\*:1%\s+eV/Å"
        r"\s+regressed$",
    ])
    # energies and stresses did not change: not in any table
    assert not re.search(r"^E?\s*(energy|stress)\w*\s.*regressed$", text, re.M)
    worse.stdout.fnmatch_lines([_counts_line(base, regressed=30)])
    rows = _summary_rows(worse)
    assert len(rows) == 30 and {r[-1] for r in rows} == {"regressed"}
    assert {r[3] for r in rows} == FORCE_METRICS
    assert ["sw", "ref", "rattled", "force_rmse"] in [r[:4] for r in rows]
    # the JSON records gain 'baseline' and 'comparison' (what is not unchanged)
    records = records_by_nodeid(read_json(out))
    (whole,) = records[WHOLE]
    assert whole["baseline"] == "compared"
    assert {c["metric"] for c in whole["comparison"]} == FORCE_METRICS
    force_rmse = next(c for c in whole["comparison"] if c["metric"] == "force_rmse")
    assert force_rmse["status"] == "regressed" and force_rmse["tolerance"] == "*:1%"
    assert force_rmse["now"] == pytest.approx(0.8521, abs=1e-4)
    assert force_rmse["change"] == pytest.approx(force_rmse["now"] - force_rmse["baseline"])
    assert records[ENERGY][0]["baseline"] == "compared"
    assert records[ENERGY][0]["comparison"] == []
    assert base.read_bytes() == saved  # comparing never writes

    # 3) accept the new fit: the changed tests fail once, the file is rewritten
    regen = run(*_args(reference_file, SCALED), "--mlpval-compare=base.json",
                "--mlpval-regen-baseline", "-rf")
    regen.assert_outcomes(passed=2, failed=2)
    regen.stdout.fnmatch_lines([f"mlpval: wrote {base}",
                                f"FAILED {_pattern(RATTLED)} - *",
                                f"FAILED {_pattern(WHOLE)} - *"])
    assert regen.stdout.str().count(
        f"10 metrics changed or are new against baseline {base} for potential 'sw' on "
        "'ref'") == 3
    assert (f"baseline {base} is rewritten with these values at the end of this run; the "
            "next run compares against them") in regen.stdout.str()
    entries = load_baseline(base)["entries"]
    assert len(entries) == 4
    whole_entry = entries[entry_key(WHOLE, "sw", "ref", "all", "errors")]
    assert whole_entry["metrics"]["force_rmse"]["value"] == pytest.approx(0.8521, abs=1e-4)
    assert whole_entry["potential_sha256"] is None  # a factory has no file to hash

    # 4) the next plain comparison with the same fit passes
    again = run(*_args(reference_file, SCALED), "--mlpval-compare=base.json")
    again.assert_outcomes(passed=4)
    again.stdout.fnmatch_lines([_counts_line(base)])

    # 5) a better fit (back to sw) passes; the improvement is reported
    better = run(*_args(reference_file), "--mlpval-compare=base.json")
    better.assert_outcomes(passed=4)
    better.stdout.fnmatch_lines([_counts_line(base, improved=30)])
    rows = _summary_rows(better)
    assert len(rows) == 30 and {r[-1] for r in rows} == {"improved"}
    row = next(r for r in rows if r[2] == "all" and r[3] == "force_rmse")
    assert float(row[4]) == pytest.approx(0.8521, abs=1e-4) and float(row[5]) < 1e-6
    assert "Regression" not in better.stdout.str()


def test_energy_worse_fails_the_energy_tests(pytester, run, reference_file):
    """A potential 10 meV/atom too high fails every test that measured energies, the
    energy-only one included; the energy offset is compared by magnitude."""
    pytester.makepyfile(test_suite=SUITE)
    _save(run, reference_file)
    result = run(*_args(reference_file, SHIFTED), "--mlpval-compare=base.json",
                 "--mlpval-json=out.json")
    result.assert_outcomes(passed=1, failed=3)
    assert _outcomes(pytester.path / "out.json") == {
        RATTLED: "failed", WHOLE: "failed", ENERGY: "failed"}
    energies = {f"energy{q}_{s}" for q in ("", "_cell", "_sqrtn")
                for s in ("rmse", "mae", "max", "median", "p95")} | {"energy_offset"}
    # removing the mean offset removes the shift: no regression there, nor in forces
    # and stresses
    for records in records_by_nodeid(read_json(pytester.path / "out.json")).values():
        for rec in records:
            assert {c["metric"] for c in rec["comparison"]} == energies, rec["subset"]
            assert {c["status"] for c in rec["comparison"]} == {"regressed"}
            offset = next(c for c in rec["comparison"] if c["metric"] == "energy_offset")
            assert offset["now"] == pytest.approx(0.010, abs=1e-6)
    result.stdout.fnmatch_lines([_counts_line(pytester.path / "base.json",
                                              regressed=4 * len(energies)),
                                 "... and 24 more (see the JSON)"])
    assert len(_summary_rows(result)) == 40  # the table is cut at 40 rows


def test_test_without_baseline_entry_is_new_and_passes(pytester, run, reference_file):
    pytester.makepyfile(test_suite=SUITE)
    _save(run, reference_file)
    pytester.makepyfile(test_later="""
        def test_added_later(mlpval_errors):
            pass
    """)
    result = run(*_args(reference_file), "--mlpval-compare=base.json", "--mlpval-json=o.json")
    # on both datasets, as it has no mlpval_dataset marker
    result.assert_outcomes(passed=6)
    doc = read_json(pytester.path / "o.json")
    records = records_by_nodeid(doc)
    (added,) = records["test_later.py::test_added_later[sw-ref]"]
    assert added["baseline"] == "missing"
    assert {c["status"] for c in added["comparison"]} == {"new"}
    assert {c["metric"] for c in added["comparison"]} == set(added["metrics"])
    assert all(c["baseline"] is None for c in added["comparison"])
    n_new = sum(len(r["comparison"]) for nodeid, recs in records.items()
                if nodeid.startswith("test_later") for r in recs)
    result.stdout.fnmatch_lines([_counts_line(pytester.path / "base.json", new=n_new,
                                              missing=2)])
    # new metrics are counted, not listed
    assert _summary_rows(result) == []


# --- tolerances ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_1p2(tmp_path_factory) -> Path:
    """Labels with forces 1.2x Stillinger-Weber: sw has force errors -0.2 F, the 1.5x
    potential +0.3 F, so every force metric grows by 50% (energies and stresses do
    not change)."""
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.testing import PerturbedCalculator, make_reference_file

    labeller = PerturbedCalculator(load_potential("sw").calculator, force_scale=1.2)
    return make_reference_file(tmp_path_factory.mktemp("data12") / "ref12.xyz",
                               n_structures=6, labeller=labeller)


def _regressed_metrics(result: pytest.RunResult) -> set[str]:
    return {r[3] for r in _summary_rows(result) if r[-1] == "regressed"}


def test_tolerances(pytester, run, reference_1p2):
    pytester.makepyfile(test_suite=SUITE)
    _save(run, reference_1p2)
    worse = [*_args(reference_1p2, SCALED), "--mlpval-compare=base.json"]

    default = run(*worse)
    default.assert_outcomes(passed=2, failed=2)
    assert _regressed_metrics(default) == FORCE_METRICS

    # force_rmse may grow by 60%: it passes, the other force metrics still regress
    one = run(*worse, "--mlpval-compare-tolerance=force_rmse:60%")
    one.assert_outcomes(passed=2, failed=2)
    assert _regressed_metrics(one) == FORCE_METRICS - {"force_rmse"}
    assert "9 metrics regressed against baseline" in one.stdout.str()
    assert "force_rmse:60%" not in one.stdout.str()  # the force_rmse row is gone

    # every metric may grow by 60%: the 50% worse forces pass
    every = run(*worse, "--mlpval-compare-tolerance=*:60%")
    every.assert_outcomes(passed=4)
    every.stdout.fnmatch_lines(["baseline *: 0 regressed, 0 improved, *"])

    # 40% is not enough
    tight = run(*worse, "--mlpval-compare-tolerance=*:40%")
    tight.assert_outcomes(passed=2, failed=2)
    assert _regressed_metrics(tight) == FORCE_METRICS

    # a named tolerance beats '*', whatever the order; absolute amounts with units
    named = run(*worse, "--mlpval-compare-tolerance=force_rmse:40%",
                "--mlpval-compare-tolerance=*:60%",
                "--mlpval-compare-tolerance=force_max:1meV/Å")
    named.assert_outcomes(passed=2, failed=2)
    assert _regressed_metrics(named) == {"force_rmse", "force_max"}
    named.stdout.re_match_lines([r"^E?\s*force_rmse\s.*\s\+50\.0%\s+force_rmse:40%\s+eV/Å"
                                 r"\s+regressed$",
                                 r"^E?\s*force_max\s.*\s\+50\.0%\s+force_max:1meV/Å\s+eV/Å"
                                 r"\s+regressed$"])
    loose = run(*worse, "--mlpval-compare-tolerance=*:60%",
                "--mlpval-compare-tolerance=force_max:10eV/Å")
    loose.assert_outcomes(passed=4)


def test_ini_compare_and_tolerances(pytester, run, reference_1p2):
    """mlpval_compare is relative to the ini file; mlpval_compare_tolerances apply; the
    command line overrides both."""
    suite = pytester.mkdir("suite")
    (suite / "test_suite.py").write_text(SUITE)
    (suite / "pytest.ini").write_text("[pytest]\n")  # suite/ is the rootdir throughout
    accepted = suite / "baselines" / "accepted.json"
    # run from pytester.path: a command-line path is relative to the invocation directory
    saved = run(suite, *_args(reference_1p2), "--mlpval-save-baseline=suite/baselines/"
                "accepted.json")
    saved.assert_outcomes(passed=4)
    assert accepted.is_file()
    assert not (pytester.path / "baselines").exists()
    (suite / "pytest.ini").write_text(
        "[pytest]\n"
        "mlpval_compare = baselines/accepted.json\n"
        "mlpval_compare_tolerances =\n"
        "    force_rmse:10%\n"
        "    *:60%\n"
    )

    from_ini = run(suite, *_args(reference_1p2, SCALED))
    from_ini.assert_outcomes(passed=2, failed=2)  # compared with the ini's baseline
    assert _regressed_metrics(from_ini) == {"force_rmse"}  # the rest within *:60%
    from_ini.stdout.fnmatch_lines([f"baseline {accepted}: 3 regressed, *"])
    from_ini.stdout.re_match_lines([r"^E?\s*force_rmse\s.*\s+force_rmse:10%\s+eV/Å"
                                    r"\s+regressed$"])

    # command-line tolerances replace the ini's (not merged with them)
    cli = run(suite, *_args(reference_1p2, SCALED), "--mlpval-compare-tolerance=*:70%")
    cli.assert_outcomes(passed=4)
    cli.stdout.fnmatch_lines([f"baseline {accepted}: 0 regressed, 0 improved, *"])
    # a command-line baseline replaces the ini's
    shutil.copy(accepted, pytester.path / "other.json")
    other = run(suite, *_args(reference_1p2, SCALED), "--mlpval-compare=other.json")
    other.stdout.fnmatch_lines([f"baseline {pytester.path / 'other.json'}: 3 regressed, *"])


def test_name_is_stored_under_the_rootdir(pytester, run, reference_file, monkeypatch):
    pytester.makeini("[pytest]\n")  # the rootdir
    sub = pytester.mkdir("sub")
    (sub / "test_suite.py").write_text(SUITE)
    monkeypatch.chdir(sub)
    saved = _save(run, reference_file, "accepted")
    stored = pytester.path / ".mlpval" / "accepted.json"
    saved.stdout.fnmatch_lines([f"mlpval: wrote {stored}"])
    assert stored.is_file() and not (sub / ".mlpval").exists()
    assert not (sub / "accepted").exists()
    result = run(*_args(reference_file, SCALED), "--mlpval-compare=accepted")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([f"baseline {stored}: 30 regressed, *"])
    # with a separator or a .json suffix it is a path (relative to the invocation dir)
    _save(run, reference_file, "accepted.json")
    assert (sub / "accepted.json").is_file()


# --- usage errors -------------------------------------------------------------------------

BENCHMARK_JSON = {"machine_info": {"node": "x"}, "commit_info": {}, "benchmarks": [],
                  "datetime": "2026-01-01T00:00:00", "version": "4.0.0"}


@pytest.mark.parametrize("content, message", [
    (None, "baseline file not found: {path}"),
    ("{\"schema\": \"pytest-mlpval-baseline/1\", \"entr", "baseline {path} is not valid JSON: *"),
    (json.dumps(BENCHMARK_JSON), "{path} is not a pytest-mlpval baseline (no 'schema' key)"),
    (json.dumps({"schema": "pytest-mlpval/1", "tests": []}),
     "{path} is not a pytest-mlpval baseline (schema 'pytest-mlpval/1', expected "
     "'pytest-mlpval-baseline/2')"),
    (json.dumps({"schema": "pytest-mlpval-baseline/0", "entries": []}),
     "baseline {path} has schema 'pytest-mlpval-baseline/0'; this version reads "
     "'pytest-mlpval-baseline/2': regenerate it with --mlpval-regen-baseline"),
    (json.dumps({"schema": SCHEMA, "entries": [{"nodeid": "x"}]}),
     "baseline {path}: entry 0 (x, potential None, dataset None, subset None) is "
     "malformed: no 'potential'"),
], ids=["missing", "corrupt", "pytest-benchmark", "results-json", "old-version",
        "malformed-entry"])
def test_bad_baseline_is_a_usage_error(pytester, run, content, message):
    path = pytester.path / "b.json"
    if content is not None:
        path.write_text(content)
    pytester.makepyfile(test_suite=SUITE)
    result = run("--potential=sw", "--mlpval-compare=b.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --mlpval-compare='b.json': "
                                 + message.format(path=path)])
    if content is not None:
        assert path.read_text() == content  # untouched


def test_bad_baseline_from_the_ini_is_a_usage_error(pytester, run):
    pytester.makeini("[pytest]\nmlpval_compare = nothing/here.json\n")
    pytester.makepyfile(test_suite=SUITE)
    result = run("--potential=sw")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: ini mlpval_compare='nothing/here.json': baseline file not found: "
        f"{pytester.path / 'nothing' / 'here.json'}"])


@pytest.mark.parametrize("args, ini, message", [
    (["--mlpval-compare-tolerance=force_rmse:5parsec"], None,
     "ERROR: --mlpval-compare-tolerance: 'force_rmse:5parsec': unknown unit 'parsec'*"),
    (["--mlpval-compare-tolerance=force_rsme:5%"], None,
     "ERROR: --mlpval-compare-tolerance: 'force_rsme:5%': unknown metric 'force_rsme'"),
    (["--mlpval-compare-tolerance=force_rmse=5%"], None,
     "ERROR: --mlpval-compare-tolerance: 'force_rmse=5%': expected METRIC:AMOUNT, *"),
    ([], "mlpval_compare_tolerances =\n    *:2%\n    energy_rmse:lots\n",
     "ERROR: ini mlpval_compare_tolerances: 'energy_rmse:lots': expected METRIC:AMOUNT, *"),
    (["--mlpval-regen-baseline"], None,
     "ERROR: --mlpval-regen-baseline needs --mlpval-compare=PATH|NAME (the baseline to "
     "rewrite)"),
])
def test_option_usage_errors(pytester, run, args, ini, message):
    if ini:
        pytester.makeini("[pytest]\n" + ini)
    pytester.makepyfile(test_suite=SUITE)
    result = run("--potential=sw", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_regen_creates_a_missing_baseline(pytester, run, reference_file):
    pytester.makepyfile(test_suite=SUITE)
    path = pytester.path / "baselines" / "new.json"
    first = run(*_args(reference_file), "--mlpval-compare=baselines/new.json",
                "--mlpval-regen-baseline", "-rf")
    # everything is new: each test that recorded metrics fails once
    first.assert_outcomes(passed=1, failed=3)
    first.stdout.fnmatch_lines([f"*metrics changed or are new against baseline {path} for "
                                "potential 'sw' on 'eonly'",
                                f"mlpval: wrote {path}",
                                f"FAILED {_pattern(ENERGY)} - *"])
    assert set(load_baseline(path)["entries"]) == {
        entry_key(RATTLED, "sw", "ref", "all", "errors"),
        entry_key(RATTLED, "sw", "ref", "rattled", "errors"),
        entry_key(WHOLE, "sw", "ref", "all", "errors"),
        entry_key(ENERGY, "sw", "eonly", "all", "errors")}
    second = run(*_args(reference_file), "--mlpval-compare=baselines/new.json")
    second.assert_outcomes(passed=4)
    second.stdout.fnmatch_lines([_counts_line(path)])


def test_regen_keeps_entries_of_tests_not_run(pytester, run, reference_file):
    pytester.makepyfile(test_suite=SUITE)
    _save(run, reference_file)
    result = run(*_args(reference_file, SCALED), "--mlpval-compare=base.json",
                 "--mlpval-regen-baseline", "-k", "whole_set")
    result.assert_outcomes(failed=1)
    entries = load_baseline(pytester.path / "base.json")["entries"]
    assert len(entries) == 4
    whole = entries[entry_key(WHOLE, "sw", "ref", "all", "errors")]["metrics"]
    rattled = entries[entry_key(RATTLED, "sw", "ref", "all", "errors")]["metrics"]
    assert whole["force_rmse"]["value"] == pytest.approx(0.8521, abs=1e-4)  # rewritten
    assert rattled["force_rmse"]["value"] < 1e-6  # kept


def test_regen_replaces_another_schema_version_not_a_foreign_file(pytester, run,
                                                                  reference_file):
    pytester.makepyfile(test_suite=SUITE)
    old = pytester.path / "old.json"
    old.write_text(json.dumps({"schema": "pytest-mlpval-baseline/0", "entries": []}))
    result = run(*_args(reference_file), "--mlpval-compare=old.json",
                 "--mlpval-regen-baseline")
    result.assert_outcomes(passed=1, failed=3)
    assert len(load_baseline(old)["entries"]) == 4
    # a results file is somebody's data: never overwritten
    foreign = pytester.path / "results.json"
    foreign.write_text(json.dumps({"schema": "pytest-mlpval/1", "tests": []}))
    refused = run(*_args(reference_file), "--mlpval-compare=results.json",
                  "--mlpval-regen-baseline")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines([
        f"ERROR: --mlpval-compare='results.json': {foreign} is not a pytest-mlpval "
        "baseline*"])
    assert json.loads(foreign.read_text()) == {"schema": "pytest-mlpval/1", "tests": []}


# --- failures combined; xdist -------------------------------------------------------------

BOTH = """
import pytest

@pytest.mark.mlpval_dataset("ref")
@pytest.mark.mlpval_thresholds(force_rmse=0.2)
def test_marker(mlpval_errors):
    pass

@pytest.mark.mlpval_dataset("ref")
def test_check_in_body(mlpval, mlpval_dataset):
    mlpval.check(mlpval.errors(mlpval_dataset), force_rmse=0.2)

@pytest.mark.mlpval_dataset("ref")
def test_plain_assert(mlpval_errors):
    assert mlpval_errors.metrics()["force_rmse"] < 0.2, "forces too far off"
"""


def test_threshold_and_regression_are_both_reported(pytester, run, reference_file):
    pytester.makepyfile(test_both=BOTH)
    first = run(*_args(reference_file), "--mlpval-save-baseline=base.json")
    first.assert_outcomes(passed=3)
    result = run(*_args(reference_file, SCALED), "--mlpval-compare=base.json",
                 "--mlpval-json=out.json")
    result.assert_outcomes(failed=3)
    text = result.stdout.str()
    sections = re.split(r"^_+ (test_\w+)\[sw-ref\] _+$", text, flags=re.M)
    by_test = dict(zip(sections[1::2], sections[2::2]))
    assert set(by_test) == {"test_marker", "test_check_in_body", "test_plain_assert"}
    for name, section in by_test.items():
        assert "10 metrics regressed against baseline" in section, name
        assert re.search(r"^E?\s*force_rmse\s.*\s\*:1%\s+eV/Å\s+regressed$", section, re.M), name
    for name in ("test_marker", "test_check_in_body"):
        assert "1 of 1 thresholds exceeded for potential 'sw' on dataset 'ref'" in by_test[name]
    assert "forces too far off" in by_test["test_plain_assert"]
    # the limit is reported first, then the regression
    section = by_test["test_check_in_body"]
    assert section.index("thresholds exceeded") < section.index("metrics regressed")
    assert "mlpval.check(mlpval.errors(mlpval_dataset), force_rmse=0.2)" in section
    # every record was compared, also where the test body failed
    result.stdout.fnmatch_lines([f"baseline {pytester.path / 'base.json'}: 30 regressed, "
                                 "0 improved, 0 new, 3 compared records, *"])
    for records in records_by_nodeid(read_json(pytester.path / "out.json")).values():
        assert [r["baseline"] for r in records] == ["compared"]


def test_body_failure_without_regression_is_unchanged(pytester, run, reference_file):
    pytester.makepyfile(test_both=BOTH.replace("0.2", "1e-12"))
    saved = run(*_args(reference_file), "--mlpval-save-baseline=base.json")
    saved.assert_outcomes(failed=3)  # failed tests are saved all the same
    result = run(*_args(reference_file), "--mlpval-compare=base.json")
    result.assert_outcomes(failed=3)
    assert "regressed against baseline" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*1 of 1 thresholds exceeded*",
                                 ">*assert mlpval_errors.metrics()*",
                                 "E*AssertionError: forces too far off"])


def _writes(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines()
            if line.split()[-1] in ("serial.json", "base.json", "out.json")]


def test_under_xdist(pytester, run, reference_file):
    """The same failures with two workers; the controller alone writes the baseline, and
    it has the entries a serial run saves."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=SUITE)
    log = pytester.path / "writes.log"
    # every process logs the files it writes (xdist workers have PYTEST_XDIST_WORKER)
    pytester.makeconftest(f"""
        import os
        from pytest_mlpval import fileio

        _atomic_write = fileio.atomic_write

        def _logged(path, write):
            with open({str(log)!r}, "a") as handle:
                who = os.environ.get("PYTEST_XDIST_WORKER", "controller")
                handle.write(f"{{who}} {{os.path.basename(path)}}\\n")
            return _atomic_write(path, write)

        fileio.atomic_write = _logged
    """)
    _save(run, reference_file, "serial.json")
    path = pytester.path / "base.json"
    saved = run("-n", "2", *_args(reference_file), "--mlpval-save-baseline=base.json")
    saved.assert_outcomes(passed=4)
    assert saved.stdout.str().count(f"mlpval: wrote {path}") == 1
    writes = _writes(log)
    assert writes == ["controller serial.json", "controller base.json"]
    assert sorted(p.name for p in pytester.path.iterdir() if p.suffix in (".json", ".tmp")
                  or p.name.startswith(".base")) == ["base.json", "serial.json"]
    serial = load_baseline(pytester.path / "serial.json")["entries"]
    parallel = load_baseline(path)["entries"]
    assert set(parallel) == set(serial) and len(parallel) == 4
    for key, entry in serial.items():
        assert parallel[key]["metrics"].keys() == entry["metrics"].keys()
        for name, metric in entry["metrics"].items():
            assert parallel[key]["metrics"][name]["value"] == pytest.approx(
                metric["value"], rel=1e-9, abs=1e-15), (key, name)

    worse = run("-n", "2", *_args(reference_file, SCALED), "--mlpval-compare=base.json",
                "--mlpval-json=out.json")
    worse.assert_outcomes(passed=2, failed=2)
    assert _outcomes(pytester.path / "out.json") == {RATTLED: "failed", WHOLE: "failed",
                                                     ENERGY: "passed"}
    worse.stdout.fnmatch_lines([_counts_line(path, regressed=30)])
    assert "10 metrics regressed against baseline" in worse.stdout.str()
    assert {r[3] for r in _summary_rows(worse)} == FORCE_METRICS

    regen = run("-n", "2", *_args(reference_file, SCALED), "--mlpval-compare=base.json",
                "--mlpval-regen-baseline")
    regen.assert_outcomes(passed=2, failed=2)
    assert regen.stdout.str().count(f"mlpval: wrote {path}") == 1
    writes = _writes(log)
    assert writes == ["controller serial.json", "controller base.json",
                      "controller out.json", "controller base.json"]
    entries = load_baseline(path)["entries"]
    assert set(entries) == set(serial)
    assert entries[entry_key(WHOLE, "sw", "ref", "all", "errors")]["metrics"][
        "force_rmse"]["value"] == pytest.approx(0.8521, abs=1e-4)
