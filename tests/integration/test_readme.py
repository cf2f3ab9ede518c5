"""Every command and Python example in README.md and docs/ is run here.

The fenced code blocks of the README and of every page under docs/ are read:

- ``bash`` blocks: each line (``\\`` continuations joined, ``&&`` split) is a command.
  ``pytest ...`` is collected (``--collect-only``) in a scratch copy of the silicon suite,
  which validates its options, potentials and datasets (all in one process, to pay the
  imports once); the cheap ones (:data:`RUN_FULLY`) run fully there, and the ``slow``
  tests run every one fully. ``pip install`` must name extras that pyproject.toml defines, ``tox -e ENV`` an
  environment of tox.ini, ``python3 -m venv`` is left to the shell, and ``mkdocs build
  --strict`` is what tests/test_docs.py runs.
  Any other command fails :func:`test_every_command_is_checked`: teach this file to check it.
- ``text`` blocks are output (the verdict matrix), shown and not run; no other language.
- ``python`` blocks are compiled; test modules (a ``def test_``, ``class Test`` or a
  star import of ready-made tests) are collected against the silicon suite's data; the
  names they import from pytest_mlpval must exist; scripts are run (``slow``).

Placeholders the pages use for the reader's own files are replaced here:
``path/to/model.xml``, ``model.xml``, ``accepted.xml`` and ``candidate.xml`` by the bundled
GAP, ``test.xyz`` by the mlearn Si test set.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import HAVE_QUIPPY, SILICON

ROOT = SILICON.parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GAP_XML = SILICON / "potential" / "gap_si_mlearn.xml"
TEST_XYZ = SILICON / "data" / "mlearn_Si_test.xyz"
SHELL_PLACEHOLDERS = {"path/to/model.xml": GAP_XML, "accepted.xml": GAP_XML,
                      "candidate.xml": GAP_XML}
PYTHON_PLACEHOLDERS = {'"model.xml"': repr(str(GAP_XML)),
                       "=test.xyz,": f"={TEST_XYZ},"}
LANGUAGES = ("bash", "python")
#: blocks that show output (the verdict matrix, a failure table): shown, not run
OUTPUT_LANGUAGES = ("text",)
#: cheap pytest commands, run fully rather than only collected: a part of the command
#: line -> the exit status expected (Stillinger-Weber fails the suite's error limits)
RUN_FULLY = {"-k test_test_set --potential=sw": 1}
needs_quippy = pytest.mark.skipif(not HAVE_QUIPPY, reason="the silicon suite needs quippy-ase "
                                  "(gap extra)")


@dataclass(frozen=True)
class Block:
    """One fenced code block: file, first line of its content (1-based), language, text."""

    path: Path
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Command:
    block: Block
    text: str

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)  # a trailing "# note" is prose

    @property
    def program(self) -> str:
        return Path(self.argv[0]).name


def read_blocks(path: Path) -> list[Block]:
    blocks, language, start, body, indent = [], None, 0, [], 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = line.lstrip().startswith("```")
        if language is None and fence:  # also an indented fence (inside a list item)
            indent = len(line) - len(line.lstrip())
            language, start, body = line.strip()[3:].strip(), number + 1, []
        elif language is not None and fence:
            blocks.append(Block(path, start, language, "\n".join(body) + "\n"))
            language = None
        elif language is not None:
            body.append(line[indent:])
    assert language is None, f"{path}: a code block is not closed"
    return blocks


BLOCKS = [block for path in DOC_FILES for block in read_blocks(path)]


def commands_of(block: Block) -> list[Command]:
    joined = re.sub(r"\\\n\s*", " ", block.text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out += [Command(block, part.strip()) for part in line.split(" && ")]
    return out


COMMANDS = [c for b in BLOCKS if b.language == "bash" for c in commands_of(b)]


def unique(commands: list[Command]) -> list[Command]:
    seen: dict[str, Command] = {}
    for command in commands:
        seen.setdefault(command.text, command)
    return list(seen.values())


PYTEST_COMMANDS = unique([c for c in COMMANDS if c.program == "pytest"])
PYTHON_BLOCKS = [b for b in BLOCKS if b.language == "python"]


def _is_test_module(block: Block) -> bool:
    return bool(re.search(r"^\s*(def test_|class Test)|_tests import \*", block.text, re.M))


def _id(command: Command) -> str:
    return f"{command.block.where}:{command.text[:60]}"


def scratch_suite(tmp_path: Path) -> Path:
    """A copy of example_suites/silicon under tmp_path (data and potential linked), so that
    baselines, reports and caches a command writes stay out of the repository."""
    suite = tmp_path / "example_suites" / "silicon"
    suite.mkdir(parents=True)
    for item in SILICON.iterdir():
        if item.name in ("data", "potential"):
            (suite / item.name).symlink_to(item)
        elif item.is_dir():
            # the accepted baselines, not caches (.pytest_cache, .hypothesis, .benchmarks)
            if item.name == ".mlpval" or not item.name.startswith((".", "__")):
                shutil.copytree(item, suite / item.name)
        else:
            shutil.copy(item, suite / item.name)
    return suite


def prepared(command: Command, scratch: Path) -> tuple[list[str], Path]:
    """argv for pytest and the directory to run it in: the scratch copy of the suite when
    the command names it, else the repository."""
    argv = command.argv[1:]
    for i, arg in enumerate(argv):
        for placeholder, real in SHELL_PLACEHOLDERS.items():
            arg = arg.replace(placeholder, str(real))
        argv[i] = arg
    if not any("example_suites/silicon" in arg for arg in argv):
        return argv, ROOT
    return argv, scratch


def _seed_baseline(argv: list[str], scratch: Path) -> None:
    """A comparison with a baseline that an earlier command of the page saves: when that
    command did not save it (only collected, or ran elsewhere), the scratch copy gets the
    suite's accepted baseline under that name."""
    for arg in argv:
        if arg.startswith("--mlpval-compare="):
            target = scratch / "example_suites/silicon/.mlpval" / f"{arg.split('=', 1)[1]}.json"
            if not target.exists():
                shutil.copy(SILICON / ".mlpval" / "gap_si.json", target)


#: runs several pytest command lines in one process, so that the heavy imports are paid
#: once: argv lists and directories in, exit codes and output out (as JSON files)
DRIVER = """
import contextlib, io, json, os, sys
import pytest
jobs, results = json.load(open(sys.argv[1])), []
for argv, cwd in jobs:
    os.chdir(cwd)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            rc = int(pytest.main(argv))
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    results.append({"rc": rc, "out": buffer.getvalue()})
json.dump(results, open(sys.argv[2], "w"))
"""


def run_in_one_process(jobs: list[tuple[list[str], Path]], work: Path,
                       timeout: float) -> list[dict]:
    import json

    (work / "jobs.json").write_text(json.dumps([[argv, str(cwd)] for argv, cwd in jobs]))
    (work / "driver.py").write_text(DRIVER)
    result = subprocess.run([sys.executable, str(work / "driver.py"), str(work / "jobs.json"),
                             str(work / "results.json")], cwd=work, text=True,
                            capture_output=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((work / "results.json").read_text())


def run_pytest(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", *argv], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> dict[str, dict]:
    """Every pytest command of the pages, collected (``--collect-only``): those naming the
    silicon suite in one process in a scratch copy of it, the others (run in the
    repository) in another. Command text -> exit code and output."""
    work = tmp_path_factory.mktemp("readme")
    scratch_suite(work)
    groups: dict[bool, list[tuple[Command, list[str], Path]]] = {True: [], False: []}
    for command in PYTEST_COMMANDS:
        argv, cwd = prepared(command, work)
        if argv:
            groups[cwd == work].append((command, argv, cwd))
    if not HAVE_QUIPPY:
        groups[True] = []
    out = {}
    for in_suite, items in groups.items():
        jobs = []
        for command, argv, cwd in items:
            if in_suite:
                _seed_baseline(argv, work)  # every save runs before its compare: page order
            fully = any(part in command.text for part in RUN_FULLY)
            jobs.append(([*argv, "-p", "no:benchmark", *([] if fully else ["--collect-only"]),
                          "-q"], cwd))
        sub = work / ("suite" if in_suite else "repo")
        sub.mkdir()
        for (command, _, _), result in zip(items, run_in_one_process(jobs, sub, 300)):
            out[command.text] = result
    return out


# --- what the pages hold ---------------------------------------------------------------

def test_the_pages_hold_commands_and_examples():
    assert len(DOC_FILES) >= 10, DOC_FILES
    assert len(PYTEST_COMMANDS) >= 5 and len(PYTHON_BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.where)
def test_every_block_names_a_checked_language(block):
    assert block.language in LANGUAGES + OUTPUT_LANGUAGES, (
        f"{block.where}: a ```{block.language} block is not checked; use one of {LANGUAGES} "
        f"for what a reader runs, or {OUTPUT_LANGUAGES} for output")


@pytest.mark.parametrize("command", COMMANDS, ids=_id)
def test_every_command_is_checked(command):
    program, argv = command.program, command.argv
    if program == "python3":
        assert argv[1:3] == ["-m", "venv"], f"{command.block.where}: {command.text}"
    elif program == "pip":
        check_pip_install(command)
    elif program == "tox":
        check_tox(command)
    elif program == "mkdocs":
        # the build itself: tests/test_docs.py::test_site_builds_with_warnings_as_errors
        assert argv[1:] in (["build", "--strict"], ["serve"]), command.text
    elif program == "python" and argv[1:2] == ["benchmarks/paper_scale.py"]:
        check_paper_scale(command)
    elif program == "dask":
        check_dask(command)
    else:
        assert program == "pytest", (
            f"{command.block.where}: {command.text!r}: tests/integration/test_readme.py does "
            "not know how to check this command")


def check_paper_scale(command: Command) -> None:
    """The paper-scale script's own parser takes the arguments (nothing is run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("paper_scale",
                                                  ROOT / "benchmarks" / "paper_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.parse_args(command.argv[2:])


def check_dask(command: Command) -> None:
    """``dask scheduler|worker``: the subcommand exists and knows every option given."""
    dask = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))
    if not Path(dask).exists():
        pytest.skip("the dask command comes with the dask extra")
    argv = command.argv
    assert argv[1] in ("scheduler", "worker"), command.text
    help_text = subprocess.run([dask, argv[1], "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    for option in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
        assert option in help_text, f"{command.block.where}: dask {argv[1]} has no {option}"


def check_pip_install(command: Command) -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11+)")
    extras_defined = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    argv = command.argv
    assert argv[1] == "install", command.text
    target = argv[-1]
    assert target.startswith("."), f"{command.text}: installs {target!r}, not this project"
    for extra in re.findall(r"\[([^\]]*)\]", target)[0].split(",") if "[" in target else []:
        assert extra in extras_defined, f"{command.block.where}: no extra {extra!r}"


def check_tox(command: Command) -> None:
    argv = command.argv
    if "-e" in argv:
        env = argv[argv.index("-e") + 1]
        assert f"[testenv:{env}]" in (ROOT / "tox.ini").read_text(), command.text


def test_tolerance_examples_are_accepted_by_the_parser():
    """Every --mlpval-compare-tolerance on the pages parses (force_rmse:0.005eV did not)."""
    from pytest_mlpval.baseline import parse_tolerance

    found = [arg.split("=", 1)[1] for c in COMMANDS for arg in c.argv
             if arg.startswith("--mlpval-compare-tolerance=")]
    assert found
    for text in found:
        parse_tolerance(text)


# --- pytest commands --------------------------------------------------------------------

@pytest.mark.parametrize("command", PYTEST_COMMANDS, ids=_id)
def test_pytest_command_collects(command, collected):
    if not command.argv[1:]:
        # `pytest` in the repository: our own suite, which is what runs this test; its
        # collection is proved by this very run
        assert Path(__file__).is_relative_to(ROOT / "tests")
        return
    if command.text not in collected:
        pytest.skip("the silicon suite's default potential needs quippy-ase (gap extra)")
    result = collected[command.text]
    expected = [rc for part, rc in RUN_FULLY.items() if part in command.text]
    assert result["rc"] == (expected[0] if expected else 0), (
        f"{command.block.where}: {command.text}\n{result['out'][-3000:]}")
    if expected:  # ran fully: the tests ran and their failures are tables, not errors
        assert re.search(r"\d+ (passed|failed)", result["out"]), result["out"][-2000:]
        assert " error" not in result["out"].splitlines()[-1], result["out"][-2000:]
    else:
        assert re.search(r"\d+(/\d+)? tests? collected", result["out"]), result["out"][-2000:]


@pytest.mark.slow
@needs_quippy
@pytest.mark.parametrize("command", [c for c in PYTEST_COMMANDS if len(c.argv) > 1], ids=_id)
def test_pytest_command_runs_fully(command, tmp_path):
    """The long runs: the silicon suite as the pages show it (8-20 minutes each the first
    time on 2 cores). Stillinger-Weber, or the GAP under a name its known failures do not
    follow, fails tests (exit 1); anything else (usage error, crash) fails here."""
    scratch_suite(tmp_path)
    argv, cwd = prepared(command, tmp_path)
    _seed_baseline(argv, tmp_path)
    result = run_pytest([*argv, "-o", f"cache_dir={tmp_path / 'cache'}"], cwd, 3600)
    out = result.stdout + result.stderr
    assert result.returncode in (0, 1), f"{command.block.where}: {command.text}\n{out[-3000:]}"
    if "--potential" not in command.text:
        assert result.returncode == 0, out[-3000:]


# --- Python examples --------------------------------------------------------------------

@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.where)
def test_python_example_compiles(block):
    compile(block.text, block.where, "exec")


@needs_quippy
def test_python_test_modules_collect(tmp_path):
    """The example test modules, side by side in a suite with the silicon data: an unknown
    name, import or marker fails their collection."""
    suite = scratch_suite(tmp_path)
    for item in suite.glob("test_*.py"):
        item.unlink()
    modules = {}
    for n, block in enumerate(b for b in PYTHON_BLOCKS if _is_test_module(b)):
        name = f"test_doc_{n}_{block.path.stem.replace('-', '_')}_{block.line}.py"
        (suite / name).write_text(block.text)
        modules[name] = block
    assert len(modules) >= 4
    result = run_pytest([str(suite), "--collect-only", "-q", "-p", "no:benchmark"],
                        tmp_path, 120)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    for name, block in modules.items():
        assert f"{name}::" in out, f"{block.where}: collected no test\n{out[-3000:]}"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.where)
def test_python_example_imports_exist(block):
    """Every name an example imports from pytest_mlpval exists (the scripts themselves
    run in the slow test below)."""
    import ast
    import importlib

    for node in ast.walk(ast.parse(block.text)):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "pytest_mlpval":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert alias.name == "*" or hasattr(module, alias.name), (
                    f"{block.where}: {node.module} has no {alias.name!r}")


@pytest.mark.slow
@needs_quippy
@pytest.mark.parametrize("block", [b for b in PYTHON_BLOCKS if not _is_test_module(b)],
                         ids=lambda b: b.where)
def test_python_script_runs(block, tmp_path):
    """The scripts, run as written with the bundled GAP (about 45 s on a loaded 2-core
    machine, 2026-12-06: GAP predictions on the 25 test structures)."""
    text = block.text
    for placeholder, real in PYTHON_PLACEHOLDERS.items():
        text = text.replace(placeholder, real)
    script = tmp_path / "example.py"
    script.write_text(text)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, f"{block.where}\n{result.stdout}{result.stderr}"
