"""A potential fitted only to crystals gets the crystal right and the liquid wrong (the
tutorial's point that low errors in one domain say nothing about another).

The GAP here is the bundled recipe (example_suites/silicon/potential/fit_gap.py:
energies, forces and virials) fitted to the 55 strained diamond cells of the mlearn
training set only. Its crystal properties are compared with PBE using the suite's own
tolerances (example_suites/silicon/test_properties.py: a0 within 0.5 %, C11 and the
clamped-ion C44 within 5 %); its liquid (64 atoms at 1800 K and 2.56 g/cm^3, the suite's
full-tier protocol) with experiment using the suite's TestLiquid tolerances (first g(r)
peak within 0.05 Å of 2.45 Å, coordination within 1 of 6), beside the bundled GAP, which
saw liquid snapshots.

Measured: the crystal-only GAP has a0, C11 and clamped C44 within 0.0, +0.8 and +2.5 % of
PBE; its liquid has a first g(r) peak at 2.11 Å (experiment 2.45) and coordination 7.88
(6); the bundled GAP's 2.45 Å and 7.06. Slow: a fit of a few minutes and two liquid runs of 4,000 steps
(5-10 min each on 2 cores); the liquid runs are cached in pytest's cache folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pytest_mlpval.comparison import compare
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.protocols.base import CampaignOptions
from pytest_mlpval.protocols.properties import compute_properties
from pytest_mlpval.references import load_references

SILICON = Path(__file__).resolve().parents[2] / "example_suites" / "silicon"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("quippy") is None,
                       reason="needs quippy-ase (the gap extra)"),
]

CRYSTAL = {"lattice_parameter_A": 0.005, "C11_GPa": 0.05, "C44_clamped_GPa": 0.05}
LIQUID = {"liquid_rdf_first_peak_A": 0.05, "liquid_coordination": 1.0}


@pytest.fixture(scope="module")
def si():
    return load_references("Si")


@pytest.fixture(scope="module")
def crystal_gap(tmp_path_factory):
    """The bundled recipe fitted to the "Elastic" cells of the mlearn training set."""
    import ase.io

    spec = importlib.util.spec_from_file_location("fit_gap", SILICON / "potential" /
                                                  "fit_gap.py")
    fit_gap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit_gap)
    folder = tmp_path_factory.mktemp("crystal-gap")
    frames = [a for a in ase.io.read(SILICON / "data" / "mlearn_Si_training.xyz", ":")
              if a.info.get("config_type") == "Elastic"]
    assert len(frames) == 55
    ase.io.write(folder / "elastic.xyz", frames)
    model = fit_gap.fit_to(folder / "elastic.xyz", folder / "gap_crystal.xml")
    return load_potential(f"gap_crystal={model}")


def _cache(request, tmp_path_factory) -> Path:
    cache = request.config.cache
    return Path(cache.mkdir("mlpval-properties")) if cache is not None \
        else tmp_path_factory.mktemp("mlpval-properties")


def _liquid(potential, request, tmp_path_factory):
    options = CampaignOptions(cache_dir=_cache(request, tmp_path_factory))
    return compute_properties(potential, ["liquid"], options=options)


def test_crystal_only_gap_passes_the_crystal(crystal_gap, si, record_property):
    props = compute_properties(crystal_gap, ["lattice", "elastic"])
    assert not props.errors, props.errors
    checks = [compare(props.metrics(), si, name, "PBE", rel=rel)
              for name, rel in CRYSTAL.items()]
    for c in checks:
        print(c.row())
        record_property(c.property, c.candidate)
    assert all(c.passed for c in checks), [c.row() for c in checks]


def test_crystal_only_gap_fails_the_liquid(crystal_gap, si, request, tmp_path_factory,
                                           record_property):
    bundled = load_potential(f"gap_si={SILICON / 'potential' / 'gap_si_mlearn.xml'}")
    rows = {}
    for potential in (bundled, crystal_gap):
        props = _liquid(potential, request, tmp_path_factory)
        if props.errors:  # a liquid run that explodes is a failure of the comparison too
            rows[potential.name] = props.errors["liquid"]
            continue
        rows[potential.name] = [compare(props.metrics(), si, name, "experiment", abs=tol)
                                for name, tol in LIQUID.items()]
    for name, value in rows.items():
        print(name, value if isinstance(value, str) else [c.row() for c in value])
        if not isinstance(value, str):
            for c in value:
                record_property(f"{name}_{c.property}", c.candidate)
    # measured: the bundled GAP (trained on liquid snapshots too) puts the first g(r) peak
    # at 2.45 Å, on experiment, with coordination 7.06 (1.06 above experiment's 6: a
    # known failure of the suite's full tier); the crystal-only GAP has bonds of 2.11 Å
    # and coordination 7.88. The crystal-only one fails both, and is further from
    # experiment than the bundled GAP on both.
    bundled_checks = {c.property: c for c in rows["gap_si"]}
    assert bundled_checks["liquid_rdf_first_peak_A"].passed, rows["gap_si"]
    crystal_only = rows["gap_crystal"]
    if isinstance(crystal_only, str):  # exploded or failed: fails the comparison too
        return
    assert not any(c.passed for c in crystal_only), [c.row() for c in crystal_only]
    for c in crystal_only:
        assert abs(c.difference) > abs(bundled_checks[c.property].difference), c.row()
