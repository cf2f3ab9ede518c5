"""The protocol contract end to end (issue 16): a protocol written in one new module,
made known by one registration line, runs through the pytest layer
(``mlpval.run_protocol``), the campaign cache (a rerun does not call it) and the report
(its result's figure is drawn), with no other edit anywhere (Stillinger-Weber)."""

from __future__ import annotations

import importlib.util
import re
import textwrap

import pytest

from pytest_mlpval.protocols import base

from .conftest import read_json, records_by_nodeid

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None

#: the whole protocol: settings, result (metrics, report data, figure), function, and
#: the one registration line; CALLS and DRAWN count the calls of function and figure
TOY = '''
from dataclasses import dataclass
from typing import ClassVar

from pytest_mlpval.protocols.base import CostMeter, Result, Settings, register


def contract_figure(per_potential):
    from matplotlib.figure import Figure

    with open(DRAWN, "a") as handle:
        handle.write(" ".join(sorted(per_potential)) + "\\n")
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    for name, data in sorted(per_potential.items()):
        ax.plot(data["a_A"], data["energies_eV"], "o-", label=name)
    return fig


@dataclass(frozen=True)
class ContractSettings(Settings):
    VERSION: ClassVar[int] = 1

    lattices_A: tuple[float, ...] = (5.3, 5.43, 5.6)


@dataclass(frozen=True)
class ContractResult(Result):
    lattices_A: tuple[float, ...]
    energies_eV: tuple[float, ...]
    n_force_calls: int
    protocol = "contract"
    figure = staticmethod(contract_figure)

    def metrics(self):
        return {"lowest_energy_per_atom_eV": min(self.energies_eV), **self.cost_metrics()}

    def report_data(self):
        return {"a_A": list(self.lattices_A), "energies_eV": list(self.energies_eV)}


def contract_protocol(calc, settings):
    from ase.build import bulk

    with open(CALLS, "a") as handle:
        handle.write("called\\n")
    meter = CostMeter(calc)
    energies = []
    for a in settings.lattices_A:
        atoms = bulk("Si", "diamond", a=a)
        atoms.calc = meter.calc
        energies.append(atoms.get_potential_energy() / len(atoms))
    return ContractResult(tuple(settings.lattices_A), tuple(energies), meter.calc.n_calls)


register("contract-toy", contract_protocol, ContractSettings, ContractResult)
'''

TEST = """
    import contract_toy  # the protocol's module: importing it registers the protocol


    def test_contract(mlpval):
        result = mlpval.run_protocol("contract-toy", lattices_A=(5.35, 5.431, 5.5))
        assert isinstance(result, contract_toy.ContractResult)
        assert result.lattices_A == (5.35, 5.431, 5.5)
        assert abs(result.metrics()["lowest_energy_per_atom_eV"] + 4.3366) < 1e-3
"""


@pytest.fixture
def toy(pytester):
    calls, drawn = pytester.path / "calls.txt", pytester.path / "drawn.txt"
    pytester.makepyfile(contract_toy=f"CALLS = {str(calls)!r}\nDRAWN = {str(drawn)!r}\n"
                        + textwrap.dedent(TOY))
    pytester.makepyfile(test_contract=TEST)
    yield calls, drawn
    base.PROTOCOLS.pop("contract-toy", None)  # the runs registered it in this process
    base.RESULT_TYPES.pop("ContractResult", None)


@pytest.mark.skipif(not HAVE_MPL, reason="needs matplotlib (plot extra)")
def test_a_new_protocol_runs_through_the_pytest_layer_cache_and_report(pytester, run, toy):
    calls, drawn = toy
    first = run("--potential=sw", "--mlpval-report=out", "--mlpval-json=out.json")
    first.assert_outcomes(passed=1)
    assert calls.read_text().split() == ["called"]
    # recorded under its name, with the metric's unit from its name
    (record,) = records_by_nodeid(read_json(pytester.path / "out.json"))[
        "test_contract.py::test_contract[sw]"]
    assert (record["kind"], record["dataset"]) == ("protocol", "contract-toy")
    assert record["metrics"]["lowest_energy_per_atom_eV"]["unit"] == "eV/atom"
    # the report drew the result's figure, once, for the one potential
    page = (pytester.path / "out" / "index.html").read_text(encoding="utf-8")
    section = re.search(r'<section id="protocols">(.*?)</section>', page, re.S).group(1)
    assert re.findall(r"<h3>(.*?)</h3>", section) == ["contract-toy (all)"]
    assert re.findall(r'<img alt="([^"]*)"', section) == ["contract-toy all"]
    assert "failed" not in section
    assert drawn.read_text().split() == ["sw"]

    again = run("--potential=sw", "--mlpval-report=out")
    again.assert_outcomes(passed=1)
    assert calls.read_text().split() == ["called"]  # read from the campaign cache
    assert drawn.read_text().split() == ["sw", "sw"]  # the cached result drawn again

    # other settings are another cache entry: the protocol runs again
    pytester.makepyfile(test_contract=TEST.replace("5.5)", "5.6)"))
    run("--potential=sw").assert_outcomes(passed=1)
    assert calls.read_text().split() == ["called", "called"]
