"""A threshold exceeded is an ordinary test failure whose message says what, where and
how much, with and without xdist."""

from __future__ import annotations

import re

from .conftest import SCALED

FAILING = """
import pytest

@pytest.mark.mlpval_thresholds(force_rmse=0.2, energy_rmse=0.001)
def test_forces(mlpval_errors):
    pass
"""


def test_failing_threshold_message(pytester, run, plugin_args, dataset_arg):
    pytester.makepyfile(test_fail=FAILING)
    result = run(*plugin_args, f"--potential={SCALED}", f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(failed=1)
    assert result.ret == 1
    text = result.stdout.str()
    assert "INTERNALERROR" not in text
    # sw_forces_scaled: forces 50% too large, energies exact. (Continuation lines are
    # prefixed "E" or indented, depending on how pytest renders the hidden traceback.)
    result.stdout.fnmatch_lines([
        "*_ test_forces[[]sw_forces_scaled-ref[]] _*",
        "E *MlpvalAssertionError: 1 of 2 thresholds exceeded for potential "
        "'sw_forces_scaled' on dataset 'ref' (6 structures, 72 atoms): "
        "force_rmse 0.852* eV/Å > 0.2",
        "*",
        "*metric * value * limit * excess * unit * status",
        "*-----*",
        "*force_rmse * 0.852* * 0.2 * +326% * eV/Å * FAIL",
        "*energy_rmse * 0.001 * eV/atom * ok",
        "*",
        "*per config_type (limits apply to the whole set; shown to locate it):",
        "*config_type * n * force_rmse",
        "*-----*",
        "*bulk * 3 * 0.09*",
        "*rattled * 3 * 1.04*",
        "*",
        "*worst structures by force error (eV/Å):",
        "*index * config_type * atoms * force error",
        "*-----*",
        "*rattled * 16 *",
    ])
    result.stdout.fnmatch_lines([
        "*limits from @pytest.mark.mlpval_thresholds(force_rmse=0.2, energy_rmse=0.001) in "
        "test_fail.py::test_forces[[]sw_forces_scaled-ref[]]; change them there",
    ], consecutive=False)
    result.stdout.fnmatch_lines(["FAILED test_fail.py::test_forces[[]sw_forces_scaled-ref[]] - "
                                 "pytest_mlpval.assert*"])
    # the five worst structures by force error: the three rattled ones first
    worst = re.findall(r"^E?\s+(\d)\s+(bulk|rattled)\s+(8|16)\s+[\d.]+$", text, re.M)
    assert len(worst) == 5
    assert [w[1] for w in worst[:3]] == ["rattled"] * 3
    assert {w[0] for w in worst[:3]} == {"1", "3", "5"}
    # the plugin's frames are hidden: the traceback points at no plugin internals
    assert "pytest_mlpval/fixture.py" not in text


def test_failure_in_test_body_with_check(pytester, run, plugin_args, dataset_arg):
    pytester.makepyfile(test_body="""
        def test_body(mlpval, mlpval_errors):
            mlpval.check(mlpval_errors, energy_offset=0.001)
    """)
    result = run(*plugin_args, "--potential=shifted=pytest_mlpval.testing:sw_shifted",
                 f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        ">*mlpval.check(mlpval_errors, energy_offset=0.001)",
        "E *1 of 1 thresholds exceeded for potential 'shifted' on dataset 'ref' "
        "(6 structures, 72 atoms): energy_offset 0.01 eV/atom > 0.001",
        "E *",
        "E *metric * value * limit * excess * unit * status",
        "E *---*",
        "E *energy_offset * 0.01 * 0.001 * +900% * eV/atom * FAIL",
    ])
    result.stdout.fnmatch_lines([
        "E *limits from mlpval.check(energy_offset=0.001) in "
        "test_body.py::test_body[[]shifted-ref[]]; change them there"], consecutive=False)
