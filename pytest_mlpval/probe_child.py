"""The probe process of :mod:`pytest_mlpval.loader_probe`: ``python -m
pytest_mlpval.probe_child SPEC BASE_DIR SPECIES`` loads the spec and computes one energy
on a two-atom cell, so that a loader that ends the process ends this one, not the test run.

Plain library (no pytest). A module of its own because it loads potentials, which probe
through :mod:`~pytest_mlpval.loader_probe` (one module doing both would import in a circle).
"""

from __future__ import annotations

import json
import sys
import traceback

from pytest_mlpval.loader_probe import LOAD_RAISED
from pytest_mlpval.potentials import is_calculator, parse_potential_spec

__all__ = ["main"]


def _small_cell(species: list[str]):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.43)  # two atoms, 2.35 Å apart, periodic
    if species:
        atoms.set_chemical_symbols([species[i % len(species)] for i in range(len(atoms))])
    return atoms


def main(argv: list[str]) -> int:
    """Load the spec, compute one energy; exit 0, or :data:`LOAD_RAISED` when the loader
    raised (its traceback on stderr). An energy that raises is reported, not fatal."""
    raw, base_dir, species = argv
    try:
        calculator = parse_potential_spec(raw, base_dir, probe=False).make()
    except Exception:  # noqa: BLE001 - reported to the parent, which reloads in process
        traceback.print_exc()
        return LOAD_RAISED
    if not is_calculator(calculator):
        print(json.dumps({"calculator": False}))
        return 0
    atoms = _small_cell([s for s in species.split(",") if s])
    atoms.calc = calculator
    try:
        print(json.dumps({"energy_eV": float(atoms.get_potential_energy())}))
    except Exception as exc:  # noqa: BLE001 - e.g. a species the model lacks
        print(json.dumps({"energy_error": f"{type(exc).__name__}: {exc}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
