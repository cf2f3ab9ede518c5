"""CHGNet (``pip install "pytest-mlpval[chgnet]"``): ``--potential=chgnet``.

The pretrained weights ship inside the chgnet wheel and load offline. ``chgnet`` is the
default model (0.3.0); ``chgnet:0.2.0`` and ``chgnet:r2scan`` name the others shipped,
``chgnet:path/to/model.pth.tar`` a checkpoint of one's own (a fine-tuned model).
CHGNet covers elements 1-94 and computes in float32. Its calculator here also gives
``free_energy`` (equal to the energy), which CHGNet's own lacks.
"""

from __future__ import annotations

import os
from pathlib import Path

from pytest_mlpval.loaders.common import (
    ELEMENTS,
    LoaderArgumentError,
    ModelIdentity,
    model_file,
    package_dir,
)

__all__ = ["PRETRAINED", "identify", "load"]  # and FreeEnergyCHGNetCalculator, made lazily

# model name -> checkpoint below the chgnet package (as in CHGNet.load)
PRETRAINED = {
    "0.3.0": "pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "0.2.0": "pretrained/0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
    "r2scan": "pretrained/r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
}
DEFAULT = "0.3.0"
SPECIES = tuple(ELEMENTS[1:95])


def identify(arg: str, base_dir: str | os.PathLike[str]) -> ModelIdentity:
    name = arg or DEFAULT
    if name in PRETRAINED:
        root = package_dir("chgnet")
        path = root / PRETRAINED[name] if root is not None else None
        if path is None or not path.is_file():
            raise LoaderArgumentError(f"chgnet: the pretrained model {name} is not in the "
                                      f"installed chgnet package ({path})")
        return ModelIdentity(name, (path,), SPECIES, f"chgnet:{name}")
    path = model_file(arg, base_dir, "CHGNet")
    return ModelIdentity(str(path), (path,), SPECIES, "chgnet:file")


def load(arg: str = "", device: str = "cpu"):
    """A CHGNetCalculator for a pretrained model name or a checkpoint file."""
    from chgnet.model import CHGNet

    name = arg or DEFAULT
    if name in PRETRAINED:
        model = CHGNet.load(model_name=name, use_device=device, verbose=False)
    elif Path(arg).is_file():
        model = CHGNet.from_file(arg)
    else:
        raise LoaderArgumentError(f"chgnet: {arg!r} is neither a pretrained model "
                                  f"({', '.join(PRETRAINED)}) nor a file")
    return __getattr__("FreeEnergyCHGNetCalculator")(model, use_device=device)


_CLASSES: dict[str, type] = {}


def __getattr__(name: str):
    """``FreeEnergyCHGNetCalculator``, made at first use (chgnet imported only then;
    found by name, so a pickled calculator unpickles in a fresh process)."""
    if name != "FreeEnergyCHGNetCalculator":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _CLASSES:
        from chgnet.model.dynamics import CHGNetCalculator

        class FreeEnergyCHGNetCalculator(CHGNetCalculator):
            """CHGNet's calculator that also gives ``free_energy`` (the energy: CHGNet
            has no electronic entropy), which ASE's stress-strain and force-consistent
            energies ask for."""

            implemented_properties = (*CHGNetCalculator.implemented_properties,
                                      "free_energy")

            def calculate(self, *args, **kwargs):
                super().calculate(*args, **kwargs)
                self.results["free_energy"] = self.results["energy"]

        FreeEnergyCHGNetCalculator.__module__ = __name__
        FreeEnergyCHGNetCalculator.__qualname__ = name
        _CLASSES[name] = FreeEnergyCHGNetCalculator
    return _CLASSES[name]
