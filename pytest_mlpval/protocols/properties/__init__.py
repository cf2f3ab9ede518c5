"""Physical properties against experiment and DFT (the tutorial's Table I): lattice,
equation of state and polymorphs, elastic constants, phonons, vacancy and surfaces, liquid
and amorphous structure, run as cached campaigns.

Plain library (no pytest). The public names of the family are imported from here.
Importing it registers the family's protocols (:data:`~pytest_mlpval.protocols.base.PROTOCOLS`,
``family="properties"``), in the order :func:`compute_properties` lists them."""

from __future__ import annotations

from .common import (
    FAMILY, PropertyError, PropertySettings, PropertyResult,
)
from .lattice import (
    LatticeSettings, LatticeResult, relaxed_lattice,
)
from .eos import (
    EosSettings, EosResult, equation_of_state, TransitionResult, transition_pressure,
    PolymorphSettings, PolymorphResult, polymorph_energies, slug, assert_physical_eos,
    eos_figure, PHYSICAL_B_PRIME,
)
from .elastic import (
    ElasticSettings, ElasticResult, elastic_constants, born_stability, assert_born_stable,
    matscipy_symmetry,
)
from .phonons import (
    PhononSettings, PhononResult, phonons, assert_dynamically_stable, branch_labels,
    band_figure,
)
from .defects import (
    VacancySettings, VacancyResult, vacancy_formation, VacancyConvergence,
    vacancy_convergence, SurfaceSettings, Surface110Settings, Surface111Settings,
    SurfaceResult, surface_energy, EV_PER_A2_TO_J_PER_M2,
)
from .liquid import (
    PairCorrelation, pair_correlation, LiquidSettings, liquid_structure, read_curve,
    CurveComparison, compare_curve, assert_curve,
)
from .campaign import (
    property_protocols, property_settings, PropertySet, compute_properties,
)

__all__ = [
    'FAMILY', 'PropertyError', 'PropertySettings', 'PropertyResult', 'LatticeSettings',
    'LatticeResult', 'relaxed_lattice', 'EosSettings', 'EosResult', 'equation_of_state',
    'TransitionResult', 'transition_pressure', 'PolymorphSettings', 'PolymorphResult',
    'polymorph_energies', 'slug', 'assert_physical_eos', 'eos_figure', 'PHYSICAL_B_PRIME',
    'ElasticSettings', 'ElasticResult', 'elastic_constants', 'born_stability',
    'assert_born_stable', 'matscipy_symmetry', 'PhononSettings', 'PhononResult', 'phonons',
    'assert_dynamically_stable', 'branch_labels', 'band_figure', 'VacancySettings',
    'VacancyResult', 'vacancy_formation', 'VacancyConvergence', 'vacancy_convergence',
    'SurfaceSettings', 'Surface110Settings', 'Surface111Settings', 'SurfaceResult',
    'surface_energy', 'EV_PER_A2_TO_J_PER_M2', 'PairCorrelation', 'pair_correlation',
    'LiquidSettings', 'liquid_structure', 'read_curve', 'CurveComparison', 'compare_curve',
    'assert_curve', 'property_protocols', 'property_settings', 'PropertySet',
    'compute_properties',
]
