"""What every model-family loader shares: the model's identity, errors, precision.

Plain library (no pytest, no torch at import). A family module in
:mod:`pytest_mlpval.loaders` defines ``identify(arg, base_dir) -> ModelIdentity`` (cheap:
no model library imported) and ``load(arg, device="cpu")`` returning an ASE calculator.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_mlpval.errors import MlpvalError

__all__ = ["ModelIdentity", "LoaderArgumentError", "detect_precision", "package_dir",
           "model_file", "install_hint", "ELEMENTS", "sha256_file", "combined_digest",
           "declared_identity"]

# chemical symbols by atomic number (index 0 is a placeholder), without importing ase
ELEMENTS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga "
    "Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd "
    "Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac "
    "Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr").split()


class LoaderArgumentError(MlpvalError, ValueError):
    """A loader's argument that names no usable model (a missing file, an unknown name)."""


@dataclass(frozen=True)
class ModelIdentity:
    """What defines a model before it is loaded.

    Attributes
    ----------
    argument : str
        What ``load`` is called with (a file resolved to an absolute path).
    files : tuple of pathlib.Path
        The weights (or parameter) files whose sha256 identify the model.
    species : tuple of str
        Chemical symbols the model covers; empty when only loading tells.
    text : str
        Anything else that defines the model (a model name, LAMMPS commands); part of
        the identity digest.
    """

    argument: str
    files: tuple[Path, ...] = ()
    species: tuple[str, ...] = ()
    text: str = ""


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def combined_digest(files: Mapping[str, str], text: str = "") -> str:
    """One digest over per-file digests (name -> sha256) and, if given, ``text``."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]}\n".encode())
    if text:
        digest.update(f"\0text\0{text}".encode())
    return digest.hexdigest()


def declared_identity(declared: Any, what: str, base_dir: str | os.PathLike[str],
                      ) -> tuple[tuple[str, ...], dict[str, str], str]:
    """(files, per-file digests, digest) of an ``mlpval_identity``: a version string
    (hashed with ``what``, e.g. the factory's spec) or files (paths, absolute or relative
    to ``base_dir``), whose contents are hashed with ``what``. A LoaderArgumentError if
    it is neither or a file is missing."""
    if isinstance(declared, str):
        if not declared.strip():
            raise LoaderArgumentError(f"{what}: mlpval_identity is an empty string")
        return (), {}, combined_digest({}, f"{what}\0version\0{declared}")
    if isinstance(declared, os.PathLike):
        declared = [declared]
    if isinstance(declared, bytes) or not isinstance(declared, Iterable):
        raise LoaderArgumentError(f"{what}: mlpval_identity must be a version string or a "
                                  f"list of files, not {type(declared).__name__}")
    paths = [Path(base_dir) / os.fspath(item) for item in declared]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise LoaderArgumentError(f"{what}: mlpval_identity names no file or a missing "
                                  f"one: {', '.join(missing) or 'an empty list'}")
    files = tuple(str(p.resolve()) for p in paths)
    digests = {p.name: sha256_file(p) for p in paths}
    return files, digests, combined_digest(digests, f"{what}\0files")


def install_hint(extra: str) -> str:
    return f'pip install "pytest-mlpval[{extra}]"'


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def model_file(arg: str, base_dir: str | os.PathLike[str], what: str) -> Path:
    """``arg`` resolved against ``base_dir``; a LoaderArgumentError if it is no file."""
    if not arg:
        raise LoaderArgumentError(f"{what}: no model file given")
    path = Path(base_dir) / arg
    if not path.is_file():
        raise LoaderArgumentError(f"{what} model file not found: {path}")
    return path.resolve()


def _torch_modules(obj: Any, depth: int = 2) -> Iterable[Any]:
    torch = sys.modules.get("torch")
    if torch is None or depth < 0:
        return
    if isinstance(obj, torch.nn.Module):
        yield obj
        return
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _torch_modules(item, depth - 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for value in list(vars(obj).values()):
            yield from _torch_modules(value, depth - 1)


def detect_precision(calculator: Any, default: str = "float64") -> str:
    """``"float32"`` or ``"float64"``: the calculator's ``mlpval_precision`` if it declares
    one, else the dtype of the first floating-point parameter (or buffer) of a torch
    module it holds (one or two attributes deep), else ``default``."""
    declared = getattr(calculator, "mlpval_precision", None)
    if declared in ("float32", "float64"):
        return declared
    for module in _torch_modules(calculator):
        tensors = [*module.parameters(), *module.buffers()]
        for tensor in tensors:
            if tensor.is_floating_point():
                return {"torch.float32": "float32", "torch.float64": "float64"}.get(
                    str(tensor.dtype), default)
    return default
