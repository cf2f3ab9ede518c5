"""The multi-component path, proven on silicon carbide (issue 18).

THE LABELS HERE ARE NOT DFT. They are the energies, forces and stresses of the Erhart-Albe
Tersoff potential for SiC (P. Erhart and K. Albe, Phys. Rev. B 71, 035211 (2005), as
matscipy ships it: ``Erhart_PRB_71_035211_SiC`` with ``matscipy.calculators.manybody.
Manybody``), plus one energy per element added to every structure (as two codes with
different isolated-atom references differ). No open multi-component DFT set is at hand;
an empirical potential's labels serve to prove that the chain runs on two elements and
measures what it should:

- errors with per-element energy offsets: the Tersoff itself as candidate differs from
  the labels by the added energies only, so the fitted offsets are those energies and the
  offset-removed energy error is zero, where one mean offset leaves a residual that
  depends on the composition; force errors per element find the element a candidate
  gets wrong;
- SOAP with two species (dscribe);
- a random structure search of composition SiC that finds zincblende, and a compression
  of zincblende SiC analysed against zincblende and rocksalt;
- properties of the binary crystal (zincblende SiC: lattice and cubic elastic constants)
  through the property protocols, against the Tersoff's own values computed directly here.

The candidate is the labelling potential itself (fast: the whole file runs in seconds).
tests/physics/test_multicomponent_gap.py (slow) runs the chain with a two-species GAP
fitted to Tersoff labels of gentler cells: these ones are rough where the Tersoff's cutoff
function switches (rattling by 0.05 Å brings second-neighbour Si-Si pairs, 3.08 Å in
zincblende, into the Si-Si cutoff region of 2.68-2.96 Å; the C-rich cells put C-C pairs
at the Si-C bond length, in the C-C region of 1.85-2.15 Å), with forces of 10-28 eV/Å
that a small GAP fitted to them did not learn (training force errors of 1-10 eV/Å).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

#: eV per atom of each element added to the labels (labels = Tersoff + these)
SHIFTS = {"Si": -0.31, "C": 0.17}


def erhart_albe():
    """The labelling potential: Erhart-Albe Tersoff for SiC (matscipy)."""
    from matscipy.calculators.manybody import Manybody
    from matscipy.calculators.manybody.explicit_forms import TersoffBrenner
    from matscipy.calculators.manybody.explicit_forms.tersoff_brenner import (
        Erhart_PRB_71_035211_SiC)

    return Manybody(**TersoffBrenner(Erhart_PRB_71_035211_SiC))


def sic_structures(seed: int = 0) -> list:
    """A few dozen cells: zincblende SiC rattled and strained, two hot MD snapshots, and
    Si- and C-rich cells (substitutions), so that the compositions vary."""
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs, kB

    rng = np.random.default_rng(seed)
    calc = erhart_albe()
    frames = []
    for k in range(12):  # rattled and strained stoichiometric cells
        atoms = bulk("SiC", "zincblende", a=4.36, cubic=True)
        strain = np.eye(3) + rng.normal(scale=0.015, size=(3, 3))
        atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.info["config_type"] = "strained"
        frames.append(atoms)
    hot = bulk("SiC", "zincblende", a=4.36, cubic=True)
    hot.calc = calc
    masses = hot.get_masses()[:, None]
    hot.set_momenta(rng.normal(size=(len(hot), 3)) * np.sqrt(masses * kB * 2500))
    md = VelocityVerlet(hot, 1.0 * fs)
    for _ in range(2):  # two hot snapshots, 20 fs apart
        md.run(20)
        snapshot = hot.copy()
        snapshot.info["config_type"] = "hot"
        frames.append(snapshot)
    for k in range(14):  # off-stoichiometric: 1-3 substitutions of either kind
        atoms = bulk("SiC", "zincblende", a=4.36, cubic=True)  # Si on even sites
        sites = 2 * rng.choice(4, size=1 + k % 3, replace=False) + (k < 7)
        atoms.numbers[sites] = 14 if k < 7 else 6
        atoms.positions += rng.normal(scale=0.04, size=atoms.positions.shape)
        atoms.info["config_type"] = "silicon_rich" if k < 7 else "carbon_rich"
        frames.append(atoms)
    return frames


def label(frames, calc, shifts=SHIFTS, prefix="ref"):
    """Tersoff labels (``<prefix>_energy`` with the per-element ``shifts`` added,
    ``<prefix>_forces``, ``<prefix>_stress``) on copies of ``frames``."""
    out = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calc
        energy = atoms.get_potential_energy() + sum(
            shifts[s] for s in atoms.get_chemical_symbols())
        forces, stress = atoms.get_forces(), atoms.get_stress()
        atoms.calc = None
        atoms.info[f"{prefix}_energy"] = energy
        atoms.info[f"{prefix}_stress"] = stress
        atoms.arrays[f"{prefix}_forces"] = forces
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def tersoff():
    return erhart_albe()


@pytest.fixture(scope="module")
def sic_set(tmp_path_factory, tersoff):
    """The labelled set as a dataset of the plugin (extxyz, read back)."""
    import ase.io

    from pytest_mlpval.data import read_dataset

    path = tmp_path_factory.mktemp("sic") / "sic_tersoff.xyz"
    ase.io.write(path, label(sic_structures(), tersoff))
    return read_dataset(f"sic={path},energy=ref_energy,forces=ref_forces,stress=ref_stress")


def test_the_set_varies_in_composition(sic_set):
    fractions = {round(float(np.mean(a.numbers == 6)), 3) for a in sic_set.structures}
    assert len(sic_set.structures) == 28
    assert fractions == {0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875}


def test_per_element_offsets_recover_the_added_energies(sic_set, tersoff):
    from pytest_mlpval.evaluate import predict
    from pytest_mlpval.metrics import compute_errors

    report = compute_errors(sic_set, predict(tersoff, sic_set))
    metrics = report.metrics()
    # candidate minus labels: minus the energies added to the labels
    assert metrics["energy_offset_Si"] == pytest.approx(-SHIFTS["Si"], abs=1e-6)
    assert metrics["energy_offset_C"] == pytest.approx(-SHIFTS["C"], abs=1e-6)
    assert metrics["energy_offset_removed_rmse"] == pytest.approx(0.0, abs=1e-6)
    # one mean offset would have left a residual that follows the composition
    e = report.energy_error
    assert np.sqrt(np.mean((e - e.mean()) ** 2)) > 0.02
    assert metrics["force_rmse_Si"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["force_rmse_C"] == pytest.approx(0.0, abs=1e-6)


def test_force_errors_per_element_find_the_wrong_element(sic_set, tersoff):
    """A candidate whose carbon forces are 10% too large: the carbon force error is the
    whole error, silicon's is zero."""
    from ase.calculators.calculator import Calculator, all_changes

    from pytest_mlpval.evaluate import predict
    from pytest_mlpval.metrics import compute_errors

    class CarbonTooStiff(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = tersoff
            forces = work.get_forces()
            forces[work.numbers == 6] *= 1.1
            energy = work.get_potential_energy()
            self.results = {"energy": energy, "free_energy": energy, "forces": forces,
                            "stress": work.get_stress()}

    metrics = compute_errors(sic_set, predict(CarbonTooStiff(), sic_set)).metrics()
    assert metrics["force_rmse_Si"] < 1e-6 < 0.05 < metrics["force_rmse_C"]
    assert metrics["force_max_C"] == pytest.approx(metrics["force_max"])


def test_soap_with_two_species(sic_set):
    from pytest_mlpval.descriptors import (SI_SOAP, similarity_to_reference,
                                           soap_descriptors)

    frames = list(sic_set.structures[:3])
    two = soap_descriptors(frames)  # the species of the structures: C and Si
    one = soap_descriptors([bulk("Si", "diamond", a=5.43)])
    assert two[0].shape[0] == 8 and two[0].shape[1] > 2 * one[0].shape[1]
    zb = bulk("SiC", "zincblende", a=4.36)
    assert similarity_to_reference(zb * (2, 2, 2), zb, SI_SOAP)[0] == pytest.approx(1.0)
    # six-fold rocksalt is told apart from four-fold zincblende
    rocksalt = bulk("SiC", "rocksalt", a=4.0)
    assert similarity_to_reference(rocksalt, zb)[0].max() < 0.95


def test_structure_search_of_composition_sic_finds_zincblende(tersoff, tmp_path):
    from pytest_mlpval.protocols.base import CampaignOptions
    from pytest_mlpval.protocols.rss import RssSettings, energy_volume, run_rss

    settings = RssSettings(composition="SiC", atoms_per_cell=(2, 2), n_structures=2,
                           seed=1, references=("zincblende:a=4.36", "rocksalt:a=4.0"))
    result = run_rss(tersoff, settings, options=CampaignOptions(cache_dir=tmp_path))
    assert result.counts["converged"] == 2
    zb = result.references["zincblende"]
    assert zb["volume_per_atom_A3"] == pytest.approx(10.355, abs=0.01)
    # structure 0 relaxes into zincblende, structure 1 into an open, higher minimum
    first, second = result.minima
    assert first.similarity["zincblende"] > 0.99 > second.similarity["zincblende"]
    assert first.similarity["zincblende"] > first.similarity["rocksalt"]
    assert result.count_similar("zincblende") == 1
    de, _, index = energy_volume(result, relative_to="zincblende")
    assert de[list(index).index(0)] == pytest.approx(0.0, abs=1e-3)
    # silicon's diamond-like metrics do not apply to SiC: named gaps, not NaN faults
    assert {"diamond_like_fraction", "lowest_minus_diamond_eV"} <= result.not_measured()


def _direct_cubic_constants(calc, delta=0.005):
    """The Tersoff's own a0 (Å) and C11, C12, C44 (GPa, C44 with the ions relaxed) of
    zincblende SiC by central differences of the stress, without the property protocols."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS
    from ase.units import GPa

    atoms = bulk("SiC", "zincblende", a=4.36, cubic=True)
    atoms.calc = calc
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-5, steps=200)
    a0 = float(atoms.cell.cellpar()[0])

    def stress(strain, relax):
        work = atoms.copy()
        work.set_cell(atoms.cell[:] @ (np.eye(3) + strain), scale_atoms=True)
        work.calc = calc
        if relax:
            BFGS(work, logfile=None).run(fmax=1e-5, steps=200)
        return work.get_stress(voigt=True) / GPa

    normal = np.zeros((3, 3))
    normal[0, 0] = delta
    shear = np.zeros((3, 3))
    shear[1, 2] = shear[2, 1] = delta / 2  # engineering shear strain delta
    dn = (stress(normal, False) - stress(-normal, False)) / (2 * delta)
    ds = (stress(shear, True) - stress(-shear, True)) / (2 * delta)
    return a0, dn[0], dn[1], ds[3]


def test_binary_crystal_properties_match_the_potentials_own(tersoff):
    from pytest_mlpval.protocols.properties import elastic_constants, relaxed_lattice

    a0, c11, c12, c44 = _direct_cubic_constants(tersoff)
    assert a0 == pytest.approx(4.359, abs=0.002)  # Erhart and Albe's Table: 4.359 Å
    lattice = relaxed_lattice(tersoff, crystal="zincblende", symbol="SiC").metrics()
    assert (8 * lattice["volume_per_atom_A3"]) ** (1 / 3) == pytest.approx(a0, abs=1e-3)
    elastic = elastic_constants(tersoff, crystal="zincblende", symbol="SiC",
                                spread_strains=()).metrics()
    assert elastic["C11_GPa"] == pytest.approx(c11, rel=0.01)
    assert elastic["C12_GPa"] == pytest.approx(c12, rel=0.01)
    assert elastic["C44_GPa"] == pytest.approx(c44, rel=0.01)
    assert elastic["born_stable"] == 1.0


def test_compression_of_sic_keeps_zincblende(tersoff, tmp_path):
    """A rattled zincblende cell compressed to 5 GPa at 300 K stays zincblende, four-fold:
    the compression's start, references and outcome analysis with two species."""
    from pytest_mlpval.protocols.base import CampaignOptions
    from pytest_mlpval.protocols.compression import assert_crystallizes, run_compression

    start = bulk("SiC", "zincblende", a=4.36) * (2, 2, 2)
    start.positions += np.random.default_rng(2).normal(scale=0.03, size=start.positions.shape)
    result = run_compression(
        tersoff, start=start, composition="SiC", coordination_cutoff_A=2.3,
        references=("zincblende:a=4.36", "rocksalt:a=4.0"), expected_phase="zincblende",
        prerelax_steps=0, melt_steps=0, quench_steps=0, temperature_K=300.0,
        pressure_end_GPa=5.0, ramp_steps=40, reference_grid_GPa=5.0,
        options=CampaignOptions(cache_dir=tmp_path))
    outcome = assert_crystallizes(result, phase="zincblende", require_target=False)
    assert outcome.mean_coordination == pytest.approx(4.0)
    assert outcome.fractions["rocksalt"] == 0.0 and not result.reference_errors
    assert sorted(result.crystals["rocksalt"]) == [0.0, 5.0]
