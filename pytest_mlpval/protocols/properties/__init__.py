"""Physical properties against experiment and DFT (the tutorial's Table I): lattice,
equation of state and polymorphs, elastic constants, phonons, vacancy and surfaces, liquid
and amorphous structure, run as cached campaigns.

Plain library (no pytest). The public names of the family are imported from here."""

from __future__ import annotations

from .campaign import (
    PROTOCOLS, PropertySet, compute_properties, property_task,
)
from .defects import (
    VacancyResult, vacancy_formation, VacancyConvergence, vacancy_convergence,
    SurfaceResult, surface_energy, EV_PER_A2_TO_J_PER_M2,
)
from .elastic import (
    ElasticResult, elastic_constants, born_stability, assert_born_stable,
    matscipy_symmetry,
)
from .eos import (
    EosResult, equation_of_state, TransitionResult, transition_pressure,
    PolymorphResult, polymorph_energies, slug, assert_physical_eos, PHYSICAL_B_PRIME,
)
from .lattice import (
    PropertyError, NonFiniteResultError, SymmetryChangedError, counting, PropertyResult,
    LatticeResult, relaxed_lattice, spacegroup, result_from_dict, single_threaded,
)
from .liquid import (
    PairCorrelation, pair_correlation, liquid_structure, read_curve, CurveComparison,
    compare_curve, assert_curve,
)
from .phonons import (
    PhononResult, phonons, assert_dynamically_stable, branch_labels,
)

__all__ = [
    'PROTOCOLS', 'PropertySet', 'compute_properties', 'property_task', 'VacancyResult',
    'vacancy_formation', 'VacancyConvergence', 'vacancy_convergence', 'SurfaceResult',
    'surface_energy', 'EV_PER_A2_TO_J_PER_M2', 'ElasticResult', 'elastic_constants',
    'born_stability', 'assert_born_stable', 'matscipy_symmetry', 'EosResult',
    'equation_of_state', 'TransitionResult', 'transition_pressure', 'PolymorphResult',
    'polymorph_energies', 'slug', 'assert_physical_eos', 'PHYSICAL_B_PRIME',
    'PropertyError', 'NonFiniteResultError', 'SymmetryChangedError', 'counting',
    'PropertyResult', 'LatticeResult', 'relaxed_lattice', 'spacegroup',
    'result_from_dict', 'single_threaded', 'PairCorrelation', 'pair_correlation',
    'liquid_structure', 'read_curve', 'CurveComparison', 'compare_curve',
    'assert_curve', 'PhononResult', 'phonons', 'assert_dynamically_stable',
    'branch_labels',
]
