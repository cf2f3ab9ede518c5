"""NequIP and Allegro (``pip install "pytest-mlpval[nequip]"``; Allegro models also need
``nequip-allegro``): ``--potential=model.nequip.pth`` or ``--potential=nequip:PATH``.

A compiled model (``nequip-compile``: ``*.nequip.pth`` TorchScript, ``*.nequip.pt2``
AOTInductor built with ``--target ase``) is loaded with
``NequIPCalculator.from_compiled_model``; a packaged model (``*.nequip.zip``,
``nequip-package``) or a training checkpoint (``*.ckpt``) with the calculator's
saved-model loader. The species are the model's type names (taken as chemical symbols);
the precision its ``model_dtype``.
"""

from __future__ import annotations

import os

from pytest_mlpval.loaders.common import (
    ELEMENTS,
    LoaderArgumentError,
    ModelIdentity,
    detect_precision,
    model_file,
)

__all__ = ["COMPILED", "SAVED", "identify", "load"]

COMPILED = (".nequip.pth", ".nequip.pt2")
SAVED = (".nequip.zip", ".ckpt")


def identify(arg: str, base_dir: str | os.PathLike[str]) -> ModelIdentity:
    path = model_file(arg, base_dir, "NequIP")
    if not path.name.endswith(COMPILED + SAVED):
        raise LoaderArgumentError(
            f"NequIP model file {path}: expected a compiled model ({', '.join(COMPILED)}), "
            f"a packaged model or a checkpoint ({', '.join(SAVED)})")
    return ModelIdentity(str(path), (path,), (), "nequip:file")


def load(arg: str, device: str = "cpu"):
    """A NequIPCalculator for the model file ``arg``."""
    from nequip.integrations.ase import NequIPCalculator

    if arg.endswith(COMPILED):
        calc = NequIPCalculator.from_compiled_model(arg, device=device)
    else:
        calc = NequIPCalculator._from_saved_model(arg, device=device)  # noqa: SLF001
    names = _type_names(calc)
    if names:
        calc.mlpval_species = names
    metadata = getattr(getattr(calc, "model", None), "metadata", None) or {}
    dtype = metadata.get("model_dtype") if isinstance(metadata, dict) else None
    calc.mlpval_precision = dtype if dtype in ("float32", "float64") else detect_precision(calc)
    return calc


def _type_names(calc) -> tuple[str, ...]:
    """The chemical symbols the calculator's species-to-type mapper accepts."""
    for transform in getattr(calc, "transforms", ()) or ():
        table = getattr(transform, "lookup_table", None)
        if table is not None:
            return tuple(ELEMENTS[z] for z, t in enumerate(table.tolist()) if t >= 0)
    return ()
