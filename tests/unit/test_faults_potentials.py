"""Faulty candidates at load time: a malformed GAP or a loader that ends the process is a
clear error naming the file (a usage error in pytest), never a dead run; the versions of
the loading libraries are part of a potential's identity."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import GAP_XML, HAVE_XDIST, needs_quippy
from pytest_mlpval import loader_probe
from pytest_mlpval.potentials import (
    PotentialLoadError,
    PotentialSpecError,
    load_potential,
    parse_potential_spec,
)

GAP_DIR = GAP_XML.parent
SPARSE = sorted(p.name for p in GAP_DIR.glob(f"{GAP_XML.name}.sparseX.*"))  # 2b, SOAP
FIRST_E0 = '<e0 Z="14" value="-.79530000000000001"/>'
PERMUTATION = '<permutation i="1">1  </permutation>'


@pytest.fixture(autouse=True)
def isolated_probes(tmp_path, monkeypatch):
    """No probe result from other tests or earlier runs, none written to the real home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(loader_probe, "_PASSED", {})


def gap_copy(folder: Path, xml_edit=None, sparse_edit=None) -> Path:
    """The bundled GAP copied to ``folder``; ``xml_edit(text) -> text`` changes the XML,
    ``sparse_edit(folder)`` the sparseX files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SPARSE:
        shutil.copy(GAP_DIR / name, folder / name)
    text = GAP_XML.read_text()
    (folder / GAP_XML.name).write_text(xml_edit(text) if xml_edit else text)
    if sparse_edit:
        sparse_edit(folder)
    return folder / GAP_XML.name


def sub(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def no_md5(text: str) -> str:
    return re.sub(r' sparseX_md5sum="[0-9a-f]*"', "", text)


def rewrite(which: int, keep: int | None = None, words: str | None = None):
    """Replace sparseX file ``which`` by its first ``keep`` numbers, or by ``words``."""
    def edit(folder: Path) -> None:
        path = folder / SPARSE[which]
        numbers = (GAP_DIR / SPARSE[which]).read_text().split()
        path.write_text(words if words is not None else "\n".join(numbers[:keep]) + "\n")
    return edit


# (id, XML edit, sparseX edit, what the message must say). Unless noted, quippy 0.10 on
# the unchecked file ends the process: "Fortran runtime error" (exit status 2), an abort
# (double free, corrupted size) or a segfault; "garbage": it loads and gives wrong or NaN
# energies.
CORRUPTIONS = [
    ("n_sparseX-not-a-number", sub('n_sparseX="20"', 'n_sparseX="abc"'), None,
     r"<gpCoordinates \w+> n_sparseX='abc' is not a positive integer \(quippy would end"),
    ("n_sparseX-empty", sub('n_sparseX="20"', 'n_sparseX=""'), None,
     r"n_sparseX='' is not a positive integer"),
    ("n_sparseX-too-small", sub('n_sparseX="20"', 'n_sparseX="15"'), None,  # abort
     r"n_sparseX=15 but it holds 20 <sparseX> elements"),
    ("n_sparseX-too-large", sub('n_sparseX="20"', 'n_sparseX="25"'), None,  # garbage
     r"n_sparseX=25 but it holds 20 <sparseX> elements"),
    ("dimensions-not-a-number", sub('dimensions="181"', 'dimensions="x"'), None,
     r"dimensions='x' is not a positive integer"),
    ("dimensions-zero", sub('dimensions="181"', 'dimensions="0"'), None,  # garbage
     r"dimensions='0' is not a positive integer"),
    ("dimensions-too-large", sub('dimensions="181"', 'dimensions="200"'), None,  # abort
     rf"sparseX file {re.escape(SPARSE[1])} holds 144800 numbers, the XML says n_sparseX x "
     r"dimensions = 800 x 200 = 160000"),
    ("signal_variance-word", sub('signal_variance="10.000000000000000"',
                                 'signal_variance="ten"'), None,
     r"signal_variance='ten' is not a finite number"),
    ("signal_variance-overflow", sub('signal_variance="10.000000000000000"',
                                     'signal_variance="1e400"'), None,  # NaN energies
     r"signal_variance='1e400' is not a finite number"),
    ("zeta-word", sub('zeta="4.0000000000000000"', 'zeta="four"'), None,
     r"zeta='four' is not a finite number"),
    ("covariance_type-word", sub('covariance_type="1"', 'covariance_type="q"'), None,
     r"covariance_type='q' is not an integer"),
    ("n_permutations-word", sub('n_permutations="1"', 'n_permutations="w"'), None,
     r"n_permutations='w' is not a positive integer"),
    ("n_permutations-too-large", sub('n_permutations="1"', 'n_permutations="2"'), None,
     r"n_permutations=2 but it holds 1 <permutation> elements"),  # segfault
    ("sparsified-word", sub('sparsified="T"', 'sparsified="maybe"'), None,
     r"sparsified='maybe' is not T or F"),
    ("n_coordinate-word", sub('n_coordinate="2"', 'n_coordinate="two"'), None,
     r"<gpSparse \w+> n_coordinate='two' is not a positive integer"),
    ("alpha-word", sub('alpha="10422.418338504007"', 'alpha="zzz"'), None,
     r"<sparseX 1> alpha='zzz' is not a finite number"),
    ("sparseX-i-word", sub('<sparseX i="1" ', '<sparseX i="one" '), None,
     r"i='one' is not a positive integer"),
    ("e0-value-word", sub(FIRST_E0, FIRST_E0.replace("-.79530000000000001", "foo")), None,
     r"<e0> value='foo' is not a finite number"),
    ("e0-Z-symbol", sub(FIRST_E0, FIRST_E0.replace('Z="14"', 'Z="Si"')), None,
     r"<e0> Z='Si' is not an integer"),
    ("theta-word", sub("<theta>  0.10000000000000000E+001 </theta>", "<theta> abc </theta>"),
     None, r"<theta> holds 'abc', not a finite number"),  # unreadable quippy error
    ("permutation-word", sub(PERMUTATION, PERMUTATION.replace(">1 ", ">x ")), None,
     r"<permutation 1> holds 'x'"),
    ("descriptor-cutoff-word", sub("distance_2b cutoff=5.0", "distance_2b cutoff=abc"), None,
     r"<descriptor> distance_2b: cutoff='abc' is not a finite number"),
    ("descriptor-Z-out-of-range", sub("Z1=14 Z2=14", "Z1=200 Z2=14"), None,  # ValueError
     r"Z1='200' is not an atomic number \(1-118\)"),
    ("label-mismatch", sub('<GAP_params label="GAP_2026_11_26_0_1_31_40_561"',
                           '<GAP_params label="OTHER"'), None,
     r"<Potential> asks for GAP label=GAP_2026_11_26_0_1_31_40_561 but the <GAP_params> are "
     r"labelled 'OTHER'"),
    ("truncated-xml", None,
     lambda folder: (folder / GAP_XML.name).write_bytes(GAP_XML.read_bytes()[:100_000]),
     r"is not well-formed XML"),
    ("sparseX-file-missing", None, lambda folder: (folder / SPARSE[0]).unlink(),
     rf"refers to '{re.escape(SPARSE[0])}', which is not beside it"),
    ("sparseX-file-truncated", None, rewrite(0, keep=10),  # quippy: load-time error
     rf"sparseX file {re.escape(SPARSE[0])} does not match the md5 sum recorded in the XML"),
    ("sparseX-file-empty", None, rewrite(1, words=""),
     r"does not match the md5 sum recorded in the XML"),
    ("sparseX-too-few-numbers-no-md5", no_md5, rewrite(1, keep=1000),  # NaN energies
     r"holds 1000 numbers, the XML says n_sparseX x dimensions = 800 x 181 = 144800"),
    ("sparseX-words-no-md5", no_md5, rewrite(0, words="a\n" * 20),  # garbage
     r"sparseX file \S+: value 1 is b'a', not a finite number"),
]


@pytest.mark.parametrize("xml_edit, sparse_edit, message",
                         [c[1:] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_gap_is_a_spec_error_naming_file_and_fault(tmp_path, monkeypatch, xml_edit,
                                                           sparse_edit, message):
    xml = gap_copy(tmp_path / "model", xml_edit, sparse_edit)
    monkeypatch.setattr(loader_probe, "probe", None)  # found before any probe: no subprocess
    with pytest.raises(PotentialSpecError) as info:
        parse_potential_spec(f"bad={xml}")
    assert isinstance(info.value, ValueError)  # options.resolve: a usage error (exit 4)
    text = str(info.value)
    assert str(xml) in text
    assert re.search(message, text), text
    with pytest.raises(PotentialSpecError, match=re.escape(str(xml))):
        load_potential(str(xml))


def test_valid_gap_variants_pass_the_checks(tmp_path, monkeypatch):
    """Fortran spellings quippy reads (1.0D0, .true., no md5 sum) are not rejected."""
    edit = sub('signal_variance="10.000000000000000"', 'signal_variance="1.0D1"')
    xml = gap_copy(tmp_path / "model",
                   lambda text: no_md5(edit(text)).replace('sparsified="T"',
                                                           'sparsified=".true."'))
    from pytest_mlpval.gap_xml import check_gap_xml

    files, _root = check_gap_xml(xml)
    assert [f.name for f in files] == [GAP_XML.name, *SPARSE]


FAKE_QUIPPY = """
import os, sys

class Potential:
    def __init__(self, param_filename=None, **kwargs):
        sys.stderr.write("At line 4707 of file ../src/GAP/gp_predict.F90\\n"
                         "Fortran runtime error: Bad integer for item 1 in list input\\n")
        sys.stderr.flush()
        os._exit(2)
"""


def test_gap_whose_loader_ends_the_process_is_a_spec_error(tmp_path, monkeypatch):
    """A fault the static checks miss: quippy (here a stand-in that exits like its Fortran
    parser, status 2) ends the probe, not this process."""
    fake = tmp_path / "fake"
    (fake / "quippy").mkdir(parents=True)
    (fake / "quippy" / "__init__.py").write_text("")
    (fake / "quippy" / "potential.py").write_text(FAKE_QUIPPY)
    monkeypatch.syspath_prepend(str(fake))  # the probe inherits sys.path; quippy is loaded here
    xml = gap_copy(tmp_path / "model", lambda text: text + "\n<!-- fake quippy -->\n")
    with pytest.raises(PotentialSpecError) as info:
        parse_potential_spec(str(xml))
    text = str(info.value)
    assert text.startswith(f"{xml}: quippy cannot load this GAP: loading it in a subprocess")
    assert "ended the process with exit status 2" in text
    assert "Fortran runtime error: Bad integer for item 1 in list input" in text


@needs_quippy
def test_gap_quippy_rejects_is_a_spec_error(tmp_path):
    bad = gap_copy(tmp_path / "bad", sub("distance_2b cutoff", "distance_3x cutoff"))
    with pytest.raises(PotentialSpecError, match=r"(?s)raised while loading.*"
                                                 r"descriptor_initialise found 0 IP Model"):
        parse_potential_spec(str(bad))


@needs_quippy
def test_gap_is_probed_once_per_content(tmp_path, monkeypatch):
    good = gap_copy(tmp_path / "good")
    started = []
    real_popen = subprocess.Popen

    def counted(*args, **kwargs):
        started.append(args)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counted)
    parse_potential_spec(str(good))
    parse_potential_spec(f"again={good}")  # remembered for this content and quippy
    assert len(started) == 1
    monkeypatch.setattr(loader_probe, "_PASSED", {})  # as in a new process
    parse_potential_spec(str(good))  # from the disk cache
    assert len(started) == 1
    assert len(list((tmp_path / "xdg-cache" / "pytest-mlpval" / "probes").iterdir())) == 1


DYING_FACTORIES = """
import os, signal, time

def segfault():
    os.kill(os.getpid(), signal.SIGSEGV)

def hang():
    time.sleep(60)
"""


@pytest.mark.parametrize("spec, how", [
    ("pytest_mlpval.testing:faulty_die_at_0", "ended the process with exit status 3, "
                                              "printing nothing"),
    ("dying_factories_mlpval:segfault", "was killed by signal 11 (SIGSEGV)"),
])
def test_factory_that_ends_the_process_is_a_load_error(tmp_path, monkeypatch, spec, how):
    (tmp_path / "dying_factories_mlpval.py").write_text(DYING_FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PotentialLoadError) as info:
        load_potential(spec)
    text = str(info.value)
    assert text.startswith(f"{spec!r}: loading it and computing one energy in a subprocess")
    assert how in text
    assert "would have ended the test run" in text


def test_probe_of_a_hanging_factory_times_out(tmp_path, monkeypatch):
    (tmp_path / "dying_factories_mlpval.py").write_text(DYING_FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = loader_probe.probe("dying_factories_mlpval:hang", tmp_path, timeout_s=1.0)
    assert result.timed_out and not result.ok and not result.died
    assert result.describe().startswith("did not finish in 1 s")


def test_factory_faults_that_do_not_end_the_process_still_load():
    """Only a dead probe is an error: a calculator that raises later fails its tests."""
    potential = load_potential("pytest_mlpval.testing:faulty_raise_at_0")
    assert potential.info.loader == "factory"


def test_loader_versions_are_recorded_and_stable():
    from importlib.metadata import version

    sw = parse_potential_spec("sw").info
    assert dict(sw.loader_versions) == {"matscipy": version("matscipy")}
    assert parse_potential_spec("other=SW").info.loader_versions == sw.loader_versions
    factory = "pytest_mlpval.testing:sw_shifted"
    parsed = parse_potential_spec(factory).info.loader_versions
    assert parsed == {"pytest-mlpval": version("pytest-mlpval")}
    loaded = load_potential(factory).info
    assert loaded.loader_versions == {**parsed, "ase": version("ase")}  # its base class
    assert load_potential(factory).info.loader_versions == loaded.loader_versions
    document = json.loads(json.dumps(loaded.as_dict()))
    assert document["loader_versions"] == dict(loaded.loader_versions)


@needs_quippy
def test_gap_loader_versions_name_quippy():
    from importlib.metadata import version

    info = parse_potential_spec(str(GAP_XML), probe=False).info
    assert dict(info.loader_versions) == {"quippy-ase": version("quippy-ase")}


PLAIN_TEST = "def test_calc(mlpval_calculator):\n    pass\n"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_malformed_gap_is_a_usage_error_not_a_dead_run(pytester, workers):
    if workers and not HAVE_XDIST:
        pytest.skip("needs pytest-xdist")
    gap_copy(pytester.path, sub('n_sparseX="20"', 'n_sparseX="abc"'))
    pytester.makepyfile(test_x=PLAIN_TEST)
    result = pytester.runpytest_subprocess("-p", "no:benchmark", *workers,
                                           f"--potential={GAP_XML.name}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: --potential/--mlpval-potential='{GAP_XML.name}': */{GAP_XML.name}: "
        "<gpCoordinates *> n_sparseX='abc' is not a positive integer (quippy would end the "
        "process reading it)"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_factory_that_dies_errors_its_tests_not_the_run(pytester, workers):
    if workers and not HAVE_XDIST:
        pytest.skip("needs pytest-xdist")
    pytester.makepyfile(test_x=PLAIN_TEST + textwrap.dedent("""
        def test_without_potential():
            pass
    """))
    result = pytester.runpytest_subprocess("-p", "no:benchmark", *workers,
                                           "--potential=pytest_mlpval.testing:faulty_die_at_0")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["E *PotentialLoadError: *'pytest_mlpval.testing:"
                                 "faulty_die_at_0': loading it and computing one energy in a "
                                 "subprocess first (a probe) ended the process with exit "
                                 "status 3, printing nothing"])
