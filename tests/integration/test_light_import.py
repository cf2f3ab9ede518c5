"""Loading the plugin costs nothing on unrelated test runs: no ase, dscribe, quippy,
matplotlib (nor scipy) until an mlpval fixture is used."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("ase", "dscribe", "quippy", "matplotlib", "scipy", "matscipy")


def test_importing_the_plugin_is_light():
    code = (
        "import json, sys\n"
        "import pytest_mlpval, pytest_mlpval.plugin\n"
        "assert pytest_mlpval.__version__\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_importing_the_plugin_loads_no_numpy():
    """Not even numpy: pytest loads the plugin in every run of the environment (a run of
    mlpval tests imports it once the session starts)."""
    code = ("import sys\n"
            "import pytest_mlpval, pytest_mlpval.plugin\n"
            "print('numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_the_import_check_can_see_an_import():
    code = (
        "import sys\n"
        "import pytest_mlpval\n"
        "assert 'ase' not in sys.modules\n"
        "pytest_mlpval.load_potential('sw')\n"
        "print('ase' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    # loading a potential does import ase: the check above would see it
    assert out.stdout.strip() == "True"


def test_a_run_without_mlpval_fixtures_imports_nothing_heavy(pytester):
    pytester.makeconftest(f"""
        import json
        import sys

        import pytest

        HEAVY = {HEAVY!r}


        @pytest.hookimpl(trylast=True)
        def pytest_sessionfinish(session):
            loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))
            with open("heavy.json", "w") as handle:
                json.dump(loaded, handle)
    """)
    pytester.makepyfile(test_plain="""
        import sys

        def test_plain():
            assert "ase" not in sys.modules
    """)
    # every installed plugin loads, as in a user's run
    result = pytester.runpytest_subprocess("--potential=sw")
    result.assert_outcomes(passed=1)
    assert "mlpval: potentials: sw" in result.stdout.str()
    assert json.loads((pytester.path / "heavy.json").read_text()) == []
