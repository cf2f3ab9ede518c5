"""The molybdenum suite (example_suites/molybdenum), copied and run as a user would: it
collects with the bundled GAP and with a potential given by --potential, a Morse pair
potential (wrong for a metal) fails its test-set errors, the bundled GAP passes them; its
data have their shear stresses in the right slots."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import HAVE_QUIPPY, read_json

MOLYBDENUM = Path(__file__).resolve().parents[2] / "example_suites" / "molybdenum"
SELECT = "molybdenum/test_numerical_errors.py::test_test_set"
MORSE = "--potential=morse=wrong_for_mo:morse_mo"


@pytest.fixture
def suite(pytester):
    target = pytester.path / "molybdenum"
    shutil.copytree(MOLYBDENUM, target, ignore=shutil.ignore_patterns(
        "__pycache__", ".pytest_cache"))
    return target


@pytest.mark.parametrize("potential, name", [
    (MORSE, "morse"),
    pytest.param(None, "gap_mo", marks=pytest.mark.skipif(
        not HAVE_QUIPPY, reason="needs quippy-ase (gap extra)")),
])
def test_suite_collects(pytester, run, suite, potential, name):
    """Every group of the suite collects, under the ini potential or --potential (a
    factory in the suite's own directory)."""
    result = run("molybdenum", "--collect-only", "-q", *([potential] if potential else []))
    assert result.ret == pytest.ExitCode.OK
    ids = {line.split("::")[0] for line in result.outlines if "::" in line}
    assert ids == {"test_md.py", "test_numerical_errors.py", "test_physics.py",
                   "test_properties.py"}
    assert f"test_numerical_errors.py::test_test_set[{name}-test]" in result.outlines
    assert f"test_properties.py::TestElasticVsPBE::test_mlpval_elastic[{name}]" in \
        result.outlines


@pytest.mark.slow
def test_morse_fails_the_test_set(pytester, run, suite):
    result = run(SELECT, MORSE, "--mlpval-json=morse.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E *3 of 3 thresholds exceeded for potential 'morse' on dataset 'test' "
        "(23 structures, 1189 atoms): energy_offset_removed_rmse 0.409* eV/atom > 0.01",
    ])
    doc = read_json(pytester.path / "morse.json")
    (record,) = doc["tests"][0]["records"]
    assert record["metrics"]["force_rmse"]["value"] == pytest.approx(2.86, abs=0.01)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_QUIPPY, reason="needs quippy-ase (gap extra)")
def test_bundled_gap_passes_the_test_set(pytester, run, suite):
    out = pytester.path / "gap.json"
    result = run(SELECT, f"--mlpval-json={out}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*mlpval: potentials: gap_mo (ini mlpval_potentials); datasets: test, train*"])
    doc = read_json(out)
    assert doc["potentials"]["gap_mo"]["loader"] == "gap"
    (record,) = doc["tests"][0]["records"]
    assert [t["passed"] for t in record["thresholds"]] == [True, True, True]


def test_shear_stresses_follow_the_cell():
    """The suite's Mo data have each shear stress in the slot of the cell's shear (the
    shared conversion swaps yz and xz): a +2 % shear gives its stress, about 2.2 GPa, in
    its own Voigt component (ASE order xx yy zz yz xz xy) and almost none in the others."""
    import numpy as np
    from ase.io import read

    data = MOLYBDENUM / "data" / "mlearn_Mo_training.xyz"
    frames = {a.info["description"]: a for a in read(data, ":")
              if a.info["config_type"] == "Elastic"}
    for mode in (4, 5, 6):
        atoms = frames[f"Mo 3x3x3 cell, mode {mode}, strain 0.0200"]
        cell = atoms.cell.array
        (i, j), = np.argwhere(np.abs(cell - np.diag(np.diag(cell))) > 1e-3)
        slot = {(0, 1): 5, (1, 0): 5, (0, 2): 4, (2, 0): 4, (1, 2): 3, (2, 1): 3}[(i, j)]
        stress_GPa = np.asarray(atoms.info["dft_stress"]) * 160.21766208
        assert stress_GPa[slot] == pytest.approx(2.2, abs=0.1), (mode, stress_GPa)
        others = [k for k in (3, 4, 5) if k != slot]
        assert np.abs(stress_GPa[others]).max() < 0.1, (mode, stress_GPa)
