"""Physical properties against experiment and DFT (the tutorial's Table I), run as cached
campaigns. Plain library (no pytest); the public names of the family are imported from
here, and importing it registers the family's protocols
(:data:`~pytest_mlpval.protocols.base.PROTOCOLS`, ``family="properties"``) in the order
:func:`compute_properties` lists them.

- :mod:`.common`: :class:`PropertySettings` and :class:`PropertyResult`, the bases of
  the family's settings and results, :data:`PropertyError`, and the protocol
  uncertainty of the elastic, EoS and phonon protocols: the spread of a property over
  the finite amplitudes (:func:`spread_name`, :data:`MAX_AMPLITUDE_SPREAD`);
- :mod:`.lattice`: the relaxed lattice (``"lattice"``);
- :mod:`.eos`: Birch–Murnaghan equation of state (``"eos"``), polymorph energies and
  transition pressures (``"polymorphs"``), with :mod:`.transitions` (the enthalpy
  crossing) and :mod:`.figures` (the E(V) figure);
- :mod:`.elastic`: elastic constants, relaxed- and clamped-ion, and Born stability
  (``"elastic"``);
- :mod:`.phonons`: phonopy phonons, branches at high-symmetry points, dynamical
  stability (``"phonons"``);
- :mod:`.defects`: vacancy formation (``"vacancy"``: any site, a compound's sublattice
  with its chemical potential);
- :mod:`.surfaces`: surface energies of any crystal on given Miller indices
  (``"surface_100"``, ``"surface_110"``, ``"surface_111"``; ``facet`` takes any);
- :mod:`.liquid`: g(r), S(q) and coordination of liquid and amorphous frames, a short
  liquid run (``"liquid"``), comparison with users' curves;
- :mod:`.campaign`: :func:`compute_properties`, several protocols for one candidate as
  items of one cached campaign (:func:`~pytest_mlpval.protocols.base.run_protocols`).

Each protocol is a function ``protocol(calc, settings=None, **overrides)`` with its
settings (a :class:`PropertySettings`) and its result (a :class:`PropertyResult`),
made known by one line ``register(name, function, Settings, Result, family=FAMILY)``
(:func:`~pytest_mlpval.protocols.base.register`) in its module: the campaign, the
cache, the ready-made tests (:mod:`pytest_mlpval.property_tests`: the group that runs
it, the properties it computes, its physical check) and the report (the result's
``figure``) find it there. Every result is a frozen dataclass with ``metrics()`` (flat
floats named like the reference properties, e.g. ``C44_GPa``, so that
:func:`~pytest_mlpval.comparison.compare` finds them), ``units()``, ``as_dict()``
(JSON-ready) and ``from_dict()``; each records the number of calculator calls it made
(``n_force_calls``) and the time spent inside the calculator (``calculator_seconds``)
beside its wall time (``seconds``), so that a benchmark can tell the protocol's
overhead from the potential's cost.
"""

from __future__ import annotations

from .common import (
    FAMILY, DEFAULT_SYMBOL, DEFAULT_CRYSTAL, PropertyError, PropertySettings, PropertyResult,
    MAX_AMPLITUDE_SPREAD, spread_name, amplitude_spreads, assert_amplitude_independent,
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
    acoustic_labels, band_figure,
)
from .defects import (
    VacancySettings, VacancyResult, vacancy_formation, VacancyConvergence,
    vacancy_convergence,
)
from .surfaces import (
    SurfaceSettings, Surface110Settings, Surface111Settings, SurfaceResult, surface_energy,
    EV_PER_A2_TO_J_PER_M2, miller_indices, facet_name,
)
from .liquid import (
    PairCorrelation, pair_correlation, LiquidSettings, liquid_structure, read_curve,
    CurveComparison, compare_curve, assert_curve,
)
from .campaign import (
    property_protocols, property_settings, PropertySet, compute_properties,
)

__all__ = [
    'FAMILY', 'DEFAULT_SYMBOL', 'DEFAULT_CRYSTAL', 'PropertyError', 'PropertySettings',
    'PropertyResult',
    'MAX_AMPLITUDE_SPREAD', 'spread_name', 'amplitude_spreads',
    'assert_amplitude_independent', 'LatticeSettings',
    'LatticeResult', 'relaxed_lattice', 'EosSettings', 'EosResult', 'equation_of_state',
    'TransitionResult', 'transition_pressure', 'PolymorphSettings', 'PolymorphResult',
    'polymorph_energies', 'slug', 'assert_physical_eos', 'eos_figure', 'PHYSICAL_B_PRIME',
    'ElasticSettings', 'ElasticResult', 'elastic_constants', 'born_stability',
    'assert_born_stable', 'matscipy_symmetry', 'PhononSettings', 'PhononResult', 'phonons',
    'assert_dynamically_stable', 'branch_labels', 'acoustic_labels', 'band_figure',
    'VacancySettings',
    'VacancyResult', 'vacancy_formation', 'VacancyConvergence', 'vacancy_convergence',
    'SurfaceSettings', 'Surface110Settings', 'Surface111Settings', 'SurfaceResult',
    'surface_energy', 'EV_PER_A2_TO_J_PER_M2', 'miller_indices', 'facet_name',
    'PairCorrelation', 'pair_correlation',
    'LiquidSettings', 'liquid_structure', 'read_curve', 'CurveComparison', 'compare_curve',
    'assert_curve', 'property_protocols', 'property_settings', 'PropertySet',
    'compute_properties',
]
