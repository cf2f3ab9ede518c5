"""The "mlpval summary" terminal section and the --mlpval-json file, with and without
xdist."""

from __future__ import annotations

import hashlib
import re

import pytest

from .conftest import LABELS, SCALED, read_json, records_by_nodeid

SUITE = """
import pytest

@pytest.mark.mlpval_thresholds(force_rmse=0.2)
def test_forces(mlpval_errors):
    pass

@pytest.mark.mlpval_thresholds(config_type="bulk", energy_rmse=0.001)
def test_bulk_energy(mlpval_errors):
    pass

def test_record_only(mlpval_errors):
    pass

def test_plain():
    pass
"""


def _args(reference_file):
    return ["--potential=sw", f"--potential=scaled={SCALED}",
            f"--mlpval-dataset=ref={reference_file},{LABELS}",
            f"--mlpval-dataset=other={reference_file},{LABELS}"]


def test_summary_lists_each_potential_and_dataset(pytester, run, plugin_args, reference_file):
    pytester.makepyfile(test_suite=SUITE)
    result = run(*plugin_args, *_args(reference_file))
    # test_forces fails for 'scaled' on both datasets
    result.assert_outcomes(passed=11, failed=2)
    result.stdout.fnmatch_lines([
        "*= mlpval summary =*",
        "energies in meV/atom, forces in eV/Å (Cartesian components), stresses in GPa; "
        "E-offset: mean energy offset removed (one per element, fitted, with 2+ elements: "
        "E offsets/El); NaN or inf: a non-finite value was recorded "
        "(n/a: not measured)",
        "potential * dataset * subset * n * E RMSE * E-offset RMSE * E MAE * F RMSE * F MAE"
        " * F max * S RMSE * limits",
        "-----*",
    ])
    rows = [line for line in result.outlines
            if re.match(r"^(sw|scaled)\s+(ref|other)\s+all\s+6\s", line)]
    # sorted by dataset, then potential; one row each, thresholds counted per pair
    assert [line.split()[:2] for line in rows] == [
        ["scaled", "other"], ["sw", "other"], ["scaled", "ref"], ["sw", "ref"]]
    # limits counted on the whole set (the 'bulk' check belongs to the bulk row)
    for line in rows:
        if line.startswith("scaled"):
            assert line.endswith("0 ok, 1 FAIL")  # F RMSE 0.852 > 0.2
            assert re.search(r"\s0\.8521\s", line)
        else:
            assert line.endswith(" 1 ok")
    # no per-config_type rows without --mlpval-details
    assert not re.search(r"^(sw|scaled)\s+\w+\s+(bulk|rattled)\s", result.stdout.str(), re.M)


def test_summary_details_add_config_type_rows(pytester, run, dataset_arg):
    pytester.makepyfile(test_suite=SUITE)
    result = run("--potential=sw", f"--mlpval-dataset={dataset_arg}", "--mlpval-details")
    result.assert_outcomes(passed=4)
    result.stdout.re_match_lines([r"^sw\s+ref\s+all\s+6\s.*\s1 ok$",
                                  r"^sw\s+ref\s+bulk\s+3\s.*\s1 ok$"])
    # only subsets that were checked are recorded
    assert "rattled" not in result.stdout.str()


def test_no_summary_without_mlpval_tests(pytester, run):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run("--potential=sw", "--mlpval-json=out.json")
    result.assert_outcomes(passed=1)
    assert "mlpval summary" not in result.stdout.str()
    # the JSON file is written all the same, with no tests in it
    assert read_json(pytester.path / "out.json")["tests"] == []


def test_json_document(pytester, run, plugin_args, reference_file):
    pytester.makepyfile(test_suite=SUITE)
    out = pytester.path / "results" / "mlpval.json"
    result = run(*plugin_args, *_args(reference_file),
                 "--potential=factory=pytest_mlpval.testing:sw_shifted",
                 "--mlpval-json=results/mlpval.json")
    # failing: test_forces for 'scaled' and test_bulk_energy for 'factory', on 2 datasets
    result.assert_outcomes(passed=15, failed=4)
    result.stdout.fnmatch_lines([f"mlpval: wrote {out}"])
    doc = read_json(out)
    assert doc["schema"] == "pytest-mlpval/1"
    assert set(doc) >= {"version", "datetime", "machine_info", "potentials", "datasets",
                        "tests"}
    assert doc["machine_info"]["packages"]["ase"]

    pots = doc["potentials"]
    assert set(pots) == {"sw", "scaled", "factory"}
    assert pots["sw"]["loader"] == "builtin"
    assert re.fullmatch(r"[0-9a-f]{64}", pots["sw"]["sha256"])
    assert pots["scaled"]["loader"] == pots["factory"]["loader"] == "factory"
    assert pots["scaled"]["sha256"] is None and pots["factory"]["sha256"] is None
    assert pots["factory"]["spec"] == "pytest_mlpval.testing:sw_shifted"

    digest = hashlib.sha256(reference_file.read_bytes()).hexdigest()
    assert set(doc["datasets"]) == {"ref", "other"}
    for name in ("ref", "other"):
        data = doc["datasets"][name]
        assert data["sha256"] == digest
        assert data["n_structures"] == 6 and data["n_atoms"] == 72
        assert data["labels"] == ["energy", "forces", "stress"]
        assert data["keys"]["energy"] == "dft_energy"
        assert data["config_types"] == ["bulk", "rattled"]

    tests = records_by_nodeid(doc)
    outcomes = {t["nodeid"]: t["outcome"] for t in doc["tests"]}
    assert len(outcomes) == 18  # test_plain records nothing
    assert outcomes["test_suite.py::test_forces[scaled-ref]"] == "failed"
    assert outcomes["test_suite.py::test_forces[sw-ref]"] == "passed"
    assert outcomes["test_suite.py::test_record_only[factory-other]"] == "passed"

    (record,) = tests["test_suite.py::test_forces[scaled-ref]"]
    assert record["potential"] == "scaled" and record["dataset"] == "ref"
    assert record["subset"] == "all"
    assert record["n_structures"] == 6 and record["n_atoms"] == 72
    assert record["metrics"]["force_rmse"]["unit"] == "eV/Å"
    assert record["metrics"]["force_rmse"]["value"] == pytest.approx(0.8521, abs=1e-4)
    assert record["metrics"]["energy_offset"]["unit"] == "eV/atom"
    assert record["metrics"]["stress_rmse"]["unit"] == "GPa"
    assert record["thresholds"] == [{
        "metric": "force_rmse", "subset": "all", "value": record["metrics"]["force_rmse"]["value"],
        "limit": 0.2, "unit": "eV/Å", "passed": False}]

    # a config_type threshold records the subset it was checked on
    records = tests["test_suite.py::test_bulk_energy[factory-ref]"]
    by_subset = {r["subset"]: r for r in records}
    assert set(by_subset) == {"all", "bulk"}
    assert by_subset["bulk"]["n_structures"] == 3 and by_subset["bulk"]["n_atoms"] == 24
    (check,) = by_subset["bulk"]["thresholds"]
    # the factory potential is 10 meV/atom too high
    assert check["metric"] == "energy_rmse" and check["passed"] is False
    assert check["value"] == pytest.approx(0.010, abs=1e-6)
    assert outcomes["test_suite.py::test_bulk_energy[factory-ref]"] == "failed"
    assert by_subset["all"]["thresholds"] == []


def test_json_bulk_check_outcome(pytester, run, dataset_arg, tmp_path):
    """A failed config_type check is a failed test in the JSON too."""
    pytester.makepyfile(test_suite=SUITE)
    out = tmp_path / "o.json"
    result = run("--potential=factory=pytest_mlpval.testing:sw_shifted",
                 f"--mlpval-dataset={dataset_arg}", f"--mlpval-json={out}", "-rf")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_suite.py::test_bulk_energy[[]factory-ref[]]*"])
    outcomes = {t["nodeid"]: t["outcome"] for t in read_json(out)["tests"]}
    assert outcomes == {"test_suite.py::test_forces[factory-ref]": "passed",
                        "test_suite.py::test_bulk_energy[factory-ref]": "failed",
                        "test_suite.py::test_record_only[factory-ref]": "passed"}


def test_json_is_the_same_with_and_without_xdist(pytester, run, reference_file):
    pytester.makepyfile(test_suite=SUITE)
    args = _args(reference_file)
    serial = run(*args, "--mlpval-json=serial.json")
    parallel = run(*args, "-n", "2", "--mlpval-json=parallel.json")
    serial.assert_outcomes(passed=11, failed=2)
    parallel.assert_outcomes(passed=11, failed=2)
    one = read_json(pytester.path / "serial.json")
    two = read_json(pytester.path / "parallel.json")
    assert one["potentials"] == two["potentials"]
    assert one["datasets"] == two["datasets"]

    def flatten(doc):
        """{(nodeid, potential, dataset, subset, what, name): value}; outcome too."""
        flat = {}
        for test in doc["tests"]:
            flat[(test["nodeid"], "outcome")] = test["outcome"]
            for rec in test["records"]:
                key = (test["nodeid"], rec["potential"], rec["dataset"], rec["subset"])
                flat[(*key, "n_structures")] = rec["n_structures"]
                for name, metric in rec["metrics"].items():
                    flat[(*key, "metric", name)] = (metric["value"], metric["unit"])
                for check in rec["thresholds"]:
                    flat[(*key, "threshold", check["metric"])] = (
                        check["value"], check["limit"], check["unit"], check["passed"])
        return flat

    serial_flat, parallel_flat = flatten(one), flatten(two)
    assert len({k[0] for k in serial_flat}) == 12
    assert sum(k[-2] == "threshold" for k in serial_flat) == 8
    assert serial_flat.keys() == parallel_flat.keys()
    for key, value in serial_flat.items():
        other = parallel_flat[key]
        if isinstance(value, tuple):
            assert value[0] == pytest.approx(other[0], rel=1e-12, abs=1e-15), key
            assert value[1:] == other[1:], key
        else:
            assert value == other, key


def test_update_json_hook_adds_a_key(pytester, run, plugin_args, dataset_arg):
    pytester.makeconftest("""
        def pytest_mlpval_update_json(config, output):
            output["project"] = {"fit": "gap-2026-11", "n_tests": len(output["tests"])}
    """)
    pytester.makepyfile(test_suite=SUITE)
    result = run(*plugin_args, "--potential=sw", f"--mlpval-dataset={dataset_arg}",
                 "--mlpval-json=out.json")
    result.assert_outcomes(passed=4)
    doc = read_json(pytester.path / "out.json")
    assert doc["project"] == {"fit": "gap-2026-11", "n_tests": 3}
    assert doc["schema"] == "pytest-mlpval/1"
