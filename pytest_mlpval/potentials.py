"""Candidate potentials: parse a spec, check it cheaply, load an ASE calculator.

Plain library (no pytest). A *spec* is what a user writes after ``--potential``:

``NAME=SPEC``
    Sets the display name (the test id); otherwise the name is derived from the spec.
``sw`` / ``tersoff``
    Built-in empirical silicon references (matscipy ``Manybody`` with literature
    parameters): Stillinger and Weber, Phys. Rev. B 31, 5262 (1985); Tersoff,
    Phys. Rev. B 39, 5566 (1989).
``path/to/model.xml``
    A GAP loaded with quippy (``pip install pytest-mlpval[gap]``); the ``sparseX``
    files it names are found beside the XML, whatever the working directory.
``package.module:factory``
    A callable returning an ASE calculator.
``LOADER:ARG``
    A third-party loader registered under the entry-point group
    ``pytest_mlpval.loaders`` (``LOADER`` is the entry-point name; it is called
    with ``ARG`` and returns a calculator).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from xml.etree import ElementTree

__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "Potential",
    "PotentialInfo",
    "PotentialSpecError",
    "PotentialLoadError",
    "parse_potential_spec",
    "load_potential",
    "sha256_file",
]

ENTRY_POINT_GROUP = "pytest_mlpval.loaders"


class PotentialSpecError(ValueError):
    """A potential spec that cannot be used (detected without loading the model).

    ``unknown`` is true when the spec matched no known form at all (so a third-party
    hook may still load it), false for a definite fault such as a missing model file.
    """

    def __init__(self, message: str, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


class PotentialLoadError(RuntimeError):
    """Loading the model failed or did not give an ASE calculator."""


@dataclass(frozen=True)
class PotentialInfo:
    """Identity of a candidate potential.

    Attributes
    ----------
    name : str
        Display name, used as the test id.
    spec : str
        The spec as the user wrote it (without ``NAME=``).
    loader : str
        ``"builtin"``, ``"gap"``, ``"factory"``, ``"entry-point:<name>"`` or ``"hook"``.
    files : tuple of str
        Absolute paths of the model files (empty for code-defined potentials).
    sha256 : str or None
        Digest over the model files (or the built-in parameters); ``None`` when the
        model is defined by code only (a factory), whose content cannot be hashed.
    file_sha256 : mapping of str to str
        Per-file digests, keyed by file name.
    species : tuple of str
        Chemical symbols the model covers, where the loader can tell (built-ins, GAP
        descriptors); empty when unknown.
    """

    name: str
    spec: str
    loader: str
    files: tuple[str, ...] = ()
    sha256: str | None = None
    file_sha256: Mapping[str, str] = field(default_factory=dict)
    species: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec,
            "loader": self.loader,
            "files": list(self.files),
            "sha256": self.sha256,
            "file_sha256": dict(self.file_sha256),
            "species": list(self.species),
        }


@dataclass(frozen=True)
class Potential:
    """A loaded candidate: its identity and its ASE calculator."""

    info: PotentialInfo
    calculator: Any

    @property
    def name(self) -> str:
        return self.info.name


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _combined_digest(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]}\n".encode())
    return digest.hexdigest()


# --- built-ins ------------------------------------------------------------------------

def _matscipy_manybody(form: str, params_name: str):
    from matscipy.calculators.manybody import Manybody
    from matscipy.calculators.manybody import explicit_forms as forms
    from matscipy.calculators.manybody.explicit_forms import (
        stillinger_weber,
        tersoff_brenner,
    )

    module = {"StillingerWeber": stillinger_weber, "TersoffBrenner": tersoff_brenner}[form]
    params = getattr(module, params_name)

    class QuietManybody(Manybody):
        """matscipy's Manybody, silencing a harmless numpy warning of its Tersoff form."""

        def calculate(self, *args, **kwargs):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="'where' used without 'out'")
                return super().calculate(*args, **kwargs)

    return QuietManybody(**getattr(forms, form)(params)), params


# name -> (matscipy explicit form, parameter set, citation)
BUILTINS: dict[str, tuple[str, str, str]] = {
    "sw": (
        "StillingerWeber",
        "Stillinger_Weber_PRB_31_5262_Si",
        "F. H. Stillinger and T. A. Weber, Phys. Rev. B 31, 5262 (1985)",
    ),
    "tersoff": (
        "TersoffBrenner",
        "Tersoff_PRB_39_5566_Si_C",
        "J. Tersoff, Phys. Rev. B 39, 5566 (1989)",
    ),
}


def _builtin_digest(name: str) -> str:
    form, params_name, _ = BUILTINS[name]
    return hashlib.sha256(f"matscipy:{form}:{params_name}".encode()).hexdigest()


# --- GAP ------------------------------------------------------------------------------

def _species_of_descriptors(root: ElementTree.Element) -> tuple[str, ...]:
    """Chemical symbols named by the descriptors of a GAP XML (``Z=``, ``Z1=``,
    ``species_Z={...}``)."""
    from .units import chemical_symbol

    numbers: set[int] = set()
    for element in root.iter("descriptor"):
        text = element.text or ""
        for match in re.finditer(r"\b(?:Z|Z1|Z2|Z_center)\s*=\s*(\d+)", text):
            numbers.add(int(match.group(1)))
        for match in re.finditer(r"species_Z\s*=\s*\{([^}]*)\}", text):
            numbers.update(int(z) for z in match.group(1).split())
    return tuple(chemical_symbol(z) for z in sorted(numbers))


def gap_model(xml_path: Path) -> tuple[list[Path], tuple[str, ...]]:
    """The XML and the sparseX files it refers to, and the species of its descriptors;
    raises PotentialSpecError if the XML is malformed, not a GAP or misses a file."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as exc:
        raise PotentialSpecError(f"{xml_path} is not well-formed XML: {exc}") from exc
    if root.find(".//GAP_params") is None and root.tag != "GAP_params":
        raise PotentialSpecError(
            f"{xml_path} is XML but not a GAP model (no <GAP_params> element)"
        )
    files = [xml_path]
    for element in root.iter():
        sparse = element.get("sparseX_filename")
        if sparse:
            sparse_path = xml_path.parent / sparse
            if not sparse_path.is_file():
                raise PotentialSpecError(
                    f"{xml_path} refers to {sparse!r}, which is not beside it "
                    f"(looked for {sparse_path})"
                )
            files.append(sparse_path)
    return files, _species_of_descriptors(root)


def gap_files(xml_path: Path) -> list[Path]:
    """The XML and the sparseX files it refers to (see :func:`gap_model`)."""
    return gap_model(xml_path)[0]


@contextlib.contextmanager
def _working_directory(path: Path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _load_gap(xml_path: Path):
    from quippy.potential import Potential as QuippyPotential

    # quippy opens the sparseX files relative to the working directory: isolate that here.
    with _working_directory(xml_path.parent):
        return QuippyPotential(param_filename=xml_path.name)


# --- parsing --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Parsed:
    info: PotentialInfo
    make: Callable[[], Any] | None  # None: only the hook / a caller can load it


def _entry_point_loaders() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


_NAMED = re.compile(r"^([A-Za-z_][\w.\-]*)=(.*)$")


def _split_name(raw: str) -> tuple[str | None, str]:
    raw = raw.strip()
    if not raw:
        raise PotentialSpecError("empty potential spec")
    match = _NAMED.match(raw)
    if match is None:
        return None, raw
    if not match.group(2).strip():
        raise PotentialSpecError(f"{raw!r} names a potential but gives no spec after '='")
    return match.group(1), match.group(2).strip()


def parse_potential_spec(raw: str, base_dir: str | os.PathLike[str] | None = None) -> _Parsed:
    """Resolve a spec without loading the model; cheap checks only.

    Raises :class:`PotentialSpecError` for a missing or malformed model file, a GAP
    without quippy installed, a module or factory that cannot be found.
    """
    name, spec = _split_name(raw)
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    if spec.lower() in BUILTINS:
        key = spec.lower()
        form, params_name, _citation = BUILTINS[key]
        info = PotentialInfo(name or key, spec, "builtin", (), _builtin_digest(key),
                             species=("Si",))
        return _Parsed(info, lambda: _matscipy_manybody(form, params_name)[0])

    scheme, colon, rest = spec.partition(":")
    if colon and scheme and len(scheme) > 1:
        loaders = _entry_point_loaders()
        if scheme in loaders:
            ep = loaders[scheme]
            info = _file_backed_info(name or _stem(rest), spec, f"entry-point:{scheme}",
                                     base / rest)
            arg = info.files[0] if info.files else rest  # a file: its absolute path
            return _Parsed(info, lambda: ep.load()(arg))

    path = base / spec
    if spec.lower().endswith(".xml"):
        if not path.is_file():
            raise PotentialSpecError(f"GAP model file not found: {path}")
        files, species = gap_model(path.resolve())
        if importlib.util.find_spec("quippy") is None:
            raise PotentialSpecError(
                f"{spec} is a GAP model but quippy is not installed: "
                "pip install 'pytest-mlpval[gap]' (quippy-ase)"
            )
        digests = {f.name: sha256_file(f) for f in files}
        info = PotentialInfo(
            name or path.stem, spec, "gap", tuple(str(f) for f in files),
            _combined_digest(digests), digests, species,
        )
        resolved = path.resolve()
        return _Parsed(info, lambda: _load_gap(resolved))

    if colon and "/" not in spec and os.sep not in spec:
        module_name, attr = scheme, rest
        if not module_name or not attr:
            raise PotentialSpecError(f"{spec!r}: expected 'package.module:factory'")
        try:
            module_spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError) as exc:
            module_spec = None
            reason = str(exc)
        else:
            reason = "no such module"
        if module_spec is None:
            raise PotentialSpecError(f"{spec!r}: cannot import {module_name!r} ({reason})")
        info = PotentialInfo(name or attr.split(".")[-1], spec, "factory")
        return _Parsed(info, lambda: _call_factory(module_name, attr, spec))

    if path.exists():
        return _Parsed(_file_backed_info(name or _stem(spec), spec, "hook", path), None)
    raise PotentialSpecError(
        f"{spec!r} is not a built-in ({', '.join(sorted(BUILTINS))}), an existing model "
        "file, a 'package.module:factory' or a registered loader "
        f"(entry points: {', '.join(sorted(_entry_point_loaders())) or 'none'})",
        unknown=True,
    )


def default_name(raw: str) -> str:
    """The display name of a spec: its ``NAME=`` or the stem of the spec."""
    name, spec = _split_name(raw)
    return name or _stem(spec)


def _stem(text: str) -> str:
    return Path(text).stem or text


def _file_backed_info(name: str, spec: str, loader: str, path: Path) -> PotentialInfo:
    """Identity of a potential whose model may be the file ``path`` (hashed if it is;
    no hash otherwise)."""
    if not path.is_file():
        return PotentialInfo(name, spec, loader)
    digests = {path.name: sha256_file(path)}
    return PotentialInfo(name, spec, loader, (str(path.resolve()),),
                         _combined_digest(digests), digests)


def _call_factory(module_name: str, attr: str, spec: str):
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise PotentialLoadError(f"{spec!r}: {exc}") from exc
    if not callable(target):
        raise PotentialLoadError(f"{spec!r}: {attr} is not callable")
    return target()


def is_calculator(obj: Any) -> bool:
    """Duck-typed ASE calculator check (ASE's own ``Calculator`` or any object honouring it)."""
    if callable(getattr(obj, "get_property", None)):
        return True
    return callable(getattr(obj, "calculate", None)) and hasattr(obj, "results")


def load_potential(
    raw: str,
    base_dir: str | os.PathLike[str] | None = None,
    fallback: Callable[[str], Any] | None = None,
) -> Potential:
    """Parse ``raw`` and load its calculator.

    ``fallback(spec)`` is asked first (e.g. the pytest hook) and may return a
    calculator or ``None``.
    """
    name, spec = _split_name(raw)
    if fallback is not None:
        info = _file_backed_info(name or _stem(spec), spec, "hook",
                                 Path(base_dir or ".") / spec)
        calc = fallback(info.files[0] if info.files else spec)  # a file: its absolute path
        if calc is not None:
            return _checked(Potential(info, calc))
    parsed = parse_potential_spec(raw, base_dir)
    if parsed.make is None:
        raise PotentialLoadError(
            f"{spec!r} exists but no loader accepted it (known: GAP '.xml'; "
            "register one with the pytest_mlpval_load_potential hook or an entry point "
            f"in {ENTRY_POINT_GROUP!r})"
        )
    try:
        calc = parsed.make()
    except PotentialLoadError:
        raise
    except Exception as exc:  # the model's own loader failed: say which spec
        raise PotentialLoadError(f"loading {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    return _checked(Potential(parsed.info, calc))


def _checked(potential: Potential) -> Potential:
    calc = potential.calculator
    if not is_calculator(calc):
        raise PotentialLoadError(
            f"{potential.info.spec!r} gave {type(calc).__name__} {calc!r:.60}, "
            "not an ASE calculator (an object with get_property/calculate)"
        )
    return potential
