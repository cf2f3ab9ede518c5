"""Melt-quench domain benchmark (the tutorial's Fig. 6): snapshots of a small MD run that
mimics the application (a defective crystal, the melt, the quench), labelled by a
reference, and each candidate's energy and force-component errors per snapshot and per
phase.

Plain library (no pytest). The snapshots are an ordinary
:class:`~pytest_mlpval.data.ReferenceSet` whose config_type is the phase, so the error
machinery of :mod:`pytest_mlpval.metrics` (RMSE/MAE/max, energy offsets, per-config_type
subsets) and :func:`~pytest_mlpval.assertions.assert_errors_within` apply unchanged.

Errors and assertions: :mod:`pytest_mlpval.protocols.md.meltquench_errors`. Sources of
the snapshots:

- :func:`run_meltquench`: MD with a reference potential (cached per potential hash and
  settings), optionally relabelled by another (``labeller``: e.g. MD with a cheap
  potential, labels from the ground truth);
- :func:`read_meltquench`: an extxyz trajectory the user provides, with labels (or
  relabelled by a ``labeller``) and a phase key per frame.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from pytest_mlpval.crystals import build_crystal
from pytest_mlpval.data import DatasetSpec, ReferenceSet, read_dataset, readonly_array
from pytest_mlpval.descriptors import SI_SOAP, SoapSpectra, coordination_numbers, max_kernel
from pytest_mlpval.protocols.base import CampaignOptions, potential_name
from pytest_mlpval.protocols.md.run import (diamond_start, run_md, run_md_campaign,
                                            write_trajectory)
from pytest_mlpval.protocols.md.settings import (MDParameterError, MDProtocolSettings,
                                                 MDRecord, MDSegment, MDSettings)
from pytest_mlpval.threads import one_blas_thread

__all__ = ["MeltQuenchSettings", "MeltQuenchTrajectory", "run_meltquench",
           "read_meltquench", "relabel"]

#: the protocol's name (its campaign cache)
PROTOCOL = "mlpval-md-meltquench"


@dataclass(frozen=True)
class MeltQuenchSettings(MDProtocolSettings):
    """The melt-quench run (all fields key the cache).

    Attributes
    ----------
    symbol : str
    limits : MDLimits
    repeat : int
        Diamond supercell of 8 x repeat^3 sites (2: 64).
    vacancies : int
        Sites removed (seeded) for a defective crystal.
    crystal_K, melt_K, quench_to_K : float
    crystal_steps, melt_steps, quench_steps : int
        NVT (Langevin) at ``crystal_K``, at ``melt_K``, then a linear ramp from
        ``melt_K`` to ``quench_to_K``, at constant volume.
    timestep_fs : float
    snapshot_every : int
        A labelled snapshot every this many steps (and the last).
    crystal_reference : str
        Crystal whose SOAP similarity is recorded per snapshot (``crystal_similarity``,
        ``crystalline_fraction`` above 0.99 in the info) to check that the melt melted.
    """

    VERSION: ClassVar[int] = 1

    repeat: int = 2
    vacancies: int = 1
    crystal_K: float = 1000.0
    melt_K: float = 3500.0
    quench_to_K: float = 500.0
    crystal_steps: int = 500
    melt_steps: int = 1000
    quench_steps: int = 1500
    timestep_fs: float = 2.0
    snapshot_every: int = 50
    crystal_reference: str = "diamond"

    def validate(self) -> None:
        if int(self.repeat) != self.repeat or self.repeat < 1:
            raise MDParameterError(f"repeat must be a positive integer, got {self.repeat!r}")
        sites = 8 * self.repeat ** 3
        if int(self.vacancies) != self.vacancies or not 0 <= self.vacancies < sites - 1:
            raise MDParameterError(f"vacancies must be an integer from 0 to "
                                   f"{sites - 2}, got {self.vacancies!r}")

    def segments(self) -> tuple[MDSegment, ...]:
        segments = (MDSegment("crystal", self.crystal_steps, self.crystal_K),
                    MDSegment("melt", self.melt_steps, self.melt_K),
                    MDSegment("quench", self.quench_steps, self.melt_K, self.quench_to_K))
        return tuple(s for s in segments if s.n_steps)

    def md_settings(self) -> MDSettings:
        return MDSettings(timestep_fs=self.timestep_fs, sample_every=self.snapshot_every)


def _start(settings: MeltQuenchSettings, seed: int) -> Any:
    atoms = diamond_start(settings.symbol, settings.repeat, seed=seed)
    rng = np.random.default_rng([seed, 7])
    remove = rng.choice(len(atoms), settings.vacancies, replace=False)
    del atoms[sorted(int(i) for i in remove)]
    return atoms


def _meltquench_task(calc: Any, item: tuple[MeltQuenchSettings, int, Any]) -> dict[str, Any]:
    """Campaign task (module level: workers import it): the run's record as a dict."""
    settings, seed, start = item
    crystal = build_crystal(settings.crystal_reference, settings.symbol)
    spectra = SoapSpectra(SI_SOAP, [settings.symbol])
    ref = spectra(crystal)

    def analyse(atoms, values):
        sims = max_kernel(spectra(atoms), ref, SI_SOAP.zeta)
        cn = coordination_numbers(atoms)
        return ({"crystal_similarity": float(sims.mean()),
                 "crystalline_fraction": float(np.mean(sims > 0.99)),
                 "coordination_mean": float(cn.mean())},
                {"crystal_similarity": sims, "coordination": cn})

    start = start if start is not None else _start(settings, seed)
    with one_blas_thread():
        record = run_md(start, calc, settings.segments(), settings=settings.md_settings(),
                        seed=seed, limits=settings.limits, analyse=analyse)
    return record.as_dict()


@dataclass(frozen=True)
class MeltQuenchTrajectory:
    """Labelled snapshots tagged by phase.

    Attributes
    ----------
    reference : ReferenceSet
        The snapshots with their labels (energy, forces, stress where given);
        ``config_types`` are the phases.
    steps, time_fs, temperature_K : ndarray, shape (n_snapshots,)
        NaN (or -1 for steps) where the source does not say.
    labelled_by : str
        Name of the labelling potential (or ``"file"``).
    snapshot_info : tuple of dict
        Scalar info of each snapshot as recorded (pressure, energies, coordination,
        ``crystal_similarity`` and ``crystalline_fraction`` of the MD analysis ...).
    record : MDRecord or None
        The MD run (None when read from a file).
    path : str or None
        Where the trajectory was written or read.
    """

    reference: Any
    steps: np.ndarray
    time_fs: np.ndarray
    temperature_K: np.ndarray
    labelled_by: str
    snapshot_info: tuple[Mapping[str, Any], ...] = ()
    record: MDRecord | None = None
    path: str | None = None

    @property
    def phases(self) -> list[str]:
        """Phases in order of first appearance."""
        return list(dict.fromkeys(self.reference.config_types))

    def frames(self) -> list[Any]:
        """The snapshots as ASE Atoms with labels and info (copies)."""
        from ase.calculators.singlepoint import SinglePointCalculator

        out = []
        ref = self.reference
        for i in range(len(ref)):
            atoms = ref.atoms(i)
            results = {}
            if ref.energy is not None:
                results["energy"] = float(ref.energy[i])
            if ref.forces is not None:
                results["forces"] = np.array(ref.forces[i])
            if ref.stress is not None:
                results["stress"] = np.array(ref.stress[i])
            atoms.calc = SinglePointCalculator(atoms, **results)
            if i < len(self.snapshot_info):
                atoms.info.update(self.snapshot_info[i])
            atoms.info.update(phase=ref.config_types[i], step=int(self.steps[i]),
                              time_fs=float(self.time_fs[i]),
                              temperature_K=float(self.temperature_K[i]),
                              labelled_by=self.labelled_by)
            out.append(atoms)
        return out

    def write(self, path: Any) -> str:
        """Write the snapshots as extxyz (labels as energy/forces/stress, ``phase`` and
        ``config_type`` in the info); :func:`read_meltquench` reads it back."""
        import ase.io

        frames = self.frames()
        for atoms in frames:
            atoms.info["config_type"] = atoms.info["phase"]
        ase.io.write(str(path), frames, format="extxyz")
        return str(path)


def _reference_set(frames: Sequence[Any], name: str, path: str | None) -> Any:
    """A ReferenceSet of labelled frames (energy/forces/stress from their calculators),
    config_type from ``info["phase"]``; its sha256 is that of the frames as extxyz."""
    import ase
    import ase.io

    buffer = io.StringIO()
    ase.io.write(buffer, list(frames), format="extxyz")
    digest = hashlib.sha256(buffer.getvalue().encode()).hexdigest()
    structures, energy, forces, stress = [], [], [], []
    for atoms in frames:
        calc = atoms.calc
        results = getattr(calc, "results", {})
        energy.append(results.get("energy"))
        forces.append(results.get("forces"))
        stress.append(results.get("stress"))
        structures.append(ase.Atoms(atoms.numbers, positions=atoms.positions,
                                    cell=atoms.cell, pbc=atoms.pbc))
    n_atoms = np.array([len(a) for a in frames], dtype=int)
    n_atoms.flags.writeable = False

    def all_or_none(values, label):
        present = [v is not None for v in values]
        if all(present):
            return values
        if any(present):
            raise MDParameterError(f"{label} labels on some snapshots only")
        return None

    energy, forces, stress = (all_or_none(energy, "energy"), all_or_none(forces, "forces"),
                              all_or_none(stress, "stress"))
    spec = DatasetSpec(name, path or f"<{name}>",
                       (("config_type", "phase"),), ":", "extxyz")
    return ReferenceSet(
        name=name, spec=spec, sha256=digest, structures=tuple(structures), n_atoms=n_atoms,
        config_types=tuple(str(a.info.get("phase", "default")) for a in frames),
        energy=None if energy is None else readonly_array([float(e) for e in energy]),
        forces=None if forces is None else tuple(readonly_array(f) for f in forces),
        stress=None if stress is None else readonly_array([np.asarray(s) for s in stress]))


def _label(frames: Sequence[Any], labeller: Any) -> list[Any]:
    from ase.calculators.singlepoint import SinglePointCalculator

    calc = getattr(labeller, "calculator", labeller)
    out = []
    for i, atoms in enumerate(frames):
        work = atoms.copy()
        work.calc = calc
        energy = float(work.get_potential_energy())
        forces = np.array(work.get_forces())
        if not (math.isfinite(energy) and np.all(np.isfinite(forces))):
            raise MDParameterError(f"the labeller returned NaN/inf on snapshot {i} "
                                   f"({atoms.info.get('phase')})")
        results = {"energy": energy, "forces": forces}
        if "stress" in getattr(calc, "implemented_properties", ()) and all(atoms.pbc):
            results["stress"] = np.array(work.get_stress())
        labelled = atoms.copy()
        labelled.calc = SinglePointCalculator(labelled, **results)
        out.append(labelled)
    return out


def _trajectory(frames: Sequence[Any], name: str, labelled_by: str,
                record: MDRecord | None, path: str | None) -> MeltQuenchTrajectory:
    def info(key, default):
        return np.array([a.info.get(key, default) for a in frames], dtype=float)

    scalars = tuple({k: v for k, v in a.info.items()
                     if isinstance(v, (int, float, str, bool, np.number))} for a in frames)
    return MeltQuenchTrajectory(_reference_set(frames, name, path), info("step", -1),
                                info("time_fs", math.nan), info("temperature_K", math.nan),
                                labelled_by, scalars, record, path)


def relabel(trajectory: MeltQuenchTrajectory, labeller: Any) -> MeltQuenchTrajectory:
    """The same snapshots labelled by ``labeller`` (a Potential or an ASE calculator)."""
    frames = _label(trajectory.frames(), labeller)
    return _trajectory(frames, trajectory.reference.name, potential_name(labeller),
                       trajectory.record, None)


def run_meltquench(potential: Any, settings: MeltQuenchSettings | None = None, *,
                   seed: int = 0, start: Any = None, labeller: Any = None,
                   options: CampaignOptions | None = None, trajectory_path: Any = None,
                   name: str = "meltquench", **overrides: Any) -> MeltQuenchTrajectory:
    """Run the melt-quench with ``potential`` (the reference model) and return its
    snapshots, labelled by ``potential`` itself or by ``labeller``. The MD is a campaign
    item (``options``: workers, cache; cached under the potential's hash, every setting,
    the seed and the start); ``overrides`` replace fields of ``settings``.

    Raises :class:`~pytest_mlpval.protocols.md.MDParameterError` when the
    reference's own MD is unstable or cut short: a benchmark from a broken trajectory
    would mislead.
    """
    settings = (settings or MeltQuenchSettings()).with_overrides(**overrides)
    record, _ = run_md_campaign(PROTOCOL, _meltquench_task, potential, settings, seed=seed,
                                start=start, options=options,
                                failure="the melt-quench could not be run")
    if not record.completed:
        raise MDParameterError(f"the reference's melt-quench MD is {record.status} after "
                               f"{record.n_steps} of {record.n_steps_planned} steps: "
                               f"{record.message}")
    frames = list(record.structures)
    labelled_by = potential_name(potential)
    if labeller is not None:
        frames, labelled_by = _label(frames, labeller), potential_name(labeller)
    path = None
    if trajectory_path is not None:
        write_trajectory(frames, trajectory_path)
        path = str(trajectory_path)
    return _trajectory(frames, name, labelled_by, record, path)


def read_meltquench(path: Any, *, energy_key: str = "energy", forces_key: str = "forces",
                    phase_key: str = "phase", labeller: Any = None, index: str = ":",
                    name: str | None = None) -> MeltQuenchTrajectory:
    """Snapshots from an extxyz file: labels under ``energy_key`` / ``forces_key`` (info /
    arrays, or the file's calculator results), the phase under ``phase_key`` (info), and
    ``step``, ``time_fs``, ``temperature_K`` where present. With ``labeller`` the file's
    labels are ignored and the snapshots labelled by it."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    path = Path(path)
    if not path.is_file():
        raise MDParameterError(f"melt-quench trajectory not found: {path}")
    frames = ase.io.read(str(path), index=index, format="extxyz")
    frames = frames if isinstance(frames, list) else [frames]
    missing = [i for i, a in enumerate(frames) if phase_key not in a.info]
    if missing:
        raise MDParameterError(f"{path}: no {phase_key!r} in the info of {len(missing)} of "
                               f"{len(frames)} frames (first: {missing[0]})")
    name = name or path.stem
    if labeller is not None:
        for atoms in frames:
            atoms.info["phase"] = atoms.info[phase_key]
        return _trajectory(_label(frames, labeller), name, potential_name(labeller), None,
                           str(path))
    spec = DatasetSpec(name, str(path.resolve()), (("config_type", phase_key),
                       ("energy", energy_key), ("forces", forces_key)), index, "extxyz")
    reference = read_dataset(spec)
    reference.require("energy", "forces")
    labelled = []
    for i, atoms in enumerate(frames):
        atoms = atoms.copy()
        atoms.calc = SinglePointCalculator(atoms, energy=float(reference.energy[i]),
                                           forces=np.array(reference.forces[i]))
        atoms.info["phase"] = reference.config_types[i]
        labelled.append(atoms)
    trajectory = _trajectory(labelled, name, "file", None, str(path))
    return replace(trajectory, reference=reference)
