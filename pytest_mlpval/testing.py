"""Helpers for testing validation suites and the plugin itself.

Small labelled datasets made on the fly, and calculators with known faults, so a suite's
thresholds can be shown to fail for the right reason. ASE is imported inside functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "CALL_FAULTS",
    "CHROMIUM",
    "FAULTS",
    "BrokenCalculator",
    "FaultyCalculator",
    "PerturbedCalculator",
    "RoughCalculator",
    "have_chromium",
    "headless_chromium",
    "make_reference_file",
    "nan_potential",
    "not_a_calculator",
    "sw_forces_scaled",
    "sw_rough",
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

    from pytest_mlpval.potentials import load_potential

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


def RoughCalculator(base: Any, amplitude_eV: float = 1e-4, period_A: float = 0.03,
                    cutoff_A: float = 3.0):
    """``base`` plus a small high-frequency pair term ``amplitude_eV * cos(2 pi r /
    period_A)`` for every pair closer than ``cutoff_A`` (the bonds of diamond Si; its
    second neighbours are at 3.84 Å), with exact forces and stress: a rough potential
    energy surface on which finite-difference properties move with the amplitude."""
    Calculator, all_changes = _calculator_base()
    k = 2 * np.pi / period_A

    class _Rough(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            from matscipy.neighbours import neighbour_list

            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = base
            i, j, d, D = neighbour_list("ijdD", self.atoms, cutoff_A)
            energy = work.get_potential_energy() + 0.5 * amplitude_eV * np.cos(k * d).sum()
            pull = (-0.5 * amplitude_eV * k * np.sin(k * d) / d)[:, None] * D
            forces = np.array(work.get_forces())
            np.add.at(forces, j, -pull)
            np.add.at(forces, i, pull)
            stress = (np.array(work.get_stress(voigt=False))
                      + np.einsum("pa,pb->ab", pull, D) / self.atoms.get_volume())
            self.results = {"energy": energy, "free_energy": energy, "forces": forces,
                            "stress": stress.flat[[0, 4, 8, 5, 2, 1]]}

    return _Rough()


def sw_rough():
    """Stillinger-Weber with a rough surface (:class:`RoughCalculator`: 0.1 meV per
    bond, period 0.03 Å): its elastic constants, bulk modulus and phonons move by
    10-40 % with the finite strain or displacement."""
    from pytest_mlpval.potentials import load_potential

    return RoughCalculator(load_potential("sw").calculator)


def sw_shifted():
    """Stillinger-Weber with every energy 10 meV/atom too high (a pure offset)."""
    from pytest_mlpval.potentials import load_potential

    return PerturbedCalculator(load_potential("sw").calculator, energy_shift_eV_atom=0.010)


def sw_forces_scaled():
    """Stillinger-Weber with forces 50% too large."""
    from pytest_mlpval.potentials import load_potential

    return PerturbedCalculator(load_potential("sw").calculator, force_scale=1.5)


def nan_potential():
    """Stillinger-Weber whose energy is NaN from the second structure on."""
    from pytest_mlpval.potentials import load_potential

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


#: faults of :func:`FaultyCalculator`, each striking from the k-th call on (k = 0: always)
CALL_FAULTS = {
    "nan": "energy, forces and stress are NaN",
    "inf": "energy, forces and stress are +inf",
    "nan_forces": "one force component is NaN (energy and stress finite)",
    "raise": "the calculation raises RuntimeError",
    "die": "the process exits at once (os._exit(3)): a worker or loader that dies hard",
    "wrong_shape": "forces have shape (n_atoms - 1, 3)",
    "no_free_energy": "free_energy is not implemented (like many torch calculators)",
    "float32": "results are rounded to float32 (a single-precision model)",
}


def FaultyCalculator(base: Any, fault: str, at_call: int = 0):
    """An ASE calculator returning ``base``'s results until its ``at_call``-th calculation
    (counted from 0 in this process), then failing with ``fault`` of :data:`CALL_FAULTS`
    on that call and every later one. For fault-injection tests: NaN or inf in a
    prediction or a protocol, a calculator that raises or kills its process at the k-th
    call, one without ``free_energy``, a float32 model."""
    if fault not in CALL_FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(CALL_FAULTS)}")
    Calculator, all_changes = _calculator_base()

    class _Faulty(Calculator):
        implemented_properties = (["energy", "forces", "stress"] if fault == "no_free_energy"
                                  else ["energy", "free_energy", "forces", "stress"])

        def __init__(self):
            super().__init__()
            self.calls = 0

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            import os

            super().calculate(atoms, properties, system_changes)
            strike = self.calls >= at_call
            self.calls += 1
            work = self.atoms.copy()
            work.calc = base
            energy = float(work.get_potential_energy())
            forces = work.get_forces().copy()
            stress = work.get_stress().copy() if all(work.pbc) else np.zeros(6)
            if strike:
                if fault == "die":
                    os._exit(3)
                if fault == "raise":
                    raise RuntimeError(f"injected failure at call {self.calls - 1}")
                if fault in ("nan", "inf"):
                    bad = float(fault)
                    energy, forces[:], stress[:] = bad, bad, bad
                elif fault == "nan_forces":
                    forces[0, 0] = float("nan")
                elif fault == "wrong_shape":
                    forces = forces[:-1]
                elif fault == "float32":
                    energy = float(np.float32(energy))
                    forces = forces.astype(np.float32).astype(float)
                    stress = stress.astype(np.float32).astype(float)
            self.results = {"energy": energy, "forces": forces, "stress": stress}
            if fault != "no_free_energy":
                self.results["free_energy"] = energy

    return _Faulty()


def __getattr__(name: str):
    """Factories for ``--potential=pytest_mlpval.testing:NAME``, all Stillinger-Weber with
    a fault: ``broken_<fault>`` (:data:`FAULTS`) and ``faulty_<fault>_at_<k>``
    (:data:`CALL_FAULTS`, striking from the k-th call of the process on)."""
    if name.startswith("faulty_") and "_at_" in name:
        fault, _, k = name[len("faulty_"):].rpartition("_at_")
        if fault in CALL_FAULTS and k.isdigit():
            def faulty():
                from pytest_mlpval.potentials import load_potential

                return FaultyCalculator(load_potential("sw").calculator, fault, int(k))

            faulty.__name__ = name
            return faulty
    if name.startswith("broken_") and name[len("broken_"):] in FAULTS:
        def factory():
            from pytest_mlpval.potentials import load_potential

            return BrokenCalculator(load_potential("sw").calculator, name[len("broken_"):])

        factory.__name__ = name
        return factory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: where Debian's chromium package puts the browser (``apt-get install chromium``)
CHROMIUM = "/usr/bin/chromium"


def have_chromium(path: str = CHROMIUM) -> bool:
    """Whether a headless browser for :func:`headless_chromium` is installed."""
    import os

    return os.path.isfile(path) and os.access(path, os.X_OK)


def headless_chromium(page: str | Path, *args: str, workdir: str | Path,
                      timeout_s: float = 60.0, path: str = CHROMIUM):
    """Open ``page`` (a local HTML file) in headless Chromium with ``args`` (such as
    ``--dump-dom`` or ``--screenshot=FILE``) and a fresh profile under ``workdir``, with
    no network traffic of its own; returns the ``subprocess.CompletedProcess`` and
    raises ``AssertionError`` with the end of stderr when the browser fails."""
    import os
    import shutil
    import subprocess
    import tempfile

    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
    command = [path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args,
               Path(page).resolve().as_uri()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "HOME": str(workdir)})
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done
