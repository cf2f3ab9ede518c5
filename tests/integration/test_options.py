"""Command-line options and ini keys: aliases, repetition, ids, ini paths, precedence,
--help, and what happens without a potential or dataset."""

from __future__ import annotations

import shutil

import pytest

from .conftest import LABELS, read_json

IDS_TEST = """
def test_errors(mlpval_errors):
    pass

def test_calc(mlpval_calculator):
    pass
"""


def collected_ids(result: pytest.RunResult) -> set[str]:
    return {line.strip() for line in result.outlines if "::" in line}


@pytest.mark.parametrize("option", ["--potential", "--mlpval-potential"])
def test_potential_option_and_its_alias(pytester, run, dataset_arg, option):
    pytester.makepyfile(test_ids=IDS_TEST)
    result = run(f"{option}=sw", f"--mlpval-dataset={dataset_arg}", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*mlpval: potentials: sw (--potential/--mlpval-potential); datasets: ref*",
        "test_ids.py::test_errors[[]sw-ref[]] PASSED*",
        "test_ids.py::test_calc[[]sw[]] PASSED*",
    ])


def test_repeatable_options_and_named_ids(pytester, run, reference_file):
    pytester.makepyfile(test_ids=IDS_TEST)
    result = run("--potential=sw", "--mlpval-potential=mine=tersoff",
                 f"--mlpval-dataset=ref={reference_file},{LABELS}",
                 f"--mlpval-dataset=other={reference_file},{LABELS}",
                 "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert collected_ids(result) == {
        "test_ids.py::test_errors[sw-ref]",
        "test_ids.py::test_errors[sw-other]",
        "test_ids.py::test_errors[mine-ref]",
        "test_ids.py::test_errors[mine-other]",
        "test_ids.py::test_calc[sw]",
        "test_ids.py::test_calc[mine]",
    }


def _ini_suite(pytester, reference_file):
    """suite/pytest.ini with relative paths; a '.fake' model taken by a conftest hook."""
    suite = pytester.mkdir("suite")
    (suite / "data").mkdir()
    shutil.copy(reference_file, suite / "data" / "ref.xyz")
    (suite / "models").mkdir()
    (suite / "models" / "m.fake").write_text("fake model\n")
    (suite / "pytest.ini").write_text(
        "[pytest]\n"
        "mlpval_potentials =\n"
        "    fake=models/m.fake\n"
        "    sw\n"
        "mlpval_datasets =\n"
        f"    ref=data/ref.xyz,{LABELS}\n"
    )
    (suite / "conftest.py").write_text(
        "from pytest_mlpval.potentials import load_potential\n\n"
        "def pytest_mlpval_load_potential(config, spec):\n"
        "    if spec.endswith('.fake'):\n"
        "        return load_potential('sw').calculator\n"
        "    return None\n"
    )
    (suite / "test_ini.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.mlpval_thresholds(force_rmse=0.01)\n"
        "def test_ini(mlpval_errors):\n"
        "    assert len(mlpval_errors) == 6\n"
    )
    return suite


def test_ini_paths_are_relative_to_the_ini_file(pytester, run, reference_file,
                                                monkeypatch):
    suite = _ini_suite(pytester, reference_file)
    elsewhere = pytester.mkdir("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = run(suite, "--mlpval-json=out.json", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*mlpval: potentials: fake (ini mlpval_potentials), sw (ini mlpval_potentials);"
        " datasets: ref*",
        "*test_ini.py::test_ini[[]fake-ref[]] PASSED*",
        "*test_ini.py::test_ini[[]sw-ref[]] PASSED*",
    ])
    # --mlpval-json is relative to the invocation directory
    document = read_json(elsewhere / "out.json")
    assert document["datasets"]["ref"]["path"] == str((suite / "data" / "ref.xyz").resolve())
    fake = document["potentials"]["fake"]
    assert fake["loader"] == "hook"
    assert fake["files"] == [str((suite / "models" / "m.fake").resolve())]


def test_command_line_overrides_ini(pytester, run, reference_file):
    shutil.copy(reference_file, pytester.path / "ref.xyz")
    pytester.makeini(
        "[pytest]\n"
        "mlpval_potentials = inipot=sw\n"
        f"mlpval_datasets = inidata=ref.xyz,{LABELS}\n"
    )
    pytester.makepyfile(test_ids=IDS_TEST)
    from_ini = run("--collect-only", "-q")
    assert collected_ids(from_ini) == {"test_ids.py::test_errors[inipot-inidata]",
                                       "test_ids.py::test_calc[inipot]"}
    overridden = run("--potential=clipot=tersoff", f"--mlpval-dataset=clidata=ref.xyz,{LABELS}",
                     "--collect-only", "-q")
    assert collected_ids(overridden) == {"test_ids.py::test_errors[clipot-clidata]",
                                         "test_ids.py::test_calc[clipot]"}


def test_help_shows_the_mlpval_group(pytester, run):
    result = run("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "validation of machine-learned interatomic potentials:",
        "  --mlpval-potential=[[]NAME=[]]SPEC, --potential=[[]NAME=[]]SPEC",
        "  --mlpval-dataset=NAME=PATH[[],LABEL=KEY...[]]",
        "  --mlpval-json=PATH*",
        "  --mlpval-no-cache*",
        "  --mlpval-require-potential",
        "  --mlpval-details*",
    ])
    result.stdout.fnmatch_lines([
        "  mlpval_potentials (linelist):",
        "  mlpval_datasets (linelist):",
        "  mlpval_cache (bool):*",
        "  mlpval_require_potential (bool):",
    ])


def test_no_potential_skips_with_a_reason(pytester, run, plugin_args, dataset_arg):
    pytester.makepyfile(test_ids=IDS_TEST + "\ndef test_plain():\n    pass\n")
    result = run(*plugin_args, f"--mlpval-dataset={dataset_arg}", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines([
        "SKIPPED *no potential given: use --potential=SPEC or the ini key mlpval_potentials"])
    assert "mlpval summary" not in result.stdout.str()


def test_no_dataset_skips_with_a_reason(pytester, run, plugin_args):
    pytester.makepyfile(test_ids=IDS_TEST)
    result = run(*plugin_args, "--potential=sw", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "SKIPPED *no dataset given: use --mlpval-dataset=NAME=PATH, the ini key "
        "mlpval_datasets or @pytest.mark.mlpval_dataset"])


@pytest.mark.parametrize("how", ["option", "ini"])
def test_require_potential_turns_the_skip_into_an_error(pytester, run, dataset_arg, how):
    pytester.makepyfile(test_ids=IDS_TEST + "\ndef test_plain():\n    pass\n")
    args = [f"--mlpval-dataset={dataset_arg}"]
    if how == "option":
        args.append("--mlpval-require-potential")
    else:
        pytester.makeini("[pytest]\nmlpval_require_potential = true\n")
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: no potential given: use --potential=SPEC or the ini key "
        "mlpval_potentials (--mlpval-require-potential or ini mlpval_require_potential "
        "is set)"])
    # with a potential the same settings pass
    result = run(*args, "--potential=sw")
    result.assert_outcomes(passed=3)
