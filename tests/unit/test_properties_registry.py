"""Adding a property protocol is one module with one registration line: a toy protocol
written to a temporary module joins compute_properties, the campaign cache and the
ready-made tests' groups (which group runs it, which metrics it owns, its tier settings,
its physical check) with no other edit (Stillinger-Weber)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from types import SimpleNamespace

import pytest

from pytest_mlpval import property_tests
from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.protocols import base
from pytest_mlpval.protocols.base import CampaignOptions
from pytest_mlpval.protocols.properties import compute_properties, property_protocols

TOY = '''
from dataclasses import dataclass
from typing import Any, ClassVar

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.protocols.base import CostMeter, register
from pytest_mlpval.protocols.properties import FAMILY, PropertyResult, PropertySettings


@dataclass(frozen=True)
class ToySettings(PropertySettings):
    VERSION: ClassVar[int] = 1
    group: ClassVar[str] = "toys"
    tiers: ClassVar[dict[str, dict[str, Any]]] = {"full": {"a_A": 5.5}}

    a_A: float = 5.43


@dataclass(frozen=True)
class ToyResult(PropertyResult):
    symbol: str
    a_A: float
    energy_per_atom_eV: float
    n_force_calls: int
    protocol = "toy"
    owns = r"toy_\\w+"

    def metrics(self):
        return {"toy_energy_per_atom_eV": self.energy_per_atom_eV, **self.cost_metrics()}

    def assert_physical(self):
        if self.energy_per_atom_eV > 0:
            raise MlpvalAssertionError(f"toy: unbound at a = {self.a_A} Å")


def toy_energy(calc, settings=None, **overrides):
    from ase.build import bulk

    s = ToySettings.of(settings, **overrides)
    with open(CALLS, "a") as handle:
        handle.write(f"{s.a_A}\\n")
    meter = CostMeter(calc)
    atoms = bulk(s.symbol, "diamond", a=s.a_A)
    atoms.calc = meter.calc
    energy = atoms.get_potential_energy() / len(atoms)
    return ToyResult(s.symbol, s.a_A, energy, meter.calc.n_calls)


register("toy_energy", toy_energy, ToySettings, ToyResult, family=FAMILY)
'''


@pytest.fixture(scope="module")
def sw():
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy protocol's module, imported from a temporary folder; unregistered after."""
    calls = tmp_path / "calls.txt"
    (tmp_path / "toy_property.py").write_text(
        f"CALLS = {str(calls)!r}\n" + textwrap.dedent(TOY), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("toy_property")
        yield module, calls
    finally:
        sys.modules.pop("toy_property", None)
        base.PROTOCOLS.pop("toy_energy", None)
        base.RESULT_TYPES.pop("ToyResult", None)


def test_a_registered_toy_protocol_runs_through_compute_properties_and_its_cache(
        sw, toy, tmp_path):
    module, calls = toy
    assert property_protocols()[-1] == "toy_energy"
    options = CampaignOptions(cache_dir=tmp_path / "cache")
    first = compute_properties(sw, ["lattice", "toy_energy"], {"toy_energy": {"a_A": 5.431}},
                               options=options)
    assert first.errors == {} and isinstance(first["toy_energy"], module.ToyResult)
    # SW's diamond minimum: -2 epsilon = -4.3366 eV/atom at a = 5.431 Å
    assert first.metrics()["toy_energy_per_atom_eV"] == pytest.approx(-4.3366, abs=1e-3)
    again = compute_properties(sw, ["toy_energy"], {"toy_energy": {"a_A": 5.431}},
                               options=options)
    assert again.from_cache == ("toy_energy",) and again["toy_energy"] == first["toy_energy"]
    assert calls.read_text().split() == ["5.431"]  # the second run read the cache
    # its settings given as an object; bad ones are reported as the protocol's error
    given = compute_properties(sw, ["toy_energy"], {"toy_energy": module.ToySettings(a_A=5.5)},
                               options=options)
    assert given["toy_energy"].a_A == 5.5 and given.from_cache == ()
    bad = compute_properties(sw, ["toy_energy", "lattice"],
                             {"toy_energy": {"a_nm": 0.5}, "lattice": module.ToySettings()})
    assert "SettingsError: unknown ToySettings setting(s) ['a_nm']" in bad.errors["toy_energy"]
    assert bad.errors["lattice"] == ("SettingsError: protocol 'lattice' takes LatticeSettings, "
                                     "got ToySettings")
    assert calls.read_text().split() == ["5.431", "5.5"]


def test_the_ready_made_tests_find_a_registered_toy_protocol(toy):
    module, _ = toy
    assert property_tests.groups()["toys"] == ("toy_energy",)
    assert property_tests.group_of("toy_energy_per_atom_eV") == "toys"
    assert property_tests.group_of("toy_force_calls") == "toys"
    # the built-in groups are unchanged by it
    assert property_tests.group_of("C44_GPa") == "elastic"
    assert property_tests.group_of("bulk_modulus_beta_sn_GPa") == "polymorphs"
    assert property_tests.group_of("bulk_modulus_GPa") == "lattice"
    assert property_tests.groups()["surfaces"] == ("surface_100", "surface_110",
                                                   "surface_111")
    # its tier's settings, as the built-in groups' (a request without a test module)
    request = SimpleNamespace(node=SimpleNamespace())
    assert property_tests._params(request, "toys", "full") == {"toy_energy": {"a_A": 5.5}}
    assert property_tests._params(request, "toys", "quick") == {"toy_energy": {}}
    assert property_tests._params(request, "lattice", "quick") == {
        "lattice": {}, "eos": {"strain_span": 0.01}}
    assert property_tests._params(request, "polymorphs", "full") == {
        "polymorphs": {"names": ("diamond", "beta-Sn", "sh", "bcc", "fcc")}}
    # its physical check is the one the group's test runs
    unbound = module.ToyResult("Si", 9.0, 0.5, 1)
    assert "toy: unbound at a = 9.0 Å" in property_tests._stability(unbound)
    assert property_tests._stability(module.ToyResult("Si", 5.43, -2.1, 1)) is None
    with pytest.raises(MlpvalAssertionError):
        unbound.assert_physical()


def test_without_the_toy_module_nothing_knows_the_toy(toy):
    """The registration line is what makes it known: taking it back removes the toy
    from the campaign and the groups."""
    base.PROTOCOLS.pop("toy_energy")
    assert "toy_energy" not in property_protocols()
    assert "toys" not in property_tests.groups()
    assert property_tests.group_of("toy_energy_per_atom_eV") is None
    with pytest.raises(ValueError, match="unknown property protocol.*'toy_energy'"):
        compute_properties(None, ["toy_energy"])
