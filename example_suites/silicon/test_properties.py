"""Physical properties of the candidate against DFT and experiment (the tutorial's
Table I), with the ready-made tests of :mod:`pytest_mlpval.property_tests`.

The candidate (the bundled GAP) is trained on PBE data (mlearn, Zuo et al. 2020), so
each property is compared with PBE where the reference table has a PBE number (the fit
error), else with PW91 (GAP-18's level; flagged as a comparison across DFT levels), and,
separately, with experiment. Tolerances are physical, not tuned to the candidate:

- against its own level: the fit's accuracy on crystals (0.5 % for a0, 5 % for moduli
  and constants, 10 % for C12, a small difference of large stresses);
- against PW91 (another GGA): the same plus a few percent for the functional;
- against experiment: the DFT level's own error (PBE minus experiment, from the table)
  plus the fit tolerance, or the experimental uncertainty where that is larger.

Where the bundled GAP misses a justified threshold, the test is a known failure of that
model (``mlpval_known_failure``, keyed by its sha256: a strict xfail for it alone under
any ``--potential`` name, see conftest.py) whose reason gives the numbers: a refit that
fixes it turns the test red until the mark goes; a refit (another hash) is judged by the
plain test.
Stillinger-Weber fails C44 and the Gamma optical phonon against experiment, where the
GAP passes (test_stillinger_weber_fails_where_the_gap_passes). The liquid and the
vacancy size convergence are full-tier campaigns (``--mlpval-tier=full``).
"""

import pytest

from pytest_mlpval.property_tests import (
    ElasticTests,
    LatticeTests,
    LiquidTests,
    PhononTests,
    PolymorphTests,
    SurfaceTests,
    VacancyConvergenceTests,
    VacancyTests,
)

#: level of theory of the training data (mlearn Si: VASP, PBE)
MLPVAL_TRAINING_LEVEL = "PBE"

prop = pytest.mark.mlpval_property

#: the bundled GAP (potential/gap_si_mlearn.xml and its sparseX files): the first 16 hex
#: digits of its sha256, which its known failures below follow under any --potential name
GAP_SI = "06535ff0f7d12452"


def known_failure_of_gap_si(reason):
    return pytest.mark.mlpval_known_failure(sha256=GAP_SI, reason=reason)


#: tolerances against experiment: |PBE - exp| / exp from the reference table plus the
#: fit tolerance (C44: PW91's -9.3 % as PBE has no relaxed-ion C44, plus 5 %)
VS_EXPERIMENT = {
    "lattice_parameter_A": 0.012,       # PBE +0.7 % + 0.5 %
    "bulk_modulus_GPa": 0.14,           # PBE -8.6 % + 5 %
    "C11_GPa": 0.13,                    # PBE -7.7 % + 5 %
    "C12_GPa": 0.20,                    # PBE -9.9 % + 10 %
    "C44_GPa": 0.15,                    # PW91 -9.3 % + 5 %
    "phonon_gamma_LTO_THz": 0.05,       # PW91 -2.9 % + 2 % (Raman line, 15.53-15.6 THz)
}
#: against PW91 for the PBE-trained candidate: fit tolerance plus ~3 % for the functional
VS_PW91 = 0.08


# --- lattice and equation of state -------------------------------------------------------

@prop("lattice_parameter_A", rel=0.005, against="PBE")
class TestLatticeVsPBE(LatticeTests):
    """a0 within the fit's 0.5 % of PBE (5.4687 Å)."""


@prop("bulk_modulus_GPa", rel=0.05, against="PBE")
class TestBulkModulusVsPBE(LatticeTests):
    """B (Birch–Murnaghan, +-1 % in a) within 5 % of PBE (89.4 GPa)."""


@prop("lattice_parameter_A", rel=VS_EXPERIMENT["lattice_parameter_A"])
@prop("bulk_modulus_GPa", rel=VS_EXPERIMENT["bulk_modulus_GPa"])
class TestLatticeVsExperiment(LatticeTests):
    """a0 and B against experiment, within PBE's own error plus the fit tolerance."""


# --- elastic constants ---------------------------------------------------------------------

@prop("C11_GPa", rel=0.05, against="PBE")
@prop("C44_clamped_GPa", rel=0.05, against="PBE")
class TestElasticVsPBE(ElasticTests):
    """C11 and the clamped-ion C44 (what the PBE table has) within 5 % of PBE."""


@prop("C12_GPa", rel=0.10, against="PBE")
class TestC12VsPBE(ElasticTests):
    """C12 within 10 % of PBE (57.6 GPa)."""


@prop("C44_GPa", rel=VS_PW91, against="PW91")
class TestC44VsPW91(ElasticTests):
    """The relaxed-ion C44 against PW91 (72.2 GPa; PBE has none): flagged as a
    comparison across DFT levels."""


@prop("C11_GPa", rel=VS_EXPERIMENT["C11_GPa"])
@prop("C12_GPa", rel=VS_EXPERIMENT["C12_GPa"])
@prop("C44_GPa", rel=VS_EXPERIMENT["C44_GPa"])
class TestElasticVsExperiment(ElasticTests):
    """Relaxed-ion C11, C12, C44 against experiment (McSkimin & Andreatch 1964)."""


# --- phonons -------------------------------------------------------------------------------

PHONON_BRANCHES = ("gamma_LTO", "X_TA", "X_LA_LO", "X_TO", "L_LA", "L_LO", "L_TO")


class TestPhononsVsPW91(PhononTests):
    """Branches at Gamma, X and L against PW91 (no PBE phonons in the table), flagged as
    across DFT levels; dynamical stability."""

    pytestmark = [prop(f"phonon_{b}_THz", rel=VS_PW91, against="PW91")
                  for b in PHONON_BRANCHES]


@prop("phonon_L_TA_THz", rel=VS_PW91, against="PW91")
class TestLTAPhononVsPW91(PhononTests):
    """The TA mode at L, the softest branch, against PW91."""


@prop("phonon_gamma_LTO_THz", rel=VS_EXPERIMENT["phonon_gamma_LTO_THz"])
class TestOpticalPhononVsExperiment(PhononTests):
    """The Gamma optical mode against experiment (Nilsson & Nelin 1972)."""


# --- defects -------------------------------------------------------------------------------

@prop("vacancy_formation_eV", rel=VS_PW91, against="PW91")
@prop("vacancy_formation_eV", abs=0.4)
@known_failure_of_gap_si(
    "the bundled GAP's relaxed vacancy is 3.30 eV against PW91's 3.67 (-10 %, tolerance "
    "8 %; within experiment's 3.6 +- 0.4): the mlearn data hold vacancies only as AIMD "
    "snapshots, none relaxed")
class TestVacancy(VacancyTests):
    """Relaxed vacancy (64-atom cell) against PW91 and against experiment (3.6 +- 0.2 eV;
    tolerance its uncertainty plus the GGA's spread)."""


@prop("surface_energy_100_J_m2", rel=VS_PW91, against="PW91")
@prop("surface_energy_110_J_m2", rel=VS_PW91, against="PW91")
@prop("surface_energy_111_J_m2", rel=VS_PW91, against="PW91")
class TestSurfacesVsPW91(SurfaceTests):
    """Relaxed (100) 1x1, (110) and (111) shuffle surfaces against PW91."""


# --- polymorphs ----------------------------------------------------------------------------

@prop("energy_beta_sn_vs_diamond_per_atom_eV", abs=0.03, against="PW91")
@prop("diamond_beta_sn_transition_GPa", abs=2.0)
@known_failure_of_gap_si((
    "the bundled GAP's beta-Sn softens under compression (B' = 0.5, PW91 4.8): the mlearn "
    "data hold nothing denser than diamond, so beta-Sn is an extrapolation; it lies 0.258 "
    "eV/atom above diamond (PW91 0.322) and the transition comes at 9.3 GPa (experiment "
    "11.5). Eight fits of the same data gave B' from -8 to 4 (potential/README.md)"))
class TestPolymorphs(PolymorphTests):
    """beta-Sn above diamond within 30 meV/atom of PW91; the static transition pressure
    within 2 GPa of experiment (11.5 +- 1 GPa; GGAs give 8-12); every E(V) physical
    (B' within 1-10, the transition inside the sampled volumes)."""


# --- full tier -----------------------------------------------------------------------------

@pytest.mark.slow
@prop("liquid_rdf_first_peak_A", abs=0.05)
@prop("liquid_coordination", abs=1.0)
@known_failure_of_gap_si((
    "measured (full tier): the bundled GAP's liquid (64 atoms, 1769 K) has coordination "
    "7.06 (cutoff at the g(r) minimum, 3.19 Å) against experiment's 6 (tolerance 1); its "
    "first g(r) peak, 2.45 Å, matches"))
class TestLiquid(LiquidTests):
    """64-atom liquid at 1800 K and 2.56 g/cm^3: first g(r) peak within 0.05 Å of 2.45 Å
    and coordination within 1 of 6 (definitions of the cutoff differ by ~0.5)."""


@pytest.mark.slow
@pytest.mark.mlpval_expect(min_vacancy_size_change_eV=-0.2, max_vacancy_size_change_eV=0.2)
class TestVacancyConvergence(VacancyConvergenceTests):
    """Vacancy in 64 and 216 atoms: the formation energy changes by less than 0.2 eV
    (finite-size errors of GGA vacancies in 64-atom cells are 0.1-0.2 eV)."""


# --- Stillinger-Weber fails where the GAP passes -------------------------------------------

def test_stillinger_weber_fails_where_the_gap_passes():
    """SW (Stillinger & Weber 1985) against experiment with the tolerances the bundled
    GAP passes above: its relaxed-ion C44 (56 GPa vs 79.6) and Gamma optical mode
    (17.8 THz vs 15.53) are outside them."""
    from pytest_mlpval.comparison import compare
    from pytest_mlpval.protocols.properties import elastic_constants, phonons
    from pytest_mlpval.potentials import load_potential
    from pytest_mlpval.references import load_references

    calc = load_potential("sw").calculator
    si = load_references("Si")
    results = {"C44_GPa": elastic_constants(calc, n_strains=3),
               "phonon_gamma_LTO_THz": phonons(calc, mesh=(4, 4, 4))}
    checks = [compare(result, si, name, "experiment", rel=VS_EXPERIMENT[name])
              for name, result in results.items()]
    assert not any(c.passed for c in checks), [c.row() for c in checks]
