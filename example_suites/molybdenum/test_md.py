"""MD stability of bcc molybdenum: 300 steps of Bussi NVT at 1500 K (about half the melting
point, 2896 K), then 200 steps of NVE, 54 atoms (3 x 3 x 3 conventional cells, the size
of the mlearn AIMD cells), 1 fs: energy drift, temperature control, no overlapping atoms,
no NaN.

The silicon suite's compression test does not apply to a metal: it follows amorphous Si
collapsing into a dense phase (a covalent network's false maxima and minima); bcc Mo has
no such transition below hundreds of GPa and the mlearn data hold nothing compressed
further than 10 % strain, so the suite has none.
"""

import pytest

from pytest_mlpval.protocols.md import StabilitySettings, assert_md_stable, run_md_stability

#: 1500 K: between the data's AIMD temperatures (300, 3000 and 6000 K: crystal, crystal
#: near melting, liquid), a hot crystal for any sound Mo potential
SETTINGS = StabilitySettings(symbol="Mo", temperature_K=1500.0)


def bcc_start(seed=0):
    """54-atom bcc Mo at the PBE lattice parameter (3.169 Å), rattled by 0.05 Å."""
    import numpy as np
    from ase.build import bulk

    atoms = bulk("Mo", "bcc", a=3.169, cubic=True) * (3, 3, 3)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.05,
                                                          size=atoms.positions.shape)
    return atoms


@pytest.mark.mlpval_expect(protocol="md_stability", max_unstable=0, max_cut_short=0)
def test_md_is_stable(mlpval):
    result = mlpval.run(run_md_stability, SETTINGS, start=bcc_start(), name="md_stability")
    assert_md_stable(result, potential=mlpval.potential.name)
