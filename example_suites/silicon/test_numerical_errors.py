"""Numerical errors against the mlearn Si DFT (VASP-PBE) data of Zuo et al. 2020.

Thresholds (see README.md for where they come from): a good fit passes them (the bundled
GAP: 4.1 meV/atom and 0.125 eV/Å on the test set); an empirical potential fails them
(Stillinger-Weber: 307 meV/atom after removing its energy offset, 1.54 eV/Å).
Energies are compared after removing the mean offset, because models use different
energy zeros; the offset itself is recorded and shown in the summary.
"""

import pytest


@pytest.mark.mlpval_dataset("test")
@pytest.mark.mlpval_thresholds(energy_offset_removed_rmse=0.010, force_rmse=0.20,
                               stress_rmse=1.5)
def test_test_set(mlpval_errors):
    """External test set, all 25 structures: RMSE limits in eV/atom, eV/Å and GPa."""


@pytest.mark.mlpval_dataset("test")
@pytest.mark.mlpval_thresholds(energy_offset_removed_max=0.030, force_max=1.5)
def test_test_set_worst_case(mlpval_errors):
    """No structure (energy) or force component far off: a fit wrong on 10% of the data
    must fail even if its RMSE is fine."""


@pytest.mark.mlpval_dataset("test")
@pytest.mark.parametrize(
    "config_type, energy_eV_atom, force_eV_A",
    [
        ("Elastic", 0.003, 0.02),
        ("AIMD-NVT", 0.010, 0.20),
        ("Vacancy", 0.010, 0.20),
        ("Surface", 0.030, 0.30),
    ],
)
def test_test_set_per_config_type(mlpval, mlpval_errors, config_type, energy_eV_atom,
                                  force_eV_A):
    """Each kind of structure on its own: good errors overall can hide a bad domain."""
    mlpval.check(mlpval_errors, config_type=config_type,
                 energy_offset_removed_rmse=energy_eV_atom, force_rmse=force_eV_A)


@pytest.mark.mlpval_dataset("train")
@pytest.mark.mlpval_thresholds(energy_offset_removed_rmse=0.010, force_rmse=0.20)
def test_training_set(mlpval_errors):
    """Training errors: expected below the test errors; recorded for comparison."""
