"""SevenNet (``pip install "pytest-mlpval[sevennet]"``): ``--potential=sevennet-0``.

The pretrained checkpoints ship inside the sevenn wheel and load offline:
``sevennet-0`` (SevenNet-0, 11 July 2024), ``sevennet:7net-0_22May2024``,
``sevennet:7net-l3i5``; ``sevennet:path/to/checkpoint.pth`` loads a checkpoint of one's
own. The species are the checkpoint's type map; SevenNet computes in float32.
"""

from __future__ import annotations

import os

from pytest_mlpval.loaders.common import (
    ELEMENTS,
    LoaderArgumentError,
    ModelIdentity,
    model_file,
    package_dir,
)

__all__ = ["PRETRAINED", "identify", "load", "load_sevennet_0"]

# pretrained name (lower case) -> checkpoint below the sevenn package
PRETRAINED = {
    "7net-0": "pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "7net-0_22may2024": "pretrained_potentials/SevenNet_0__22May2024/checkpoint_sevennet_0.pth",
    "7net-l3i5": "pretrained_potentials/SevenNet_l3i5/checkpoint_l3i5.pth",
}
ALIASES = {"sevennet-0": "7net-0", "7net-0_11jul2024": "7net-0",
           "sevennet-0_11jul2024": "7net-0", "sevennet-0_22may2024": "7net-0_22may2024",
           "sevennet-l3i5": "7net-l3i5"}


def _pretrained(arg: str) -> str | None:
    name = arg.lower()
    name = ALIASES.get(name, name)
    return name if name in PRETRAINED else None


def identify(arg: str, base_dir: str | os.PathLike[str]) -> ModelIdentity:
    name = _pretrained(arg or "7net-0")
    if name is not None:
        root = package_dir("sevenn")
        path = root / PRETRAINED[name] if root is not None else None
        if path is None or not path.is_file():
            raise LoaderArgumentError(f"sevennet: the pretrained model {name} is not in "
                                      f"the installed sevenn package ({path})")
        return ModelIdentity(name, (path,), (), f"sevennet:{name}")
    path = model_file(arg, base_dir, "SevenNet")
    return ModelIdentity(str(path), (path,), (), "sevennet:file")


def load(arg: str = "", device: str = "cpu"):
    """A SevenNetCalculator for a pretrained name or a checkpoint file; it declares its
    species (``mlpval_species``) from the checkpoint's type map."""
    from sevenn.calculator import SevenNetCalculator

    name = _pretrained(arg or "7net-0")
    calc = SevenNetCalculator(name or arg, device=device)
    calc.mlpval_species = tuple(ELEMENTS[z] for z in sorted(calc.type_map))
    return calc


def load_sevennet_0(arg: str = "", device: str = "cpu"):
    """SevenNet-0 (the entry point ``sevennet-0``); ``arg`` must be empty."""
    if arg:
        raise LoaderArgumentError(f"sevennet-0 takes no argument (got {arg!r}); use "
                                  "sevennet:NAME_OR_FILE for another model")
    return load("7net-0", device)
