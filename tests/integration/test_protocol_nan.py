"""A library protocol run through ``mlpval.run`` without any bound never passes a
candidate that returns NaN or inf: the test fails naming the non-finite metric (a NaN
that is not one of the result's own ``not_measured()`` gaps) or through the protocol's
own error, while Stillinger-Weber on the same small protocols passes (its legitimate
gaps, such as a compression that never reaches the onset of a phase, stay declared)."""

from __future__ import annotations

import re

import pytest

SUITE = """
from pytest_mlpval.protocols.compression import CompressionSettings, run_compression
from pytest_mlpval.protocols.properties.elastic import elastic_constants
from pytest_mlpval.protocols.properties.eos import equation_of_state
from pytest_mlpval.protocols.md.stability import StabilitySettings, run_md_stability
from pytest_mlpval.protocols.properties.phonons import phonons
from pytest_mlpval.protocols.rss import RssSettings, run_rss

TINY = CompressionSettings(n_atoms=8, start_cell="diamond", prerelax_steps=0, melt_steps=0,
                           quench_steps=0, ramp_steps=40, hold_steps=0,
                           reference_grid_GPa=20.0, references=("diamond",),
                           expected_phase="diamond")


def run_eos(potential, **options):
    return equation_of_state(potential.calculator, strain_span=0.01, n_points=5)


def run_elastic(potential, **options):
    return elastic_constants(potential.calculator, n_strains=3, fmax_eV_A=1e-3)


def run_phonons(potential, **options):
    return phonons(potential.calculator, supercell=1, mesh=(4, 4, 4), band_npoints=11)


def test_eos(mlpval):
    mlpval.run(run_eos)


def test_elastic(mlpval):
    mlpval.run(run_elastic)


def test_phonons(mlpval):
    mlpval.run(run_phonons)


def test_rss(mlpval):
    mlpval.run(run_rss, RssSettings(n_structures=2, atoms_per_cell=(2, 2), max_steps=20,
                                    seed=1))


def test_md(mlpval):
    mlpval.run(run_md_stability, StabilitySettings(repeat=1, nvt_steps=4, nve_steps=4,
                                                   sample_every=2), name="md_stability")


def test_compression(mlpval):
    mlpval.run(run_compression, TINY, name="compression")
"""

# how each protocol fails for a candidate whose every result is NaN or inf
FAILS = {
    **{name: r"relaxing diamond: relaxation failed after 0 steps: NonFiniteResultError: "
              r"the calculator returned a non-finite energy for a Si8 structure"
       for name in ("eos", "elastic", "phonons")},
    "rss": r"lowest_energy_per_atom_eV = nan eV/atom for potential 'bad', protocol 'rss'",
    "md": r"energy_drift_per_atom_eV_ps = nan eV/atom/ps for potential 'bad', "
          r"protocol 'md_stability'",
    "compression": r"crystalline_fraction = nan for potential 'bad', protocol 'compression'",
}


@pytest.mark.parametrize("fault", ["nan", "inf"])
def test_protocols_without_bounds_fail_a_non_finite_candidate_and_pass_sw(pytester, run,
                                                                          fault):
    pytester.makepyfile(test_suite=SUITE)
    # Stillinger-Weber once (with the NaN candidate): every protocol passes
    sw = ["--potential=sw"] if fault == "nan" else []
    result = run(*sw, f"--potential=bad=pytest_mlpval.testing:faulty_{fault}_at_0",
                 "--mlpval-species=Si", "-p", "no:randomly", "-p", "no:cacheprovider")
    text = result.stdout.str()
    failed = {m.group(1) for m in re.finditer(r"^FAILED test_suite\.py::test_(\w+)\[(\w+)\]",
                                              text, re.M) if m.group(2) == "bad"}
    assert failed == set(FAILS), text
    result.assert_outcomes(passed=len(FAILS) if sw else 0, failed=len(FAILS))
    for protocol, message in FAILS.items():
        assert re.search(message, text), (protocol, text[-4000:])  # NaN: the run stopped
    assert "INTERNALERROR" not in text
