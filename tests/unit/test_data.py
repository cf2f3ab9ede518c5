"""Unit tests of pytest_mlpval.data: dataset specs and reading labelled structures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pytest_mlpval.data import (
    DEFAULT_KEYS,
    DatasetError,
    DatasetSpec,
    ReferenceSet,
    parse_dataset_spec,
    read_dataset,
)

CUSTOM = "energy=dft_energy,forces=dft_forces,stress=dft_stress"


def si_cell(rattle=0.0, seed=0, repeat=(1, 1, 1)):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * repeat
    if rattle:
        atoms.positions += np.random.default_rng(seed).normal(scale=rattle,
                                                               size=atoms.positions.shape)
    return atoms


def write(path, frames):
    import ase.io

    ase.io.write(path, frames, format="extxyz")
    return path


# --- parse_dataset_spec -----------------------------------------------------------------

def test_spec_minimal(tmp_path):
    spec = parse_dataset_spec("test=data/test.xyz", base_dir=tmp_path)
    assert spec == DatasetSpec("test", str((tmp_path / "data" / "test.xyz").resolve()))
    assert spec.index == ":"
    assert spec.format is None
    assert spec.key_map == DEFAULT_KEYS


def test_spec_options(tmp_path):
    spec = parse_dataset_spec(
        " val = sub/v.extxyz , energy=dft_energy, forces = dft_forces,stress=s,"
        "virial=vir,config_type=ctype,index=0:10,format=extxyz", base_dir=tmp_path)
    assert spec.name == "val"
    assert spec.path == str((tmp_path / "sub" / "v.extxyz").resolve())
    assert spec.index == "0:10"
    assert spec.format == "extxyz"
    assert spec.key_map == {"energy": "dft_energy", "forces": "dft_forces", "stress": "s",
                            "virial": "vir", "config_type": "ctype"}
    # index and format are not label keys
    assert "index" not in dict(spec.keys) and "format" not in dict(spec.keys)
    assert spec.as_dict()["keys"]["energy"] == "dft_energy"


def test_spec_keys_are_order_independent(tmp_path):
    a = parse_dataset_spec("d=x.xyz,energy=e,forces=f", base_dir=tmp_path)
    b = parse_dataset_spec("d=x.xyz,forces=f,energy=e", base_dir=tmp_path)
    assert a == b and hash(a) == hash(b)


def test_spec_overrides(tmp_path):
    spec = parse_dataset_spec("d=x.xyz,energy=e", base_dir=tmp_path, energy="E2", index="3")
    assert spec.key_map["energy"] == "E2"
    assert spec.index == "3"
    with pytest.raises(DatasetError, match="unknown option.*colour"):
        parse_dataset_spec("d=x.xyz", base_dir=tmp_path, colour="red")


def test_spec_relative_path_default_base_is_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = parse_dataset_spec("d=a/b.xyz")
    assert spec.path == str((tmp_path / "a" / "b.xyz").resolve())


def test_spec_absolute_path_ignores_base(tmp_path):
    target = tmp_path / "abs.xyz"
    spec = parse_dataset_spec(f"d={target}", base_dir=tmp_path / "elsewhere")
    assert spec.path == str(target.resolve())


def test_spec_dotdot_resolved(tmp_path):
    spec = parse_dataset_spec("d=../up.xyz", base_dir=tmp_path / "sub")
    assert spec.path == str((tmp_path / "up.xyz").resolve())
    assert ".." not in spec.path


@pytest.mark.parametrize("text", [
    "",
    "test.xyz",                      # no NAME=
    "=test.xyz",                     # empty name
    "1abc=test.xyz",                 # name must not start with a digit
    "a b=test.xyz",                  # space in name
    "test=",                         # no path
    "test=   ",
    "test=,energy=e",                # empty path before the options
    "test=x.xyz,energy",             # option without value
    "test=x.xyz,energy=",            # empty value
    "test=x.xyz,colour=red",         # unknown option
    "test=x.xyz,Energy=e",           # options are case-sensitive
    "test=x.xyz,,energy=e",          # empty option
])
def test_spec_bad(text, tmp_path):
    with pytest.raises(DatasetError):
        parse_dataset_spec(text, base_dir=tmp_path)


def test_spec_bad_option_message_lists_known(tmp_path):
    with pytest.raises(DatasetError, match=r"bad option 'colour=red'.*config_type.*virial"):
        parse_dataset_spec("test=x.xyz,colour=red", base_dir=tmp_path)


# --- read_dataset: custom keys ----------------------------------------------------------

@pytest.fixture(scope="module")
def custom(reference_file) -> ReferenceSet:
    return read_dataset(f"ref={reference_file},{CUSTOM}")


def test_read_custom_keys(custom, reference_file):
    import ase.io

    frames = ase.io.read(reference_file, ":")
    assert len(custom) == 6
    assert custom.name == "ref"
    assert custom.labels == ("energy", "forces", "stress")
    assert list(custom.n_atoms) == [8, 16, 8, 16, 8, 16]
    assert custom.config_types == ("bulk", "rattled") * 3
    np.testing.assert_array_equal(custom.energy, [f.info["dft_energy"] for f in frames])
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(custom.forces[i], f.arrays["dft_forces"])
        np.testing.assert_array_equal(custom.structures[i].positions, f.positions)
        np.testing.assert_array_equal(custom.structures[i].cell, f.cell)
    assert custom.stress.shape == (6, 6)
    np.testing.assert_allclose(custom.stress[0], frames[0].info["dft_stress"], atol=0)
    # SW energies: above the diamond minimum -4.3366 eV/atom, near it for "bulk" cells
    per_atom = custom.energy / custom.n_atoms
    assert np.all(per_atom > -4.3367)
    assert np.all(per_atom[0::2] < -4.32)
    assert np.all(per_atom[1::2] > -4.3)


def test_structures_carry_no_labels(custom):
    for atoms in custom.structures:
        assert atoms.calc is None
        assert "dft_energy" not in atoms.info
        assert "dft_forces" not in atoms.arrays
        assert all(atoms.pbc)


def test_default_keys_miss_custom_labels(reference_file):
    ref = read_dataset(f"ref={reference_file}")
    assert ref.energy is None and ref.forces is None and ref.stress is None
    assert ref.labels == ()
    assert ref.config_types == ("bulk", "rattled") * 3


def test_require_names_the_key(reference_file):
    ref = read_dataset(f"ref={reference_file},energy=dft_energy,forces=nope_forces")
    ref.require("energy")
    with pytest.raises(DatasetError, match="forces labels.*'nope_forces'"):
        ref.require("energy", "forces")
    with pytest.raises(DatasetError, match=r"stress labels \(looked for key 'stress'\)"):
        ref.require("stress")


def test_only_some_labels(reference_file):
    ref = read_dataset(f"ref={reference_file},energy=dft_energy")
    assert ref.labels == ("energy",)
    assert ref.forces is None and ref.stress is None


# --- read_dataset: standard keys (SinglePointCalculator) --------------------------------

def test_read_standard_keys(tmp_path):
    from ase.calculators.singlepoint import SinglePointCalculator

    frames, expected = [], []
    for i, repeat in enumerate([(1, 1, 1), (1, 1, 2)]):
        atoms = si_cell(0.05, seed=i, repeat=repeat)
        forces = np.arange(3 * len(atoms), dtype=float).reshape(-1, 3) / 10 + i
        stress = np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03]) * (i + 1)
        energy = -4.0 * len(atoms) + 0.125 * i
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces,
                                           stress=stress)
        atoms.info["config_type"] = f"type{i}"
        frames.append(atoms)
        expected.append((energy, forces, stress))
    path = write(tmp_path / "std.xyz", frames)
    ref = read_dataset(f"std={path}")
    assert ref.labels == ("energy", "forces", "stress")
    assert list(ref.n_atoms) == [8, 16]
    assert ref.config_types == ("type0", "type1")
    for i, (energy, forces, stress) in enumerate(expected):
        assert ref.energy[i] == pytest.approx(energy, abs=1e-10)
        np.testing.assert_allclose(ref.forces[i], forces, atol=1e-8)
        np.testing.assert_allclose(ref.stress[i], stress, atol=1e-10)


def test_config_type_default_and_custom_key(tmp_path):
    a, b = si_cell(), si_cell()
    a.info["kind"] = "surface"
    b.info["kind"] = "bulk"
    a.info["energy_x"] = b.info["energy_x"] = -1.0
    path = write(tmp_path / "ct.xyz", [a, b])
    assert read_dataset(f"d={path},energy=energy_x").config_types == ("default",) * 2
    ref = read_dataset(f"d={path},energy=energy_x,config_type=kind")
    assert ref.config_types == ("surface", "bulk")


# --- virial -----------------------------------------------------------------------------

def test_virial_only_gives_stress(tmp_path):
    virial = np.array([[1.0, 0.2, 0.3], [0.2, 2.0, 0.4], [0.3, 0.4, 3.0]])
    frames = []
    for scale in (1.0, -2.0):
        atoms = si_cell()
        atoms.info["dft_virial"] = virial * scale
        atoms.info["dft_energy"] = -30.0
        frames.append(atoms)
    path = write(tmp_path / "vir.xyz", frames)
    ref = read_dataset(f"v={path},energy=dft_energy,virial=dft_virial")
    volume = 5.43**3
    voigt = np.array([1.0, 2.0, 3.0, 0.4, 0.3, 0.2])  # xx yy zz yz xz xy
    np.testing.assert_allclose(ref.stress[0], -voigt / volume, rtol=1e-12)
    np.testing.assert_allclose(ref.stress[1], 2 * voigt / volume, rtol=1e-12)
    assert ref.labels == ("energy", "stress")


def test_virial_default_key(tmp_path):
    atoms = si_cell()
    atoms.info["virial"] = np.diag([5.43**3] * 3)
    path = write(tmp_path / "vir.xyz", [atoms])
    ref = read_dataset(f"v={path}")
    np.testing.assert_allclose(ref.stress[0], [-1, -1, -1, 0, 0, 0], atol=1e-12)


def test_stress_preferred_over_virial(tmp_path):
    atoms = si_cell()
    atoms.info["s"] = np.diag([1.0, 2.0, 3.0])
    atoms.info["virial"] = np.eye(3) * 100
    path = write(tmp_path / "both.xyz", [atoms])
    ref = read_dataset(f"v={path},stress=s")
    np.testing.assert_allclose(ref.stress[0], [1, 2, 3, 0, 0, 0])


def test_bad_stress_shape(tmp_path):
    atoms = si_cell()
    atoms.info["s"] = np.array([1.0, 2.0, 3.0, 4.0])
    path = write(tmp_path / "bad.xyz", [atoms])
    with pytest.raises(DatasetError, match="shape"):
        read_dataset(f"v={path},stress=s")


# --- missing and partial labels, bad files ----------------------------------------------

def test_labels_on_some_structures_only(tmp_path):
    frames = [si_cell() for _ in range(4)]
    for i in (0, 1, 3):
        frames[i].info["dft_energy"] = -30.0
    path = write(tmp_path / "partial.xyz", frames)
    with pytest.raises(DatasetError, match=r"'dft_energy'.*1 of 4.*index 2"):
        read_dataset(f"p={path},energy=dft_energy")


def test_forces_on_some_structures_only(tmp_path):
    a, b = si_cell(), si_cell()
    a.arrays["f"] = np.zeros((8, 3))
    path = write(tmp_path / "partial.xyz", [b, a])
    with pytest.raises(DatasetError, match=r"'f' \(forces\).*1 of 2.*index 0"):
        read_dataset(f"p={path},forces=f")


def test_forces_wrong_width(tmp_path):
    a = si_cell()
    a.arrays["f"] = np.zeros(8)  # one number per atom, not three
    path = write(tmp_path / "w.xyz", [a])
    with pytest.raises(DatasetError, match=r"forces of structure 0 have shape \(8,\)"):
        read_dataset(f"p={path},forces=f")


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="file not found.*missing.xyz"):
        read_dataset("m=missing.xyz", base_dir=tmp_path)
    with pytest.raises(DatasetError, match="file not found"):
        read_dataset(parse_dataset_spec("m=.", base_dir=tmp_path))  # a directory


def test_unreadable_file(tmp_path):
    path = tmp_path / "garbage.xyz"
    path.write_text("this is\nnot an xyz file\n")
    with pytest.raises(DatasetError, match="cannot read"):
        read_dataset(f"g={path}")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.xyz"
    path.write_text("")
    with pytest.raises(DatasetError, match="empty.xyz"):
        read_dataset(f"e={path},format=extxyz")
    with pytest.raises(DatasetError, match="empty.xyz"):
        read_dataset(f"e={path}")


# --- index selection ---------------------------------------------------------------------

@pytest.mark.parametrize("index, expected", [
    (":", [0, 1, 2, 3, 4, 5]),
    ("0:2", [0, 1]),
    ("1::2", [1, 3, 5]),
    ("-2:", [4, 5]),
    ("3", [3]),
    ("-1", [5]),
])
def test_index_selection(reference_file, custom, index, expected):
    ref = read_dataset(f"ref={reference_file},{CUSTOM},index={index}")
    assert len(ref) == len(expected)
    assert ref.spec.index == index
    np.testing.assert_array_equal(ref.energy, custom.energy[expected])
    assert list(ref.n_atoms) == [custom.n_atoms[i] for i in expected]
    assert ref.config_types == tuple(custom.config_types[i] for i in expected)
    for j, i in enumerate(expected):
        np.testing.assert_array_equal(ref.forces[j], custom.forces[i])


def test_index_selecting_nothing(reference_file):
    with pytest.raises(DatasetError, match="no structures"):
        read_dataset(f"ref={reference_file},{CUSTOM},index=10:20")


# --- immutability and copies ------------------------------------------------------------

def test_arrays_read_only(custom):
    with pytest.raises(ValueError):
        custom.energy[0] = 0.0
    with pytest.raises(ValueError):
        custom.forces[0][0, 0] = 0.0
    with pytest.raises(ValueError):
        custom.stress[0, 0] = 0.0
    with pytest.raises(ValueError):
        custom.n_atoms[0] = 1
    with pytest.raises(AttributeError):
        custom.energy = None  # frozen dataclass


def test_atoms_returns_independent_copies(custom):
    before = custom.structures[1].positions.copy()
    first = custom.atoms(1)
    second = custom.atoms(1)
    assert first is not second and first is not custom.structures[1]
    first.positions[:] += 1.0
    first.info["x"] = 1
    first.cell[0, 0] = 99.0
    np.testing.assert_array_equal(custom.structures[1].positions, before)
    np.testing.assert_array_equal(second.positions, before)
    assert "x" not in custom.structures[1].info
    assert custom.structures[1].cell[0, 0] != 99.0


def test_as_dict(custom, reference_file):
    d = custom.as_dict()
    assert d["name"] == "ref"
    assert d["path"] == str(Path(reference_file).resolve())
    assert d["n_structures"] == 6
    assert d["n_atoms"] == 72
    assert d["labels"] == ["energy", "forces", "stress"]
    assert d["config_types"] == ["bulk", "rattled"]
    assert d["keys"]["forces"] == "dft_forces"
    assert d["index"] == ":"


# --- sha256 -----------------------------------------------------------------------------

def test_sha256_follows_file_content(reference_file, custom, tmp_path):
    import hashlib

    assert custom.sha256 == hashlib.sha256(Path(reference_file).read_bytes()).hexdigest()
    copy = tmp_path / "copy.xyz"
    shutil.copy(reference_file, copy)
    same = read_dataset(f"c={copy},{CUSTOM}")
    assert same.sha256 == custom.sha256  # content, not path
    text = copy.read_text()
    copy.write_text(text.replace("rattled", "ratled", 1))
    changed = read_dataset(f"c={copy},{CUSTOM}")
    assert changed.sha256 != custom.sha256
    assert changed.config_types[1] == "ratled"


def test_relative_spec_read_with_base_dir(reference_file, custom):
    folder = Path(reference_file).parent
    ref = read_dataset(f"ref={Path(reference_file).name},{CUSTOM}", base_dir=folder)
    np.testing.assert_array_equal(ref.energy, custom.energy)
    assert os.path.isabs(ref.spec.path)
