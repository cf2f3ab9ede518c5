"""Refit the suite's default potential: a 2-body + SOAP GAP on the mlearn Si training set.

Run from anywhere (needs the ``gap`` extra, which ships the ``gap_fit`` executable)::

    python example_suites/silicon/potential/fit_gap.py

It removes the old ``gap_si_mlearn.xml*`` files, runs ``gap_fit`` with the command line
below (fixed random seed; about 100 s on 2 cores), then prints the errors of the new model
on the mlearn test set, computed with pytest_mlpval's own metrics. The same recipe and
the same seed give the same coefficients; only the time-stamped label inside the XML and
the names of the sparseX files change from fit to fit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
MODEL = "gap_si_mlearn.xml"

GAP_ARGS = [
    "gap={distance_2b cutoff=5.0 covariance_type=ard_se delta=1.0 theta_uniform=1.0 "
    "sparse_method=uniform n_sparse=20 add_species=T : "
    "soap l_max=4 n_max=8 cutoff=5.0 cutoff_transition_width=1.0 atom_sigma=0.5 zeta=4 "
    "delta=1.0 covariance_type=dot_product sparse_method=cur_points n_sparse=300 "
    "add_species=T}",
    "default_sigma={0.003 0.08 0.05 0.0}",
    "energy_parameter_name=dft_energy",
    "force_parameter_name=dft_forces",
    "e0_method=average",
    "rnd_seed=1",
    "sparse_jitter=1e-8",
]


def fit(out_dir: Path = HERE) -> Path:
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")
    if not Path(gap_fit).exists():
        sys.exit("gap_fit not found: pip install 'pytest-mlpval[gap]' (quippy-ase ships it)")
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.xyz"
        shutil.copy(DATA / "mlearn_Si_training.xyz", train)
        command = [gap_fit, f"at_file={train}", *GAP_ARGS, f"gp_file={MODEL}"]
        print(" ".join(command[:1] + ["at_file=train.xyz"] + command[2:]))
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        subprocess.run(command, cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL)
        for old in out_dir.glob(f"{MODEL}*"):
            old.unlink()
        for new in Path(tmp).glob(f"{MODEL}*"):
            shutil.copy(new, out_dir / new.name)
    return out_dir / MODEL


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


if __name__ == "__main__":
    test_errors(fit())
