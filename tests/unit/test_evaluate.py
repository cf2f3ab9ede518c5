"""Unit tests of pytest_mlpval.evaluate: predictions, non-finite results, the disk cache."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from pytest_mlpval.data import read_dataset
from pytest_mlpval.evaluate import (
    CacheWarning,
    NonFiniteError,
    Predictions,
    cache_key,
    predict,
    predict_cached,
    properties_for,
)
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.testing import PerturbedCalculator, nan_potential, sw_shifted

CUSTOM = "energy=dft_energy,forces=dft_forces,stress=dft_stress"
ALL = ("energy", "forces", "stress")
HASH_A = "a" * 64
HASH_B = "b" * 64


@pytest.fixture(scope="module")
def reference(reference_file):
    return read_dataset(f"ref={reference_file},{CUSTOM}")


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw").calculator


class CountingCalculator:
    """Wraps a calculator and counts the structures it was asked about."""

    def __init__(self, base):
        self.base = base
        self.calls = 0
        self.implemented_properties = ["energy", "forces", "stress"]

    def __call__(self):
        from ase.calculators.calculator import Calculator, all_changes

        outer = self

        class _Counting(Calculator):
            implemented_properties = ["energy", "forces", "stress"]

            def calculate(self, atoms=None, properties=("energy",),
                          system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                outer.calls += 1
                work = self.atoms.copy()
                work.calc = outer.base
                self.results = {"energy": work.get_potential_energy(),
                                "forces": work.get_forces(),
                                "stress": work.get_stress()}

        return _Counting()


# --- predict ------------------------------------------------------------------------------

def test_predict_all(reference, sw):
    pred = predict(sw, reference)
    assert isinstance(pred, Predictions)
    assert pred.dataset == "ref"
    assert pred.from_cache is False
    assert pred.seconds > 0
    assert pred.energy.shape == (6,)
    assert [f.shape for f in pred.forces] == [(n, 3) for n in reference.n_atoms]
    assert pred.stress.shape == (6, 6)
    # the labels were made with SW too: agreement up to the file's rounding
    np.testing.assert_allclose(pred.energy, reference.energy, atol=1e-5)
    for p, r in zip(pred.forces, reference.forces):
        np.testing.assert_allclose(p, r, atol=1e-5)
    np.testing.assert_allclose(pred.stress, reference.stress, atol=1e-6)


def test_predict_does_not_touch_reference_structures(reference, sw):
    before = [a.positions.copy() for a in reference.structures]
    predict(sw, reference, ("energy",))
    for a, b in zip(reference.structures, before):
        assert a.calc is None
        np.testing.assert_array_equal(a.positions, b)


@pytest.mark.parametrize("properties", [("energy",), ("forces",), ("stress",),
                                        ("energy", "stress")])
def test_predict_properties_subset(reference, sw, properties):
    pred = predict(sw, reference, properties)
    for label in ALL:
        value = getattr(pred, label)
        assert (value is not None) == (label in properties), label
    if "energy" in properties:
        assert pred.energy.shape == (6,)


def test_predict_arrays_read_only(reference, sw):
    pred = predict(sw, reference)
    with pytest.raises(ValueError):
        pred.energy[0] = 0.0
    with pytest.raises(ValueError):
        pred.forces[0][0, 0] = 0.0
    with pytest.raises(ValueError):
        pred.stress[0, 0] = 0.0


def test_predict_progress(reference, sw):
    seen = []
    predict(sw, reference, ("energy",), progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 6) for i in range(1, 7)]


def test_non_finite_names_structure(reference):
    with pytest.raises(NonFiniteError, match=r"energy of structure 1 \(rattled, 16 atoms\)"
                                             r" of dataset 'ref'.*nan"):
        predict(nan_potential(), reference)


def test_non_finite_forces(reference, sw):
    calc = PerturbedCalculator(sw, force_scale=float("inf"))
    with pytest.raises(NonFiniteError, match="forces of structure 0"):
        predict(calc, reference, ("forces",))
    # forces not asked for: not checked
    assert predict(calc, reference, ("energy",)).energy.shape == (6,)


def test_non_finite_is_arithmetic_error():
    assert issubclass(NonFiniteError, ArithmeticError)


# --- properties_for ---------------------------------------------------------------------

class Props:
    def __init__(self, props):
        if props is not None:
            self.implemented_properties = props


@pytest.mark.parametrize("implemented, expected", [
    (None, ALL),
    (["energy", "forces", "stress", "free_energy"], ALL),
    (["energy", "forces"], ("energy", "forces")),
    (["energy"], ("energy",)),
    ([], ()),
    (("stress", "energy"), ("energy", "stress")),
])
def test_properties_for_implemented(reference, implemented, expected):
    assert properties_for(Props(implemented), reference) == expected


def test_properties_for_dataset_labels(reference_file):
    only_energy = read_dataset(f"e={reference_file},energy=dft_energy")
    assert properties_for(Props(None), only_energy) == ("energy",)
    assert properties_for(Props(["forces"]), only_energy) == ()
    no_stress = read_dataset(f"e={reference_file},energy=dft_energy,forces=dft_forces")
    assert properties_for(Props(None), no_stress) == ("energy", "forces")


def test_properties_for_wanted(reference):
    assert properties_for(Props(None), reference, wanted=("forces",)) == ("forces",)


def test_properties_for_real_calculators(reference, sw):
    from ase.calculators.emt import EMT

    assert properties_for(sw, reference) == ALL
    assert set(properties_for(EMT(), reference)) <= set(ALL)


# --- cache --------------------------------------------------------------------------------

def _assert_same(a, b):
    for label in ALL:
        x, y = getattr(a, label), getattr(b, label)
        assert (x is None) == (y is None), label
        if label == "forces" and x is not None:
            assert len(x) == len(y)
            for p, q in zip(x, y):
                np.testing.assert_array_equal(p, q)
        elif x is not None:
            np.testing.assert_array_equal(x, y)


def test_cache_roundtrip(reference, sw, tmp_path):
    cache = tmp_path / "cache"
    first = predict_cached(sw, HASH_A, reference, ALL, cache)
    assert first.from_cache is False
    files = list(cache.glob("*.npz"))
    assert [f.name for f in files] == [f"{cache_key(HASH_A, reference, ALL)}.npz"]
    assert not list(cache.glob("*.tmp"))
    second = predict_cached(sw, HASH_A, reference, ALL, cache)
    assert second.from_cache is True
    assert second.seconds == 0.0
    assert second.dataset == "ref"
    _assert_same(first, second)
    assert [f.shape for f in second.forces] == [(n, 3) for n in reference.n_atoms]
    with pytest.raises(ValueError):
        second.forces[0][0, 0] = 1.0


def test_cache_hit_does_not_call_calculator(reference, sw, tmp_path):
    predict_cached(sw, HASH_A, reference, ALL, tmp_path)
    counting = CountingCalculator(sw)
    hit = predict_cached(counting(), HASH_A, reference, ALL, tmp_path)
    assert hit.from_cache and counting.calls == 0
    # a different calculator with the same hash gets the stored (SW) values
    shifted = predict_cached(sw_shifted(), HASH_A, reference, ALL, tmp_path)
    assert shifted.from_cache
    _assert_same(shifted, hit)


@pytest.mark.parametrize("properties", [("energy",), ("forces",), ("stress",),
                                        ("energy", "forces")])
def test_cache_properties_subset(reference, sw, tmp_path, properties):
    first = predict_cached(sw, HASH_A, reference, properties, tmp_path)
    second = predict_cached(sw, HASH_A, reference, properties, tmp_path)
    assert second.from_cache
    _assert_same(first, second)
    for label in ALL:
        assert (getattr(second, label) is None) == (label not in properties)


def test_cache_key_depends_on_inputs(reference, reference_file, tmp_path):
    base = cache_key(HASH_A, reference, ALL)
    assert len(base) == 64
    assert cache_key(HASH_A, reference, ("stress", "forces", "energy")) == base
    assert cache_key(HASH_B, reference, ALL) != base
    assert cache_key(HASH_A, reference, ("energy", "forces")) != base
    other_index = read_dataset(f"ref={reference_file},{CUSTOM},index=0:3")
    assert cache_key(HASH_A, other_index, ALL) != base
    # same content under another name or path: same key
    copy = tmp_path / "copy.xyz"
    shutil.copy(reference_file, copy)
    assert cache_key(HASH_A, read_dataset(f"other={copy},{CUSTOM}"), ALL) == base


def test_cache_different_potential_hash(reference, sw, tmp_path):
    predict_cached(sw, HASH_A, reference, ALL, tmp_path)
    other = predict_cached(sw_shifted(), HASH_B, reference, ALL, tmp_path)
    assert other.from_cache is False
    assert len(list(tmp_path.glob("*.npz"))) == 2
    np.testing.assert_allclose(other.energy - predict(sw, reference, ("energy",)).energy,
                               0.010 * reference.n_atoms, atol=1e-10)


def test_cache_changed_dataset(reference_file, sw, tmp_path):
    path = tmp_path / "data.xyz"
    shutil.copy(reference_file, path)
    ref = read_dataset(f"d={path},{CUSTOM}")
    predict_cached(sw, HASH_A, ref, ALL, tmp_path / "cache")
    # move one atom of structure 0: the dataset's content changes
    import ase.io

    frames = ase.io.read(path, ":")
    frames[0].positions[0] += 0.05
    ase.io.write(path, frames, format="extxyz")
    changed = read_dataset(f"d={path},{CUSTOM}")
    assert changed.sha256 != ref.sha256
    again = predict_cached(sw, HASH_A, changed, ALL, tmp_path / "cache")
    assert again.from_cache is False
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    fresh = predict(sw, changed, ("energy",))
    np.testing.assert_array_equal(again.energy, fresh.energy)


@pytest.mark.parametrize("content", [
    b"",                                       # empty file
    b"this is not a numpy archive",            # garbage
    "truncated",                               # half of a valid archive
    "missing-key",                             # a valid archive without 'forces'
    "plain-npy",                               # an .npy array, not an archive
])
def test_cache_corrupt_entry_recomputed(reference, sw, tmp_path, content):
    first = predict_cached(sw, HASH_A, reference, ALL, tmp_path)
    path = tmp_path / f"{cache_key(HASH_A, reference, ALL)}.npz"
    good = path.read_bytes()
    if content == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif content == "missing-key":
        np.savez(path, energy=first.energy, stress=first.stress)
    elif content == "plain-npy":
        with open(path, "wb") as handle:
            np.save(handle, np.arange(3.0))
    else:
        path.write_bytes(content)
    counting = CountingCalculator(sw)
    with pytest.warns(CacheWarning, match="discarded and recomputed"):
        again = predict_cached(counting(), HASH_A, reference, ALL, tmp_path)
    assert again.from_cache is False
    assert counting.calls == len(reference)
    _assert_same(first, again)
    # the entry was rewritten and is readable again
    assert predict_cached(sw, HASH_A, reference, ALL, tmp_path).from_cache is True


def test_no_hash_never_caches(reference, sw, tmp_path):
    counting = CountingCalculator(sw)
    calc = counting()
    a = predict_cached(calc, None, reference, ALL, tmp_path)
    b = predict_cached(calc, None, reference, ALL, tmp_path)
    assert not a.from_cache and not b.from_cache
    assert list(tmp_path.iterdir()) == []
    assert counting.calls == 2 * len(reference)  # computed twice, never read back
    _assert_same(a, b)


def test_no_cache_dir(reference, sw, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = predict_cached(sw, HASH_A, reference, ("energy",), None)
    b = predict_cached(sw, HASH_A, reference, ("energy",), None)
    assert not a.from_cache and not b.from_cache
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_created(reference, sw, tmp_path):
    cache = tmp_path / "a" / "b"
    predict_cached(sw, HASH_A, reference, ("energy",), cache)
    assert len(list(cache.glob("*.npz"))) == 1


def test_cache_not_written_on_non_finite(reference, tmp_path):
    with pytest.raises(NonFiniteError):
        predict_cached(nan_potential(), HASH_A, reference, ALL, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_predictions_replaceable():
    pred = Predictions("d", None, None, None)
    assert dataclasses.replace(pred, seconds=1.0).seconds == 1.0
    assert pred.from_cache is False
