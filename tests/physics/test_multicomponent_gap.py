"""The multi-component chain with a fitted two-species GAP (issue 18): SiC.

THE LABELS ARE NOT DFT: they are the Erhart-Albe Tersoff potential's for SiC (matscipy;
see tests/integration/test_multicomponent.py, which runs the chain with the Tersoff itself
as candidate) with one energy per element added (Si -0.31, C +0.17 eV/atom). A small GAP
(2-body + two-species SOAP, 15 and 100 sparse points, energies, forces and virials; the
recipe is :data:`GAP_ARGS`, fitted by ``gap_fit`` in about 10 s) is fitted to 40 cells:
rattled (0.015 Å) and strained (1 %) zincblende SiC, diamond Si and diamond C, so that the
compositions vary (C fraction 0, 0.5, 1). Larger rattles bring second-neighbour Si-Si
pairs into the Tersoff's cutoff region (2.68-2.96 Å), where its forces reach 10-28 eV/Å:
a first fit on such cells did not learn the forces.

Then the chain: errors against unshifted Tersoff labels of new cells (the fitted
per-element offsets recover the added energies; force errors per element), a structure
search of composition SiC, and zincblende's lattice and elastic constants against the
Tersoff's own. Measured 2026-12-06 (loaded machine; the file takes about 30 s, the fit
10-20 s): fitted offsets Si -0.3102 and C +0.1702 eV/atom (added: -0.31, +0.17),
offset-removed energy RMSE 0.4 meV/atom (one mean offset: 184 meV/atom), force RMSE
Si 0.035 and C 0.060 eV/Å, zincblende volume within 0.2 % of the Tersoff's, C11 270
against 384 GPa, C12 126 against 145, relaxed C44 184 against 240 (a 40-cell fit with
1 % strains: the tolerances below say what this small fit reproduces, not what a GAP
can).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("quippy") is None,
                       reason="needs quippy-ase (the gap extra)"),
]

HERE = Path(__file__).resolve().parent
SHIFTS = {"Si": -0.31, "C": 0.17}
GAP_ARGS = [
    "gap={distance_2b cutoff=4.0 covariance_type=ard_se delta=2.0 theta_uniform=1.0 "
    "sparse_method=uniform n_sparse=15 add_species=T : "
    "soap n_species=2 species_Z={{6 14}} l_max=4 n_max=6 cutoff=4.0 "
    "cutoff_transition_width=0.5 atom_sigma=0.5 zeta=4 delta=1.0 "
    "covariance_type=dot_product sparse_method=cur_points n_sparse=100 add_species=T}",
    "default_sigma={0.002 0.05 0.05 0.0}",
    "energy_parameter_name=ref_energy", "force_parameter_name=ref_forces",
    "virial_parameter_name=ref_virial",
    f"e0={{Si:{SHIFTS['Si']}:C:{SHIFTS['C']}}}",  # the Tersoff's isolated atoms: 0 eV
    "rnd_seed=1", "sparse_jitter=1e-8",
]


def _chain_module():
    spec = importlib.util.spec_from_file_location(
        "multicomponent_chain", HERE.parent / "integration" / "test_multicomponent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chain = _chain_module()


def cells(seed: int, n: int = 10, rattle_A: float = 0.015) -> list:
    """``n`` zincblende SiC cells and ``n / 2`` each of diamond Si and C, strained by 1 %
    and rattled by ``rattle_A``."""
    rng = np.random.default_rng(seed)
    out = []
    for formula, kind, a in (("SiC", "zincblende", 4.36), ("Si", "diamond", 5.43),
                             ("C", "diamond", 3.567)):
        for _ in range(n if formula == "SiC" else n // 2):
            atoms = bulk(formula, kind, a=a, cubic=True)
            strain = np.eye(3) + rng.normal(scale=0.01, size=(3, 3))
            atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
            atoms.positions += rng.normal(scale=rattle_A, size=atoms.positions.shape)
            out.append(atoms)
    return out


@pytest.fixture(scope="module")
def tersoff():
    return chain.erhart_albe()


@pytest.fixture(scope="module")
def gap(tmp_path_factory, tersoff):
    import ase.io
    from ase.stress import voigt_6_to_full_3x3_stress

    from pytest_mlpval.potentials import load_potential

    folder = tmp_path_factory.mktemp("gap_sic")
    train = chain.label(cells(7) + cells(8), tersoff, SHIFTS)
    for atoms in train:  # gap_fit reads virials (eV): -stress x volume
        stress = voigt_6_to_full_3x3_stress(atoms.info["ref_stress"])
        atoms.info["ref_virial"] = (-stress * atoms.get_volume()).ravel()
    ase.io.write(folder / "train.xyz", train)
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")
    subprocess.run([gap_fit, "at_file=train.xyz", *GAP_ARGS, "gp_file=gap_sic.xml"],
                   cwd=folder, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return load_potential(str(folder / "gap_sic.xml"))


@pytest.fixture(scope="module")
def plain_labels(tmp_path_factory, tersoff):
    """New cells with the Tersoff's labels, no energies added."""
    import ase.io

    from pytest_mlpval.data import read_dataset

    path = tmp_path_factory.mktemp("sic_plain") / "sic.xyz"
    ase.io.write(path, chain.label(cells(0, n=6), tersoff, {"Si": 0.0, "C": 0.0}))
    return read_dataset(f"sic={path},energy=ref_energy,forces=ref_forces")


def test_gap_errors_with_per_element_offsets(gap, plain_labels):
    from pytest_mlpval.evaluate import predict
    from pytest_mlpval.metrics import compute_errors

    assert gap.info.species == ("C", "Si")
    metrics = compute_errors(plain_labels, predict(gap.calculator, plain_labels)).metrics()
    # the GAP learnt the labels with their added energies: against the plain Tersoff
    # the fitted offsets are those energies (to the fit's accuracy)
    assert metrics["energy_offset_Si"] == pytest.approx(SHIFTS["Si"], abs=0.005)
    assert metrics["energy_offset_C"] == pytest.approx(SHIFTS["C"], abs=0.005)
    assert metrics["energy_offset_removed_rmse"] < 0.005
    # one mean offset leaves the composition-dependent part as error
    assert metrics["energy_rmse"] > 0.1
    assert metrics["force_rmse_Si"] < 0.1 and metrics["force_rmse_C"] < 0.1


def test_gap_structure_search_of_sic(gap, tmp_path):
    from pytest_mlpval.protocols.base import CampaignOptions
    from pytest_mlpval.protocols.rss import RssSettings, run_rss

    settings = RssSettings(composition="SiC", atoms_per_cell=(2, 2), n_structures=2,
                           seed=1, references=("zincblende:a=4.36",))
    result = run_rss(gap, settings, options=CampaignOptions(cache_dir=tmp_path))
    assert len(result.minima) == 2 and result.counts["failed"] == 0
    zb = result.references["zincblende"]
    assert zb["volume_per_atom_A3"] == pytest.approx(10.355, rel=0.01)
    assert all(m.similarity for m in result.usable)  # two-species SOAP to zincblende


def test_gap_binary_crystal_properties_against_the_tersoffs(gap, tersoff):
    from pytest_mlpval.protocols.properties import elastic_constants, relaxed_lattice

    def properties(calc):
        lattice = relaxed_lattice(calc, crystal="zincblende", symbol="SiC").metrics()
        elastic = elastic_constants(calc, crystal="zincblende", symbol="SiC",
                                    spread_strains=()).metrics()
        return {"volume_per_atom_A3": lattice["volume_per_atom_A3"], **elastic}

    fitted, own = properties(gap.calculator), properties(tersoff)
    assert fitted["volume_per_atom_A3"] == pytest.approx(own["volume_per_atom_A3"], rel=0.01)
    for name in ("C11_GPa", "C12_GPa", "C44_GPa"):
        assert fitted[name] == pytest.approx(own[name], rel=0.4), name
    assert fitted["born_stable"] == 1.0
