"""The markers: mlpval_thresholds, mlpval_dataset and the automatic mlpval marker."""

from __future__ import annotations

import shutil

import pytest

from .conftest import LABELS, SCALED, read_json, records_by_nodeid


def test_thresholds_pass_and_fail(pytester, run, plugin_args, dataset_arg):
    pytester.makepyfile(test_thr="""
        import pytest

        @pytest.mark.mlpval_thresholds(force_rmse=0.01, energy_rmse=0.001)
        def test_forces(mlpval_errors):
            pass
    """)
    result = run(*plugin_args, "--potential=sw", f"--potential=scaled={SCALED}",
                 f"--mlpval-dataset={dataset_arg}", "-rfE")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_thr.py::test_forces[[]scaled-ref[]]*"])
    assert "test_forces[sw-ref] - " not in result.stdout.str()


def test_unknown_metric_is_an_error_naming_it(pytester, run, dataset_arg):
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.mlpval_thresholds(force_rmse=0.1, force_rmsd=0.1)
        def test_typo(mlpval_errors):
            pass
    """)
    result = run("--potential=sw", f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E *UsageError: test_bad.py::test_typo[[]sw-ref[]]: @pytest.mark.mlpval_thresholds: "
        "unknown metric 'force_rmsd'; use <quantity>_<stat>*"])


@pytest.mark.parametrize("args, message", [
    ("0.1", "takes keyword arguments only, got (0.1,)"),
    ("config_type='bulk'", "gives no limit"),
    ("force_rmse='small'", "force_rmse='small' is not a number"),
    ("force_rmse=-1", "force_rmse=-1 must be a finite number >= 0"),
])
def test_bad_marker_arguments_are_errors(pytester, run, dataset_arg, args, message):
    pytester.makepyfile(test_bad=f"""
        import pytest

        @pytest.mark.mlpval_thresholds({args})
        def test_bad(mlpval_errors):
            pass
    """)
    result = run("--potential=sw", f"--mlpval-dataset={dataset_arg}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"E *UsageError: test_bad.py::test_bad[[]sw-ref[]]: "
                                 f"@pytest.mark.mlpval_thresholds*{message}"])


def test_stacked_markers_with_config_type(pytester, run, dataset_arg, tmp_path):
    # sw_forces_scaled: force RMSE about 0.09 eV/Å on 'bulk', about 1.0 on 'rattled'
    pytester.makepyfile(test_stack="""
        import pytest

        @pytest.mark.mlpval_thresholds(force_rmse=5.0)
        @pytest.mark.mlpval_thresholds(config_type="bulk", force_rmse=0.5)
        @pytest.mark.mlpval_thresholds(config_type="rattled", force_rmse=0.5)
        def test_stacked(mlpval_errors):
            pass
    """)
    out = tmp_path / "out.json"
    result = run(f"--potential={SCALED}", f"--mlpval-dataset={dataset_arg}",
                 f"--mlpval-json={out}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E *1 of 1 thresholds exceeded for potential 'sw_forces_scaled' on dataset 'ref', "
        "config_type 'rattled' (3 structures, 48 atoms): force_rmse * eV/Å > 0.5"])
    text = result.stdout.str()
    assert "config_type 'bulk'" not in text
    assert "on dataset 'ref' (6 structures" not in text
    records = records_by_nodeid(read_json(out))
    checked = {(t["subset"], t["limit"], t["passed"])
               for rec in records["test_stack.py::test_stacked[sw_forces_scaled-ref]"]
               for t in rec["thresholds"]}
    assert checked == {("all", 5.0, True), ("bulk", 0.5, True), ("rattled", 0.5, False)}


def test_closest_marker_wins_over_module_marker(pytester, run, dataset_arg):
    pytester.makepyfile(test_levels="""
        import pytest

        pytestmark = pytest.mark.mlpval_thresholds(force_rmse=100.0)

        @pytest.mark.mlpval_thresholds(force_rmse=0.001)
        def test_stricter(mlpval_errors):
            pass

        def test_module_default(mlpval_errors):
            pass
    """)
    result = run(f"--potential={SCALED}", f"--mlpval-dataset={dataset_arg}", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "E *thresholds exceeded for potential 'sw_forces_scaled' on dataset 'ref' "
        "(6 structures, 72 atoms): force_rmse * eV/Å > 0.001",
        "FAILED test_levels.py::test_stricter[[]sw_forces_scaled-ref[]]*",
    ])


def test_thresholds_without_errors_fixture_or_check_fail(pytester, run):
    pytester.makepyfile(test_nothing="""
        import pytest

        @pytest.mark.mlpval_thresholds(force_rmse=0.1)
        def test_unchecked(mlpval_calculator):
            pass
    """)
    result = run("--potential=sw")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E *test_nothing.py::test_unchecked[[]sw[]]: @pytest.mark.mlpval_thresholds needs the "
        "mlpval_errors fixture or a call to mlpval.check(report); neither was used, so "
        "nothing was checked"])


def test_dataset_marker_with_a_configured_name(pytester, run, plugin_args, reference_file):
    pytester.makepyfile(test_pick="""
        import pytest

        @pytest.mark.mlpval_dataset("other")
        def test_other(mlpval_errors, mlpval_dataset):
            assert mlpval_dataset.name == "other"
            assert mlpval_errors.dataset == "other"

        def test_all(mlpval_errors):
            pass
    """)
    result = run(*plugin_args, "--potential=sw",
                 f"--mlpval-dataset=ref={reference_file},{LABELS}",
                 f"--mlpval-dataset=other={reference_file},{LABELS}", "-rA")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["PASSED test_pick.py::test_other[[]sw-other[]]"],
                                consecutive=False)
    assert "test_other[sw-ref]" not in result.stdout.str()


def test_dataset_marker_spec_is_relative_to_the_test_file(pytester, run, reference_file):
    sub = pytester.mkdir("sub")
    (sub / "data").mkdir()
    shutil.copy(reference_file, sub / "data" / "local.xyz")
    (sub / "test_local.py").write_text(
        "import pytest\n\n"
        f"@pytest.mark.mlpval_dataset('inline=data/local.xyz,{LABELS}')\n"
        "@pytest.mark.mlpval_dataset('kw=data/local.xyz', energy='dft_energy',\n"
        "                            forces='dft_forces', stress='dft_stress')\n"
        "@pytest.mark.mlpval_thresholds(energy_rmse=1e-3, force_rmse=1e-3, stress_rmse=1e-3)\n"
        "def test_local(mlpval_errors, mlpval_dataset):\n"
        "    assert mlpval_dataset.labels == ('energy', 'forces', 'stress')\n"
        "    assert len(mlpval_errors) == 6\n"
    )
    # invoked from pytester.path, where data/local.xyz does not exist
    result = run("--potential=sw", "sub", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_local[[]sw-inline[]] PASSED*"], consecutive=False)
    result.stdout.fnmatch_lines(["*test_local[[]sw-kw[]] PASSED*"], consecutive=False)


def test_dataset_marker_with_a_missing_file(pytester, run):
    pytester.makepyfile(test_missing="""
        import pytest

        @pytest.mark.mlpval_dataset("gone=nowhere.xyz")
        def test_gone(mlpval_errors):
            pass
    """)
    result = run("--potential=sw")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([
        "E *UsageError: test_missing.py::test_gone: "
        "@pytest.mark.mlpval_dataset('gone=nowhere.xyz'): file not found: *nowhere.xyz"])


def test_unknown_dataset_name_is_an_error(pytester, run, dataset_arg):
    pytester.makepyfile(test_unknown="""
        import pytest

        @pytest.mark.mlpval_dataset("nosuch")
        def test_unknown(mlpval_errors):
            pass
    """)
    result = run("--potential=sw", f"--mlpval-dataset={dataset_arg}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "E *UsageError: test_unknown.py::test_unknown: @pytest.mark.mlpval_dataset('nosuch') "
        "names no configured dataset (configured: ref)"])


def test_configured_dataset_name_with_label_keys_is_an_error(pytester, run, dataset_arg):
    pytester.makepyfile(test_kw="""
        import pytest

        @pytest.mark.mlpval_dataset("ref", energy="other_energy")
        def test_kw(mlpval_errors):
            pass
    """)
    result = run("--potential=sw", f"--mlpval-dataset={dataset_arg}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["E *@pytest.mark.mlpval_dataset('ref') refers to a configured "
                                 "dataset; label keys belong where it is configured"])


def test_markers_are_listed(pytester, run):
    result = run("--markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "@pytest.mark.mlpval: added automatically to every test that uses an mlpval fixture "
        "(select with -m mlpval).",
        "@pytest.mark.mlpval_thresholds(config_type=None, **limits): upper limits on error "
        "metrics*Unknown names are an error.",
        "@pytest.mark.mlpval_dataset(spec, **label_keys): run the test on this dataset*",
    ], consecutive=False)


def test_strict_markers_accepts_the_markers(pytester, run, reference_file):
    shutil.copy(reference_file, pytester.path / "ref.xyz")
    pytester.makepyfile(test_strict=f"""
        import pytest

        @pytest.mark.mlpval
        @pytest.mark.mlpval_dataset("ref=ref.xyz,{LABELS}")
        @pytest.mark.mlpval_thresholds(force_rmse=0.1)
        def test_marked(mlpval_errors):
            pass
    """)
    result = run("--potential=sw", "--strict-markers", "-W", "error", "-rw")
    result.assert_outcomes(passed=1)
    assert "warning" not in result.stdout.str().lower()


def test_auto_marker_selects_with_m(pytester, run, plugin_args, dataset_arg):
    pytester.makepyfile(test_sel="""
        def test_errors(mlpval_errors):
            pass

        def test_predictions(mlpval_predictions):
            pass

        def test_plain():
            pass
    """)
    selected = run(*plugin_args, "--potential=sw", f"--mlpval-dataset={dataset_arg}",
                   "-m", "mlpval", "-rA")
    # (xdist's controller does not count deselected items)
    selected.assert_outcomes(passed=2, deselected=None if plugin_args else 1)
    selected.stdout.fnmatch_lines(["PASSED test_sel.py::test_errors[[]sw-ref[]]"],
                                  consecutive=False)
    selected.stdout.fnmatch_lines(["PASSED test_sel.py::test_predictions[[]sw-ref[]]"],
                                  consecutive=False)
    assert "test_plain" not in selected.stdout.str()
    others = run("--potential=sw", f"--mlpval-dataset={dataset_arg}", "-m", "not mlpval", "-v")
    others.assert_outcomes(passed=1, deselected=2)
    others.stdout.fnmatch_lines(["test_sel.py::test_plain PASSED*"])
