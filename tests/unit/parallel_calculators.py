"""Calculators for tests/unit/test_predict_parallel.py that worker processes unpickle:
module-level classes in a module that imports little (no pytest, no Hypothesis), so a
fresh worker imports it quickly."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes

from pytest_mlpval.potentials import load_potential

_SW: list = []


def sw():
    """This process's Stillinger-Weber calculator (loaded once, never pickled)."""
    if not _SW:
        _SW.append(load_potential("sw").calculator)
    return _SW[0]


def sw_results(atoms):
    work = atoms.copy()
    work.calc = sw()
    return {"energy": work.get_potential_energy(), "forces": work.get_forces(),
            "stress": work.get_stress()}


def batch_marked(atoms_list):
    """SW's results, the energy marked by the structure's place in its batch and the
    batch's size: arrays agree only where the batches do."""
    results = []
    for place, atoms in enumerate(atoms_list):
        result = sw_results(atoms)
        result["energy"] += 1e-3 * place + 1e-5 * len(atoms_list)
        results.append(result)
    return results


class NanAt24(Calculator):
    """SW, but a NaN energy for every 24-atom structure."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = sw_results(self.atoms)
        if len(self.atoms) == 24:
            self.results["energy"] = float("nan")
        self.results["free_energy"] = self.results["energy"]


class BatchedSW(Calculator):
    """SW with its own ``calculate_batch``."""

    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        raise AssertionError("a batched calculator is called in batches only")

    def calculate_batch(self, atoms_list, properties):
        return batch_marked(atoms_list)


class AdaptedSW(Calculator):
    """SW batched by :func:`adapted_batch`, an adapter the test registers at run time
    (so not in a fresh worker)."""

    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        raise AssertionError("a batched calculator is called in batches only")


def adapted_batch(calc, atoms_list, properties):
    return batch_marked(atoms_list)


class DiesAt24(Calculator):
    """SW, but its process exits at once (``os._exit(3)``, as ``faulty_die_at_<k>``) on
    a 24-atom structure: the worker dies in the chunk that holds one."""

    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        import os

        super().calculate(atoms, properties, system_changes)
        if len(self.atoms) == 24:
            os._exit(3)
        self.results = sw_results(self.atoms)
