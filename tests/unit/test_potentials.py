"""Unit tests of pytest_mlpval.potentials: spec parsing, hashing, loading."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pytest_mlpval import potentials
from pytest_mlpval.potentials import (
    Potential,
    PotentialInfo,
    PotentialLoadError,
    PotentialSpecError,
    is_calculator,
    load_potential,
    parse_potential_spec,
    sha256_file,
)

ROOT = Path(__file__).resolve().parents[2]
GAP_DIR = ROOT / "example_suites" / "silicon" / "potential"
GAP_XML = GAP_DIR / "gap_si_mlearn.xml"
SPARSE = sorted(p.name for p in GAP_DIR.glob("gap_si_mlearn.xml.sparseX.*"))

needs_quippy = pytest.mark.skipif(importlib.util.find_spec("quippy") is None,
                                  reason="needs quippy-ase (gap extra)")


def diamond(a=5.431, cubic=False):
    from ase.build import bulk

    return bulk("Si", "diamond", a=a, cubic=cubic)


def rattled(seed=1):
    atoms = diamond(5.43, cubic=True)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.05,
                                                          size=atoms.positions.shape)
    return atoms


@pytest.fixture(autouse=True)
def probe_cache(tmp_path, monkeypatch):
    """GAP probes remember their successes under a temporary folder, not the home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def gap_copy(tmp_path) -> Path:
    """The bundled GAP (XML and sparseX files) copied to tmp_path/model/."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in [GAP_XML.name, *SPARSE]:
        shutil.copy(GAP_DIR / name, folder / name)
    return folder / GAP_XML.name


def test_bundled_gap_has_two_sparse_files():
    assert GAP_XML.is_file()
    assert len(SPARSE) == 2


# --- built-ins --------------------------------------------------------------------------

@pytest.mark.parametrize("raw, name, spec", [
    ("sw", "sw", "sw"),
    ("SW", "sw", "SW"),
    ("  tersoff ", "tersoff", "tersoff"),
    ("ref=sw", "ref", "sw"),
    ("my.ref-1=Tersoff", "my.ref-1", "Tersoff"),
])
def test_parse_builtin(raw, name, spec):
    parsed = parse_potential_spec(raw)
    assert parsed.info.name == name
    assert parsed.info.spec == spec
    assert parsed.info.loader == "builtin"
    assert parsed.info.files == ()
    assert parsed.make is not None
    assert len(parsed.info.sha256) == 64
    assert parsed.info.species == ("Si",)


def test_builtin_digests_differ_and_are_stable():
    sw1, sw2 = parse_potential_spec("sw").info, parse_potential_spec("a=SW").info
    tersoff = parse_potential_spec("tersoff").info
    assert sw1.sha256 == sw2.sha256
    assert sw1.sha256 != tersoff.sha256


def test_sw_cohesive_energy():
    # Stillinger-Weber: diamond Si at a = 5.431 Å has E = -2 epsilon = -2 x 2.1683 eV/atom
    pot = load_potential("sw")
    assert isinstance(pot, Potential) and pot.name == "sw"
    atoms = diamond()
    atoms.calc = pot.calculator
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(-4.3366, abs=2e-4)
    assert np.abs(atoms.get_forces()).max() < 1e-8


def test_tersoff_cohesive_energy():
    # Tersoff (1989) Si: -4.63 eV/atom in diamond at a = 5.432 Å
    atoms = diamond()
    atoms.calc = load_potential("tersoff").calculator
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(-4.63, abs=5e-3)
    atoms.get_stress()  # no warning escapes (filterwarnings=error)


def test_builtin_calculators_are_fresh():
    a, b = load_potential("sw").calculator, load_potential("sw").calculator
    assert a is not b


# --- bad specs ----------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["", "   ", "name=", "name=   "])
def test_empty_spec(raw):
    with pytest.raises(PotentialSpecError):
        parse_potential_spec(raw)


def test_unknown_spec(tmp_path):
    with pytest.raises(PotentialSpecError, match=r"'nonsense'.*sw, tersoff") as info:
        parse_potential_spec("nonsense", base_dir=tmp_path)
    assert info.value.unknown is True  # a hook may still know it
    with pytest.raises(PotentialSpecError):
        load_potential("nonsense", base_dir=tmp_path)


# --- GAP specs ----------------------------------------------------------------------------

def test_gap_missing_file(tmp_path):
    with pytest.raises(PotentialSpecError, match="not found.*missing.xml") as info:
        parse_potential_spec("missing.xml", base_dir=tmp_path)
    assert info.value.unknown is False  # a definite fault


def test_gap_malformed_xml(tmp_path):
    (tmp_path / "bad.xml").write_text("<GAP_params><unclosed></GAP_params>")
    with pytest.raises(PotentialSpecError, match="not well-formed"):
        parse_potential_spec("bad.xml", base_dir=tmp_path)


def test_xml_not_a_gap(tmp_path):
    (tmp_path / "other.xml").write_text("<config><item value='1'/></config>")
    with pytest.raises(PotentialSpecError, match="not a GAP model"):
        parse_potential_spec("other.xml", base_dir=tmp_path)


def test_gap_sparse_file_missing(gap_copy):
    (gap_copy.parent / SPARSE[1]).unlink()
    with pytest.raises(PotentialSpecError, match=SPARSE[1].replace(".", r"\.")):
        parse_potential_spec(str(gap_copy))


def test_gap_without_quippy(monkeypatch):
    real = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        if name == "quippy" or name.startswith("quippy."):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(potentials.importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(PotentialSpecError, match="quippy is not installed.*gap"):
        parse_potential_spec(str(GAP_XML))
    with pytest.raises(PotentialSpecError, match="quippy"):
        load_potential(str(GAP_XML))


@needs_quippy
def test_gap_info_and_digests():
    info = parse_potential_spec(str(GAP_XML)).info
    assert info.loader == "gap"
    assert info.name == "gap_si_mlearn"
    assert info.files == tuple(str(GAP_DIR / n) for n in [GAP_XML.name, *SPARSE])
    assert set(info.file_sha256) == {GAP_XML.name, *SPARSE}
    for name, digest in info.file_sha256.items():
        assert digest == hashlib.sha256((GAP_DIR / name).read_bytes()).hexdigest()
    # the model digest covers all three files, and is none of them alone
    assert info.sha256 not in info.file_sha256.values()
    assert info.as_dict()["files"] == list(info.files)
    assert parse_potential_spec(f"g={GAP_XML}").info.name == "g"
    assert info.species == ("Si",)  # from the descriptors' Z=14


@needs_quippy
def test_gap_digest_is_content_addressed(gap_copy):
    bundled = parse_potential_spec(str(GAP_XML)).info
    copy = parse_potential_spec(str(gap_copy)).info
    assert copy.sha256 == bundled.sha256  # same bytes elsewhere: same model
    assert copy.files[0] == str(gap_copy.resolve())


@needs_quippy
@pytest.mark.parametrize("which", [0, 1])
def test_gap_digest_changes_with_sparse_file(gap_copy, which):
    # no md5 sums in the XML, so that a changed number passes the checks
    gap_copy.write_text(re.sub(r' sparseX_md5sum="[0-9a-f]*"', "", gap_copy.read_text()))
    before = parse_potential_spec(str(gap_copy), probe=False).info
    sparse = gap_copy.parent / SPARSE[which]
    numbers = sparse.read_text().split()
    sparse.write_text("\n".join(["1.5", *numbers[1:]]) + "\n")
    after = parse_potential_spec(str(gap_copy), probe=False).info
    assert after.sha256 != before.sha256
    assert after.file_sha256[SPARSE[which]] != before.file_sha256[SPARSE[which]]
    assert after.file_sha256[GAP_XML.name] == before.file_sha256[GAP_XML.name]
    assert after.file_sha256[SPARSE[which]] == sha256_file(sparse)


@needs_quippy
def test_gap_digest_changes_with_xml(gap_copy):
    before = parse_potential_spec(str(gap_copy), probe=False).info.sha256
    with open(gap_copy, "a") as handle:
        handle.write("\n<!-- edited -->\n")
    assert parse_potential_spec(str(gap_copy), probe=False).info.sha256 != before


@needs_quippy
def test_gap_relative_spec_against_base_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parsed = parse_potential_spec("gap=gap_si_mlearn.xml", base_dir=GAP_DIR)
    assert parsed.info.files[0] == str(GAP_XML)
    with pytest.raises(PotentialSpecError, match="not found"):
        parse_potential_spec("gap_si_mlearn.xml")  # relative to the cwd: absent


@pytest.fixture(scope="module")
def gap_absolute():
    if importlib.util.find_spec("quippy") is None:
        pytest.skip("needs quippy-ase (gap extra)")
    return load_potential(str(GAP_XML))


@needs_quippy
def test_gap_loads_from_other_cwd_with_relative_path(gap_absolute, tmp_path, monkeypatch):
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = os.path.relpath(GAP_XML, elsewhere)
    assert not os.path.isabs(relative)
    pot = load_potential(relative)
    assert Path.cwd() == elsewhere  # the loader restored the working directory
    assert pot.info.sha256 == gap_absolute.info.sha256
    assert pot.info.loader == "gap"
    for seed in (1, 2):
        a, b = rattled(seed), rattled(seed)
        a.calc, b.calc = pot.calculator, gap_absolute.calculator
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(),
                                                         rel=1e-12, abs=1e-10)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-10)


@needs_quippy
def test_gap_copy_loads_with_base_dir(gap_absolute, gap_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sparseX files are not in the cwd
    pot = load_potential("copy=gap_si_mlearn.xml", base_dir=gap_copy.parent)
    assert pot.name == "copy"
    assert Path.cwd() == tmp_path
    a, b = rattled(), rattled()
    a.calc, b.calc = pot.calculator, gap_absolute.calculator
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-10)
    # a silicon GAP fitted to DFT: energy per atom far from an empirical model's zero
    assert -6.0 < a.get_potential_energy() / len(a) < -5.0


# --- module:factory -----------------------------------------------------------------------

def test_factory_spec():
    parsed = parse_potential_spec("pytest_mlpval.testing:sw_shifted")
    assert parsed.info.loader == "factory"
    assert parsed.info.name == "sw_shifted"
    assert parsed.info.sha256 is None  # code has no content hash
    assert parsed.info.files == ()
    pot = load_potential("shifted=pytest_mlpval.testing:sw_shifted")
    assert pot.name == "shifted"
    atoms = diamond()
    atoms.calc = pot.calculator
    assert atoms.get_potential_energy() / 2 == pytest.approx(-4.3366 + 0.010, abs=2e-4)


@pytest.mark.parametrize("raw", ["no_such_module_mlpval:factory",
                                 "no_such_pkg_mlpval.sub:factory"])
def test_factory_missing_module(raw):
    with pytest.raises(PotentialSpecError, match="cannot import"):
        parse_potential_spec(raw)


@pytest.mark.parametrize("raw", [":factory", "pytest_mlpval.testing:"])
def test_factory_incomplete(raw):
    with pytest.raises(PotentialSpecError, match="package.module:factory"):
        parse_potential_spec(raw)


def test_factory_not_a_calculator():
    parse_potential_spec("pytest_mlpval.testing:not_a_calculator")  # cheap checks pass
    with pytest.raises(PotentialLoadError, match="int 42.*not an ASE calculator"):
        load_potential("pytest_mlpval.testing:not_a_calculator")


def test_factory_missing_attribute():
    with pytest.raises(PotentialLoadError, match="no_such_factory"):
        load_potential("pytest_mlpval.testing:no_such_factory")


def test_factory_not_callable():
    with pytest.raises(PotentialLoadError, match="not callable"):
        load_potential("pytest_mlpval.potentials:ENTRY_POINT_GROUP")


def test_factory_raising_is_wrapped():
    # PerturbedCalculator needs a base calculator: calling it bare raises TypeError
    with pytest.raises(PotentialLoadError, match="loading .*PerturbedCalculator.*TypeError"):
        load_potential("pytest_mlpval.testing:PerturbedCalculator")


# --- other files and the fallback (pytest hook) -------------------------------------------

def test_unknown_model_file_needs_a_loader(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    parsed = parse_potential_spec("model.pt", base_dir=tmp_path)
    assert parsed.make is None
    assert parsed.info.loader == "hook"
    assert parsed.info.name == "model"
    assert parsed.info.file_sha256 == {"model.pt": hashlib.sha256(b"weights").hexdigest()}
    with pytest.raises(PotentialLoadError, match="no loader accepted"):
        load_potential("model.pt", base_dir=tmp_path)


def test_fallback_loads_a_file(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    calc = load_potential("sw").calculator
    asked = []

    def fallback(spec):
        asked.append(spec)
        return calc if spec.endswith(".pt") else None

    pot = load_potential("mine=model.pt", base_dir=tmp_path, fallback=fallback)
    assert asked == [str(model.resolve())]  # the spec without NAME=, as an absolute path
    assert pot.calculator is calc
    assert pot.name == "mine"
    assert pot.info.loader == "hook"
    assert pot.info.files == (str(model.resolve()),)
    assert pot.info.file_sha256 == {"model.pt": hashlib.sha256(b"weights").hexdigest()}
    assert pot.info.sha256 is not None
    model.write_bytes(b"other weights")
    again = load_potential("mine=model.pt", base_dir=tmp_path, fallback=fallback)
    assert again.info.sha256 != pot.info.sha256


def test_fallback_without_file_has_no_digest(tmp_path):
    calc = load_potential("sw").calculator
    pot = load_potential("remote-model", base_dir=tmp_path, fallback=lambda spec: calc)
    assert pot.info.sha256 is None and pot.info.files == ()
    assert pot.name == "remote-model"


def test_fallback_declining_falls_through(tmp_path):
    pot = load_potential("sw", base_dir=tmp_path, fallback=lambda spec: None)
    assert pot.info.loader == "builtin"
    with pytest.raises(PotentialSpecError):
        load_potential("nonsense", base_dir=tmp_path, fallback=lambda spec: None)


def test_fallback_returning_garbage(tmp_path):
    with pytest.raises(PotentialLoadError, match="not an ASE calculator"):
        load_potential("thing", base_dir=tmp_path, fallback=lambda spec: "not a calc")


# --- entry-point loaders -------------------------------------------------------------------

class FakeEntryPoint:
    def __init__(self, name, loader):
        self.name = name
        self._loader = loader
        self.loaded = 0

    def load(self):
        self.loaded += 1
        return self._loader


def test_entry_point_loader(monkeypatch, tmp_path):
    calc = load_potential("sw").calculator
    seen = []

    def loader(arg):
        seen.append(arg)
        return calc

    ep = FakeEntryPoint("fake", loader)
    monkeypatch.setattr(potentials, "_entry_point_loaders", lambda: {"fake": ep})
    model = tmp_path / "weights.bin"
    model.write_bytes(b"abc")
    parsed = parse_potential_spec("fake:weights.bin", base_dir=tmp_path)
    assert parsed.info.loader == "entry-point:fake"
    assert parsed.info.name == "weights"
    assert parsed.info.file_sha256 == {"weights.bin": hashlib.sha256(b"abc").hexdigest()}
    assert ep.loaded == 0  # parsing does not import the loader
    pot = load_potential("named=fake:weights.bin", base_dir=tmp_path)
    assert pot.calculator is calc
    assert pot.name == "named"
    assert seen == [str(model.resolve())]  # a file is handed over as an absolute path
    assert ep.loaded == 1


def test_entry_point_loader_without_file(monkeypatch):
    calc = load_potential("sw").calculator
    ep = FakeEntryPoint("hub", lambda arg: calc)
    monkeypatch.setattr(potentials, "_entry_point_loaders", lambda: {"hub": ep})
    info = parse_potential_spec("hub:org/model-v2").info
    assert info.sha256 is None and info.files == ()
    assert info.name == "model-v2"
    assert load_potential("hub:org/model-v2").calculator is calc


def test_entry_point_loader_errors(monkeypatch):
    def broken(arg):
        raise RuntimeError("download failed")

    monkeypatch.setattr(potentials, "_entry_point_loaders", lambda: {
        "broken": FakeEntryPoint("broken", broken),
        "number": FakeEntryPoint("number", lambda arg: 3.0)})
    with pytest.raises(PotentialLoadError, match="broken:x.*RuntimeError: download failed"):
        load_potential("broken:x")
    with pytest.raises(PotentialLoadError, match="not an ASE calculator"):
        load_potential("number:x")


def test_unknown_spec_lists_entry_points(monkeypatch, tmp_path):
    monkeypatch.setattr(potentials, "_entry_point_loaders",
                        lambda: {"zeta": FakeEntryPoint("zeta", None)})
    with pytest.raises(PotentialSpecError, match="entry points: zeta"):
        parse_potential_spec("nonsense", base_dir=tmp_path)


def test_real_entry_point_group_is_queried():
    assert isinstance(potentials._entry_point_loaders(), dict)


# --- helpers ------------------------------------------------------------------------------

def test_is_calculator():
    from ase.calculators.emt import EMT

    assert is_calculator(EMT())
    assert is_calculator(load_potential("sw").calculator)
    assert not is_calculator(42)
    assert not is_calculator(object())

    class DuckCalc:
        results = {}

        def calculate(self, *args):
            pass

    assert is_calculator(DuckCalc())


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000  # over one read chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_potential_info_as_dict():
    info = PotentialInfo("n", "s", "builtin", ("a",), "d", {"a": "x"})
    d = info.as_dict()
    assert {k: d[k] for k in ("name", "spec", "loader", "files", "sha256", "file_sha256")} \
        == {"name": "n", "spec": "s", "loader": "builtin", "files": ["a"], "sha256": "d",
            "file_sha256": {"a": "x"}}
    assert d["files"] is not info.files  # a JSON-ready list, not the tuple
    assert (d["precision"], d["device"]) == ("float64", "cpu")  # the defaults
    info32 = PotentialInfo("n", "s", "entry-point:x", precision="float32", device="cuda")
    assert (info32.as_dict()["precision"], info32.as_dict()["device"]) == ("float32", "cuda")


def test_load_potential_records_the_device():
    assert load_potential("sw").info.device == "cpu"
    assert load_potential("sw", device="cuda").info.device == "cuda"  # matscipy ignores it
