"""Atomic file writes: a temporary file in the same folder, then a rename, so a crash or a
concurrent reader (another xdist worker) never sees a half-written file; strict JSON (no
NaN or Infinity tokens, which most JSON parsers reject)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Create ``path`` (and its folder) with ``write(handle)`` on a binary handle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike[str], document: Any, indent: int = 2) -> Path:
    """Strict JSON written atomically: a non-finite number anywhere in ``document`` is
    written as ``null`` (see :func:`strict_json`; callers that must say which values were
    non-finite flag them before), numpy scalars and arrays as numbers and lists."""
    clean, _ = strict_json(document)
    text = json.dumps(clean, indent=indent, allow_nan=False) + "\n"
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def strict_json(value: Any, where: str = "") -> tuple[Any, list[dict[str, str]]]:
    """A copy of ``value`` that strict JSON can hold, and where it was not: every
    non-finite float (NaN, inf, -inf; numpy's too) becomes ``None`` and is listed as
    ``{"path": "/tests/0/...", "value": "nan"}`` (JSON-pointer paths). Numpy scalars and
    arrays become numbers and lists; tuples become lists; dict keys become strings."""
    found: list[dict[str, str]] = []

    def walk(item: Any, path: str) -> Any:
        if isinstance(item, dict):
            return {str(k): walk(v, f"{path}/{_pointer(k)}") for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(item)]
        if isinstance(item, (bool, int, str)) or item is None:
            return item
        tolist = getattr(item, "tolist", None)  # numpy scalars and arrays
        if tolist is not None and not isinstance(item, float):
            return walk(tolist(), path)
        if isinstance(item, float):
            if math.isfinite(item):
                return float(item)
            found.append({"path": path or "/", "value": nonfinite_name(item)})
            return None
        return item  # json.dumps says what it cannot write

    return walk(value, where), found


def nonfinite_name(value: float) -> str:
    """``"nan"``, ``"inf"`` or ``"-inf"``."""
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _pointer(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
