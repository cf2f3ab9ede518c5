"""Fault injection on the data path: damaged datasets, damaged prediction caches and
calculators that return NaN, inf or arrays of the wrong shape. Each must give an error or
a failure naming the structure and the quantity, never a pass over a smaller sample."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

from pytest_mlpval.assertions import (
    MissingMetricError,
    MlpvalAssertionError,
    assert_errors_within,
)
from pytest_mlpval.data import DatasetError, read_dataset
from pytest_mlpval.evaluate import (
    CacheWarning,
    NonFiniteError,
    PredictionShapeError,
    cache_key,
    predict,
    predict_cached,
)
from pytest_mlpval.metrics import STATS, compute_errors
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.testing import FaultyCalculator, make_reference_file

LABELS = "energy=dft_energy,forces=dft_forces,stress=dft_stress"
ALL = ("energy", "forces", "stress")
HASH = "c" * 64
BAD = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
DAMAGED = 1  # the damaged structure: config_type "rattled", 16 atoms


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw").calculator


@pytest.fixture(scope="module")
def clean_file(tmp_path_factory):
    return make_reference_file(tmp_path_factory.mktemp("faults") / "clean.xyz",
                               n_structures=4)


@pytest.fixture(scope="module")
def reference(clean_file):
    return read_dataset(f"ref={clean_file},{LABELS}")


def _frames(path):
    import ase.io

    return ase.io.read(path, ":")


def _write(path, frames):
    import ase.io

    ase.io.write(path, frames, format="extxyz")
    return path


# --- labels: NaN or inf anywhere is a dataset error at load -------------------------------

def _damage_label(frames, label, value):
    atoms = frames[DAMAGED]
    if label == "energy":
        atoms.info["dft_energy"] = value
    elif label == "forces":
        atoms.arrays["dft_forces"][3, 1] = value
    elif label == "stress":
        atoms.info["dft_stress"] = np.where(np.arange(6) == 4, value, atoms.info["dft_stress"])
    elif label == "virial":
        for a in frames:
            a.info["dft_virial"] = -np.diag([1.0, 1.0, 1.0]) * 0.01 * a.get_volume()
            del a.info["dft_stress"]
        atoms.info["dft_virial"][1, 2] = value


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("label, spec", [
    ("energy", LABELS),
    ("forces", LABELS),
    ("stress", LABELS),
    ("virial", "energy=dft_energy,forces=dft_forces,virial=dft_virial"),
])
def test_non_finite_label_is_a_dataset_error(clean_file, tmp_path, label, spec, bad):
    frames = _frames(clean_file)
    _damage_label(frames, label, BAD[bad])
    path = _write(tmp_path / f"bad_{label}.xyz", frames)
    with pytest.raises(DatasetError) as info:
        read_dataset(f"bad={path},{spec}")
    message = str(info.value)
    assert str(path) in message
    assert f"structure {DAMAGED} (config_type 'rattled'" in message
    assert f"{label} label" in message
    assert ("NaN" if bad == "nan" else "inf") in message


@pytest.mark.parametrize("label", ["energy", "forces", "stress"])
def test_non_finite_label_under_standard_keys(tmp_path, label):
    """Standard extxyz keys arrive through ASE's SinglePointCalculator, not atoms.info."""
    path = make_reference_file(tmp_path / "std.xyz", n_structures=3,
                               keys={k: k for k in ALL})
    frames = _frames(path)
    results = frames[1].calc.results
    value = np.array(results[label], dtype=float)
    value.flat[value.size // 2] = float("nan")
    results[label] = value if label != "energy" else float(value)
    _write(path, frames)
    with pytest.raises(DatasetError, match=rf"structure 1 \(config_type 'rattled'.*{label}"):
        read_dataset(f"std={path}")


# --- stress labels need a periodic cell ---------------------------------------------------

@pytest.mark.parametrize("pbc", [False, (True, True, False)], ids=["molecule", "slab"])
@pytest.mark.parametrize("label", ["stress", "virial"])
def test_stress_label_on_non_periodic_structure(clean_file, tmp_path, pbc, label):
    frames = _frames(clean_file)
    if label == "virial":
        _damage_label(frames, "virial", 0.0)
        spec = "energy=dft_energy,virial=dft_virial"
    else:
        spec = LABELS
    frames[DAMAGED].pbc = pbc
    path = _write(tmp_path / "np.xyz", frames)
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}.*structure {DAMAGED} "
                       rf"\(config_type 'rattled'.*not periodic.*{label}"):
        read_dataset(f"np={path},{spec}")
    # without the stress label the same structures are fine
    assert read_dataset(f"np={path},energy=dft_energy,forces=dft_forces").stress is None


# --- a wrong label key lists the keys the file has ----------------------------------------

FILE_KEYS = ("config_type", "dft_energy", "dft_forces", "dft_stress")


@pytest.mark.parametrize("label, wrong", [("energy", "energy"), ("forces", "force"),
                                          ("stress", "dft_virial")])
@pytest.mark.parametrize("where", ["require", "threshold"])
def test_wrong_key_lists_the_keys_of_the_file(clean_file, sw, label, wrong, where):
    others = ",".join(f"{k}=dft_{k}" for k in ALL if k != label)
    ref = read_dataset(f"w={clean_file},{label}={wrong},{others}")
    metric = {"energy": "energy_rmse", "forces": "force_rmse", "stress": "stress_rmse"}
    if where == "require":
        with pytest.raises(DatasetError) as info:
            ref.require(label)
    else:
        report = compute_errors(ref, predict(sw, ref))
        with pytest.raises(MissingMetricError) as info:
            assert_errors_within(report, **{metric[label]: 1.0})
    message = str(info.value)
    assert repr(wrong) in message
    for key in FILE_KEYS:
        assert key in message, key


def test_all_keys_wrong_lists_the_keys_of_the_file(clean_file, sw):
    ref = read_dataset(f"w={clean_file}")  # default keys: energy, forces, stress
    with pytest.raises(ValueError, match="dft_energy.*dft_forces"):
        compute_errors(ref, predict(sw, ref, ("energy",)))


# --- damaged prediction caches are discarded with a warning ------------------------------

def _damage_cache(arrays, damage, n_structures):
    arrays = dict(arrays)
    if damage.startswith(("nan-", "inf-")):
        bad, _, key = damage.partition("-")
        value = arrays[key].copy()
        value.flat[value.size // 2] = float(bad)
        arrays[key] = value
    elif damage == "forces-one-row-short":
        arrays["forces"] = arrays["forces"][:-1]
    elif damage == "forces-flat":
        arrays["forces"] = arrays["forces"].ravel()
    elif damage == "stress-3x3":
        arrays["stress"] = np.zeros((n_structures, 3, 3))
    elif damage == "energy-truncated":
        arrays["energy"] = arrays["energy"][:-1]
    elif damage == "stress-truncated":
        arrays["stress"] = arrays["stress"][:-1]
    elif damage.startswith("missing-"):
        del arrays[damage.partition("-")[2]]
    elif damage == "object-array":
        arrays["energy"] = np.array(["a"] * n_structures)
    else:  # pragma: no cover
        raise ValueError(damage)
    return arrays


CACHE_DAMAGE = ["nan-energy", "inf-energy", "nan-forces", "inf-forces", "nan-stress",
                "inf-stress", "forces-one-row-short", "forces-flat", "stress-3x3",
                "energy-truncated", "stress-truncated", "missing-energy", "missing-forces",
                "missing-stress", "object-array"]


class Counting:
    """A calculator wrapper counting the structures it was asked about."""

    def __init__(self, base):
        from ase.calculators.calculator import Calculator, all_changes

        outer = self
        self.calls = 0

        class _Counting(Calculator):
            implemented_properties = ["energy", "free_energy", "forces", "stress"]

            def calculate(self, atoms=None, properties=("energy",),
                          system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                outer.calls += 1
                work = self.atoms.copy()
                work.calc = base
                self.results = {"energy": work.get_potential_energy(),
                                "forces": work.get_forces(), "stress": work.get_stress()}
                self.results["free_energy"] = self.results["energy"]

        self.calc = _Counting()


def _assert_same(a, b):
    np.testing.assert_array_equal(a.energy, b.energy)
    for x, y in zip(a.forces, b.forces, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.stress, b.stress)


@pytest.mark.parametrize("damage", CACHE_DAMAGE)
def test_damaged_cache_is_recomputed_with_a_warning(reference, sw, tmp_path, damage):
    fresh = predict(sw, reference)
    predict_cached(sw, HASH, reference, ALL, tmp_path)
    path = tmp_path / f"{cache_key(HASH, reference, ALL)}.npz"
    with np.load(path) as stored:
        arrays = {k: stored[k] for k in stored.files}
    np.savez(path, **_damage_cache(arrays, damage, len(reference)))
    counting = Counting(sw)
    with pytest.warns(CacheWarning, match=rf"{path.name}.*dataset 'ref'"):
        again = predict_cached(counting.calc, HASH, reference, ALL, tmp_path)
    assert again.from_cache is False
    assert counting.calls == len(reference)
    _assert_same(again, fresh)
    # the entry was rewritten: read back, without a warning, the same values
    hit = predict_cached(sw, HASH, reference, ALL, tmp_path)
    assert hit.from_cache is True
    _assert_same(hit, fresh)


def test_nan_in_cache_no_longer_passes_a_threshold(reference, sw, tmp_path):
    """The issue's scenario through the cache: NaN forces of one structure in a cached
    entry used to be dropped from the force RMSE (a pass over fewer atoms)."""
    predict_cached(sw, HASH, reference, ALL, tmp_path)
    path = tmp_path / f"{cache_key(HASH, reference, ALL)}.npz"
    with np.load(path) as stored:
        arrays = {k: stored[k] for k in stored.files}
    arrays["forces"] = arrays["forces"] * 10.0  # a bad model ...
    arrays["forces"][:8] = np.nan               # ... whose structure 0 is NaN
    np.savez(path, **arrays)
    with pytest.warns(CacheWarning, match="not finite"):
        pred = predict_cached(sw, HASH, reference, ALL, tmp_path)
    assert pred.from_cache is False
    _assert_same(pred, predict(sw, reference))


@pytest.mark.parametrize("versions", [{"matscipy": "1.1.0"}, {"quippy-ase": "0.9.14"},
                                      {"matscipy": "1.0.0", "torch": "2.3.0"}])
def test_cache_key_includes_loader_versions(reference, sw, tmp_path, versions):
    base = {"matscipy": "1.0.0"}
    key = cache_key(HASH, reference, ALL, loader_versions=base)
    assert cache_key(HASH, reference, ALL, loader_versions=dict(base)) == key
    assert cache_key(HASH, reference, ALL, loader_versions=versions) != key
    assert cache_key(HASH, reference, ALL) != key
    predict_cached(sw, HASH, reference, ALL, tmp_path, loader_versions=base)
    counting = Counting(sw)
    other = predict_cached(counting.calc, HASH, reference, ALL, tmp_path,
                           loader_versions=versions)
    assert other.from_cache is False and counting.calls == len(reference)
    assert predict_cached(sw, HASH, reference, ALL, tmp_path,
                          loader_versions=base).from_cache is True


def test_cache_key_includes_the_cache_format(reference, monkeypatch):
    import pytest_mlpval.evaluate as evaluate

    assert evaluate.CACHE_FORMAT >= 2
    key = cache_key(HASH, reference, ALL)
    monkeypatch.setattr(evaluate, "CACHE_FORMAT", evaluate.CACHE_FORMAT + 1)
    assert cache_key(HASH, reference, ALL) != key


# --- calculators that return NaN, inf or the wrong shape ----------------------------------

@pytest.mark.parametrize("at_call", [0, 2])
@pytest.mark.parametrize("fault, error, quantity", [
    ("nan", NonFiniteError, "energy"),
    ("inf", NonFiniteError, "energy"),
    ("nan_forces", NonFiniteError, "forces"),
    ("wrong_shape", PredictionShapeError, r"forces of shape \(\d+, 3\)"),
])
def test_faulty_calculator_names_structure_and_potential(reference, sw, fault, error,
                                                         quantity, at_call):
    calc = FaultyCalculator(sw, fault, at_call=at_call)
    ctype = reference.config_types[at_call]
    with pytest.raises(error, match=rf"{quantity}.* structure {at_call} \({ctype}, "
                       rf"{reference.n_atoms[at_call]} atoms\) of dataset 'ref'.*"
                       r"potential 'faulty'"):
        predict(calc, reference, potential="faulty")


def _stress_calculator(sw, shape):
    from ase.calculators.calculator import Calculator, all_changes

    class _Stress(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = sw
            stress = work.get_stress(voigt=False)
            self.results = {"energy": work.get_potential_energy(),
                            "forces": work.get_forces(),
                            "stress": stress if shape == (3, 3) else np.zeros(shape)}
            self.results["free_energy"] = self.results["energy"]

    return _Stress()


@pytest.mark.parametrize("shape", [(5,), (2, 3), (9,)])
def test_stress_of_the_wrong_shape(reference, sw, shape):
    with pytest.raises(PredictionShapeError, match=rf"stress of shape {re.escape(str(shape))}"
                       r".* structure 0 .*potential 'p'.*expected \(6,\) or \(3, 3\)"):
        predict(_stress_calculator(sw, shape), reference, potential="p")


def test_stress_as_3x3_is_accepted(reference, sw):
    pred = predict(_stress_calculator(sw, (3, 3)), reference)
    np.testing.assert_allclose(pred.stress, predict(sw, reference).stress, atol=1e-12)


# --- non-finite errors make the statistics non-finite and the check fail ------------------

@pytest.mark.parametrize("bad", ["nan", "inf"])
@pytest.mark.parametrize("label, metric, quantity", [
    ("energy", "energy_rmse", "energy"),
    ("energy", "energy_offset_removed_mae", "energy_offset_removed"),
    ("forces", "force_rmse", "force"),
    ("forces", "force_magnitude_max", "force_magnitude"),
    ("forces", "force_angle_rmse", "force_angle"),
    ("stress", "stress_rmse", "stress"),
])
def test_non_finite_error_fails_the_threshold(reference, sw, label, metric, quantity, bad):
    pred = predict(sw, reference)
    value = getattr(pred, label)
    if label == "forces":
        forces = [f.copy() for f in value]
        forces[2][1] = BAD[bad]
        pred = dataclasses.replace(pred, forces=tuple(forces))
    else:
        value = value.copy()
        value[2] = BAD[bad]
        pred = dataclasses.replace(pred, **{label: value})
    report = compute_errors(reference, pred)
    stats = report.stats[quantity]
    assert not math.isfinite(stats.rmse)
    assert stats.n_nonfinite > 0
    with pytest.raises(MlpvalAssertionError) as info:
        assert_errors_within(report, **{metric: 1e6})
    message = str(info.value)
    assert f"{metric} is not finite" in message
    worst = message.split(f"worst structures by {quantity} error")[1].splitlines()
    assert worst[3].split()[0] == "2", message  # the damaged structure is listed first
    # the count of structures is the dataset's, never fewer
    assert f"({len(reference)} structures" in message


def test_small_reference_forces_are_an_explicit_exclusion(reference, sw):
    pred = predict(sw, reference)
    forces = [f.copy() for f in reference.forces]
    forces[0][:3] = 0.0  # three atoms with no reference force: no angle
    ref = dataclasses.replace(reference, forces=tuple(forces))
    report = compute_errors(ref, pred)
    angle = report.stats["force_angle"]
    small = sum(int(np.sum(np.linalg.norm(f, axis=1) < report.angle_min_force_eV_A))
                for f in forces)
    assert small >= 3
    assert angle.n_excluded == small
    assert angle.n_nonfinite == 0
    assert angle.n == int(report.n_atoms.sum()) - small
    assert math.isfinite(angle.rmse)
    assert_errors_within(report, force_angle_rmse=180.0)
    assert report.not_measured() == []
    none_counted = compute_errors(ref, pred, angle_min_force_eV_A=1e6)
    assert none_counted.stats["force_angle"].n == 0
    assert none_counted.not_measured() == [f"force_angle_{s}" for s in STATS]
    with pytest.raises(MissingMetricError, match="below which angles are not counted"):
        assert_errors_within(none_counted, force_angle_rmse=180.0)


# --- the scenario through the plugin ----------------------------------------------

def test_nan_force_labels_are_not_a_pass(pytester, tmp_path):
    """4 structures, NaN force labels in one: two tests that passed (the RMSE was taken
    over the other three) now error, naming the file, the structure and the quantity."""
    data = tmp_path / "nanforces.xyz"
    frames = _frames(make_reference_file(data, n_structures=4))
    frames[2].arrays["dft_forces"][:] = np.nan
    _write(data, frames)
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.mlpval_thresholds(force_rmse=0.1, energy_rmse=0.01)
        def test_marker(mlpval_errors):
            pass

        def test_check(mlpval, mlpval_errors):
            mlpval.check(mlpval_errors, force_rmse=0.1)
    """)
    result = pytester.runpytest_subprocess("-p", "no:benchmark", "--potential=sw",
                                           f"--mlpval-dataset=nanf={data},{LABELS}")
    assert result.ret != pytest.ExitCode.OK
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == 0, outcomes
    result.stdout.fnmatch_lines([
        f"E *DatasetError: dataset 'nanf' ({data}): structure 2 (config_type 'bulk', "
        "8 atoms): forces label (key 'dft_forces') is not finite (NaN in 24 of 24*"])
