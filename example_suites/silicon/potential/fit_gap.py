"""Refit the suite's default potential: a 2-body + SOAP GAP on the mlearn Si training set,
fitted to energies, forces and virials.

Run from anywhere (needs the ``gap`` extra, which ships the ``gap_fit`` executable)::

    python example_suites/silicon/potential/fit_gap.py            # refit the bundled model
    python example_suites/silicon/potential/fit_gap.py --train T.xyz --model M.xml

Without arguments it removes the old ``gap_si_mlearn.xml*`` files, fits (fixed random
seed; about 8 minutes on 2 cores) and prints the new model's errors on the mlearn test set,
computed with pytest_mlpval's own metrics. With ``--train``/``--model`` it only fits: that
is the command the suite's cross-validation runs for each fold. The same recipe and seed
give the same coefficients; only the time-stamped label inside the XML and the names of the
sparseX files change from fit to fit.

What the recipe does beyond a plain ``gap_fit`` call, and why (see README.md):

- **virials**: mlearn stores stresses (``dft_stress``, eV/Å^3, ASE's sign); ``gap_fit``
  reads virials (eV), so each structure gets ``dft_virial = -stress * volume``.
- **isolated-atom energy**: the data have no isolated atom; ``e0`` is set so that the
  model's cohesive energy is the experimental 4.63 eV/atom (``E0_EV``). Setting it to the
  training set's mean energy (``e0_method=average``) makes separated atoms almost as stable
  as the crystal, and the random structure search then finds open, low-density minima
  below diamond.
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
MODEL = "gap_si_mlearn.xml"

#: VASP-PBE energy of diamond Si at its equilibrium lattice in the mlearn data (eV/atom;
#: ../../../pytest_mlpval/reference_data: the mlearn ground state)
DIAMOND_EV = -5.42532
#: experimental cohesive energy of Si (eV/atom; reference_data/silicon.json)
COHESIVE_EV = 4.63
#: isolated-atom energy on the mlearn (VASP) energy scale
E0_EV = round(DIAMOND_EV + COHESIVE_EV, 4)

GAP_ARGS = [
    "gap={distance_2b cutoff=5.0 covariance_type=ard_se delta=10.0 theta_uniform=1.0 "
    "sparse_method=uniform n_sparse=20 add_species=T : "
    "soap l_max=4 n_max=8 cutoff=5.0 cutoff_transition_width=1.0 atom_sigma=0.5 zeta=4 "
    "delta=3.0 covariance_type=dot_product sparse_method=cur_points n_sparse=800 "
    "add_species=T}",
    "default_sigma={0.003 0.08 0.05 0.0}",
    "config_type_parameter_name=config_type",
    "config_type_sigma={Elastic:0.001:0.02:0.02:0.0:Surface:0.001:0.05:0.05:0.0:"
    "Vacancy:0.001:0.08:0.05:0.0}",
    "energy_parameter_name=dft_energy",
    "force_parameter_name=dft_forces",
    "virial_parameter_name=dft_virial",
    f"e0={{Si:{E0_EV}}}",
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
            print(" ".join(["gap_fit", *command[1:]]))
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
    return fit_to(DATA / "mlearn_Si_training.xyz", out_dir / MODEL, quiet=False)


def recipe_command() -> list[str]:
    """The fit as a command template for pytest-mlpval's cross-validation (the suite's
    test_domain.py): ``{train}`` and ``{model}`` are filled in per fold."""
    return [sys.executable, str(Path(__file__).resolve()), "--train", "{train}",
            "--model", "{model}"]


def test_errors(model: Path) -> None:
    from pytest_mlpval.data import read_dataset
    from pytest_mlpval.evaluate import predict
    from pytest_mlpval.metrics import compute_errors
    from pytest_mlpval.potentials import load_potential

    reference = read_dataset(
        f"test={DATA / 'mlearn_Si_test.xyz'},energy=dft_energy,forces=dft_forces,"
        "stress=dft_stress")
    potential = load_potential(str(model))
    errors = compute_errors(reference, predict(potential.calculator, reference))
    print(f"sha256 {potential.info.sha256}")
    for subset, report in {"all": errors, **errors.by_config_type}.items():
        m = report.metrics()
        print(f"{subset:10s} n={len(report):3d}  E RMSE {1000 * m['energy_rmse']:6.2f} "
              f"meV/atom (offset removed {1000 * m['energy_offset_removed_rmse']:6.2f})  "
              f"F RMSE {m['force_rmse']:.3f} eV/Å  S RMSE {m['stress_rmse']:.3f} GPa")


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
