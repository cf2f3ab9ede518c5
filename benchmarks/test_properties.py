"""Cost of the property protocols (lattice, EoS, elastic constants, phonons, vacancy,
surface) relative to the bare calculator calls they make.

Every protocol counts its calculator calls and the seconds spent inside the calculator
(the counting wrapper times each bare ``calculate``). The overhead ratio is the
protocol's wall time over that calculator time, in the same run: 1.0 means all the time
went into the potential; what is above is ours and our libraries' (optimisers, spglib in
``FixSymmetry``, matscipy's fits, phonopy). Both numbers go into the benchmark JSON
(``extra_info``: ``overhead_ratio``, ``n_force_calls``, ``calculator_seconds``) and the
ratios into the terminal summary.

For scale, calls made by a peer tool (matcalc) for silicon: 11 for an equation of state,
51 for elastic constants without ionic relaxation, 37 for phonons in a 10 Å supercell.
Ours, measured (SW / bundled GAP; the relaxation of the crystal included): lattice 1 / 4,
EoS 8 / 11 (7 points), clamped-ion elastic constants 6 / 9 (5 strains of matscipy's one
cubic strain pattern), clamped and relaxed-ion 14 / 18 (BFGS), phonons 2 / 5 (one
symmetry-distinct displacement in the 64-atom supercell), vacancy (64 atoms, two starts)
43 / 59, (111) surface 2 / 22. Overhead ratios with the GAP on a loaded 2-core machine:
vacancy 1.03, (111) surface 1.16, elastic 1.27, EoS 1.55, clamped elastic 1.70, lattice
2.16, phonons 2.86 (a fixed ~0.1 s of spglib in ``FixSymmetry`` and ~0.5 s of phonopy's
mesh, DOS and band path, which vanish against a costlier potential); with SW (~1 ms a
call for 8 atoms) the fixed costs dominate (ratios 7-60) except for the vacancy (1.5).

Run: ``pytest benchmarks/test_properties.py -p no:xdist`` (add ``--benchmark-json=PATH``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from conftest import RATIOS

SILICON = Path(__file__).resolve().parent.parent / "example_suites" / "silicon"
ROUNDS = 3


def _candidates():
    specs = ["sw"]
    try:
        import quippy  # noqa: F401  (the GAP needs it)

        specs.append(str(SILICON / "potential" / "gap_si_mlearn.xml"))
    except ImportError:
        pass
    return specs


def _protocols():
    from pytest_mlpval.protocols.properties import defects
    from pytest_mlpval.protocols.properties import elastic
    from pytest_mlpval.protocols.properties import eos
    from pytest_mlpval.protocols.properties import phonons
    from pytest_mlpval.protocols.properties import lattice as properties

    return {
        "lattice": (properties.relaxed_lattice, {}),
        "eos": (eos.equation_of_state, {}),
        "elastic_clamped": (elastic.elastic_constants, {"relax_ions": False}),
        "elastic": (elastic.elastic_constants, {}),
        "phonons": (phonons.phonons, {}),
        "vacancy": (defects.vacancy_formation, {}),
        "surface_111": (defects.surface_energy, {"facet": "111"}),
    }


NAMES = ["lattice", "eos", "elastic_clamped", "elastic", "phonons", "vacancy", "surface_111"]


@functools.lru_cache(maxsize=None)
def _calculator(spec: str):
    from pytest_mlpval import load_potential

    return load_potential(spec).calculator


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spec", _candidates(), ids=lambda s: "gap" if s.endswith("xml")
                         else s)
def test_protocol_overhead(benchmark, spec, name):
    function, kwargs = _protocols()[name]
    calc = _calculator(spec)
    function(calc, **kwargs)  # warm up: imports, neighbour lists
    results = []

    def run():
        result = function(calc, **kwargs)
        results.append(result)
        return result

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    wall = sorted(r.seconds for r in results)[len(results) // 2]
    inside = sorted(r.calculator_seconds for r in results)[len(results) // 2]
    ratio = wall / inside
    pot = "gap" if spec.endswith("xml") else spec
    RATIOS[f"{name}:{pot}"] = ratio
    calls = {r.n_force_calls for r in results}
    benchmark.extra_info.update(overhead_ratio=ratio, n_force_calls=max(calls),
                                calculator_seconds=inside, wall_seconds=wall)
    assert len(calls) == 1, f"the number of calls changed between rounds: {calls}"
    assert ratio >= 1.0
