"""-p no:mlpval turns the plugin off completely."""

from __future__ import annotations

import pytest


def test_disabled_plugin_runs_plain_tests(pytester, run):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run("-p", "no:mlpval")
    result.assert_outcomes(passed=1)
    assert "mlpval" not in result.stdout.str()


def test_disabled_plugin_has_no_options(pytester, run):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run("-p", "no:mlpval", "--potential=sw")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*error: unrecognized arguments: --potential=sw*"])


def test_disabled_plugin_has_no_fixtures(pytester, run):
    pytester.makepyfile(test_fix="def test_fix(mlpval_calculator):\n    pass\n")
    result = run("-p", "no:mlpval")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["E *fixture 'mlpval_calculator' not found"])


def test_enabled_plugin_is_listed(pytester, run):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["plugins: *mlpval-*"])
