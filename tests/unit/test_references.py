"""Reference tables (packaged silicon, users' files) and comparisons with them."""

from __future__ import annotations

import json
import math

import pytest

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.comparison import (
    LevelMismatchError,
    assert_properties,
    assert_property,
    compare,
    compare_levels,
    level_table,
)
from pytest_mlpval.references import (
    MissingReferenceError,
    ReferenceFileError,
    ReferenceUnitError,
    UnknownPropertyError,
    load_references,
    normalise_kind,
    property_unit,
)

SHARED = "/work/shared/data/silicon/reference"


@pytest.fixture(scope="module")
def si():
    return load_references("Si")


def _write(tmp_path, entries, element="Si", name="mine.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"schema": "pytest-mlpval-references/1", "element": element,
                                "entries": entries}), encoding="utf-8")
    return path


def _entry(**overrides):
    entry = {"property": "C44_GPa", "value": 75.0, "unit": "GPa", "uncertainty": 1.0,
             "kind": "DFT-PBE", "conditions": {"temperature_K": 0}, "source": "my relaxed-ion "
             "PBE calculation", "confidence": "high"}
    entry.update(overrides)
    return entry


# -- the packaged table ------------------------------------------------------------------

def test_packaged_silicon_has_the_three_kinds_with_provenance(si):
    assert si.kinds() == ["experiment", "DFT-PBE", "DFT-PW91"]
    for entry in si.entries:
        assert entry.source and entry.provenance.split(":")[0] in (
            "experiment.json", "dft_pbe_mlearn.json", "dft_pw91_gap18.json"), entry
        assert entry.unit == property_unit(entry.property)


@pytest.mark.parametrize("prop, kind, key", [
    ("lattice_parameter_A", "experiment",
     ("diamond_crystal", "lattice_parameter", "a_at_295.65K_A", "value")),
    ("C44_GPa", "experiment", ("diamond_crystal", "elastic_constants_GPa", "room_temperature",
                               "C44")),
    ("phonon_L_LO_THz", "experiment", ("diamond_crystal", "phonons_THz", "L_LO")),
    ("C44_GPa", "PW91", ("diamond", "C44_GPa")),
    ("vacancy_formation_eV", "PW91", ("point_defects_eV", "vacancy_relaxed_Ef")),
    ("surface_energy_111_J_m2", "PW91", ("surface_energy_relaxed_J_m2", "(111) 1x1")),
    ("phonon_X_TA_THz", "PW91", ("phonons_THz", "X_TA")),
    ("C44_clamped_GPa", "PBE", ("C44_clamped_ion_GPa",)),
    ("lattice_parameter_A", "PBE", ("a0_A",)),
])
def test_packaged_values_match_the_shared_source_files(si, prop, kind, key):
    """Each number is the one of the file its provenance names (read here independently)."""
    import os

    if not os.path.isdir(SHARED):
        pytest.skip("shared reference files not present")
    name = {"experiment": "experiment.json", "PW91": "dft_pw91_gap18.json",
            "PBE": "dft_pbe_mlearn.json"}[kind]
    with open(f"{SHARED}/{name}", encoding="utf-8") as handle:
        value = json.load(handle)
    for k in key:
        value = value[k]
    entry = si.get(prop, kind)
    assert entry.value == value
    assert entry.provenance.startswith(name)


def test_relaxed_and_clamped_c44_are_kept_apart(si):
    # PBE (mlearn) has only the clamped-ion C44: asking for the relaxed one must not find it
    assert si.get("C44_clamped_GPa", "PBE").value == pytest.approx(99.7)
    with pytest.raises(MissingReferenceError, match=r"no DFT-PBE reference for 'C44_GPa'.*"
                       r"kinds available for it: experiment, DFT-PW91"):
        si.get("C44_GPa", "PBE")


def test_temperature_selects_among_experimental_lattice_parameters(si):
    assert si.get("lattice_parameter_A").value == pytest.approx(5.431020511)
    assert si.get("lattice_parameter_A", temperature_K=0).value == pytest.approx(5.4298)
    assert si.get("C11_GPa", temperature_K=10).value == pytest.approx(167.5)


def test_unknown_property_names_close_matches(si):
    with pytest.raises(MissingReferenceError, match="did you mean.*vacancy_formation_eV"):
        si.get("vacancy_formaton_eV")


def test_kind_spellings():
    assert normalise_kind("pbe") == normalise_kind("DFT-PBE") == "DFT-PBE"
    assert normalise_kind("Experimental") == "experiment"


def test_property_units_from_names():
    assert property_unit("surface_energy_100_J_m2") == "J/m^2"
    assert property_unit("energy_beta_sn_vs_diamond_per_atom_eV") == "eV/atom"
    assert property_unit("phonon_gamma_LTO_THz") == "THz"
    assert property_unit("bulk_modulus_derivative") == ""
    with pytest.raises(UnknownPropertyError, match="carries no unit"):
        property_unit("bulk_modulus")


# -- users' files --------------------------------------------------------------------------

def test_extra_file_adds_and_takes_precedence(tmp_path):
    path = _write(tmp_path, [_entry(), _entry(property="C11_GPa", value=150.0, kind="PW91")])
    table = load_references("Si", extra_files=[path])
    assert table.get("C44_GPa", "PBE").value == 75.0
    assert table.get("C11_GPa", "PW91").value == 150.0  # user's entry first
    assert len(table.all("C11_GPa", "PW91")) == 2
    assert str(path) in table.files


def test_wrong_unit_is_rejected_naming_file_and_property(tmp_path):
    path = _write(tmp_path, [_entry(unit="kbar", value=750.0)])
    with pytest.raises(ReferenceUnitError, match=r"mine.json: entry 0 \(C44_GPa\): unit "
                       r"'kbar' does not match.*'GPa'"):
        load_references("Si", extra_files=[path])


def test_unit_aliases_are_accepted(tmp_path):
    path = _write(tmp_path, [_entry(property="lattice_parameter_A", unit="A", value=5.47)])
    assert load_references("Si", extra_files=[path]).get(
        "lattice_parameter_A", "PBE").unit == "Å"


@pytest.mark.parametrize("entry, message", [
    (_entry(property="C44"), "carries no unit"),
    (_entry(value="75"), "value must be a number"),
    (_entry(value=float("nan")), "must be finite"),
    (_entry(uncertainty=-1), "uncertainty must be >= 0"),
    ({"property": "C44_GPa", "value": 1.0}, "missing field"),
])
def test_bad_entries_are_rejected(tmp_path, entry, message):
    with pytest.raises(ReferenceFileError, match=message):
        load_references("Si", extra_files=[_write(tmp_path, [entry])])


def test_bad_files(tmp_path):
    with pytest.raises(ReferenceFileError, match="cannot read"):
        load_references("Si", extra_files=[tmp_path / "absent.json"])
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ReferenceFileError, match="not valid JSON"):
        load_references("Si", extra_files=[broken])
    with pytest.raises(ReferenceFileError, match="element 'C', not 'Si'"):
        load_references("Si", extra_files=[_write(tmp_path, [_entry()], element="C")])


def test_element_without_packaged_table(tmp_path):
    with pytest.raises(MissingReferenceError, match="no packaged reference table for element "
                       "'C'"):
        load_references("C")
    table = load_references("C", extra_files=[_write(tmp_path, [_entry()], element="C")])
    assert table.kinds() == ["DFT-PBE"]


# -- comparisons ---------------------------------------------------------------------------

def test_compare_tolerance_rule(si):
    ref = si.get("C11_GPa", "PW91").value  # 153.3
    inside = compare(ref + 2.9, si, "C11_GPa", "PW91", rel=0.02)  # 2 % = 3.07 GPa
    outside = compare(ref + 3.2, si, "C11_GPa", "PW91", rel=0.02)
    assert inside.passed and not outside.passed
    assert inside.difference == pytest.approx(2.9)
    assert inside.relative_difference == pytest.approx(2.9 / ref)
    assert compare(ref + 3.2, si, "C11_GPa", "PW91", rel=0.02, abs=4.0).passed
    assert not compare(float("nan"), si, "C11_GPa", "PW91", abs=1e9).passed
    with pytest.raises(ValueError, match="give a tolerance"):
        compare(ref, si, "C11_GPa", "PW91")


def test_compare_takes_result_metrics(si):
    class Result:
        def metrics(self):
            return {"C44_GPa": 70.0, "elastic_bulk_modulus_GPa": 90.0}

    assert compare(Result(), si, "C44_GPa", "PW91", abs=3).passed
    assert compare(Result(), si, "bulk_modulus_GPa", "PW91", abs=2,
                   metric="elastic_bulk_modulus_GPa").candidate == 90.0
    with pytest.raises(KeyError, match="no metric 'C11_GPa'"):
        compare(Result(), si, "C11_GPa", "PW91", abs=3)


def test_level_mismatch_is_flagged_and_shown(si):
    same = compare(5.47, si, "lattice_parameter_A", "PBE", abs=0.01, training_level="PBE")
    other = compare(5.47, si, "lattice_parameter_A", "PW91", abs=0.001, training_level="PBE")
    experiment = compare(5.47, si, "lattice_parameter_A", abs=0.1, training_level="PBE")
    assert not same.level_mismatch and other.level_mismatch and not experiment.level_mismatch
    with pytest.raises(MlpvalAssertionError, match="(?s)LEVEL MISMATCH: candidate trained on "
                       "DFT-PBE, compared with DFT-PW91 for lattice_parameter_A"):
        assert_property(5.47, si, "lattice_parameter_A", "PW91", abs=0.001,
                        training_level="PBE")
    with pytest.raises(LevelMismatchError, match="trained on DFT-PBE but the reference is "
                       "DFT-PW91"):
        compare(5.47, si, "lattice_parameter_A", "PW91", abs=1, training_level="PBE",
                strict_level=True)


def test_failure_message_is_a_table_with_everything(si):
    with pytest.raises(MlpvalAssertionError) as info:
        assert_property(109.8, si, "C44_GPa", "experiment", rel=0.1)
    text = str(info.value)
    for piece in ("C44_GPa", "109.8", "79.6", "GPa", "+30.2", "7.96", "McSkimin",
                  "FAIL", "tolerance"):
        assert piece in text, piece
    assert text.splitlines()[0].startswith("1 of 1 properties outside tolerance")


def test_assert_properties_lists_all(si):
    values = {"C11_GPa": 151.4, "C12_GPa": 76.5, "C44_GPa": 56.4}

    class Result:
        def metrics(self):
            return values

    with pytest.raises(MlpvalAssertionError) as info:
        assert_properties(Result(), si, {"C11_GPa": {"rel": 0.1}, "C12_GPa": {"rel": 0.1},
                                         "C44_GPa": {"rel": 0.1}})
    text = str(info.value)
    assert text.startswith("2 of 3")  # C11 is within 10 % of experiment, C12 and C44 not
    assert all(name in text for name in values)


def test_levels_keep_fit_error_and_ground_truth_error_apart(si):
    rows = compare_levels(5.47, si, ["lattice_parameter_A", "C44_GPa"], "PBE")
    lat, c44 = rows
    assert lat.fit_error == pytest.approx(5.47 - 5.4687)
    assert lat.ground_truth_error == pytest.approx(5.4687 - 5.431020511)
    assert lat.total_error == pytest.approx(lat.fit_error + lat.ground_truth_error)
    assert math.isnan(c44.fit_error) and c44.total_error == pytest.approx(5.47 - 79.6)
    text = "\n".join(level_table(rows, "PBE"))
    assert "fit error (cand-DFT-PBE)" in text and "DFT-PBE error (vs exp)" in text
    with pytest.raises(MissingReferenceError):  # PW91 only: neither PBE nor experiment
        compare_levels(1.0, si, "grain_boundary_sigma3_112_J_m2", "PBE")
