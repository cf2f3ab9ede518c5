"""The mlpval_known_failure marker: a strict xfail for the candidate it names, by content
hash (the model under any --potential name) or by name; every other candidate is judged
by the plain test; a bad marker is a usage error.

The models are two small files that a pytest_mlpval_load_potential hook loads as
Stillinger-Weber: they differ only in content, so only their sha256 tells them apart.
"""

from __future__ import annotations

import hashlib

import pytest

HOOK = """
from pytest_mlpval.potentials import load_potential


def pytest_mlpval_load_potential(config, spec):
    if str(spec).endswith(".model"):
        return load_potential("sw").calculator
"""

TESTS = """
import pytest

known = pytest.mark.mlpval_known_failure


@known(sha256="{prefix}", reason="measured: model A misses this")
def test_fails(mlpval):
    assert mlpval.potential.name == "nobody"


@known(sha256="{full}", reason="fixed since")
def test_passes(mlpval):
    assert mlpval.potential.info.sha256 is not None


@known(potential="gap_si", reason="by name")
def test_by_name(mlpval):
    assert False
"""


def _digest(files: dict[str, str]) -> str:
    """The model's sha256 as pytest_mlpval.potentials computes it for one file."""
    digest = hashlib.sha256()
    for name, text in sorted(files.items()):
        digest.update(f"{name}\0{hashlib.sha256(text.encode()).hexdigest()}\n".encode())
    return digest.hexdigest()


@pytest.fixture
def models(pytester):
    pytester.makeconftest(HOOK)
    (pytester.path / "a.model").write_text("model A\n")
    (pytester.path / "b.model").write_text("model B\n")
    full = _digest({"a.model": "model A\n"})
    pytester.makepyfile(test_known=TESTS.format(prefix=full[:12], full=full))
    return full


@pytest.mark.parametrize("xdist", [False, True], ids=["in-process", "n2"])
def test_known_failure_follows_the_model_under_any_name(run, models, xdist):
    extra = ["-n", "2"] if xdist else []
    result = run("--potential=foo=a.model", "--potential=bar=b.model", "-rxXf", *extra)
    # foo (model A): test_fails xfails, test_passes XPASS(strict) fails;
    # bar (model B): test_fails fails, test_passes passes; test_by_name fails for both
    result.assert_outcomes(failed=4, passed=1, xfailed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        f"*XFAIL test_known.py::test_fails[[]foo[]]*known failure of foo (sha256 "
        f"{models[:12]}): measured: model A misses this*"], consecutive=False)
    result.stdout.fnmatch_lines(["*FAILED test_known.py::test_passes[[]foo[]]*XPASS(strict)*"],
                                consecutive=False)
    assert "FAILED test_known.py::test_fails[bar]" in out
    assert "test_passes[bar]" not in out.split("short test summary")[-1]


def test_same_name_other_model_is_judged_by_the_plain_test(run, models):
    """gap_si is model B here: the hash-keyed marks (model A) do not apply, the
    name-keyed one does."""
    result = run("--potential=gap_si=b.model", "-rxXf")
    result.assert_outcomes(failed=1, passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*FAILED test_known.py::test_fails[[]gap_si[]]*"],
                                consecutive=False)
    result.stdout.fnmatch_lines(["*XFAIL test_known.py::test_by_name[[]gap_si[]]*known "
                                 "failure of gap_si (potential 'gap_si'): by name*"],
                                consecutive=False)
    # and model A named gap_si: every mark applies
    again = run("--potential=gap_si=a.model")
    again.assert_outcomes(failed=1, xfailed=2)


@pytest.mark.parametrize("arguments, message", [
    ("sha256='0123456789ab'", "give reason="),
    ("potential='sw', reason=''", "give reason="),
    ("potential='sw', reason='r', strict=False", "unknown keyword argument(s) strict"),
    ("'sw', 'a reason'", "takes keyword arguments only"),
    ("reason='which one?'", "give one of potential="),
    ("potential='sw', sha256='0123456789ab', reason='r'", "give one of potential="),
    ("sha256='0123456789a', reason='r'", "a prefix of at least 12"),
    ("sha256='0123456789xy', reason='r'", "hex digits"),
])
def test_bad_marker_is_a_usage_error(pytester, run, arguments, message):
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.mlpval_known_failure({arguments})
        def test_x(mlpval):
            pass
    """)
    result = run("--potential=sw")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "test_x" in result.stderr.str() and "mlpval_known_failure" in result.stderr.str()
