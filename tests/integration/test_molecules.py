"""Molecules and clusters (no periodic direction, no cell, no stress): errors, invariances,
descriptors and MD stability (issue 18).

Before: a Si2 molecule with ``pbc=False`` made the built-in potentials raise a bare
``LinAlgError`` (matscipy's neighbour list inverts the cell), so every error, check and MD
run on it failed; the coordination numbers raised the same.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from pytest_mlpval.data import DatasetError, read_dataset
from pytest_mlpval.descriptors import coordination, min_distance, soap_descriptors
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.protocols.invariance import CheckNotApplicable, run_check
from pytest_mlpval.protocols.md import MDSegment
from pytest_mlpval.protocols.md.run import run_md
from pytest_mlpval.protocols.md.settings import MDParameterError, MDSettings
from pytest_mlpval.strategies import structures


def _clusters(seed: int = 0):
    """Si clusters of 2 to 8 atoms cut from diamond, rattled, in vacuum (no cell)."""
    import ase
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    crystal = bulk("Si", "diamond", a=5.43, cubic=True)
    out = []
    for n in (2, 3, 5, 8):
        atoms = ase.Atoms(crystal.numbers[:n], positions=crystal.positions[:n], pbc=False)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.info["config_type"] = "dimer" if n == 2 else "cluster"
        out.append(atoms)
    return out


def _write_molecules(path, labeller, stress: bool = False):
    import ase.io

    frames = []
    for atoms in _clusters():
        atoms.calc = labeller
        atoms.info["dft_energy"] = atoms.get_potential_energy()
        atoms.arrays["dft_forces"] = atoms.get_forces()
        atoms.calc = None
        if stress:
            atoms.info["dft_stress"] = np.zeros(6)
        frames.append(atoms)
    ase.io.write(path, frames)
    return path


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw").calculator


def test_a_molecule_gets_energy_and_forces_and_no_stress(sw):
    import ase
    from ase.calculators.calculator import PropertyNotImplementedError

    si2 = ase.Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], pbc=False)
    si2.calc = sw
    assert si2.get_potential_energy() == pytest.approx(-2.1539, abs=1e-4)
    forces = si2.get_forces()
    assert forces[0, 0] == pytest.approx(-forces[1, 0]) and forces[0, 0] != 0
    with pytest.raises(PropertyNotImplementedError):  # no volume, no stress
        si2.get_stress()
    # a box around it changes nothing: pbc stays False
    boxed = si2.copy()
    boxed.cell = [20, 20, 20]
    boxed.calc = sw
    assert boxed.get_potential_energy() == pytest.approx(si2.get_potential_energy())


def test_invariances_on_clusters_and_what_does_not_apply(sw):
    clusters = _clusters()
    for atoms in (clusters[0], clusters[-1]):
        for name in ("translation", "rotation", "permutation", "force_gradient", "force_sum",
                     "finite") + (("smoothness",) if len(atoms) > 2 else ()):
            result = run_check(name, sw, atoms)
            assert result.status == "ok", (name, result.detail)
        for name in ("stress_gradient", "extensivity"):
            with pytest.raises(CheckNotApplicable, match=r"not periodic \(pbc FFF: a "
                                                         r"molecule or cluster\)"):
                run_check(name, sw, atoms)


@settings(max_examples=8, deadline=None)
@given(structures(species=("Si",), max_atoms=5, periodic=False))
def test_drawn_clusters_are_rotation_invariant(atoms):
    result = run_check("rotation", load_potential("sw").calculator, atoms)
    assert atoms.cell.rank == 0 and not any(atoms.pbc)
    assert result.status == "ok", result.detail


def test_descriptors_of_clusters():
    clusters = _clusters()
    assert min_distance(clusters[0]) == pytest.approx(
        np.linalg.norm(clusters[0].positions[1] - clusters[0].positions[0]))
    assert coordination(clusters[-1]).mean > 1.0  # bonds inside the 8-atom cluster
    spectra = soap_descriptors(clusters)
    assert [len(s) for s in spectra] == [2, 3, 5, 8]
    assert all(np.allclose(np.linalg.norm(s, axis=1), 1.0) for s in spectra)


def test_md_of_a_cluster_in_vacuum_and_npt_refused(sw):
    cluster = _clusters()[-1]
    record = run_md(cluster, sw, [MDSegment("nvt", 40, 300.0), MDSegment("nve", 40)],
                    settings=MDSettings(thermostat="bussi"), seed=1,
                    initial_temperature_K=300.0)
    assert record.status == "completed", record.message
    assert np.isnan(record.frames[-1].pressure_GPa)
    final = record.final_atoms
    assert np.allclose(final.get_momenta().sum(axis=0), 0.0, atol=1e-10)
    assert np.allclose(final.get_angular_momentum(), 0.0, atol=1e-8)  # no spin given
    with pytest.raises(MDParameterError, match="not periodic .* run it NVT or NVE"):
        run_md(cluster, sw, [MDSegment("npt", 5, 300.0, pressure_GPa=0.0)], seed=1,
               initial_temperature_K=300.0)


def test_stress_labels_on_molecules_are_rejected_saying_where(tmp_path, sw):
    import ase.io
    from ase.build import bulk

    path = _write_molecules(tmp_path / "stress.xyz", sw, stress=True)
    with pytest.raises(DatasetError, match=r"structure 0 \(config_type 'dimer', 2 atoms\): "
                                           r"not periodic .* drop the label or the structure"):
        read_dataset(f"m={path},energy=dft_energy,forces=dft_forces,stress=dft_stress")
    crystal = bulk("Si", "diamond", a=5.43, cubic=True)
    crystal.info.update(dft_energy=-34.7, dft_stress=np.zeros(6))
    molecules = ase.io.read(_write_molecules(tmp_path / "m.xyz", sw), ":")
    ase.io.write(tmp_path / "mixed.xyz", [crystal, *molecules])
    with pytest.raises(DatasetError, match="not periodic .* a dataset of their own"):
        read_dataset(f"m={tmp_path / 'mixed.xyz'},energy=dft_energy,stress=dft_stress")


MOLECULE_TESTS = """
import numpy as np
import pytest

from pytest_mlpval.protocols.invariance import CheckNotApplicable, assert_check, run_check
from pytest_mlpval.protocols.md.stability import assert_md_stable, run_md_stability


def test_errors(mlpval, mlpval_errors):
    assert "stress" in mlpval_errors.missing_labels
    mlpval.check(mlpval_errors, energy_rmse=1e-6, force_rmse=1e-5)


def test_offset_removed(mlpval, mlpval_errors):
    mlpval.check(mlpval_errors, config_type="cluster", energy_offset_removed_rmse=1e-6)


@pytest.mark.parametrize("check", ["translation", "rotation", "permutation",
                                   "force_gradient", "finite", "stress_gradient"])
def test_physics(mlpval, mlpval_dataset, check):
    for i in range(len(mlpval_dataset)):
        try:
            result = run_check(check, mlpval.calculator, mlpval_dataset.atoms(i))
        except CheckNotApplicable as exc:
            pytest.skip(str(exc))
        mlpval.record_check(result)
        assert_check(result)


def test_md(mlpval, mlpval_dataset):
    result = run_md_stability(mlpval.calculator, start=mlpval_dataset.atoms(3),
                              temperature_K=300.0, nvt_steps=60, nve_steps=60)
    assert_md_stable(result, max_temperature_error_fraction=0.5)
"""


def test_a_molecular_dataset_through_the_plugin(pytester, run, sw):
    path = _write_molecules(pytester.path / "molecules.xyz", sw)
    pytester.makepyfile(test_molecules=MOLECULE_TESTS)
    result = run("--potential=sw", "-rs",
                 f"--mlpval-dataset=mol={path},energy=dft_energy,forces=dft_forces")
    result.assert_outcomes(passed=8, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*Si2 is not periodic (pbc FFF: a molecule or "
                                 "cluster)*"])


SHIFTED_MODULE = """
from ase.calculators.calculator import Calculator, all_changes

from pytest_mlpval.potentials import load_potential

SHIFTS = {"C": -0.37, "Si": 0.81}


class Shifted(Calculator):
    implemented_properties = ["energy", "free_energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = load_potential("tersoff").calculator
        energy = work.get_potential_energy() + sum(
            SHIFTS[s] for s in work.get_chemical_symbols())
        self.results = {"energy": energy, "free_energy": energy, "forces": work.get_forces()}


def tersoff_shifted():
    return Shifted()
"""


def test_sic_clusters_with_per_element_shifts_through_the_plugin(pytester, run):
    """SiC clusters labelled by Tersoff's SiC potential (not DFT); the candidate is the
    same potential plus -0.37 eV per C and +0.81 eV per Si."""
    import ase.io

    tersoff = load_potential("tersoff").calculator
    frames = []
    for k, atoms in enumerate(_clusters(seed=2)):
        atoms.numbers[: k + 1] = 6  # 1 to 4 carbons: four compositions
        atoms.calc = tersoff
        atoms.info["dft_energy"] = atoms.get_potential_energy()
        atoms.arrays["dft_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    ase.io.write(pytester.path / "sic.xyz", frames)
    pytester.makepyfile(shifted_pots=SHIFTED_MODULE)
    pytester.makepyfile(test_sic="""
        def test_offsets_removed(mlpval, mlpval_errors):
            mlpval.check(mlpval_errors, energy_offset_removed_rmse=1e-6, force_rmse_C=1e-5)

        def test_raw_energy_fails(mlpval, mlpval_errors):
            mlpval.check(mlpval_errors, energy_rmse=0.01)
    """)
    pytester.syspathinsert()
    result = run("--potential=shifted_pots:tersoff_shifted", "--mlpval-json=out.json",
                 f"--mlpval-dataset=sic={pytester.path / 'sic.xyz'},energy=dft_energy,"
                 "forces=dft_forces")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*per-element energy offsets fitted on the whole dataset*",
        "*C * -0.37 * eV/atom*", "*Si * 0.81 * eV/atom*",
        "*E offsets/El*limits*", "*C -370, Si +810*",
    ])
    import json

    [record, *_] = [r for t in json.loads((pytester.path / "out.json").read_text())["tests"]
                    for r in t["records"] if r.get("kind", "errors") == "errors"]
    assert record["metrics"]["energy_offset_Si"]["value"] == pytest.approx(0.81, abs=1e-6)
    assert record["metrics"]["force_rmse_C"]["unit"] == "eV/Å"


# --- no silicon assumption left where a default was silicon's -----------------------------

def test_the_md_start_and_bond_cutoff_follow_the_material(sw):
    from pytest_mlpval.descriptors import SI_BOND_CUTOFF_A, bond_cutoff_A, coordination
    from pytest_mlpval.protocols.md import (StabilitySettings, crystal_start, diamond_start,
                                            md_stability)

    mo = crystal_start("bcc", "Mo", min_atoms=64, seed=3)
    assert len(mo) == 128 and set(mo.get_chemical_symbols()) == {"Mo"}
    assert np.array_equal(crystal_start("diamond", "Si", 64, seed=1).positions,
                          diamond_start("Si", 2, seed=1).positions)
    # bcc's 8 + 6 neighbours inside Mo's default cutoff, Si keeps its 2.85 Å
    assert coordination(crystal_start("bcc", "Mo", 16, rattle_A=0.0)).mean == 14
    assert bond_cutoff_A(["Si"]) == SI_BOND_CUTOFF_A
    assert 2.8 < bond_cutoff_A(["Si", "C"]) < 2.9
    with pytest.raises(MDParameterError, match="crystal: .*nonesuch"):
        StabilitySettings(crystal="nonesuch")
    result = md_stability(sw, StabilitySettings(crystal="beta-Sn", repeat=1, nvt_steps=5,
                                                nve_steps=5, temperature_K=300.0))
    assert result.status == "completed" and result.record.n_steps == 10
    assert result.record.frames[0].volume_per_atom_A3 < 18  # beta-Sn, not diamond (20)


@settings(max_examples=10, deadline=None)
@given(structures(species=("Mo",), max_atoms=4), structures(species=("C",), max_atoms=4,
                                                            periodic=False))
def test_drawn_structures_scale_with_the_species(mo, carbon):
    from pytest_mlpval.strategies import species_scale

    scale = species_scale(["Mo"])  # Mo's covalent radius is 1.39 x silicon's
    assert 16 * scale ** 3 - 1e-9 <= mo.get_volume() / len(mo) <= 30 * scale ** 3 + 1e-9
    assert min_distance(mo, 2.0 * scale) >= 2.0 * scale - 1e-9
    assert min_distance(carbon, 2.0) >= 2.0 * species_scale(["C"]) - 1e-9
