"""The per-item disk cache of campaigns (:mod:`pytest_mlpval.campaign`).

Plain library (no pytest).

One JSON-lines file per campaign key: a header (format, protocol, protocol version,
parameters, the potential) and one line per finished item, appended as it finishes. The
key is a digest of everything that changes an item's value: the cache format, the
protocol and its version, the potential's content hash, the versions of the libraries
that loaded it, and the parameters.

A damaged file never breaks a run: a line that is cut short, not JSON, not an item of
the expected shape, a duplicate with another value, or a value the protocol rejects
(``validate``) is dropped with a :class:`CacheWarning`, its item is computed again, and
the file is rewritten without it. A header of another campaign discards the whole file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from pytest_mlpval.errors import MlpvalWarning

__all__ = ["CACHE_FORMAT", "CacheWarning", "campaign_key", "memo_key", "ResultMemo",
           "RESULT_MEMO", "RUN_STORE_ENV", "run_store", "run_identity"]

#: bump when the meaning of cached campaign items changes (part of every key)
CACHE_FORMAT = 2  # 2: protocol version and loader versions in the key; checked records

#: the header fields that must match for a file's items to be used
_HEADER_FIELDS = ("format", "protocol", "version", "parameters")


#: environment variable naming the run store: a folder shared by the processes of one
#: pytest run (its controller creates it and removes it at the end; xdist workers get it
#: from the controller), where the campaigns of candidates without a content hash are
#: kept under the candidate's name, for that run only
RUN_STORE_ENV = "MLPVAL_RUN_STORE"


def run_store() -> str | None:
    """The run store of the current run (:data:`RUN_STORE_ENV`), None outside a run."""
    path = os.environ.get(RUN_STORE_ENV) or None
    return path if path is not None and os.path.isdir(path) else None


def run_identity(info: Any) -> str | None:
    """The identity under which a candidate without a content hash (a factory) is reused
    within a run: its name, loader and spec; None without an info (a bare calculator)."""
    if info is None or getattr(info, "name", None) is None:
        return None
    return (f"run-candidate:{info.name}:{getattr(info, 'loader', '')}:"
            f"{getattr(info, 'spec', '')}:{getattr(info, 'device', None) or ''}")


class CacheWarning(MlpvalWarning, RuntimeWarning):
    """A campaign cache file held damaged or foreign records; their items are computed
    again and the file is repaired."""


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def campaign_key(protocol: str, potential_sha256: str | None, parameters: Any, *,
                 version: int | str, loader_versions: Any = None) -> str | None:
    """The cache key: a digest of the cache format, the protocol name and ``version``,
    the potential's content hash, the versions of the libraries that loaded it
    (``{package: version}``) and every parameter. ``None`` (no caching) for a potential
    without a content hash."""
    if potential_sha256 is None:
        return None
    text = canonical_json({"format": CACHE_FORMAT, "protocol": protocol, "version": version,
                           "potential": potential_sha256,
                           "loader_versions": dict(loader_versions or {}),
                           "parameters": parameters})
    return hashlib.sha256(text.encode()).hexdigest()


def encode(value: Any) -> Any:
    """``value`` with ASE Atoms (anywhere in dicts and lists) as extxyz text."""
    if hasattr(value, "get_positions") and hasattr(value, "cell"):
        import io

        import ase.io

        buffer = io.StringIO()
        ase.io.write(buffer, value, format="extxyz")
        return {"__extxyz__": buffer.getvalue()}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, dict):
        if set(value) == {"__extxyz__"}:
            import io

            import ase.io

            return ase.io.read(io.StringIO(value["__extxyz__"]), format="extxyz")
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal JSON values, floats to 1e-9 relative (two processes may differ in the last
    bits)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    index = record.get("index")
    if isinstance(index, bool) or not isinstance(index, int):
        return f"index {index!r} is not an integer"
    if index < 0:
        return f"index {index} is negative"
    if record.get("ok") is not True:
        return "not marked as a finished item (ok: true)"
    if "value" not in record:
        return f"item {index} has no value"
    seconds = record.get("seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return f"item {index} has seconds {seconds!r}"
    return None


class Cache:
    """Append-only JSON-lines file of finished items, one per key (``key`` None: no
    file). ``read`` returns ``{index: (value, seconds)}`` for the items below
    ``n_items``; ``validate(value)`` returns why a decoded value is unusable, or None."""

    def __init__(self, directory: str | os.PathLike[str] | None, key: str | None,
                 header: dict[str, Any], n_items: int,
                 validate: Callable[[Any], str | None] | None = None) -> None:
        self.path = None if directory is None or key is None \
            else Path(directory) / f"{key}.jsonl"
        self.header = header
        self.n_items = n_items
        self.validate = validate

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on ``<key>.jsonl.lock`` beside the file (waiting while
        another process holds it): two processes (xdist workers) that need the same
        campaign compute it once. No lock without a file, without ``fcntl`` (Windows) or
        in a read-only folder; the system releases it when its process dies."""
        try:
            import fcntl
        except ImportError:  # not POSIX: both compute, as before
            fcntl = None
        handle = None
        if fcntl is not None and self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(self.path.with_name(f"{self.path.name}.lock"), "a")
            except OSError:
                handle = None
        if handle is None:
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def stamp(self) -> tuple[int, int] | None:
        """The file's modification time (ns) and size (None without a file)."""
        try:
            found = os.stat(self.path) if self.path is not None else None
        except OSError:
            return None
        return None if found is None else (found.st_mtime_ns, found.st_size)

    def _header_problem(self, line: str) -> str | None:
        try:
            found = json.loads(line)
        except json.JSONDecodeError:
            return "its header is not valid JSON"
        if not isinstance(found, dict):
            return f"its header is a JSON {type(found).__name__}, not an object"
        for name in _HEADER_FIELDS:
            if canonical_json(found.get(name)) != canonical_json(self.header[name]):
                return (f"its header is of another campaign ({name} "
                        f"{found.get(name)!r:.80}, expected {self.header[name]!r:.80})")
        return None

    def read(self) -> dict[int, tuple[Any, float]]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            lines = self.path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            self._repair([f"it cannot be read ({type(exc).__name__}: {exc})"], [])
            return {}
        why = self._header_problem(lines[0]) if lines else "it is empty"
        if why is not None:
            self._repair([why], [])
            return {}
        problems: list[str] = []
        records: dict[int, dict[str, Any]] = {}
        kept: list[str] = []  # the good lines, beyond n_items included
        conflicts: set[int] = set()
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"line {number} is not valid JSON (a run cut short?)")
                continue
            why = _record_problem(record)
            if why is not None:
                problems.append(f"line {number}: {why}")
                continue
            index = record["index"]
            if index in records:
                if not _same(records[index]["value"], record["value"]):
                    conflicts.add(index)
                    problems.append(f"line {number}: item {index} again, with another value")
                continue
            records[index] = record
            kept.append(line)
        found: dict[int, tuple[Any, float]] = {}
        for index, record in records.items():
            if index >= self.n_items or index in conflicts:
                continue
            try:
                value = decode(record["value"])
                why = self.validate(value) if self.validate is not None else None
            except Exception as exc:  # noqa: BLE001 - a damaged value: computed again
                why = f"{type(exc).__name__}: {exc}"
            if why is not None:
                problems.append(f"item {index}: {why}")
                conflicts.add(index)
                continue
            found[index] = (value, float(record.get("seconds", 0.0)))
        if problems:
            self._repair(problems, [line for line in kept
                                    if json.loads(line)["index"] not in conflicts])
        return found

    def _repair(self, problems: list[str], kept: list[str]) -> None:
        """Warn, and rewrite the file with the header and the ``kept`` lines only."""
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        warnings.warn(f"campaign cache {self.path} ({self.header['protocol']}): {shown}; "
                      "those items are computed again and the file is repaired",
                      CacheWarning, stacklevel=4)
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text("".join(line + "\n" for line in
                                         [canonical_json(self.header), *kept]), "utf-8")
            os.replace(temporary, self.path)
        except OSError:  # a read-only cache: it is read again (and warned about) next time
            temporary.unlink(missing_ok=True)

    def append(self, index: int, value: Any, seconds: float) -> None:
        if self.path is None:
            return
        line = canonical_json({"index": index, "ok": True, "value": encode(value),
                               "seconds": seconds})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        cut_short = False
        if not new:  # a crash may have cut the last line short: start a fresh line
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell():
                    handle.seek(-1, os.SEEK_END)
                    cut_short = handle.read(1) != b"\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            if new:
                handle.write(canonical_json(self.header) + "\n")
            handle.write(("\n" if cut_short else "") + line + "\n")
            handle.flush()


# -- the in-memory memo: a finished campaign is computed once per process ---------------

def memo_key(protocol: str, potential: Any, parameters: Any, *, version: int | str,
             cache_dir: Any) -> tuple[str, Any] | None:
    """The memo's key of a campaign: the disk cache's key with, for a potential without a
    content hash (a factory, a bare calculator), its calculator's identity in this
    process in place of the hash; and the cache folder (``None``: no memo, as no cache),
    so that runs with different cache folders never share. Returns ``(key, calculator)``,
    the calculator (None for a hashed model) being kept with the entry and compared on
    reading, so that its identity cannot be reused by another object. Within a run
    (:func:`run_store`) a candidate without a content hash is known by its
    :func:`run_identity` instead, with or without a cache folder."""
    info = getattr(potential, "info", None)
    calc = getattr(potential, "calculator", potential)
    sha256 = getattr(info, "sha256", None)
    store, identity = run_store(), run_identity(info)
    if sha256 is None and store is not None and identity is not None:
        key = campaign_key(protocol, identity, parameters, version=version,
                           loader_versions=getattr(info, "loader_versions", None))
        return f"{os.path.abspath(store)}:{key}", None
    if cache_dir is None:
        return None
    identity = sha256 if sha256 is not None else f"in-process:{type(calc).__name__}:{id(calc)}"
    key = campaign_key(protocol, identity, parameters, version=version,
                       loader_versions=getattr(info, "loader_versions", None))
    return f"{os.path.abspath(os.fspath(cache_dir))}:{key}", None if sha256 else calc


class ResultMemo:
    """Finished items of campaigns, kept in memory for the life of the process (the last
    ``max_campaigns`` campaigns): a second test of a run that asks for the same campaign
    (same protocol, version, parameters, potential and cache folder) gets copies of the
    items instead of recomputing them (or decoding them from the cache file); for a
    potential without a content hash, which has no disk cache, this is the only reuse.
    Only finished (ok) items are kept; failed ones are computed again, as with the disk
    cache."""

    def __init__(self, max_campaigns: int = 32) -> None:
        self.max_campaigns = max_campaigns
        self._entries: OrderedDict[str, tuple[Any, dict[int, tuple[Any, float]]]] = OrderedDict()

    def get(self, key: tuple[str, Any] | None, stamp: Any = None
            ) -> dict[int, tuple[Any, float]]:
        """``{index: (value, seconds)}`` (deep copies) of what is kept for ``key``, if
        the cache file still has the ``stamp`` it had then (:meth:`Cache.stamp`: a file
        changed since, e.g. repaired or edited, is read instead)."""
        import copy

        if key is None or key[0] not in self._entries:
            return {}
        calc, kept_stamp, items = self._entries[key[0]]
        if calc is not key[1] or kept_stamp != stamp:
            return {}
        self._entries.move_to_end(key[0])
        return copy.deepcopy(items)

    def put(self, key: tuple[str, Any] | None, items: dict[int, tuple[Any, float]],
            stamp: Any = None) -> None:
        import copy

        if key is None or not items:
            return
        self._entries[key[0]] = (key[1], stamp, copy.deepcopy(items))
        self._entries.move_to_end(key[0])
        while len(self._entries) > self.max_campaigns:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


#: the process's memo, used by :func:`~pytest_mlpval.campaign.run_campaign`
RESULT_MEMO = ResultMemo()
