"""CHGNet (``pip install "pytest-mlpval[chgnet]"``): ``--potential=chgnet``.

The pretrained weights ship inside the chgnet wheel and load offline. ``chgnet`` is the
default model (0.3.0); ``chgnet:0.2.0`` and ``chgnet:r2scan`` name the others shipped,
``chgnet:path/to/model.pth.tar`` a checkpoint of one's own (a fine-tuned model).
CHGNet covers elements 1-94 and computes in float32.
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

__all__ = ["PRETRAINED", "identify", "load"]

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
    from chgnet.model.dynamics import CHGNetCalculator

    name = arg or DEFAULT
    if name in PRETRAINED:
        model = CHGNet.load(model_name=name, use_device=device, verbose=False)
    elif Path(arg).is_file():
        model = CHGNet.from_file(arg)
    else:
        raise LoaderArgumentError(f"chgnet: {arg!r} is neither a pretrained model "
                                  f"({', '.join(PRETRAINED)}) nor a file")
    return CHGNetCalculator(model, use_device=device)
