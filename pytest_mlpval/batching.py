"""Batched evaluation: a calculator that evaluates many structures in one call.

Plain library (no pytest, no torch at import). Evaluating a dataset in batches is how
torch models are fast; one ASE call per structure is the slow path. A calculator takes
part in one of two ways, and :func:`~pytest_mlpval.evaluate.predict` (so also
``predict_cached`` and the ``mlpval_errors`` fixture) then sends it the dataset in chunks
of ``batch_size`` structures (default :data:`DEFAULT_BATCH_SIZE`):

1. a method on the calculator itself::

       calc.calculate_batch(atoms_list, properties) -> list of dict

2. an adapter registered for the calculator's class (found along its MRO by the class's
   dotted path, so nothing is imported to look for it)::

       register_batch_adapter("package.module.CalculatorClass", adapter)
       adapter(calc, atoms_list, properties) -> list of dict

Either returns one mapping per structure, in order, holding every property of
``properties`` (a tuple of ``"energy"``, ``"forces"``, ``"stress"``) in ASE's units and
conventions: ``energy`` in eV (the total, not per atom), ``forces`` of shape (n_atoms, 3)
in eV/Å, ``stress`` of shape (6,) (Voigt, ASE order) or (3, 3) in eV/Å³, positive under
tension (``Atoms.get_stress``). Other keys are ignored. It must not modify the structures
(fresh copies without a calculator). The results are checked exactly as per-structure
results are (finite, shapes; a NaN in a batch fails like a NaN from one call, naming the
structure), and must be the same as the calculator's own per-structure results up to the
model's floating-point rounding: batching is not part of the prediction cache's key.

Adapters provided, found by class however the model was loaded: :func:`chgnet_batch` for
``chgnet.model.dynamics.CHGNetCalculator`` (CHGNet's own ``predict_structure`` on
pymatgen structures) and :func:`sevennet_batch` for ``sevenn.calculator.SevenNetCalculator``
(one forward pass over a torch_geometric batch, as ``sevenn inference`` does).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["DEFAULT_BATCH_SIZE", "BATCH_ADAPTERS", "BatchFunction", "batch_function",
           "batch_adapter", "class_path", "register_batch_adapter", "chgnet_batch",
           "sevennet_batch"]

#: structures per batch when the caller names no size (CHGNet's own default)
DEFAULT_BATCH_SIZE = 16

#: ``(atoms_list, properties) -> list of {property: value}``
BatchFunction = Callable[[Sequence[Any], Sequence[str]], list[Mapping[str, Any]]]

#: dotted class path -> adapter ``(calc, atoms_list, properties) -> list of dict``
BATCH_ADAPTERS: dict[str, Callable[..., list[Mapping[str, Any]]]] = {}


def class_path(cls: type) -> str:
    """``module.QualifiedName`` of a class, the key of :data:`BATCH_ADAPTERS`."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_batch_adapter(path: str,
                           adapter: Callable[..., list[Mapping[str, Any]]]) -> None:
    """Evaluate instances of the class at dotted ``path`` (and of its subclasses) in
    batches with ``adapter(calc, atoms_list, properties)``. Registering a path again
    replaces its adapter."""
    if not callable(adapter):
        raise TypeError(f"batch adapter for {path!r} is not callable: {adapter!r}")
    BATCH_ADAPTERS[path] = adapter


def batch_function(calc: Any) -> BatchFunction | None:
    """How ``calc`` evaluates a batch, or None when it has only the per-structure path:
    its own ``calculate_batch`` method first, then an adapter registered for its class
    or the nearest base class that has one."""
    method = getattr(calc, "calculate_batch", None)
    if callable(method):
        return method
    found = batch_adapter(calc)
    if found is not None:
        adapter = found[1]
        return lambda atoms_list, properties: adapter(calc, atoms_list, properties)
    return None


def batch_adapter(calc: Any) -> tuple[str, Callable[..., list[Mapping[str, Any]]]] | None:
    """The registered adapter :func:`batch_function` uses for ``calc`` and the class path
    it is registered under, or None (no adapter, or ``calc`` has its own
    ``calculate_batch``). A worker process that is to batch like this one registers it
    too (an adapter registered at run time, in a conftest, is not in a fresh process)."""
    if callable(getattr(calc, "calculate_batch", None)):
        return None
    for cls in type(calc).__mro__:
        path = class_path(cls)
        if path in BATCH_ADAPTERS:
            return path, BATCH_ADAPTERS[path]
    return None


# --- CHGNet -------------------------------------------------------------------------------

def chgnet_batch(calc: Any, atoms_list: Sequence[Any], properties: Sequence[str]
                 ) -> list[dict[str, Any]]:
    """Energy, forces and stress of ``atoms_list`` from a ``CHGNetCalculator`` by one call
    of CHGNet's batched ``model.predict_structure`` (pymatgen structures through
    ``AseAtomsAdaptor``, all in one batch).

    CHGNet returns the energy in eV/atom (an intensive model), forces in eV/Å and the
    stress in GPa with ASE's sign; they are converted as ``CHGNetCalculator.calculate``
    does (times the number of atoms; times the calculator's ``stress_weight``, 1/160.2),
    in the model's float32, so each value matches the calculator's own to float32
    rounding.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    if not atoms_list:
        return []
    model = calc.model
    task = "e"
    if "forces" in properties or "stress" in properties:
        task += "f"
    if "stress" in properties:
        task += "s"
    structures = [AseAtomsAdaptor.get_structure(atoms) for atoms in atoms_list]
    predictions = model.predict_structure(structures, task=task,
                                          batch_size=len(structures))
    if isinstance(predictions, Mapping):  # CHGNet unwraps a batch of one
        predictions = [predictions]
    results = []
    for structure, prediction in zip(structures, predictions):
        factor = len(structure) if model.is_intensive else 1
        result = {"energy": prediction["e"] * factor}
        if "f" in prediction:
            result["forces"] = prediction["f"]
        if "s" in prediction:
            result["stress"] = prediction["s"] * calc.stress_weight
        results.append(result)
    return results


register_batch_adapter("chgnet.model.dynamics.CHGNetCalculator", chgnet_batch)


# --- SevenNet -----------------------------------------------------------------------------

def sevennet_batch(calc: Any, atoms_list: Sequence[Any], properties: Sequence[str]
                   ) -> list[dict[str, Any]]:
    """Energy, forces and stress of ``atoms_list`` from a ``SevenNetCalculator`` in one
    forward pass over a torch_geometric batch of SevenNet's graphs, as ``sevenn
    inference`` does (the model switched to batch data for the call).

    SevenNet returns the total energy in eV, forces in eV/Å and the stress in eV/Å³ in
    the order xx, yy, zz, xy, yz, zx with the opposite sign; it is reordered and negated
    as ``SevenNetCalculator.calculate`` does. A deployed (TorchScript) model cannot take
    batches and is evaluated one structure at a time through the calculator.
    """
    if not atoms_list:
        return []
    import sevenn._keys as key
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.nn.sequential import AtomGraphSequential
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.data import Batch

    model = calc.model
    if not isinstance(model, AtomGraphSequential):
        return [_through_calculator(calc, atoms) for atoms in atoms_list]
    graphs = [AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, calc.cutoff))
              for atoms in atoms_list]
    batch = Batch.from_data_list(graphs).to(calc.device)
    model.set_is_batch_data(True)
    try:
        output = model(batch)
    finally:
        model.set_is_batch_data(False)
    sizes = [len(atoms) for atoms in atoms_list]
    energies = output[key.PRED_TOTAL_ENERGY].detach().cpu().numpy().reshape(-1)
    forces = output[key.PRED_FORCE].detach().cpu().numpy()
    stresses = (-output[key.PRED_STRESS]).detach().cpu().numpy()[:, [0, 1, 2, 4, 5, 3]]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return [{"energy": energies[i], "forces": forces[starts[i]:starts[i + 1]],
             "stress": stresses[i]} for i in range(len(atoms_list))]


def _through_calculator(calc: Any, atoms: Any) -> dict[str, Any]:
    work = atoms.copy()
    work.calc = calc
    return {"energy": work.get_potential_energy(), "forces": work.get_forces(),
            "stress": calc.get_stress(work)}


register_batch_adapter("sevenn.calculator.SevenNetCalculator", sevennet_batch)


def as_array(value: Any) -> np.ndarray:
    """A batch result's value as a float64 array (a torch tensor or numpy float32 too)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=float)
