"""Batched evaluation (pytest_mlpval.batching, used by evaluate.predict): a calculator that
offers batches is called in batches, gives the same predictions as the per-structure path,
fails on NaN the same way, and shares the prediction cache with it. CHGNet's adapter is
checked against CHGNetCalculator where chgnet is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_mlpval import batching
from pytest_mlpval.batching import (
    BATCH_ADAPTERS,
    DEFAULT_BATCH_SIZE,
    batch_function,
    class_path,
    register_batch_adapter,
)
from pytest_mlpval.data import read_dataset
from pytest_mlpval.evaluate import (
    NonFiniteError,
    PredictionShapeError,
    cache_key,
    predict,
    predict_cached,
)
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.testing import FaultyCalculator

CUSTOM = "energy=dft_energy,forces=dft_forces,stress=dft_stress"
ALL = ("energy", "forces", "stress")
HASH = "d" * 64
SILICON_TEST = (Path(__file__).resolve().parents[2] / "example_suites" / "silicon" / "data"
                / "mlearn_Si_test.xyz")


@pytest.fixture(scope="module")
def reference(reference_file):
    return read_dataset(f"ref={reference_file},{CUSTOM}")


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw").calculator


def batched_sw(base, fault=None, at=None, stress_3x3=False):
    """An ASE calculator (SW underneath) with a ``calculate_batch`` that counts its batch
    calls, the structures it was sent, and its per-structure ASE calls; ``fault``
    ("nan", "nan_forces", "short", "missing_stress", "wrong_forces") strikes structure
    ``at`` of the dataset (counted over all batches)."""
    from ase.calculators.calculator import Calculator, all_changes

    class BatchedSW(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def __init__(self):
            super().__init__()
            self.batch_sizes: list[int] = []
            self.single_calls = 0
            self.seen = 0

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.single_calls += 1
            self.results = self.one(self.atoms)

        @staticmethod
        def one(atoms):
            work = atoms.copy()
            work.calc = base
            energy = work.get_potential_energy()
            return {"energy": energy, "free_energy": energy, "forces": work.get_forces(),
                    "stress": work.get_stress(voigt=not stress_3x3)}

        def calculate_batch(self, atoms_list, properties):
            assert all(a.calc is None for a in atoms_list)
            self.batch_sizes.append(len(atoms_list))
            results = []
            for atoms in atoms_list:
                result = {k: v for k, v in self.one(atoms).items() if k in properties}
                if self.seen == at:
                    if fault == "nan":
                        result = {k: np.full_like(np.asarray(v, float), np.nan)
                                  for k, v in result.items()}
                    elif fault == "nan_forces":
                        result["forces"] = result["forces"].copy()
                        result["forces"][0, 0] = np.nan
                    elif fault == "missing_stress":
                        del result["stress"]
                    elif fault == "wrong_forces":
                        result["forces"] = result["forces"][:-1]
                self.seen += 1
                results.append(result)
            return results[:-1] if fault == "short" else results

    return BatchedSW()


def assert_same(a, b):
    for label in ALL:
        x, y = getattr(a, label), getattr(b, label)
        assert (x is None) == (y is None), label
        if label == "forces" and x is not None:
            for p, q in zip(x, y, strict=True):
                np.testing.assert_array_equal(p, q)
        elif x is not None:
            np.testing.assert_array_equal(x, y)


# --- the batch path ----------------------------------------------------------------------

@pytest.mark.parametrize("batch_size, expected", [(None, [6]), (4, [4, 2]), (1, [1] * 6),
                                                  (100, [6])])
def test_batched_same_as_per_structure(reference, sw, batch_size, expected):
    calc = batched_sw(sw)
    batched = predict(calc, reference, batch_size=batch_size)
    assert calc.batch_sizes == expected
    assert calc.single_calls == 0  # no ASE call per structure
    single = predict(sw, reference)
    assert_same(batched, single)
    assert batched.seconds > 0 and not batched.from_cache


def test_batched_false_takes_per_structure_path(reference, sw):
    calc = batched_sw(sw)
    pred = predict(calc, reference, ("energy", "forces"), batched=False)
    assert calc.batch_sizes == []
    assert calc.single_calls == len(reference)
    assert_same(pred, predict(sw, reference, ("energy", "forces")))


@pytest.mark.parametrize("properties", [("energy",), ("forces",), ("stress",),
                                        ("energy", "stress")])
def test_batched_properties_subset(reference, sw, properties):
    calc = batched_sw(sw)
    assert_same(predict(calc, reference, properties), predict(sw, reference, properties))


def test_batched_stress_3x3_made_voigt(reference, sw):
    calc = batched_sw(sw, stress_3x3=True)
    np.testing.assert_allclose(predict(calc, reference, ("stress",)).stress,
                               predict(sw, reference, ("stress",)).stress, atol=1e-15)


def test_batched_progress_per_structure(reference, sw):
    seen = []
    predict(batched_sw(sw), reference, ("energy",), batch_size=4,
            progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 6) for i in range(1, 7)]


def test_default_batch_size():
    assert DEFAULT_BATCH_SIZE == 16


# --- faults in a batch fail like faults in a single call --------------------------------

@pytest.mark.parametrize("fault, single", [("nan", "nan"), ("nan_forces", "nan_forces"),
                                           ("wrong_forces", "wrong_shape")])
@pytest.mark.parametrize("at", [0, 3])
def test_batch_fault_reported_like_single(reference, sw, fault, single, at):
    with pytest.raises((NonFiniteError, PredictionShapeError)) as one:
        predict(FaultyCalculator(sw, single, at_call=at), reference, potential="p")
    with pytest.raises(type(one.value)) as batch:
        predict(batched_sw(sw, fault, at), reference, batch_size=4, potential="p")
    assert str(batch.value) == str(one.value)
    assert f"structure {at} (" in str(batch.value)


def test_nan_in_batch_writes_no_cache(reference, sw, tmp_path):
    with pytest.raises(NonFiniteError, match="energy of structure 2 .*: nan"):
        predict_cached(batched_sw(sw, "nan", 2), HASH, reference, ALL, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_batch_result_count_checked(reference, sw):
    with pytest.raises(PredictionShapeError, match=r"3 batch results for the 4 structures "
                                                   r"0-3 of dataset 'ref'"):
        predict(batched_sw(sw, "short"), reference, batch_size=4)


def test_batch_missing_property(reference, sw):
    with pytest.raises(PredictionShapeError, match="no stress in the batch result for "
                                                   "structure 1"):
        predict(batched_sw(sw, "missing_stress", 1), reference)


def test_batch_energy_must_be_a_number(reference):
    class Vector:
        def calculate_batch(self, atoms_list, properties):
            return [{"energy": np.zeros(2)} for _ in atoms_list]

    with pytest.raises(PredictionShapeError,
                       match=r"energy of shape \(2,\) for structure 0"):
        predict(Vector(), reference, ("energy",))


# --- the prediction cache -----------------------------------------------------------------

def test_cache_shared_with_per_structure_path(reference, sw, tmp_path):
    calc = batched_sw(sw)
    first = predict_cached(calc, HASH, reference, ALL, tmp_path)
    assert calc.batch_sizes == [6] and not first.from_cache
    assert [p.name for p in tmp_path.glob("*.npz")] == [
        f"{cache_key(HASH, reference, ALL)}.npz"]
    # the per-structure path reads what the batch path wrote, and the reverse
    hit = predict_cached(sw, HASH, reference, ALL, tmp_path)
    assert hit.from_cache
    assert_same(hit, first)
    again = batched_sw(sw)
    assert predict_cached(again, HASH, reference, ALL, tmp_path, batch_size=2).from_cache
    assert again.batch_sizes == []


def test_uncached_batched(reference, sw):
    calc = batched_sw(sw)
    pred = predict_cached(calc, None, reference, ALL, None, batch_size=5)
    assert calc.batch_sizes == [5, 1]
    assert_same(pred, predict(sw, reference))


# --- finding the batch function -----------------------------------------------------------

def test_batch_function_none_for_plain_calculator(sw):
    assert batch_function(sw) is None
    assert batch_function(object()) is None


def test_registered_adapter_found_by_class_path(reference, sw, monkeypatch):
    from ase.calculators.calculator import Calculator

    class Base(Calculator):
        implemented_properties = ["energy"]

    class Child(Base):
        pass

    calls = []

    def adapter(calc, atoms_list, properties):
        calls.append((calc, len(atoms_list), tuple(properties)))
        return [{"energy": -1.0 * len(a)} for a in atoms_list]

    monkeypatch.setitem(BATCH_ADAPTERS, "unrelated.Path", adapter)
    assert batch_function(Child()) is None
    monkeypatch.setitem(BATCH_ADAPTERS, class_path(Base), None)  # removed afterwards
    register_batch_adapter(class_path(Base), adapter)
    child = Child()
    pred = predict(child, reference, ("energy",), batch_size=4)
    assert [(c is child, n, p) for c, n, p in calls] == [(True, 4, ("energy",)),
                                                         (True, 2, ("energy",))]
    np.testing.assert_array_equal(pred.energy, -1.0 * np.asarray(reference.n_atoms))


def test_register_rejects_non_callable():
    with pytest.raises(TypeError, match="not callable"):
        register_batch_adapter("a.B", "not a function")


def test_own_method_preferred_over_adapter(sw, monkeypatch):
    calc = batched_sw(sw)
    monkeypatch.setitem(BATCH_ADAPTERS, class_path(type(calc)), lambda *a: [])
    assert batch_function(calc) == calc.calculate_batch


def test_chgnet_adapter_registered_without_importing_torch():
    assert BATCH_ADAPTERS["chgnet.model.dynamics.CHGNetCalculator"] is batching.chgnet_batch
    code = ("import sys, pytest_mlpval.batching, pytest_mlpval.evaluate; "
            "loaded = {m.split('.')[0] for m in sys.modules}; "
            "heavy = {'torch', 'chgnet', 'pymatgen', 'sevenn'} & loaded; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_as_array_takes_tensors_and_float32():
    class Tensor:
        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return np.float32([1.5, 2.0])

    out = batching.as_array(Tensor())
    assert out.dtype == np.float64 and out.tolist() == [1.5, 2.0]


# --- CHGNet (only where chgnet is installed) ----------------------------------------------

# CHGNet's own graph batching warns on torch 2.13 (volumes with requires_grad), in the
# per-structure path as in the batched one
CHGNET_WARNING = pytest.mark.filterwarnings(
    "ignore:Converting a tensor with requires_grad=True:UserWarning")


@pytest.fixture(scope="module")
def chgnet_calc():
    pytest.importorskip("chgnet", reason="chgnet is not installed (optional, heavy)")
    import contextlib
    import io

    from chgnet.model import CHGNet, CHGNetCalculator

    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its device
        return CHGNetCalculator(CHGNet.load(use_device="cpu", verbose=False),
                                use_device="cpu")


@pytest.fixture(scope="module")
def mlearn_five():
    return read_dataset(f"si={SILICON_TEST},{CUSTOM},index=0:25:5")


@CHGNET_WARNING
def test_chgnet_batches_match_calculator(chgnet_calc, mlearn_five):
    """CHGNet's batched prediction through the adapter against CHGNetCalculator per
    structure: eV, eV/Å, eV/Å³ and ASE's sign of the stress, to 1e-5 relative."""
    assert batch_function(chgnet_calc) is not None
    batched = predict(chgnet_calc, mlearn_five, batch_size=2)  # last batch holds one
    single = predict(chgnet_calc, mlearn_five, batched=False)
    scale = {"energy": np.abs(single.energy).max(),
             "forces": max(np.abs(f).max() for f in single.forces),
             "stress": np.abs(single.stress).max()}
    np.testing.assert_allclose(batched.energy, single.energy, rtol=1e-5, atol=0)
    for b, s in zip(batched.forces, single.forces, strict=True):
        np.testing.assert_allclose(b, s, rtol=0, atol=1e-5 * scale["forces"])
    np.testing.assert_allclose(batched.stress, single.stress, rtol=0,
                               atol=1e-5 * scale["stress"])
    # the units are ASE's: total energies (about -5.4 eV/atom), stresses in eV/Å³
    per_atom = batched.energy / np.asarray(mlearn_five.n_atoms)
    assert np.all((per_atom > -6.5) & (per_atom < -4.0)), per_atom
    assert np.all(np.abs(batched.stress) < 0.5)


@CHGNET_WARNING
def test_chgnet_subclass_batched(chgnet_calc, mlearn_five):
    from chgnet.model import CHGNetCalculator

    class Mine(CHGNetCalculator):
        def __init__(self, model):  # another way of loading: no print, no device pick
            from ase.calculators.calculator import Calculator
            from ase.units import GPa

            Calculator.__init__(self)
            self.model, self.device, self.stress_weight = model, "cpu", GPa
            self.return_site_energies = False

    mine = Mine(chgnet_calc.model)
    assert batch_function(mine) is not None
    first = read_dataset(f"si={SILICON_TEST},{CUSTOM},index=0:2")
    np.testing.assert_allclose(predict(mine, first, ("energy",)).energy,
                               predict(chgnet_calc, first, ("energy",),
                                       batched=False).energy, rtol=1e-5)


# --- SevenNet (only where sevenn is installed) --------------------------------------------

@pytest.fixture(scope="module")
def sevennet_calc():
    pytest.importorskip("sevenn", reason="sevenn is not installed (optional, heavy)")
    import warnings

    # e3nn 0.4 (imported by sevenn) loads a pickle that torch >= 2.6 refuses by default,
    # and both warn about torch's deprecations on import and load
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        patch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        warnings.simplefilter("ignore")
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator("7net-0", device="cpu")


def test_sevennet_batches_match_calculator(sevennet_calc, mlearn_five):
    """SevenNet's batched forward pass through the adapter against SevenNetCalculator
    per structure (its stress reordered and negated to ASE's), to 1e-5 relative."""
    assert batch_function(sevennet_calc) is not None
    batched = predict(sevennet_calc, mlearn_five, batch_size=2)
    single = predict(sevennet_calc, mlearn_five, batched=False)
    np.testing.assert_allclose(batched.energy, single.energy, rtol=1e-5, atol=0)
    force_scale = max(np.abs(f).max() for f in single.forces)
    for b, s in zip(batched.forces, single.forces, strict=True):
        np.testing.assert_allclose(b, s, rtol=0, atol=1e-5 * force_scale)
    np.testing.assert_allclose(batched.stress, single.stress, rtol=0,
                               atol=1e-5 * np.abs(single.stress).max())
    # the model is left as the calculator needs it: one structure at a time
    atoms = mlearn_five.atoms(0)
    atoms.calc = sevennet_calc
    assert atoms.get_potential_energy() == pytest.approx(single.energy[0], rel=1e-6)
