"""The protocol uncertainty of the finite-difference properties: elastic constants, the
EoS and phonons computed at several amplitudes (strains, strain spans, displacements),
the value reported at the default amplitude, the spread recorded beside it, and a rough
potential energy surface failing on its roughness, not on the physics.

Stillinger-Weber is smooth (spreads below 0.1 %); ``RoughCalculator`` adds 0.1 meV per
bond with a period of 0.03 Å, which moves C11, B and the optical phonons by 10-40 % over
the amplitudes, as a universal model does (CHGNet: C11 116 -> 140 GPa from ±1 % to
±0.25 % strain).
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.comparison import compare, comparison_table
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.base import CampaignOptions, result_from_dict
from pytest_mlpval.protocols.properties import (
    MAX_AMPLITUDE_SPREAD,
    ElasticSettings,
    EosSettings,
    assert_physical_eos,
    PhononSettings,
    compute_properties,
    elastic_constants,
    equation_of_state,
    phonons,
    spread_name,
)
from pytest_mlpval.references import load_references
from pytest_mlpval.testing import RoughCalculator

#: (protocol, cheap settings, its field of further amplitudes, a property, the
#: amplitude's name in the message, calculator calls the further amplitudes add for SW)
CASES = {
    "elastic": (elastic_constants, {}, "spread_strains", "C11_GPa", "strain", 6),
    "eos": (equation_of_state, {}, "spread_spans", "bulk_modulus_GPa", "strain span", 8),
    "phonons": (phonons, {"mesh": (4, 4, 4)}, "spread_displacements_A",
                "phonon_gamma_LTO_THz", r"displacement \(Å\)", 2),
}


@pytest.fixture(scope="module")
def sw():
    from pytest_mlpval.potentials import load_potential

    return load_potential("sw")


@pytest.fixture(scope="module")
def rough(sw):
    return RoughCalculator(sw.calculator)


def _run(calc, name, **overrides):
    function, settings, *_ = CASES[name]
    return function(calc, **{**settings, **overrides})


def test_rough_calculator_has_exact_forces_and_stress(rough):
    from ase.build import bulk
    from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

    atoms = bulk("Si", "diamond", a=5.44, cubic=True)
    atoms.rattle(0.01, seed=1)
    atoms.calc = rough
    assert atoms.get_forces() == pytest.approx(calculate_numerical_forces(atoms, eps=1e-5),
                                               abs=1e-6)
    assert atoms.get_stress() == pytest.approx(calculate_numerical_stress(atoms, eps=1e-6),
                                               abs=1e-8)


@pytest.mark.parametrize("name", CASES)
def test_sw_value_is_unchanged_and_its_small_spread_is_reported(sw, name):
    _, _, field, prop, _, added = CASES[name]
    result = _run(sw.calculator, name)
    alone = _run(sw.calculator, name, **{field: ()})  # one amplitude: the old protocol
    metrics = result.metrics()
    cost = f"{result.protocol}_force_calls"
    for key, value in alone.metrics().items():  # every number as before
        if key != cost:
            assert metrics[key] == value, key
    assert result.n_force_calls - alone.n_force_calls == added
    assert spread_name(prop) in metrics and spread_name(prop) not in alone.metrics()
    assert 0 < metrics[spread_name(prop)] < 1e-3 * metrics[prop]
    fraction = metrics[{"eos": "eos", "elastic": "elastic", "phonons": "phonon"}[name]
                       + "_amplitude_spread_fraction"]
    assert 0 < fraction < 1e-3 < MAX_AMPLITUDE_SPREAD  # measured: 3-7e-4
    assert result.units()[spread_name(prop)] == result.units()[prop]
    assert len(result.amplitudes) == 3 and result.amplitude_values[prop][0] == metrics[prop]
    result.assert_amplitude_independent()


@pytest.mark.parametrize("name", CASES)
def test_rough_pes_fails_on_its_roughness_not_the_physics(rough, name):
    _, _, field, prop, amplitude, _ = CASES[name]
    result = _run(rough, name)
    # the single confident number the protocol gave before
    assert result.metrics()[prop] == _run(rough, name, **{field: ()}).metrics()[prop]
    fraction, worst = result.amplitude_spread
    assert fraction > 1.5 * MAX_AMPLITUDE_SPREAD  # 10-40 %
    with pytest.raises(MlpvalAssertionError, match=(
            rf"{worst} \({result.protocol}\) moves by \d+\.\d % with the finite {amplitude} "
            r"\(limit 5 %, max_amplitude_spread_fraction\): the potential energy surface is "
            "rough")) as e:
        result.assert_amplitude_independent()
    message = str(e.value)
    assert "not the physics" in message and "protocol uncertainty is the spread" in message
    assert prop in message and f"at {result.amplitudes[-1]:g}" in message
    # a limit above the spread passes
    loose = _run(rough, name, max_amplitude_spread_fraction=2 * fraction)
    loose.assert_amplitude_independent()


def test_unphysical_b_prime_of_a_rough_surface_names_the_roughness(rough):
    """The old code's verdict on a rough surface was "B' unphysical" (CHGNet: B' = 33
    from ±1 %); the message now says that B' moves with the span."""
    result = equation_of_state(rough)
    assert not 1 <= result.bulk_modulus_derivative <= 10
    with pytest.raises(MlpvalAssertionError, match="unphysical equation of state") as e:
        assert_physical_eos(result)
    assert "B' of diamond moves with the strain span (-1.83 at ±0.01, " in str(e.value)
    assert "the surface is rough on the scale of the span" in str(e.value)


def test_settings_are_checked_and_versions_bumped():
    for settings, field in ((ElasticSettings, "spread_strains"), (EosSettings, "spread_spans"),
                            (PhononSettings, "spread_displacements_A")):
        assert settings.VERSION >= 2  # elastic: 3 (the constants of any symmetry)
        with pytest.raises(SettingsError, match=field):
            settings(**{field: (0.01, -0.002)})
        with pytest.raises(SettingsError, match="max_amplitude_spread_fraction"):
            settings(max_amplitude_spread_fraction=0)
        assert isinstance(settings(**{field: [0.002]}).as_dict()[field], list)
        assert settings.from_dict(settings().as_dict()) == settings()


def test_results_round_trip_through_json_and_the_cache(sw, tmp_path):
    params = {"phonons": {"mesh": [4, 4, 4]}}
    options = CampaignOptions(cache_dir=tmp_path)
    first = compute_properties(sw, ["elastic", "eos", "phonons"], params, options=options)
    assert first.errors == {}
    again = compute_properties(sw, ["elastic", "eos", "phonons"], params, options=options)
    assert set(again.from_cache) == {"elastic", "eos", "phonons"}
    for name, result in first.results.items():
        assert again[name] == result and again[name].metrics() == result.metrics()
        text = json.dumps(result.as_dict())
        assert result_from_dict(json.loads(text)) == result
    assert again.metrics()["C44_amplitude_spread_GPa"] > 0


def test_a_fit_that_fails_at_one_span_is_a_gap_and_fails_the_check(sw):
    result = equation_of_state(sw.calculator)
    broken = dataclasses.replace(result, amplitude_values={
        "bulk_modulus_GPa": (101.4, math.nan, 101.5),
        "bulk_modulus_derivative": (2.9, math.nan, 2.9)})
    metrics = broken.metrics()
    assert math.isnan(metrics["bulk_modulus_amplitude_spread_GPa"])
    assert broken.not_measured() == {
        "bulk_modulus_amplitude_spread_GPa", "bulk_modulus_derivative_amplitude_spread",
        "eos_amplitude_spread_fraction"}
    assert result.not_measured() == set()
    with pytest.raises(MlpvalAssertionError, match="could not be computed at that amplitude"):
        broken.assert_amplitude_independent()
    assert result_from_dict(json.loads(json.dumps(broken.as_dict()))).not_measured() == \
        broken.not_measured()


def test_the_comparison_table_shows_the_spread_beside_the_value():
    si = load_references("Si")
    metrics = {"C11_GPa": 150.0, "C11_amplitude_spread_GPa": 12.5, "C44_GPa": 70.0}
    with_spread = compare(metrics, si, "C11_GPa", rel=0.2)
    without = compare(metrics, si, "C44_GPa", rel=0.2)
    assert with_spread.amplitude_spread == 12.5 and math.isnan(without.amplitude_spread)
    lines = comparison_table([with_spread, without])
    assert "± amplitude" in lines[0]
    row = next(line for line in lines if line.startswith("C11_GPa"))
    assert row.split()[:3] == ["C11_GPa", "150", "12.5"]
    assert any("protocol uncertainty" in line for line in lines)
    assert "± amplitude" not in comparison_table([without])[0]  # none known: as before
