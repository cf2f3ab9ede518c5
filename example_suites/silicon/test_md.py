"""MD-based validation (the tutorial's Fig. 7): drive the candidate through a simulation
and judge what happens. The melt-quench benchmark of Fig. 6 is test_meltquench.py.

- MD stability (quick): 300 steps of Bussi NVT at 1000 K, then 200 steps of NVE, 64 atoms:
  energy drift, temperature control, no overlapping atoms, no NaN.
- Compression (quick: a short ramp that shows the collapse; full tier: the default
  protocol, melt-quench then 0 -> 20 GPa over 2000 steps of 2 fs at 500 K): amorphous Si
  should collapse to a dense state and crystallise into simple hexagonal (Deringer et al.,
  Nature 589, 59 (2021)), not stay low-density amorphous (a false maximum, e.g.
  Stillinger-Weber) nor collapse into a disordered state of coordination >= 10 (a false
  minimum). Trajectories are written as extxyz under .pytest_cache/d/mlpval-md.

Both campaigns are declared (``mlpval_campaign``): they start when collection ends, beside
the suite's other campaigns, and each test waits only for its own.
"""

import pytest

from pytest_mlpval.protocols.compression import (CompressionSettings, assert_crystallizes,
                                                 assert_no_false_maximum,
                                                 assert_no_false_minimum, run_compression)
from pytest_mlpval.protocols.md import StabilitySettings, assert_md_stable, run_md_stability

QUICK = CompressionSettings(melt_steps=250, quench_steps=400, ramp_steps=750, hold_steps=100)
FULL = CompressionSettings()
STABILITY = StabilitySettings()
MD_STABILITY = pytest.mark.mlpval_campaign(run_md_stability, STABILITY, name="md_stability")
COMPRESSION = pytest.mark.mlpval_campaign(run_compression, QUICK, full=FULL,
                                          name="compression")


def compression(mlpval):
    return mlpval.run(run_compression, FULL if mlpval.tier == "full" else QUICK,
                      name="compression")


@MD_STABILITY
@pytest.mark.mlpval_expect(protocol="md_stability", max_unstable=0, max_cut_short=0)
def test_md_is_stable(mlpval):
    result = mlpval.run(run_md_stability, STABILITY, name="md_stability")
    assert_md_stable(result, potential=mlpval.potential.name)


@COMPRESSION
def test_compression_has_no_false_minimum(mlpval):
    # no collapse into a disordered state of coordination >= 10
    assert_no_false_minimum(compression(mlpval), potential=mlpval.potential.name)


@COMPRESSION
def test_compression_collapses(mlpval):
    # the low-density amorphous state collapses by 15 GPa (Deringer et al. 2021: 10-15)
    assert_no_false_maximum(compression(mlpval), max_collapse_pressure_GPa=15.0,
                            potential=mlpval.potential.name)


@pytest.mark.slow
@COMPRESSION
@pytest.mark.mlpval_known_failure(sha256="06535ff0f7d12452", reason=(
    "the bundled GAP's full compression (3,500 steps, default CompressionSettings) ends "
    "dense amorphous, not simple hexagonal (benchmarks/paper_scale.py, 2026-12-06): the "
    "mlearn data hold nothing denser than diamond"))
def test_compression_crystallises_into_simple_hexagonal(mlpval):
    assert_crystallizes(compression(mlpval), phase="sh", potential=mlpval.potential.name)
