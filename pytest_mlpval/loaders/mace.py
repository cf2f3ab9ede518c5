"""MACE (``pip install "pytest-mlpval[mace]"``): ``--potential=model.model`` or
``--potential=mace:PATH``.

A MACE model file as ``mace run_train`` saves it (a pickled torch module), loaded with
``mace.calculators.MACECalculator`` in the model's own precision. The species are the
model's atomic numbers; the precision its parameters' dtype.
"""

from __future__ import annotations

import os

from pytest_mlpval.loaders.common import ELEMENTS, ModelIdentity, model_file

__all__ = ["identify", "load"]


def identify(arg: str, base_dir: str | os.PathLike[str]) -> ModelIdentity:
    path = model_file(arg, base_dir, "MACE")
    return ModelIdentity(str(path), (path,), (), "mace:file")


def load(arg: str, device: str = "cpu"):
    """A MACECalculator for the model file ``arg``, in the model's dtype."""
    import torch
    from mace.calculators import MACECalculator

    model = torch.load(arg, map_location=device, weights_only=False)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    calc = MACECalculator(models=model, device=device, default_dtype=dtype)
    calc.mlpval_species = tuple(ELEMENTS[int(z)] for z in calc.z_table.zs)
    calc.mlpval_precision = dtype
    return calc
