"""Refit the molybdenum suite's default potential: a 2-body + SOAP GAP on the mlearn Mo
training set, fitted to energies, forces and virials.

Run from anywhere (needs the ``gap`` extra, which ships the ``gap_fit`` executable)::

    python example_suites/molybdenum/potential/fit_gap.py            # refit the bundled model
    python example_suites/molybdenum/potential/fit_gap.py --train T.xyz --model M.xml

Without arguments it removes the old ``gap_mo_mlearn.xml*`` files, fits (fixed random
seed; see README.md for the time) and prints the new model's errors on the mlearn Mo test
set, computed with pytest_mlpval's own metrics. With ``--train``/``--model`` it only fits.
The recipe is the silicon suite's (``../../silicon/potential/fit_gap.py``) with Mo's
isolated-atom energy and fewer SOAP sparse points (the suite's quick tier evaluates it).

What the recipe does beyond a plain ``gap_fit`` call, and why (see README.md):

- **virials**: mlearn stores stresses (``dft_stress``, eV/Å^3, ASE's sign); ``gap_fit``
  reads virials (eV), so each structure gets ``dft_virial = -stress * volume``. The suite's
  copy of the data has the yz and xz stress components put back in their places (see
  ../data/README.md): fitted as first converted, two of the three shear modes of the
  Elastic group would teach the model a stress its energy contradicts.
- **isolated-atom energy**: the data have no isolated atom; ``e0`` is set so that the
  model's cohesive energy is the experimental 6.82 eV/atom (``E0_EV``), as the silicon
  recipe does with silicon's. The training set's mean energy (``e0_method=average``,
  -10.45 eV/atom) would make a separated atom cost only 0.4 eV (the surfaces and the hot
  AIMD snapshots pull the mean up).
- **per-group weights**: the strained crystals, surfaces and vacancies get smaller energy
  sigmas than the hot AIMD snapshots (``config_type_sigma``), as their energies are more
  precise and carry the elastic, surface and defect energies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
MODEL = "gap_mo_mlearn.xml"

#: VASP-PBE energy of relaxed bcc Mo in the mlearn data (eV/atom; the 2-atom
#: "Mo 3x3x3 cell relaxed" structure of the Elastic group, a = 3.1698 Å)
BCC_EV = -10.84858
#: experimental cohesive energy of Mo (eV/atom; C. Kittel, Introduction to Solid State
#: Physics, 8th ed., table 3.1)
COHESIVE_EV = 6.82
#: isolated-atom energy on the mlearn (VASP) energy scale
E0_EV = round(BCC_EV + COHESIVE_EV, 4)

GAP_ARGS = [
    "gap={distance_2b cutoff=5.0 covariance_type=ard_se delta=10.0 theta_uniform=1.0 "
    "sparse_method=uniform n_sparse=20 add_species=T : "
    "soap l_max=4 n_max=8 cutoff=5.0 cutoff_transition_width=1.0 atom_sigma=0.5 zeta=4 "
    "delta=3.0 covariance_type=dot_product sparse_method=cur_points n_sparse=500 "
    "add_species=T}",
    "default_sigma={0.003 0.1 0.05 0.0}",
    "config_type_parameter_name=config_type",
    "config_type_sigma={Elastic:0.001:0.02:0.02:0.0:Surface:0.001:0.05:0.05:0.0:"
    "Vacancy:0.001:0.08:0.05:0.0}",
    "energy_parameter_name=dft_energy",
    "force_parameter_name=dft_forces",
    "virial_parameter_name=dft_virial",
    f"e0={{Mo:{E0_EV}}}",
    "rnd_seed=1",
    "sparse_jitter=1e-8",
]


def with_virials(source: Path, target: Path) -> None:
    """Copy extxyz ``source`` to ``target`` adding ``dft_virial`` (eV, 3x3) from
    ``dft_stress`` (eV/Å^3, Voigt xx yy zz yz xz xy, ASE's sign: virial = -stress * V)."""
    import numpy as np
    from ase.io import read, write
    from ase.stress import voigt_6_to_full_3x3_stress

    frames = read(source, ":")
    for atoms in frames:
        stress = atoms.info.get("dft_stress")
        if stress is not None:
            full = voigt_6_to_full_3x3_stress(np.asarray(stress, dtype=float))
            atoms.info["dft_virial"] = (-full * atoms.get_volume()).ravel()
    write(target, frames, format="extxyz")


def gap_fit_executable() -> str:
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")
    if not Path(gap_fit).exists():
        sys.exit("gap_fit not found: pip install 'pytest-mlpval[gap]' (quippy-ase ships it)")
    return gap_fit


def fit_to(train: Path, model: Path, quiet: bool = True) -> Path:
    """Fit the recipe on extxyz ``train`` (mlearn keys) and write ``model`` and its
    sparseX files beside it."""
    model = Path(model).resolve()
    model.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with_virials(Path(train), Path(tmp) / "train.xyz")
        command = [gap_fit_executable(), "at_file=train.xyz", *GAP_ARGS,
                   f"gp_file={model.name}"]
        if not quiet:
            print(" ".join(["gap_fit", *command[1:]]), flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        subprocess.run(command, cwd=tmp, env=env, check=True,
                       stdout=subprocess.DEVNULL if quiet else None)
        for new in Path(tmp).glob(f"{model.name}*"):
            shutil.copy(new, model.parent / new.name)
    return model


def fit(out_dir: Path = HERE) -> Path:
    """Refit the bundled model in ``out_dir`` (old model files removed first)."""
    for old in out_dir.glob(f"{MODEL}*"):
        old.unlink()
    return fit_to(DATA / "mlearn_Mo_training.xyz", out_dir / MODEL, quiet=False)


def test_errors(model: Path) -> None:
    from pytest_mlpval.data import read_dataset
    from pytest_mlpval.evaluate import predict
    from pytest_mlpval.metrics import compute_errors
    from pytest_mlpval.potentials import load_potential

    potential = load_potential(str(model))
    print(f"sha256 {potential.info.sha256}")
    for name in ("test", "training"):
        reference = read_dataset(
            f"{name}={DATA / f'mlearn_Mo_{name}.xyz'},energy=dft_energy,forces=dft_forces,"
            "stress=dft_stress")
        errors = compute_errors(reference, predict(potential.calculator, reference))
        for subset, report in {"all": errors, **errors.by_config_type}.items():
            m = report.metrics()
            print(f"{name:8s} {subset:10s} n={len(report):3d}  E RMSE "
                  f"{1000 * m['energy_rmse']:6.2f} meV/atom (offset removed "
                  f"{1000 * m['energy_offset_removed_rmse']:6.2f})  F RMSE "
                  f"{m['force_rmse']:.3f} eV/Å  S RMSE {m['stress_rmse']:.3f} GPa")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, help="extxyz with mlearn keys "
                        "(default: refit the bundled model on the mlearn training set)")
    parser.add_argument("--model", type=Path, help="model file to write (with --train)")
    args = parser.parse_args(argv)
    if (args.train is None) != (args.model is None):
        parser.error("--train and --model go together")
    if args.train is None:
        test_errors(fit())
    else:
        fit_to(args.train, args.model)


if __name__ == "__main__":
    main()
