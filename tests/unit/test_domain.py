"""Leakage between training and test sets and the domain of applicability (SOAP)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pytest_mlpval.assertions import MlpvalAssertionError
from pytest_mlpval.data import read_dataset
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.evaluate import Predictions
from pytest_mlpval.metrics import compute_errors
from pytest_mlpval.protocols.domain import (OUTSIDE_CUTOFF, ApplicabilitySettings,
                                            LeakageSettings, assert_applicable,
                                            assert_no_leakage, check_applicability,
                                            check_leakage, errors_by_similarity,
                                            find_duplicates, plot_errors_by_similarity,
                                            plot_similarity_histogram, report_figure,
                                            similarity_to_training, training_domain)
from pytest_mlpval.protocols.fitting import subset

DATA = Path(__file__).resolve().parents[2] / "example_suites" / "silicon" / "data"
KEYS = "energy=dft_energy,forces=dft_forces,stress=dft_stress"


@pytest.fixture(scope="module")
def mlearn():
    train = read_dataset(f"train={DATA / 'mlearn_Si_training.xyz'},{KEYS}")
    test = read_dataset(f"test={DATA / 'mlearn_Si_test.xyz'},{KEYS}")
    return train, test


@pytest.fixture(scope="module")
def groups(mlearn):
    """Index lists of the mlearn training set: Elastic (strained crystals) and hot
    AIMD-NVT (2530 and 3374 K: liquid)."""
    import ase.io

    frames = ase.io.read(DATA / "mlearn_Si_training.xyz", ":")
    elastic = [i for i, a in enumerate(frames) if a.info["config_type"] == "Elastic"]
    hot = [i for i, a in enumerate(frames) if a.info["config_type"] == "AIMD-NVT"
           and int(re.search(r"at (\d+) K", a.info["description"]).group(1)) >= 2530]
    return {"elastic": elastic, "hot": hot}


@pytest.fixture(scope="module")
def crystal_domain(mlearn, groups):
    return training_domain(subset(mlearn[0], groups["elastic"], "elastic"))


def test_domain_holds_every_training_environment(crystal_domain, groups):
    assert crystal_domain.name == "elastic"
    assert crystal_domain.n_structures == len(groups["elastic"])
    assert crystal_domain.n_environments == 64 * len(groups["elastic"])
    norms = np.linalg.norm(crystal_domain.environments, axis=1)
    assert np.allclose(norms, 1.0)
    assert not crystal_domain.environments.flags.writeable


def test_training_frames_as_test_set_are_flagged_as_leaked(mlearn, groups):
    train, _ = mlearn
    hot = groups["hot"]
    training = subset(train, hot[::2], "hot-even")
    leaked = subset(train, hot[::2][:6] + hot[1::2][:6], "half-leaked")
    result = check_leakage(training, leaked)
    m = result.metrics()
    assert m["n_exact_duplicates"] == 6 and m["n_near_duplicates"] == 0
    assert m["duplicate_fraction"] == pytest.approx(0.5)
    assert [d.test_index for d in result.duplicates] == list(range(6))
    assert all(d.kind == "exact" and d.similarity == 1.0 for d in result.duplicates)
    with pytest.raises(MlpvalAssertionError) as info:
        assert_no_leakage(result)
    message = str(info.value)
    assert "6 exact and 0 near duplicates among 12 test structures" in message
    assert "duplicate_fraction" in message and "exact" in message
    json.dumps(result.as_dict())
    assert json.loads(json.dumps(result.report_data()))["similarity"][-1] == pytest.approx(1.0)


def test_held_out_snapshots_are_not_leaked(mlearn, groups):
    train, _ = mlearn
    hot = groups["hot"]
    result = check_leakage(subset(train, hot[::2], "hot-even"),
                           subset(train, hot[1::2], "hot-odd"))
    assert result.duplicates == ()
    assert result.metrics()["median_min_similarity"] < 0.999
    assert_no_leakage(result)


def test_a_slightly_rattled_copy_is_a_near_duplicate(mlearn, groups):
    train, _ = mlearn
    hot = groups["hot"][:4]
    frames = [train.atoms(i) for i in hot]
    rng = np.random.default_rng(0)
    tiny, large = frames[0].copy(), frames[1].copy()
    tiny.positions += rng.normal(scale=0.001, size=tiny.positions.shape)
    large.positions += rng.normal(scale=0.05, size=large.positions.shape)
    found = find_duplicates([tiny, large], subset(train, hot))
    assert len(found) == 1 and found[0].kind == "near" and found[0].test_index == 0
    assert found[0].train_index == 0 and 0.9999 < found[0].similarity < 1.0


def test_symmetry_equivalent_strains_of_the_mlearn_test_set_are_found(mlearn, groups,
                                                                      crystal_domain):
    """Three strained crystals of the mlearn test set are shear strains of the opposite
    sign (mirror images) of training structures: same energy, SOAP kernel 1."""
    _, test = mlearn
    elastic_test = [i for i, c in enumerate(test.config_types) if c == "Elastic"]
    result = check_leakage(crystal_domain, subset(test, elastic_test, "test-elastic"))
    assert len(result.duplicates) == 3
    assert all(d.kind == "near" and d.similarity > 0.99999 for d in result.duplicates)
    for d in result.duplicates:
        e_test = test.energy[elastic_test[d.test_index]]
        e_train = mlearn[0].energy[groups["elastic"][d.train_index]]
        assert abs(e_test - e_train) < 1e-5  # eV per 64-atom cell


def test_crystal_training_set_does_not_cover_the_liquid(mlearn, groups, crystal_domain):
    train, _ = mlearn
    liquid = check_applicability(subset(train, groups["hot"], "liquid"), crystal_domain)
    m = liquid.metrics()
    assert m["outside_fraction"] > 0.8 and m["n_structures_with_outside_atoms"] == 36
    assert m["mean_similarity"] < 0.9 and m["cutoff"] == OUTSIDE_CUTOFF
    assert set(liquid.units()) == set(m)
    with pytest.raises(MlpvalAssertionError) as info:
        assert_applicable(liquid, max_outside_fraction=0.05)
    message = str(info.value)
    assert "outside the domain of training set 'elastic'" in message
    assert "least covered structures" in message and "AIMD-NVT" in message
    worst = liquid.least_covered(3)
    assert worst[0][3] >= worst[1][3] >= worst[2][3] > 0.9
    data = json.loads(json.dumps(liquid.report_data(max_points=50)))
    assert len(data["similarity"]) == 50 and data["cutoff"] == OUTSIDE_CUTOFF
    assert data["similarity"][0] == pytest.approx(m["min_similarity"])
    assert len(report_figure({"elastic": data}).axes) == 1
    assert "figure" not in data  # the report draws it with type(liquid).figure


def test_held_out_crystals_are_inside_the_crystal_domain(mlearn, crystal_domain):
    _, test = mlearn
    crystals = [i for i, c in enumerate(test.config_types) if c == "Elastic"]
    result = check_applicability(subset(test, crystals), crystal_domain,
                                 names=[f"crystal {i}" for i in crystals])
    assert result.metrics()["outside_fraction"] == 0.0
    assert result.metrics()["min_similarity"] > 0.99
    assert_applicable(result, max_outside_fraction=0.0)
    assert result.least_covered(1)[0][1].startswith("crystal")


def test_errors_are_binned_by_similarity(mlearn, groups, crystal_domain):
    train, _ = mlearn
    frames = subset(train, groups["hot"][:4] + groups["elastic"][:4], "mixed")
    similarity = similarity_to_training(frames, crystal_domain)
    # a model whose force error grows as the environment leaves the training domain
    forces = tuple(f + np.outer(2.0 * (1.0 - s), [1.0, 0.0, 0.0])
                   for f, s in zip(frames.forces, similarity.per_atom))
    energy = frames.energy + 0.01 * frames.n_atoms * (1.0 - similarity.mean)
    report = compute_errors(frames, Predictions("mixed", energy, forces, None))
    binned = errors_by_similarity(report, similarity)
    m = binned.metrics()
    assert m["force_rmse_outside"] > 5 * m["force_rmse_inside"]
    assert m["energy_rmse_outside"] > m["energy_rmse_inside"]
    assert binned.force_counts.sum() == frames.n_atoms.sum()
    assert binned.energy_counts.sum() == len(frames)
    filled = ~np.isnan(binned.force_rmse)
    assert np.all(np.diff(binned.force_rmse[filled]) < 0)  # falls as similarity rises
    assert m["n_structures_outside"] == 4
    assert "F RMSE" in "\n".join(binned.table())
    assert len(plot_errors_by_similarity(binned).axes) == 2
    assert len(plot_similarity_histogram(similarity).axes) == 1
    # a config_type subset of the report keeps its dataset indices
    sub = errors_by_similarity(report.subset_by_config_type("Elastic"), similarity)
    assert sub.force_counts.sum() == 4 * 64


def test_errors_and_similarity_of_different_sets_are_rejected(mlearn, groups,
                                                              crystal_domain):
    train, _ = mlearn
    frames = subset(train, groups["elastic"][:2])
    similarity = similarity_to_training(frames, crystal_domain)
    other = subset(train, [0, 1, 2])  # 63-atom vacancy cells, three of them
    report = compute_errors(other, Predictions("x", other.energy, other.forces, None))
    with pytest.raises(ValueError, match="not the same test set"):
        errors_by_similarity(report, similarity)
    with pytest.raises(ValueError, match="increasing edges"):
        errors_by_similarity(compute_errors(frames, Predictions(
            "x", frames.energy, frames.forces, None)), similarity, bins=(0.5, 0.2))


def test_unknown_element_is_outside_by_definition(crystal_domain):
    from ase.build import bulk

    with pytest.raises(ValueError, match=r"contains \['Ge'\], absent from the training set"):
        check_applicability([bulk("Ge", "diamond", a=5.66)], crystal_domain)


@pytest.mark.parametrize("kwargs, message", [({"cutoff": 0.0}, "cutoff must be in"),
                                             ({"cutoff": 1.5}, "cutoff must be in")])
def test_bad_cutoff(crystal_domain, kwargs, message):
    from ase.build import bulk

    with pytest.raises(ValueError, match=message):
        check_applicability([bulk("Si", "diamond", a=5.43)], crystal_domain,
                            ApplicabilitySettings(**kwargs))


def test_similarity_is_deterministic_and_falls_with_distortion(crystal_domain):
    from ase.build import bulk

    crystal = bulk("Si", "diamond", a=5.47, cubic=True)
    a = similarity_to_training([crystal], crystal_domain)
    b = similarity_to_training([crystal.copy()], crystal_domain)
    assert np.array_equal(a.per_atom[0], b.per_atom[0])
    assert a.min[0] > 0.999  # the unstrained cell is among the Elastic structures
    rattled = crystal.copy()
    rattled.rattle(0.2, seed=1)
    assert similarity_to_training([rattled], crystal_domain).mean[0] < a.mean[0] - 0.01


def test_domain_settings_results_and_figures_follow_the_protocol_contract(crystal_domain):
    """Leakage and applicability take Settings (a bad value is a SettingsError naming
    it), and their results are protocol Results that name the report's figure."""
    from ase.build import bulk

    from pytest_mlpval.protocols.base import Result, Settings
    from pytest_mlpval.protocols.domain import (ApplicabilityResult, BinnedErrors,
                                                LeakageResult, coverage)

    for cls in (LeakageSettings, ApplicabilitySettings):
        assert issubclass(cls, Settings) and cls.VERSION == 1
        assert cls.from_dict(json.loads(json.dumps(cls().as_dict()))) == cls()
    for cls in (LeakageResult, ApplicabilityResult, BinnedErrors):
        assert issubclass(cls, Result)
    assert LeakageResult.figure is ApplicabilityResult.figure is coverage.report_figure
    with pytest.raises(SettingsError, match=r"duplicate_similarity must be in \(0, 1\]"):
        LeakageSettings(duplicate_similarity=0.0)
    crystal = bulk("Si", "diamond", a=5.47, cubic=True)
    strict = check_applicability([crystal], crystal_domain,
                                 ApplicabilitySettings(cutoff=1.0))
    assert strict.cutoff == 1.0 and strict.metrics()["outside_fraction"] > 0
    copy = check_leakage(crystal_domain, [crystal], LeakageSettings(duplicate_similarity=1.0))
    assert copy.duplicate_similarity == 1.0
