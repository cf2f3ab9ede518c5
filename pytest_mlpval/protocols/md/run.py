"""Guarded molecular dynamics: ASE integrators run step by step under a watch that stops
a failing potential and says why.

Plain library (no pytest). The integrators are ASE's: ``VelocityVerlet`` (NVE),
``Langevin`` or ``Bussi`` (NVT), ``Inhomogeneous_NPTBerendsen`` or ``LangevinBAOAB`` (NPT).
A run is a sequence of :class:`MDSegment` (a phase with a temperature and pressure, each
optionally ramped linearly); :func:`run_md` runs them and returns an :class:`MDRecord`.

Between two steps the run is checked (:class:`MDLimits`): NaN or inf anywhere, forces
above a limit, the potential energy per atom moving further than a limit from its start,
the temperature above a limit, two atoms closer than a minimum distance, the calculator
raising, and the wall time. A failed check ends the run as ``"unstable"`` (with the
reason and the step); the wall-time limit ends it as ``"cut_short"``. Either way the frames
recorded so far are kept and the record says how far it got: a run is never silently
shorter than asked. A calculator that hangs inside a single call cannot be interrupted
from here; the limit is checked between steps.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pytest_mlpval.campaign import ItemResult, run_campaign
from pytest_mlpval.crystals import build_crystal
from pytest_mlpval.descriptors import min_distance
from pytest_mlpval.errors import MlpvalError, ProtocolError
from pytest_mlpval.protocols.base import CampaignOptions, cache_parameters
from pytest_mlpval.protocols.md.settings import (COMPLETED, CUT_SHORT, UNSTABLE, MDFrame,
                                                 MDLimits, MDParameterError,
                                                 MDProtocolSettings, MDRecord, MDSegment,
                                                 MDSettings, start_key)
from pytest_mlpval.threads import one_blas_thread
from pytest_mlpval.units import EV_PER_A3_TO_GPA

__all__ = ["run_md", "run_md_campaign", "pressure_GPa", "diamond_start", "crystal_start",
           "random_start",
           "melt_quench_segments", "write_trajectory"]

#: an analysis callback: (atoms, partial frame values) -> (scalars, per-atom arrays)
Analyse = Callable[[Any, Mapping[str, Any]], tuple[dict[str, Any], dict[str, np.ndarray]]]


class _Stop(MlpvalError):
    """Internal: a check failed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _AnalysisError(ProtocolError):
    """The protocol's frame analysis raised (a bug or an unsupported structure, not an
    instability of the potential)."""


def pressure_GPa(atoms: Any) -> float:
    """Pressure in GPa from the calculator's stress, with the kinetic (ideal-gas) term of
    the atoms' momenta: -trace(sigma)/3. NaN where the calculator has no stress."""
    calc = atoms.calc
    implemented = getattr(calc, "implemented_properties", ("stress",))
    if "stress" not in implemented or not all(atoms.pbc):
        return math.nan
    stress = atoms.get_stress(voigt=True, include_ideal_gas=True)
    return float(-np.mean(stress[:3]) * EV_PER_A3_TO_GPA)


def diamond_start(symbol: str = "Si", repeat: int = 2, rattle_A: float = 0.05,
                  seed: int = 0) -> Any:
    """A cubic diamond supercell (8 x ``repeat``^3 atoms) with positions displaced by a
    seeded Gaussian of ``rattle_A``: a start for melting (silicon's structure; see
    :func:`crystal_start` for another material's)."""
    if int(repeat) != repeat or repeat < 1:
        raise MDParameterError(f"repeat must be a positive integer, got {repeat!r}")
    return crystal_start("diamond", symbol, 8 * int(repeat) ** 3, rattle_A, seed)


def crystal_start(crystal: str = "diamond", symbol: str = "Si", min_atoms: int = 64,
                  rattle_A: float = 0.05, seed: int = 0) -> Any:
    """The crystal ``crystal`` (any spec of :func:`~pytest_mlpval.crystals.build_crystal`:
    ``"bcc"``, ``"fcc"``, a prototype, a file) of ``symbol``, repeated alike along its
    three vectors until it holds at least ``min_atoms`` atoms, with positions displaced by
    a seeded Gaussian of ``rattle_A`` (diamond Si, 64 atoms: 2 x 2 x 2 cubic cells)."""
    if int(min_atoms) != min_atoms or min_atoms < 1:
        raise MDParameterError(f"min_atoms must be a positive integer, got {min_atoms!r}")
    cell = build_crystal(crystal, symbol)
    repeat = 1
    while len(cell) * repeat ** 3 < min_atoms:
        repeat += 1
    atoms = cell * ((repeat,) * 3)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=rattle_A, size=atoms.positions.shape)
    return atoms


def random_start(symbol: str = "Si", n_atoms: int = 64, volume_per_atom_A3: float | None = None,
                 min_separation_A: float | None = None, seed: int = 0,
                 max_attempts: int = 10000) -> Any:
    """A cubic periodic cell of ``n_atoms`` placed at random (seeded), no two closer than
    ``min_separation_A``: a start for melting that carries no memory of a crystal.

    ``volume_per_atom_A3`` defaults to that of the element's diamond structure (Si:
    20.0 Å^3); ``min_separation_A`` to 0.8 x twice the covalent radius (Si: 1.78 Å).
    """
    from ase import Atoms
    from ase.data import atomic_numbers, covalent_radii

    if int(n_atoms) != n_atoms or n_atoms < 1:
        raise MDParameterError(f"n_atoms must be a positive integer, got {n_atoms!r}")
    if volume_per_atom_A3 is None:
        diamond = build_crystal("diamond", symbol)
        volume_per_atom_A3 = diamond.get_volume() / len(diamond)
    if not volume_per_atom_A3 > 0:
        raise MDParameterError(f"volume_per_atom_A3 must be > 0, got {volume_per_atom_A3!r}")
    if min_separation_A is None:
        min_separation_A = 1.6 * covalent_radii[atomic_numbers[symbol]]
    side = (n_atoms * volume_per_atom_A3) ** (1 / 3)
    rng = np.random.default_rng(seed)
    positions: list[np.ndarray] = []
    attempts = 0
    while len(positions) < n_atoms:
        attempts += 1
        if attempts > max_attempts:
            raise MDParameterError(
                f"could not place {n_atoms} atoms {min_separation_A:.3g} Å apart at "
                f"{volume_per_atom_A3:.3g} Å^3/atom in {max_attempts} attempts")
        trial = rng.uniform(0, side, 3)
        if positions:
            d = np.asarray(positions) - trial
            d -= side * np.round(d / side)
            if np.min(np.einsum("ij,ij->i", d, d)) < min_separation_A ** 2:
                continue
        positions.append(trial)
    return Atoms(symbol * int(n_atoms), positions=positions, cell=[side] * 3, pbc=True)


def melt_quench_segments(melt_K: float = 3000.0, quench_to_K: float = 500.0,
                         melt_steps: int = 1000, quench_steps: int = 2000,
                         anneal_steps: int = 0) -> tuple[MDSegment, ...]:
    """Segments of a melt-quench at constant volume: hold at ``melt_K``, cool linearly
    to ``quench_to_K``, optionally hold there (``anneal_steps``)."""
    segments = [MDSegment("melt", melt_steps, melt_K),
                MDSegment("quench", quench_steps, melt_K, quench_to_K)]
    if anneal_steps:
        segments.append(MDSegment("anneal", anneal_steps, quench_to_K))
    return tuple(segments)


# -- integrators -------------------------------------------------------------------------

def _stress_first(calc: Any) -> Any:
    """``calc`` behind a calculator that asks it for the stress before forces and energy.

    NPT integrators ask for forces, then for the stress. A calculator that computes only
    what is asked but everything when asked for the stress (quippy's GAP) would be
    evaluated twice per step; this way it is evaluated once.
    """
    from ase.calculators.calculator import Calculator, all_changes

    class StressFirst(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = calc
            stress = calc.get_property("stress", work)
            energy = calc.get_property("energy", work)
            self.results = {"stress": stress, "forces": calc.get_property("forces", work),
                            "energy": energy, "free_energy": energy}

    return StressFirst()


def _integrator(segment: MDSegment, atoms: Any, settings: MDSettings, rng: Any):
    from ase import units

    dt = settings.timestep_fs * units.fs
    T, P = segment.target(0)
    if segment.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet
        return VelocityVerlet(atoms, dt)
    if segment.ensemble == "nvt":
        if settings.thermostat == "bussi":
            from ase.md.bussi import Bussi
            if segment.temperature_end_K not in (None, segment.temperature_K):
                raise MDParameterError(f"segment {segment.phase!r}: the Bussi thermostat "
                                       "has no temperature ramp; use thermostat='langevin'")
            if atoms.get_kinetic_energy() == 0:
                raise MDParameterError(f"segment {segment.phase!r}: Bussi needs non-zero "
                                       "initial velocities (give initial_temperature_K)")
            return Bussi(atoms, dt, temperature_K=T, taut=settings.taut_fs * units.fs, rng=rng)
        from ase.md.langevin import Langevin
        # fixcm=False: ASE 3.28+ deprecates fixcm=True (it biases the sampling); the centre
        # of mass then diffuses, which changes nothing in a periodic bulk
        return Langevin(atoms, dt, temperature_K=T, friction=settings.friction_per_fs / units.fs,
                        fixcm=False, rng=rng)
    if not all(atoms.pbc):
        raise MDParameterError(
            f"segment {segment.phase!r} is NPT but the structure is not periodic (pbc "
            f"{''.join('T' if p else 'F' for p in atoms.pbc)}): a molecule or cluster has "
            "no cell to scale; run it NVT or NVE")
    stress = getattr(atoms.calc, "implemented_properties", ("stress",))
    if "stress" not in stress:
        raise MDParameterError(f"segment {segment.phase!r} is NPT but the calculator "
                               f"{type(atoms.calc).__name__} does not implement 'stress'")
    if settings.barostat == "langevin_baoab":
        import warnings

        from ase.md.langevinbaoab import LangevinBAOAB
        with warnings.catch_warnings():  # it notes that it chose the cell mass heuristically
            warnings.filterwarnings("ignore", "Using heuristic P_mass")
            return LangevinBAOAB(atoms, dt, temperature_K=T, externalstress=-P * units.GPa,
                                 T_tau=settings.taut_fs * units.fs,
                                 P_tau=settings.taup_fs * units.fs, rng=rng)
    from ase.md.nptberendsen import Inhomogeneous_NPTBerendsen
    return Inhomogeneous_NPTBerendsen(
        atoms, dt, temperature_K=T, pressure_au=P * units.GPa,
        taut=settings.taut_fs * units.fs, taup=settings.taup_fs * units.fs,
        compressibility_au=1.0 / (settings.bulk_modulus_GPa * units.GPa))


def _set_targets(dyn: Any, segment: MDSegment, T: float | None, P: float | None) -> None:
    from ase import units

    if segment.ensemble == "nve" or not segment.ramped:
        return
    if T is not None and hasattr(dyn, "set_temperature"):
        dyn.set_temperature(temperature_K=T)
    if P is not None:
        if hasattr(dyn, "set_pressure"):
            # the attribute set_pressure() would set: in ASE 3.29 set_pressure(pressure_au=)
            # raises TypeError (it passes three arguments to _process_pressure)
            dyn.pressure = P * units.GPa
        else:  # LangevinBAOAB: full 3x3 external stress (negative of the pressure)
            dyn.externalstress = -P * units.GPa * np.identity(3)


# -- the run -----------------------------------------------------------------------------

class _Watch:
    """The per-step checks."""

    def __init__(self, atoms: Any, limits: MDLimits, segments: Sequence[MDSegment],
                 initial_K: float | None) -> None:
        self.n = len(atoms)
        self.min_d = limits.resolved_min_distance(atoms.get_chemical_symbols())
        # the hottest target, or the temperature the run starts at (a quench handed on)
        temps = [t for s in segments for t in (s.temperature_K, s.temperature_end_K)
                 if t is not None] + ([initial_K] if initial_K else []) \
            + [float(atoms.get_temperature())]
        self.max_T = limits.resolved_max_temperature(max(temps, default=0.0))
        self.max_F = limits.max_force_eV_A
        self.max_dE = limits.max_energy_change_per_atom_eV
        self.e0: float | None = None

    def check(self, atoms: Any, step: int, time_fs: float) -> float:
        """Raise :class:`_Stop` on a failed check; return the potential energy (eV)."""
        where = f"at step {step} ({time_fs:g} fs)"
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces()
        if not (math.isfinite(energy) and np.all(np.isfinite(forces))
                and np.all(np.isfinite(atoms.positions))):
            what = "energy" if not math.isfinite(energy) else "forces or positions"
            raise _Stop("nan", f"non-finite {what} {where} (energy {energy})")
        fmax = float(np.sqrt((forces ** 2).sum(axis=1).max()))
        if fmax > self.max_F:
            raise _Stop("force", f"largest force {fmax:.4g} eV/Å > {self.max_F:g} eV/Å {where}")
        if self.e0 is None:
            self.e0 = energy / self.n
        change = energy / self.n - self.e0
        if abs(change) > self.max_dE:
            raise _Stop("energy", f"potential energy changed by {change:+.4g} eV/atom "
                        f"(limit {self.max_dE:g}) {where}")
        temperature = float(atoms.get_temperature())
        if temperature > self.max_T:
            raise _Stop("temperature", f"temperature {temperature:.4g} K > {self.max_T:.4g} K "
                        f"{where}")
        close = min_distance(atoms, self.min_d)
        if close < self.min_d:
            raise _Stop("overlap", f"two atoms {close:.3f} Å apart (< {self.min_d:.3f} Å) "
                        f"{where}")
        return energy


def run_md(atoms: Any, calc: Any, segments: Sequence[MDSegment], *,
           settings: MDSettings = MDSettings(), seed: int = 0, limits: MDLimits = MDLimits(),
           analyse: Analyse | None = None, initial_temperature_K: float | None = None,
           deadline: float | None = None, record_series: bool = True) -> MDRecord:
    """Run ``segments`` one after the other on a copy of ``atoms`` with ``calc``.

    Parameters
    ----------
    atoms : ase.Atoms
        The start; its momenta are kept unless ``initial_temperature_K`` is given (then
        Maxwell-Boltzmann velocities at that temperature, seeded, zero total momentum,
        and zero angular momentum for a molecule or cluster: no periodic direction, no
        cell; its pressure and volume are NaN, and NPT segments are refused).
        Without momenta and without ``initial_temperature_K``, the first segment's
        temperature is used.
    segments : sequence of MDSegment
    settings : MDSettings
        Time step, thermostat, barostat, sampling interval.
    seed : int
        Seeds every random number of the run (velocities, Langevin/Bussi noise).
    limits : MDLimits
        Stability checks and the wall-time limit.
    analyse : callable, optional
        ``analyse(atoms, values) -> (scalars, per_atom_arrays)`` for every frame;
        scalars go to :attr:`MDFrame.analysis` (and the trajectory's info), per-atom
        arrays to the stored structure's arrays.
    deadline : float, optional
        ``time.monotonic()`` value after which the run is cut short (overrides
        ``limits.wall_time_s``; used to share one limit between runs of a protocol).
    record_series : bool
        Keep per-step energies and temperature in :attr:`MDRecord.series`.
    """
    with one_blas_thread():
        return _run_md(atoms, calc, tuple(segments), settings, seed, limits, analyse,
                       initial_temperature_K, deadline, record_series)


def _run_md(atoms, calc, segments, settings, seed, limits, analyse, initial_temperature_K,
            deadline, record_series) -> MDRecord:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md import velocitydistribution as vd

    segments = tuple(segments)
    if not segments:
        raise MDParameterError("no MD segments to run")
    if len(atoms) == 0:
        raise MDParameterError("the structure has no atoms")
    start = time.monotonic()
    if deadline is None and limits.wall_time_s is not None:
        deadline = start + limits.wall_time_s
    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.calc = calc
    temperature0 = initial_temperature_K
    if temperature0 is None and not np.any(atoms.get_momenta()):
        temperature0 = segments[0].temperature_K
    if temperature0:
        if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
            vd.thermalize_momenta(atoms, temperature0, rng=rng)
        else:
            vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature0, rng=rng)
        vd.Stationary(atoms)
        if not any(atoms.pbc) and len(atoms) > 1:  # a cluster in vacuum: no spin either
            vd.ZeroRotation(atoms)
    watch = _Watch(atoms, limits, segments, temperature0)
    n = len(atoms)
    frames: list[MDFrame] = []
    structures: list[Any] = []
    series: dict[str, list[float]] = {k: [] for k in ("time_fs", "potential_energy_per_atom_eV",
                                                     "kinetic_energy_per_atom_eV",
                                                     "conserved_energy_per_atom_eV",
                                                     "temperature_K")}
    analysis_s = 0.0
    step = 0
    status, reason, message = COMPLETED, None, None
    planned = sum(s.n_steps for s in segments)
    dt = settings.timestep_fs
    shift = 0.0  # energy taken out by Bussi in earlier segments

    def observe(segment: MDSegment, dyn: Any, energy: float, T: Any, P: Any, frame: bool):
        nonlocal analysis_s
        kinetic = float(atoms.get_kinetic_energy())
        conserved = math.nan
        if segment.ensemble == "nve":
            conserved = energy + kinetic
        elif hasattr(dyn, "transferred_energy"):  # Bussi: E minus what the thermostat took
            conserved = energy + kinetic - dyn.transferred_energy - shift
        if record_series:
            for key, value in (("time_fs", step * dt),
                               ("potential_energy_per_atom_eV", energy / n),
                               ("kinetic_energy_per_atom_eV", kinetic / n),
                               ("conserved_energy_per_atom_eV", conserved / n),
                               ("temperature_K", atoms.get_temperature())):
                series[key].append(float(value))
        if not frame:
            return
        values = dict(step=step, time_fs=step * dt, phase=segment.phase,
                      temperature_K=float(atoms.get_temperature()),
                      target_temperature_K=math.nan if T is None else float(T),
                      pressure_GPa=pressure_GPa(atoms),
                      target_pressure_GPa=math.nan if P is None else float(P),
                      volume_per_atom_A3=float(atoms.get_volume() / n) if all(atoms.pbc)
                      else math.nan,
                      potential_energy_per_atom_eV=energy / n,
                      kinetic_energy_per_atom_eV=kinetic / n,
                      conserved_energy_per_atom_eV=conserved / n,
                      min_distance_A=min_distance(atoms))
        scalars: dict[str, Any] = {}
        per_atom: dict[str, np.ndarray] = {}
        if analyse is not None:
            t0 = time.perf_counter()
            try:
                scalars, per_atom = analyse(atoms, values)
            except Exception as exc:  # not the potential's fault: do not call it unstable
                raise _AnalysisError(f"the frame analysis failed at step {step}: "
                                     f"{type(exc).__name__}: {exc}") from exc
            analysis_s += time.perf_counter() - t0
        frames.append(MDFrame(**values, analysis=scalars))
        if settings.store_structures:
            snap = atoms.copy()
            results = {"energy": energy, "free_energy": energy,
                       "forces": atoms.get_forces().copy()}
            if math.isfinite(values["pressure_GPa"]):
                results["stress"] = atoms.get_stress().copy()
            snap.calc = SinglePointCalculator(snap, **results)
            snap.info.update(frames[-1].info())
            for key, array in per_atom.items():
                snap.arrays[key] = np.asarray(array)
            structures.append(snap)

    try:
        energy = watch.check(atoms, 0, 0.0)
        observe(segments[0], None, energy, *segments[0].target(0), True)
        for segment in segments:
            atoms.calc = calc
            if segment.ensemble == "npt" and "stress" in getattr(calc, "implemented_properties",
                                                                 ()):
                atoms.calc = _stress_first(calc)
            dyn = _integrator(segment, atoms, settings, rng)
            steps = dyn.irun(segment.n_steps)
            next(steps)  # the generator's first yield comes before any step
            for k in range(1, segment.n_steps + 1):
                if deadline is not None and time.monotonic() > deadline:
                    raise _Stop("wall_time", f"wall-time limit reached after {step} of "
                                f"{planned} steps ({time.monotonic() - start:.1f} s)")
                T, P = segment.target(k)
                _set_targets(dyn, segment, T, P)
                next(steps)
                step += 1
                energy = watch.check(atoms, step, step * dt)
                observe(segment, dyn, energy, T, P,
                        step % settings.sample_every == 0 or step == planned)
            shift += getattr(dyn, "transferred_energy", 0.0)
    except _Stop as stop:
        status = CUT_SHORT if stop.reason == "wall_time" else UNSTABLE
        reason = None if stop.reason == "wall_time" else stop.reason
        message = str(stop)
    except (MDParameterError, _AnalysisError):
        raise
    except Exception as exc:  # the calculator (or an integrator fed by it) raised
        status, reason = UNSTABLE, "error"
        message = f"{type(exc).__name__} at step {step} ({step * dt:g} fs): {exc}"
    final = atoms.copy()
    final.calc = None
    return MDRecord(frames=tuple(frames), structures=tuple(structures),
                    series={k: np.asarray(v) for k, v in series.items()},
                    status=status, instability=reason, message=message, n_steps=step,
                    n_steps_planned=planned, seconds=time.monotonic() - start,
                    analysis_seconds=analysis_s, final_atoms=final, seed=seed)


def write_trajectory(structures: Sequence[Any], path: Any, append: bool = False) -> None:
    """Write frames (``MDRecord.structures``) as extended XYZ: positions, cell, momenta,
    energy/forces/stress, per-atom analysis columns and per-frame info (step, time_fs,
    phase, temperature_K, pressure_GPa ...). ASE (``ase.io.read``) and OVITO read it."""
    import ase.io

    ase.io.write(str(path), list(structures), format="extxyz", append=append)



def _check_record(value: Any) -> str | None:
    """Why a cached MD record is unusable (None: it is fine)."""
    MDRecord.from_dict(value)
    return None


def run_md_campaign(name: str, task: Callable[[Any, Any], Any], potential: Any,
                    settings: MDProtocolSettings, *, seed: int = 0, start: Any = None,
                    options: CampaignOptions | None = None,
                    failure: str = "the MD could not be run") -> tuple[MDRecord, ItemResult]:
    """An MD protocol's run as one cached campaign item: ``task(calc, (settings, seed,
    start))`` returns an :class:`MDRecord` as a dict. Cached under ``name`` with the
    recipe of :func:`~pytest_mlpval.protocols.base.run_protocol` (``name``, the settings'
    ``VERSION`` and ``as_dict()``) plus the seed and the start structure
    (:func:`~pytest_mlpval.protocols.md.start_key`), and the candidate's
    identity. Raises :class:`MDParameterError` (``failure: error``) when the task fails.
    Returns the record and the campaign item (``seconds``, ``from_cache``)."""
    options = options or CampaignOptions()
    parameters = {**cache_parameters(name, settings), "seed": int(seed),
                  "start": start_key(start)}
    campaign = run_campaign(name, task, [(settings, int(seed), start)], potential,
                            parameters, version=settings.VERSION, validate=_check_record,
                            **options.campaign_kwargs())
    done = campaign.items[0]
    if not done.ok:
        raise MDParameterError(f"{failure}: {done.error}")
    return MDRecord.from_dict(done.value), done
