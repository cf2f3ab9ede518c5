"""Throughput of the applicability check: the whole mlearn Si training set (214 structures,
13,233 environments) against a 10,000-atom application trajectory.

The trajectory is ten frames of a 1000-atom diamond cell rattled by 0.02 to 0.3 Å (a cell
heated towards melting). Ours is
:func:`~pytest_mlpval.protocols.domain.check_applicability`: SOAP of the training set
and of the trajectory, then the per-atom maximum kernel over all training environments
(chunked matrix products). The bare side is dscribe's own
descriptor time on the same atoms (``SOAP.create`` on the training frames and the
trajectory, same settings). The ratio ours / bare is the cost of the kernel and the
bookkeeping on top of the descriptors; the atoms per second are of the trajectory, with
the training descriptors included and with them computed once beforehand
(``training_domain``), as when many trajectories are checked.

Run: ``pytest benchmarks/test_domain.py -p no:xdist``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import RATIOS

ROUNDS = 2
DATA = Path(__file__).resolve().parents[1] / "example_suites" / "silicon" / "data"


@pytest.fixture(scope="module")
def training():
    from pytest_mlpval.data import read_dataset

    return read_dataset(f"train={DATA / 'mlearn_Si_training.xyz'},energy=dft_energy,"
                        "forces=dft_forces")


@pytest.fixture(scope="module")
def trajectory():
    from pytest_mlpval.crystals import build_crystal

    frames = []
    for i, amplitude in enumerate(np.linspace(0.02, 0.3, 10)):
        atoms = build_crystal("diamond").repeat((5, 5, 5))  # 1000 atoms
        atoms.rattle(float(amplitude), seed=i)
        frames.append(atoms)
    return frames


def _bare(training, trajectory, settings):
    from dscribe.descriptors import SOAP

    soap = SOAP(species=["Si"], r_cut=settings.r_cut_A, n_max=settings.n_max,
                l_max=settings.l_max, sigma=settings.sigma_A, periodic=True)
    periodic = [a for a in training.structures if all(a.pbc)]
    return [soap.create(periodic), soap.create(trajectory)]


def _ours(training, trajectory):
    from pytest_mlpval.protocols.domain import check_applicability

    return check_applicability(trajectory, training)


def test_applicability_throughput(benchmark, training, trajectory):
    from pytest_mlpval.descriptors import SI_SOAP
    from pytest_mlpval.protocols.domain import check_applicability, training_domain

    assert sum(len(a) for a in trajectory) == 10_000
    assert all(all(a.pbc) for a in training.structures)  # the bare side takes them all
    _bare(training, trajectory[:1], SI_SOAP)  # imports, warm-up
    bare_s, ours_s, warm_s = [], [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        _bare(training, trajectory, SI_SOAP)
        bare_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = _ours(training, trajectory)
        ours_s.append(time.perf_counter() - start)
        domain = training_domain(training)
        start = time.perf_counter()
        check_applicability(trajectory, domain)
        warm_s.append(time.perf_counter() - start)
    ratio = statistics.median(ours_s) / statistics.median(bare_s)
    atoms_per_s = 10_000 / statistics.median(ours_s)
    warm_atoms_per_s = 10_000 / statistics.median(warm_s)
    RATIOS["domain_applicability_10k"] = ratio
    RATIOS["domain_katoms_per_s"] = atoms_per_s / 1000
    RATIOS["domain_katoms_per_s_domain_built"] = warm_atoms_per_s / 1000
    benchmark.extra_info.update(overhead_ratio=ratio, atoms=10_000,
                                training_environments=int(training.n_atoms.sum()),
                                atoms_per_s=atoms_per_s,
                                atoms_per_s_domain_built=warm_atoms_per_s,
                                bare_median_s=statistics.median(bare_s),
                                mlpval_median_s=statistics.median(ours_s))
    benchmark.pedantic(check_applicability, args=(trajectory, domain), rounds=1,
                       iterations=1)
    # the hottest frames leave the (mostly crystalline) training domain, the coolest not
    fractions = result.outside_fractions
    assert fractions[0] < 0.05 and fractions[-1] > fractions[0]
    assert 0.5 < ratio < 3.0
