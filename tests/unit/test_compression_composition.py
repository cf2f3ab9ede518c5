"""Compression of any composition (pytest_mlpval.protocols.compression): the settings, the
random start of a compound, the reference crystals and the per-frame analysis with two
species; silicon's defaults and cache keys unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from pytest_mlpval.protocols.compression import (CompressionAnalyser, CompressionSettings,
                                                 compound_start)
from pytest_mlpval.protocols.md import MDParameterError
from pytest_mlpval.protocols.rss import ReferenceCrystal

SIC = dict(composition="SiC", references=("zincblende:a=4.36", "rocksalt:a=4.0"),
           expected_phase="rocksalt", coordination_cutoff_A=2.3)


def test_silicon_keeps_its_defaults_and_key():
    settings = CompressionSettings()
    assert settings.references == ("diamond", "sh") and settings.formula == "Si"
    assert settings.elements == ("Si",)
    assert "composition" not in settings.as_dict()  # the key runs had before
    assert CompressionSettings.from_dict(settings.as_dict()) == settings


def test_a_compound_gives_its_crystals_and_cutoff():
    settings = CompressionSettings(**SIC)
    assert settings.composition == (("Si", 1), ("C", 1)) and settings.formula == "SiC"
    assert settings.reference_names == ("zincblende", "rocksalt")
    assert settings.as_dict()["composition"] == [["Si", 1], ["C", 1]]
    assert CompressionSettings.from_dict(settings.as_dict()) == settings
    structures = CompressionSettings(**{**SIC, "references": {
        "zincblende": bulk("SiC", "zincblende", a=4.36), "rocksalt": "rocksalt:a=4.0"}})
    assert isinstance(structures.references[0], ReferenceCrystal)
    assert CompressionSettings.from_dict(structures.as_dict()) == structures


@pytest.mark.parametrize("overrides, match", [
    ({"references": ("diamond", "sh"), "expected_phase": "sh"},
     r"'diamond' is one of silicon's elemental phases, not defined for the compound SiC"),
    ({"start_cell": "diamond"}, r"start_cell='diamond' is a rattled diamond of one element"),
    ({"coordination_cutoff_A": 2.85}, r"2.85 Å is silicon's Si-Si bond cutoff; give the "
                                      r"compound SiC's"),
    ({"expected_phase": "sh"}, r"expected_phase 'sh' is not among the references "
                               r"\['zincblende', 'rocksalt'\]"),
    ({"composition": "SiX"}, r"composition 'SiX': unknown element 'X'"),
])
def test_what_does_not_apply_to_a_compound_says_so(overrides, match):
    with pytest.raises(MDParameterError, match=match):
        CompressionSettings(**{**SIC, **overrides})


def test_compound_start_holds_whole_formula_units_apart():
    crystals = {"zincblende": bulk("SiC", "zincblende", a=4.36),
                "rocksalt": bulk("SiC", "rocksalt", a=4.0)}
    settings = CompressionSettings(**{**SIC, "composition": "SiC2", "n_atoms": 31,
                                      "references": crystals})
    atoms = compound_start(settings, seed=3)
    symbols = atoms.get_chemical_symbols()
    assert len(atoms) == 30 and symbols.count("C") == 20 and symbols.count("Si") == 10
    # at the volume per atom of the first reference as built (zincblende a = 4.36 Å)
    assert atoms.get_volume() / len(atoms) == pytest.approx(4.36 ** 3 / 8)
    from matscipy.neighbours import neighbour_list

    i, j, d = neighbour_list("ijd", atoms, 2.0)
    numbers = atoms.numbers
    for a, b, dist in zip(numbers[i], numbers[j], d):
        limit = {(6, 6): 1.8 * 0.76 / 1.11, (14, 14): 1.8}.get((a, b), 1.8 * 1.87 / 2.22)
        assert dist >= limit - 1e-9
    again = compound_start(settings, seed=3)
    assert np.array_equal(again.positions, atoms.positions)
    assert not np.array_equal(compound_start(settings, seed=4).positions, atoms.positions)


def test_analyser_measures_a_compound_frame():
    settings = CompressionSettings(**SIC)
    zb = bulk("SiC", "zincblende", a=4.36, cubic=True)
    rs = bulk("SiC", "rocksalt", a=4.0, cubic=True)
    analyse = CompressionAnalyser(settings, {"zincblende": {0.0: zb}, "rocksalt": {0.0: rs}})
    scalars, per_atom = analyse(zb * (2, 2, 2), {"target_pressure_GPa": 0.0})
    assert scalars["coordination_mean"] == 4.0  # Si-C bonds (1.89 Å) within 2.3 Å
    assert scalars["zincblende_fraction"] == 1.0 and scalars["rocksalt_fraction"] == 0.0
    scalars, _ = analyse(rs * (2, 2, 2), {"target_pressure_GPa": 0.0})
    assert scalars["coordination_mean"] == 6.0
    assert scalars["rocksalt_fraction"] == 1.0 and scalars["zincblende_fraction"] == 0.0
