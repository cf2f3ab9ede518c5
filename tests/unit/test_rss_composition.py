"""Structure search of any composition (pytest_mlpval.protocols.rss.composition): minimum
distances per element pair and volumes scaled from silicon's by covalent radii, reference
crystals as specs, structures and builders, and silicon's defaults kept bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.rss import (ReferenceCrystal, RssSettings, generate,
                                         pair_separations, parse_composition)
from pytest_mlpval.protocols.rss.search import cache_parameters


def _distances(atoms):
    from matscipy.neighbours import neighbour_list

    i, j, d = neighbour_list("ijd", atoms, 4.0)
    symbols = np.array(atoms.get_chemical_symbols())
    return symbols[i], symbols[j], d


def test_silicon_defaults_are_unchanged():
    """The defaults resolve to silicon's numbers, the cache key is the one searches had
    before the defaults became composition-dependent, and the structures are the same."""
    settings = RssSettings(n_structures=8, atoms_per_cell=(4, 8), seed=0)
    assert settings.pair_separations == {("Si", "Si"): 1.8}
    assert settings.volume_range == (14.0, 26.0)
    assert settings.crystals == ("diamond",)
    key = cache_parameters(settings)["settings"]
    assert key["min_separation_A"] == 1.8 and key["volume_per_atom_A3"] == [14.0, 26.0]
    assert key["sane_volume_per_atom_A3"] == [14.0 / 3, 78.0]
    # numbers of the generator before this change (seed 0, structures 0 and 5)
    assert [len(generate(settings, i)) for i in range(8)] == [8, 6, 8, 6, 6, 7, 6, 7]
    first, fifth = generate(settings, 0), generate(settings, 5)
    assert first.positions[-1].tolist() == pytest.approx(
        [6.971520246090086, 8.454028261173148, 2.913378625346999], rel=1e-12)
    assert first.cell.cellpar().tolist() == pytest.approx(
        [6.9104818434313176, 5.804519662281056, 6.248396148956313, 62.45841143617169,
         60.991658131711745, 108.79621435201634], rel=1e-12)
    assert fifth.positions[-1].tolist() == pytest.approx(
        [2.536330192102145, 0.11021684713423091, 1.8440068066883464], rel=1e-12)


def test_pair_distances_and_volumes_scale_by_covalent_radii():
    settings = RssSettings(composition="SiC")
    pairs = settings.pair_separations
    # 1.8 (r_A + r_B) / (2 r_Si) with ASE's radii Si 1.11, C 0.76 Å
    assert pairs[("Si", "Si")] == 1.8
    assert pairs[("C", "C")] == pytest.approx(1.8 * 0.76 / 1.11)
    assert pairs[("C", "Si")] == pytest.approx(1.8 * (0.76 + 1.11) / 2.22)
    lo, hi = settings.volume_range
    scale = (1.11 ** 3 + 0.76 ** 3) / 2 / 1.11 ** 3
    assert (lo, hi) == pytest.approx((14.0 * scale, 26.0 * scale))
    assert lo < 10.36 < hi  # zincblende SiC's volume per atom
    assert settings.crystals == ()  # silicon's diamond is no default for a compound


def test_given_pair_distances_hold_in_every_structure():
    settings = RssSettings(composition="SiC", atoms_per_cell=(4, 8), seed=5,
                           volume_per_atom_A3=(14.0, 18.0),
                           min_separation_A={"Si-Si": 2.4, "C-Si": 1.7})
    pairs = settings.pair_separations
    assert pairs[("Si", "Si")] == 2.4 and pairs[("C", "Si")] == 1.7
    assert pairs[("C", "C")] == pytest.approx(1.8 * 0.76 / 1.11)  # the default
    closest = {("Si", "Si"): np.inf, ("C", "Si"): np.inf, ("C", "C"): np.inf}
    for index in range(12):
        atoms = generate(settings, index)
        assert sorted(set(atoms.get_chemical_symbols())) == ["C", "Si"]
        for a, b, d in zip(*_distances(atoms)):
            key = tuple(sorted((a, b)))
            assert d >= pairs[key] - 1e-9, (index, key, d)
            closest[key] = min(closest[key], d)
    # the rule per pair, not one distance for all: Si-Si bonds only above 2.4 Å, C-Si
    # contacts well below it
    assert closest[("Si", "Si")] >= 2.4 > closest[("C", "Si")]
    again = RssSettings.from_dict(settings.as_dict())
    assert again.pair_separations == pairs and again == settings


@pytest.mark.parametrize("value, match", [
    ({"Si-O": 1.5}, r"names O-Si, not pairs of the composition's elements"),
    ({"Si": 1.5}, r"'Si' is not an element pair"),
    ({"Si-C": -1.0}, r"min_separation_A must be > 0"),
    ("wide", r"min_separation_A must be a distance"),
])
def test_bad_pair_distances_are_named(value, match):
    with pytest.raises(SettingsError, match=match):
        RssSettings(composition="SiC", min_separation_A=value)


def test_formula_units_per_cell():
    by_units = RssSettings(composition="SiO2", units_per_cell=(1, 3), seed=4,
                           volume_per_atom_A3=(12, 16), min_separation_A=1.5)
    assert by_units.atoms_per_cell == (3, 9) and by_units.formula_units == (1, 2, 3)
    sizes = {len(generate(by_units, i)) for i in range(12)}
    assert sizes == {3, 6, 9}
    by_atoms = RssSettings(composition="SiO2", atoms_per_cell=(3, 9), seed=4,
                           volume_per_atom_A3=(12, 16), min_separation_A=1.5)
    assert cache_parameters(by_units) == cache_parameters(by_atoms)  # the same search
    assert RssSettings.from_dict(by_units.as_dict()) == by_units
    with pytest.raises(SettingsError, match=r"units_per_cell must be \(min, max\)"):
        RssSettings(composition="SiC", units_per_cell=(2, 1))


def test_compositions_parse_in_every_form():
    assert parse_composition("SiC") == (("Si", 1), ("C", 1))
    assert parse_composition({"Si": 2, "C": 2}) == (("Si", 1), ("C", 1))
    assert parse_composition(["Si", "O", "O"]) == (("Si", 1), ("O", 2))
    assert pair_separations(2.0, ("Si", "O")) == {("O", "O"): 2.0, ("O", "Si"): 2.0,
                                                  ("Si", "Si"): 2.0}


def test_reference_crystals_of_a_compound():
    zb = bulk("SiC", "zincblende", a=4.36)
    settings = RssSettings(composition="SiC", references={
        "zincblende": zb, "rocksalt": lambda formula: bulk(formula, "rocksalt", a=4.0)})
    assert [type(r) for r in settings.crystals] == [ReferenceCrystal, ReferenceCrystal]
    assert settings.reference_names == ("zincblende", "rocksalt")
    rebuilt = settings.crystals[0].atoms()
    assert rebuilt.get_chemical_symbols() == ["Si", "C"]
    assert np.allclose(rebuilt.positions, zb.positions)
    # crystal specs of pytest_mlpval.crystals, built for the composition's formula
    spec = RssSettings(composition="SiC", references=("zincblende:a=4.36", "wurtzite"))
    assert spec.reference_names == ("zincblende", "wurtzite")
    assert RssSettings.from_dict(settings.as_dict()) == settings
    assert RssSettings.from_dict(spec.as_dict()) == spec


@pytest.mark.parametrize("references, match", [
    (("diamond",), r"'diamond' is one of silicon's elemental phases, not defined for the "
                   r"compound SiC"),
    ({"rs": bulk("NaCl", "rocksalt", a=5.6)}, r"'rs' has Cl, Na, not in the composition"),
    (("nonsense",), r"unknown crystal 'nonsense'"),
])
def test_reference_crystals_that_do_not_apply_say_so(references, match):
    with pytest.raises(SettingsError, match=match):
        RssSettings(composition="SiC", references=references)
