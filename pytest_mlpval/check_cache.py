"""The disk cache of the physics checks (:mod:`pytest_mlpval.physics_tests`).

Plain library (no pytest, no Hypothesis).

A physics check is a search: Hypothesis draws structures and the check runs on each. With
a seed derived from the cache key, the search is a function of that key (the candidate's
content hash, the versions of the libraries that loaded it, the tolerances, the check and
its settings, Hypothesis' version and settings, the strategy's parameters and the source
of the check code), so its outcome can be kept, as Hypothesis' own example database keeps
what it found:

- a pass is kept as "passed N structures" with the worst result: a rerun with the same
  key passes without calling the calculator, and records the same row;
- a skip (the check does not apply) is kept with its reason;
- a failure keeps the failing structure, exactly (full-precision JSON numbers, not text
  rounded to 8 digits): a rerun runs the check again on that structure alone and fails
  with the same message (a failure is never a verdict served from the cache); should the
  structure pass now, the entry is dropped and the search runs again.

One JSON file per key (``<key>.json``), written whole to a temporary file and renamed over
the old one, so that two processes (xdist workers) never see, nor leave, half a file. A
damaged file (not JSON, of another key or format, an entry of the wrong shape) is removed
with a :class:`~pytest_mlpval.campaign_cache.CacheWarning` and the check computed again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_mlpval.campaign_cache import CacheWarning, canonical_json

__all__ = ["CHECK_CACHE_FORMAT", "CheckCache", "CheckEntry", "check_key", "check_seed",
           "source_digest", "structure_from_dict", "structure_to_dict"]

#: bump when the meaning of a cached check changes (part of every key and every file)
CHECK_CACHE_FORMAT = 1

OUTCOMES = ("passed", "skipped", "failed")

#: the fields of a check's result kept for a pass (those of
#: :class:`~pytest_mlpval.protocols.invariance.CheckResult` but the structure) and the
#: JSON types each may have
RESULT_FIELDS: dict[str, tuple[type, ...]] = {
    "check": (str,), "value": (int, float), "tolerance": (int, float), "unit": (str,),
    "detail": (str,), "error": (str, type(None)), "skipped": (str, type(None)),
    "steps": (list,), "step_name": (str,),
}


def check_key(check: str, potential_sha256: str | None, *, loader_versions: Any = None,
              parameters: Any = None) -> str | None:
    """The cache key of a check: a digest of the cache format, the check's name, the
    candidate's content hash, the versions of the libraries that loaded it and every
    parameter (JSON-able: tolerances, Hypothesis settings, strategy, code version).
    ``None`` (no caching) for a candidate without a content hash (a bare factory)."""
    if potential_sha256 is None:
        return None
    text = canonical_json({"format": CHECK_CACHE_FORMAT, "kind": "physics-check",
                           "check": check, "potential": potential_sha256,
                           "loader_versions": dict(loader_versions or {}),
                           "parameters": parameters})
    return hashlib.sha256(text.encode()).hexdigest()


def check_seed(key: str) -> int:
    """The search's seed for ``key``: its first 64 bits."""
    return int(key[:16], 16)


def source_digest(paths: Iterable[str | os.PathLike[str]]) -> str:
    """A digest of the files' contents (the code a check's outcome depends on); a file
    that cannot be read counts by its name alone. Read once per process while a file
    keeps its size and modification time."""
    stamps = []
    for path in sorted(os.fspath(p) for p in paths):
        try:
            found = os.stat(path)
            stamps.append((path, found.st_mtime_ns, found.st_size))
        except OSError:
            stamps.append((path, None, None))
    return _source_digest(tuple(stamps))


@lru_cache(maxsize=8)
def _source_digest(stamps: tuple[tuple[str, Any, Any], ...]) -> str:
    hasher = hashlib.sha256()
    for path, _, _ in stamps:
        hasher.update(Path(path).name.encode() + b"\0")
        try:
            hasher.update(Path(path).read_bytes())
        except OSError:
            pass
        hasher.update(b"\0")
    return hasher.hexdigest()


def structure_to_dict(atoms: Any) -> dict[str, Any]:
    """An ASE structure as exact JSON numbers: atomic numbers, positions (Å), cell (Å)
    and periodicity."""
    return {"numbers": [int(z) for z in atoms.numbers],
            "positions": [[float(x) for x in row] for row in atoms.positions],
            "cell": [[float(x) for x in row] for row in atoms.cell.array],
            "pbc": [bool(p) for p in atoms.pbc]}


def structure_from_dict(data: Mapping[str, Any]) -> Any:
    """The inverse of :func:`structure_to_dict`."""
    import ase

    return ase.Atoms(numbers=data["numbers"], positions=data["positions"],
                     cell=data["cell"], pbc=data["pbc"])


def _structure_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or set(data) != {"numbers", "positions", "cell", "pbc"}:
        return "its structure is not numbers, positions, cell and pbc"
    n = len(data["numbers"]) if isinstance(data["numbers"], list) else -1
    if n < 1 or not all(isinstance(z, int) and 0 < z < 119 for z in data["numbers"]):
        return "its structure's atomic numbers are not a list of elements"
    if not _matrix(data["positions"], n) or not _matrix(data["cell"], 3):
        return "its structure's positions or cell are not rows of 3 finite numbers"
    if not (isinstance(data["pbc"], list) and len(data["pbc"]) == 3
            and all(isinstance(p, bool) for p in data["pbc"])):
        return "its structure's pbc is not 3 booleans"
    return None


def _matrix(rows: Any, n: int) -> bool:
    return isinstance(rows, list) and len(rows) == n and all(
        isinstance(row, list) and len(row) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            for x in row) for row in rows)


def _result_problem(result: Any) -> str | None:
    if not isinstance(result, dict) or set(result) != set(RESULT_FIELDS):
        return "its result does not have the fields of a check result"
    for name, types in RESULT_FIELDS.items():
        value = result[name]
        if isinstance(value, bool) or not isinstance(value, types):
            return f"its result's {name} is {value!r:.40}"
    if not (math.isfinite(result["value"]) and result["value"] <= result["tolerance"]):
        return f"its passing result has the value {result['value']!r} beyond its tolerance"
    if not all(isinstance(row, list) and len(row) == 4 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in row)
            for row in result["steps"]):
        return "its result's steps are not rows of 4 numbers"
    return None


_ENTRY_FIELDS = ("check", "outcome", "examples", "result", "reason", "structure", "message",
                 "seconds")


@dataclass(frozen=True)
class CheckEntry:
    """What is kept of a check's search.

    Attributes
    ----------
    check : str
        The check's name.
    outcome : str
        ``"passed"``, ``"skipped"`` or ``"failed"``.
    examples : int
        Structures the search tried (each recorded once in the physics table).
    result : dict
        A pass: the worst result's fields (:data:`RESULT_FIELDS`).
    reason : str or None
        A skip: why the check does not apply.
    structure : dict or None
        A failure: the failing structure (:func:`structure_to_dict`).
    message : str
        A failure: its message when found (for reading; a rerun makes its own).
    seconds : float
        Wall time of the search (s).
    """

    check: str
    outcome: str
    examples: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    structure: dict[str, Any] | None = None
    message: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "outcome": self.outcome, "examples": self.examples,
                "result": self.result, "reason": self.reason, "structure": self.structure,
                "message": self.message, "seconds": self.seconds}

    @classmethod
    def problem(cls, data: Any, check: str) -> str | None:
        """Why ``data`` is not a usable entry of ``check`` (None if it is)."""
        if not isinstance(data, dict) or set(data) != set(_ENTRY_FIELDS):
            return "its entry does not have the expected fields"
        if data["check"] != check:
            return f"it is an entry of the check {data['check']!r:.40}, not {check!r}"
        outcome, examples = data["outcome"], data["examples"]
        if outcome not in OUTCOMES:
            return f"its outcome {outcome!r:.40} is none of {', '.join(OUTCOMES)}"
        if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
            return f"its number of structures {examples!r:.40} is not a count"
        seconds = data["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return f"its seconds {seconds!r:.40} are not a number"
        if not isinstance(data["message"], str):
            return "its message is not text"
        if outcome == "passed":
            return ("a pass of no structures" if examples < 1
                    else _result_problem(data["result"]))
        if outcome == "skipped":
            return None if isinstance(data["reason"], str) else "a skip without its reason"
        return _structure_problem(data["structure"])


class CheckCache:
    """The check entries in ``directory``, one file per key."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str, check: str) -> CheckEntry | None:
        """The entry kept for ``key`` (None if there is none). A damaged one is removed
        with a :class:`CacheWarning`: the check is computed again."""
        path = self.path(key)
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.drop(key, check, f"it cannot be read ({type(exc).__name__}: {exc})")
            return None
        why = None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data, why = None, "it is not valid JSON (a run cut short?)"
        if why is None:
            why = _file_problem(data, key, check)
        if why is not None:
            self.drop(key, check, why)
            return None
        return CheckEntry(**data["entry"])

    def put(self, key: str, entry: CheckEntry) -> Path | None:
        """Keep ``entry`` under ``key`` (the file is replaced whole); its path, or None
        where the folder is not writable."""
        path = self.path(key)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        text = json.dumps({"format": CHECK_CACHE_FORMAT, "key": key,
                           "entry": entry.as_dict()}, sort_keys=True)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temporary.write_text(text + "\n", "utf-8")
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)
            return None
        return path

    def drop(self, key: str, check: str, why: str | None = None) -> None:
        """Remove the entry of ``key``; with ``why`` (it is damaged), say so in a
        :class:`CacheWarning`."""
        path = self.path(key)
        if why is not None:
            warnings.warn(f"physics-check cache {path} ({check}): {why}; the file is "
                          "removed and the check computed again", CacheWarning, stacklevel=3)
        try:
            path.unlink(missing_ok=True)
        except OSError:  # a read-only cache: warned about again next time
            pass


def _file_problem(data: Any, key: str, check: str) -> str | None:
    if not isinstance(data, dict) or set(data) != {"format", "key", "entry"}:
        return "it is not a check-cache file (format, key, entry)"
    if data["format"] != CHECK_CACHE_FORMAT:
        return f"it has the format {data['format']!r:.20}, not {CHECK_CACHE_FORMAT}"
    if data["key"] != key:
        return "it names another key"
    return CheckEntry.problem(data["entry"], check)
