"""Helpers for testing validation suites and the plugin itself.

Small labelled datasets made on the fly, and calculators with known faults, so a suite's
thresholds can be shown to fail for the right reason. ASE is imported inside functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "FAULTS",
    "BrokenCalculator",
    "PerturbedCalculator",
    "make_reference_file",
    "nan_potential",
    "not_a_calculator",
    "sw_forces_scaled",
    "sw_shifted",
]


def _calculator_base():
    from ase.calculators.calculator import Calculator, all_changes

    return Calculator, all_changes


def make_reference_file(
    path: str | Path,
    n_structures: int = 4,
    seed: int = 0,
    labeller: Any = "sw",
    keys: dict[str, str] | None = None,
    config_types: Sequence[str] = ("bulk", "rattled"),
    rattle_A: float = 0.1,
    sizes: Sequence[tuple[int, int, int]] = ((1, 1, 1), (2, 1, 1)),
) -> Path:
    """Write an extxyz file of rattled diamond-Si cells labelled by ``labeller``
    (a built-in spec or an ASE calculator) under ``keys`` (default ``dft_energy``,
    ``dft_forces``, ``dft_stress``). Structure i has config_type
    ``config_types[i % len(config_types)]`` and supercell ``sizes[i % len(sizes)]``;
    ``"bulk"`` structures are rattled ten times less. Same seed, same file."""
    import ase.io
    from ase.build import bulk

    from .potentials import load_potential

    keys = {"energy": "dft_energy", "forces": "dft_forces", "stress": "dft_stress",
            **(keys or {})}
    calc = load_potential(labeller).calculator if isinstance(labeller, str) else labeller
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_structures):
        ctype = config_types[i % len(config_types)]
        atoms = bulk("Si", "diamond", a=5.43, cubic=True) * sizes[i % len(sizes)]
        amplitude = rattle_A / 10 if ctype == "bulk" else rattle_A
        atoms.positions += rng.normal(scale=amplitude, size=atoms.positions.shape)
        atoms.calc = calc
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        stress = atoms.get_stress()
        atoms.calc = None
        if keys.get("energy"):
            atoms.info[keys["energy"]] = energy
        if keys.get("forces"):
            atoms.arrays[keys["forces"]] = forces
        if keys.get("stress"):
            atoms.info[keys["stress"]] = stress
        atoms.info["config_type"] = ctype
        frames.append(atoms)
    path = Path(path)
    ase.io.write(path, frames, format="extxyz")
    return path


def PerturbedCalculator(base: Any, energy_shift_eV_atom: float = 0.0,
                        force_scale: float = 1.0, stress_shift_eV_A3: float = 0.0,
                        nan_after: int | None = None):
    """An ASE calculator that returns ``base``'s results with known errors: energy +
    shift x N, forces x scale, stress + shift; NaN energy from call ``nan_after`` on."""
    Calculator, all_changes = _calculator_base()

    class _Perturbed(Calculator):
        implemented_properties = ["energy", "forces", "stress"]

        def __init__(self):
            super().__init__()
            self.calls = 0

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = base
            energy = work.get_potential_energy() + energy_shift_eV_atom * len(work)
            if nan_after is not None and self.calls >= nan_after:
                energy = float("nan")
            self.calls += 1
            self.results = {
                "energy": energy,
                "free_energy": energy,
                "forces": work.get_forces() * force_scale,
                "stress": work.get_stress() + stress_shift_eV_A3,
            }

    return _Perturbed()


def sw_shifted():
    """Stillinger-Weber with every energy 10 meV/atom too high (a pure offset)."""
    from .potentials import load_potential

    return PerturbedCalculator(load_potential("sw").calculator, energy_shift_eV_atom=0.010)


def sw_forces_scaled():
    """Stillinger-Weber with forces 50% too large."""
    from .potentials import load_potential

    return PerturbedCalculator(load_potential("sw").calculator, force_scale=1.5)


def nan_potential():
    """Stillinger-Weber whose energy is NaN from the second structure on."""
    from .potentials import load_potential

    return PerturbedCalculator(load_potential("sw").calculator, nan_after=1)


def not_a_calculator():
    """A broken factory: returns a number, not a calculator."""
    return 42


#: faults of :func:`BrokenCalculator`, each breaking one physical property
FAULTS = {
    "not_gradient": "forces have an extra 0.05 eV/Å on atom 0 that no energy explains",
    "rotation": "energy has a term 0.01 eV/Å x cell[0, 0]: depends on the cell's orientation",
    "translation": "energy has an external field term 0.01 eV/Å x sum of x (forces consistent)",
    "permutation": "energy has 0.05 eV/Å² x |r0 - r1|² (atoms 0 and 1 are special)",
    "cutoff": "energy has 0.05 eV per pair closer than 3.0 Å: a discontinuous cutoff",
    "extensive": "energy has 0.1 eV per cell, not per atom",
    "stress": "stress is twice the strain derivative of the energy",
    "nan": "energy is NaN when two atoms are closer than 2.3 Å",
}


def BrokenCalculator(base: Any, fault: str):
    """An ASE calculator returning ``base``'s results with one deliberate fault of
    :data:`FAULTS`, so every consistency check can be shown to fail."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
    Calculator, all_changes = _calculator_base()

    class _Broken(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            from ase.neighborlist import neighbor_list

            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = base
            energy = work.get_potential_energy()
            forces = work.get_forces().copy()
            stress = work.get_stress().copy() if all(work.pbc) else np.zeros(6)
            if fault == "not_gradient":
                forces[0, 0] += 0.05
            elif fault == "rotation":
                energy += 0.01 * work.cell[0, 0]
            elif fault == "translation":
                energy += 0.01 * work.positions[:, 0].sum()
                forces[:, 0] -= 0.01
            elif fault == "permutation" and len(work) > 1:
                d = work.get_distance(0, 1, mic=True, vector=True)
                energy += 0.05 * float(d @ d)
                forces[1] -= 0.1 * d
                forces[0] += 0.1 * d
            elif fault == "cutoff":
                energy += 0.05 * len(neighbor_list("i", work, 3.0)) / 2
            elif fault == "extensive":
                energy += 0.1
            elif fault == "stress":
                stress = 2 * stress
            elif fault == "nan" and len(neighbor_list("i", work, 2.3)):
                energy = float("nan")
            self.results = {"energy": energy, "free_energy": energy, "forces": forces,
                            "stress": stress}

    return _Broken()


def __getattr__(name: str):
    """``broken_<fault>`` factories (``--potential=pytest_mlpval.testing:broken_rotation``):
    Stillinger-Weber with that fault."""
    if name.startswith("broken_") and name[len("broken_"):] in FAULTS:
        def factory():
            from .potentials import load_potential

            return BrokenCalculator(load_potential("sw").calculator, name[len("broken_"):])

        factory.__name__ = name
        return factory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
