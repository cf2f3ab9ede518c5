"""Bad input: usage errors (exit code 4) naming the option and the value, and errors
or failures, never passes, for potentials and data that break during the run."""

from __future__ import annotations

import importlib.util

import pytest

from pytest_mlpval.testing import make_reference_file

from .conftest import GAP_XML_NAME, LABELS, SILICON

PLAIN_TEST = "def test_errors(mlpval_errors):\n    pass\n"
POT = "--potential/--mlpval-potential"


@pytest.mark.parametrize("args, message", [
    (["--potential=missing.xml"],
     f"ERROR: {POT}='missing.xml': GAP model file not found: */missing.xml"),
    (["--potential=broken.xml"],
     f"ERROR: {POT}='broken.xml': */broken.xml is not well-formed XML: *"),
    (["--potential=other.xml"],
     f"ERROR: {POT}='other.xml': */other.xml is XML but not a GAP model (no <GAP_params> "
     "element)"),
    (["--potential=no_such_module_xyz:make"],
     f"ERROR: {POT}='no_such_module_xyz:make': 'no_such_module_xyz:make': cannot import "
     "'no_such_module_xyz' (no such module)"),
    (["--potential=nonsense"],
     f"ERROR: {POT}='nonsense': 'nonsense' is not a built-in (sw, tersoff), an existing "
     "model file, a 'package.module:factory' or a registered loader*"),
    (["--potential=x="],
     f"ERROR: {POT}='x=': 'x=' names a potential but gives no spec after '='"),
    (["--potential=sw", "--potential=SW"],
     f"ERROR: {POT}: two potentials are named 'sw'; give one a name with NAME=..."),
    (["--potential=a=sw", "--potential=a=tersoff"],
     f"ERROR: {POT}: two potentials are named 'a'; give one a name with NAME=..."),
    (["--mlpval-dataset=nonsense"],
     "ERROR: --mlpval-dataset: 'nonsense': expected NAME=PATH[[],energy=KEY,*"),
    (["--mlpval-dataset=ref=ref.xyz,enrgy=dft_energy"],
     "ERROR: --mlpval-dataset: 'ref=ref.xyz,enrgy=dft_energy': bad option 'enrgy=dft_energy'; "
     "known: config_type, energy, forces, format, index, stress, virial"),
    (["--mlpval-dataset=ref=missing.xyz"],
     "ERROR: --mlpval-dataset='ref=missing.xyz': dataset file not found: */missing.xyz"),
    (["--mlpval-dataset=ref=ref.xyz", "--mlpval-dataset=ref=ref.xyz"],
     "ERROR: --mlpval-dataset: two datasets are named 'ref'; give one a name with NAME=..."),
])
def test_usage_errors(pytester, run, reference_file, args, message):
    import shutil

    shutil.copy(reference_file, pytester.path / "ref.xyz")
    (pytester.path / "broken.xml").write_text("<GAP_params><gpSparse>")
    (pytester.path / "other.xml").write_text("<html><body/></html>")
    pytester.makepyfile(test_x=PLAIN_TEST)
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert result.stdout.lines == [] or "passed" not in result.stdout.str()


def test_usage_error_from_the_ini_file(pytester, run):
    pytester.makeini("[pytest]\nmlpval_potentials =\n    sw\n    nonsense\n")
    pytester.makepyfile(test_x=PLAIN_TEST)
    result = run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini mlpval_potentials='nonsense': 'nonsense' is not "
                                 "a built-in*"])


def test_gap_without_quippy_is_a_usage_error(pytester, run, monkeypatch):
    for path in (SILICON / "potential").iterdir():
        if path.name.startswith(GAP_XML_NAME):
            (pytester.path / path.name).symlink_to(path)
    real_find_spec = importlib.util.find_spec

    def no_quippy(name, *args, **kwargs):
        if name == "quippy" or name.startswith("quippy."):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_quippy)
    pytester.makepyfile(test_x=PLAIN_TEST)
    result = run(f"--potential={GAP_XML_NAME}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: {POT}='{GAP_XML_NAME}': {GAP_XML_NAME} is a GAP model but quippy is not "
        "installed: pip install 'pytest-mlpval[gap]' (quippy-ase)"])


def test_factory_returning_a_non_calculator(pytester, run, dataset_arg):
    pytester.makepyfile(test_x=PLAIN_TEST + "\ndef test_calc(mlpval_calculator):\n    pass\n")
    result = run("--potential=pytest_mlpval.testing:not_a_calculator",
                 f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        f"E *PotentialLoadError: {POT}*: 'pytest_mlpval.testing:not_a_calculator' gave int 42, "
        "not an ASE calculator (an object with get_property/calculate)"])


def test_factory_that_does_not_exist_in_the_module(pytester, run, dataset_arg):
    pytester.makepyfile(test_x=PLAIN_TEST)
    result = run("--potential=pytest_mlpval.testing:no_such_factory",
                 f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        f"E *PotentialLoadError: {POT}*: 'pytest_mlpval.testing:no_such_factory': module "
        "'pytest_mlpval.testing' has no attribute 'no_such_factory'"])


def test_factory_that_raises(pytester, run, dataset_arg):
    pytester.makepyfile(broken_factory="def make():\n    raise OSError('licence server down')\n")
    pytester.makepyfile(test_x=PLAIN_TEST)
    pytester.syspathinsert()
    result = run("--potential=broken_factory:make", f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        f"E *PotentialLoadError: {POT}*: loading 'broken_factory:make' failed: OSError: "
        "licence server down"])


def test_nan_prediction_is_an_error_naming_the_structure(pytester, run, plugin_args,
                                                          dataset_arg):
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.mlpval_thresholds(force_rmse=100.0)
        def test_errors(mlpval_errors):
            pass
    """)
    result = run(*plugin_args, "--potential=pytest_mlpval.testing:nan_potential",
                 f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E *NonFiniteError: energy of structure 1 (rattled, 16 atoms) of dataset 'ref' "
        "from potential 'nan_potential' is not finite: nan"])


def test_missing_stress_labels_with_a_stress_threshold_fail(pytester, run, tmp_path):
    data = make_reference_file(tmp_path / "nostress.xyz", n_structures=4,
                               keys={"stress": ""})
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.mlpval_thresholds(force_rmse=1.0, stress_rmse=1.0)
        def test_marker(mlpval_errors):
            pass

        def test_check(mlpval, mlpval_errors):
            mlpval.check(mlpval_errors, stress_rmse=1.0)

        def test_labels(mlpval_dataset):
            assert mlpval_dataset.labels == ("energy", "forces")
    """)
    result = run("--potential=sw", f"--mlpval-dataset=nostress={data},{LABELS}", "-rf")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "E *MissingMetricError: cannot check stress_rmse: no stress errors for dataset "
        "'nostress' (all): the dataset has no such labels or the potential does not "
        "implement the property"], consecutive=False)
    result.stdout.fnmatch_lines(["FAILED test_x.py::test_marker[[]sw-nostress[]]*",
                                 "FAILED test_x.py::test_check[[]sw-nostress[]]*"])


def test_dataset_with_labels_missing_on_some_structures(pytester, run, tmp_path):
    import ase.io

    data = make_reference_file(tmp_path / "partial.xyz", n_structures=3)
    frames = ase.io.read(data, ":")
    del frames[2].info["dft_energy"]
    ase.io.write(data, frames, format="extxyz")
    pytester.makepyfile(test_x=PLAIN_TEST)
    result = run("--potential=sw", f"--mlpval-dataset=partial={data},{LABELS}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E *DatasetError: dataset 'partial': key 'dft_energy' (energy) is missing on 1 of 3 "
        "structures (first: index 2)"])
