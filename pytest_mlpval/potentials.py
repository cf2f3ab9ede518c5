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
``chgnet``, ``sevennet-0``, ``model.model`` (MACE), ``m.nequip.pth`` (NequIP/Allegro),
``model.yace`` (ACE), ``lammps:pair_style ...; pair_coeff ...``, ``NAME:ARG``
    The model families of :mod:`pytest_mlpval.loaders`, by name or by file ending,
    each with its package as an extra (``pip install "pytest-mlpval[chgnet]"``).
``package.module:factory``
    A callable returning an ASE calculator (given ``device=`` if it takes one). It may
    declare its identity with an ``mlpval_identity`` attribute, on the factory or on
    the object it returns: a version string, or the files it loads (their sha256 are
    taken). The identity is then the candidate's ``sha256``, and its results are
    cached across runs like a GAP's; without one nothing is cached across runs.
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
import inspect
import os
import re
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from pytest_mlpval import loader_probe
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.gap_xml import GapModelError, check_gap_xml, species_of_descriptors
from pytest_mlpval.loaders import (
    FAMILIES,
    SUFFIXES,
    Family,
    LoaderArgumentError,
    detect_precision,
    family_for_file,
    install_hint,
)
from pytest_mlpval.loaders.common import combined_digest, declared_identity, sha256_file

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


class PotentialSpecError(MlpvalError, ValueError):
    """A potential spec that cannot be used (detected without loading the model).

    ``unknown`` is true when the spec matched no known form at all (so a third-party
    hook may still load it), false for a definite fault such as a missing model file.
    """

    def __init__(self, message: str, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


class PotentialLoadError(MlpvalError, RuntimeError):
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
    loader_versions : mapping of str to str
        Installed distribution -> version of the libraries that load and evaluate the
        model: ``quippy-ase`` for a GAP, ``matscipy`` for the built-ins; for a factory or
        entry point the distribution of its module and, once loaded, of the
        calculator's class and of torch, tensorflow or jax if imported. Part of the
        prediction and campaign cache keys: a new library version is a new model.
    precision : str
        ``"float64"`` or ``"float32"``: the floating-point precision the model computes
        in (a torch model's parameter dtype where there is one; a model may declare it
        with an ``mlpval_precision`` attribute). Float32 models need looser numerical
        tolerances.
    device : str
        Where the model runs: ``"cpu"`` (default) or e.g. ``"cuda"``, as passed to
        :func:`load_potential` and on to loaders that accept a ``device``.
    """

    name: str
    spec: str
    loader: str
    files: tuple[str, ...] = ()
    sha256: str | None = None
    file_sha256: Mapping[str, str] = field(default_factory=dict)
    species: tuple[str, ...] = ()
    loader_versions: Mapping[str, str] = field(default_factory=dict)
    precision: str = "float64"
    device: str = "cpu"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec,
            "loader": self.loader,
            "files": list(self.files),
            "sha256": self.sha256,
            "file_sha256": dict(self.file_sha256),
            "species": list(self.species),
            "loader_versions": dict(self.loader_versions),
            "precision": self.precision,
            "device": self.device,
        }


@dataclass(frozen=True)
class Potential:
    """A loaded candidate: its identity and its ASE calculator."""

    info: PotentialInfo
    calculator: Any

    @property
    def name(self) -> str:
        return self.info.name


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
        """matscipy's Manybody, silencing a harmless numpy warning of its Tersoff form.

        A molecule or cluster (no periodic direction) without a cell, which matscipy's
        neighbour list cannot invert, is computed in a box around it (pbc stays False, so
        the box changes nothing) and gets no stress: it has no volume."""

        def calculate(self, atoms=None, properties=("energy",), *args, **kwargs):
            vacuum = atoms is not None and not any(atoms.pbc) and atoms.cell.rank < 3
            if vacuum:
                boxed = atoms.copy()
                boxed.cell = atoms.positions.max(axis=0) - atoms.positions.min(axis=0) + 1.0
                properties = [p for p in properties if p != "stress"]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="'where' used without 'out'")
                super().calculate(boxed if vacuum else atoms, properties, *args, **kwargs)
            if vacuum:
                self.atoms = atoms.copy()
                self.results.pop("stress", None)

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

def gap_model(xml_path: Path) -> tuple[list[Path], tuple[str, ...]]:
    """The XML and the sparseX files it refers to, and the species of its descriptors;
    raises PotentialSpecError if the XML is malformed, not a GAP, has a non-numeric or
    inconsistent attribute, or a sparseX file is missing, changed or short (see
    :func:`pytest_mlpval.gap_xml.check_gap_xml`)."""
    try:
        files, root = check_gap_xml(xml_path)
    except GapModelError as exc:
        raise PotentialSpecError(str(exc)) from exc
    return files, species_of_descriptors(root)


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
    make: Callable[..., Any] | None  # make(device="cpu"); None: only a hook can load it


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


def parse_potential_spec(raw: str, base_dir: str | os.PathLike[str] | None = None,
                         probe: bool = True) -> _Parsed:
    """Resolve a spec without loading the model in this process.

    Raises :class:`PotentialSpecError` for a missing or malformed model file, a GAP
    without quippy installed, a module or factory that cannot be found. With ``probe``
    a GAP is loaded once in a subprocess first (see :mod:`pytest_mlpval.loader_probe`;
    about 2-3 s for the bundled GAP, once per model content and quippy version): a GAP
    that quippy cannot load, or that ends the process, is a PotentialSpecError quoting
    what quippy printed, not a dead pytest.
    """
    name, spec = _split_name(raw)
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    if spec.lower() in BUILTINS:
        key = spec.lower()
        form, params_name, _citation = BUILTINS[key]
        info = PotentialInfo(name or key, spec, "builtin", (), _builtin_digest(key),
                             species=("Si",), loader_versions=_versions("builtin"))
        return _Parsed(info, lambda device="cpu": _matscipy_manybody(form, params_name)[0])

    scheme, colon, rest = spec.partition(":")
    family, arg = _family_of(spec)
    # a file ending alone does not claim a file whose family is not installed: a
    # pytest_mlpval_load_potential hook may know it (load_potential names the extra)
    if family is not None and (spec in FAMILIES or scheme in FAMILIES
                               or not _missing_modules(family)
                               or not (base / spec).is_file()):
        return _parse_family(name, spec, family, arg, base)
    if colon and scheme and len(scheme) > 1:
        loaders = _entry_point_loaders()
        if scheme in loaders:
            ep = loaders[scheme]
            module = getattr(ep, "module", None)
            info = _file_backed_info(name or _stem(rest), spec, f"entry-point:{scheme}",
                                     base / rest, _versions(None, module))
            arg = info.files[0] if info.files else rest  # a file: its absolute path
            return _Parsed(info, lambda device="cpu": _call_with_device(ep.load(), device, arg))

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
            combined_digest(digests), digests, species, _versions("gap"),
        )
        resolved = path.resolve()
        if probe:
            _probe_gap(info, resolved)
        return _Parsed(info, lambda device="cpu": _load_gap(resolved))

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
        info = PotentialInfo(name or attr.split(".")[-1], spec, "factory",
                             loader_versions=_versions(None, module_name))
        return _Parsed(info, lambda device="cpu": _call_with_device(
            _factory(module_name, attr, spec), device))

    if path.exists():
        return _Parsed(_file_backed_info(name or _stem(spec), spec, "hook", path), None)
    raise PotentialSpecError(
        f"{spec!r} is not a built-in ({', '.join(sorted(BUILTINS))}), an existing model "
        "file, a 'package.module:factory' or a registered loader "
        f"(entry points: {', '.join(sorted(_entry_point_loaders())) or 'none'})",
        unknown=True,
    )


def _family_of(spec: str) -> tuple[Family | None, str]:
    """The family of :mod:`pytest_mlpval.loaders` a spec names, and its argument: by
    name (``chgnet``), as ``NAME:ARG``, or by the ending of a model file."""
    if spec in FAMILIES:
        return FAMILIES[spec], ""
    scheme, colon, rest = spec.partition(":")
    if colon and scheme in FAMILIES:
        return FAMILIES[scheme], rest
    family = family_for_file(spec)
    return (family, spec) if family is not None and not colon else (None, "")


def _missing_modules(family: Family) -> list[str]:
    return [m for m in family.modules if importlib.util.find_spec(m) is None]


def _needs(spec: str, family: Family, missing: list[str]) -> str:
    return (f"{spec!r} (a {family.name} model) needs {' and '.join(missing)}, not "
            f"installed here: {install_hint(family.extra)}")


def _parse_family(name: str | None, spec: str, family: Family, arg: str,
                  base: Path) -> _Parsed:
    """A family's spec: its package installed (else the extra to install), its model
    identified (files hashed, species where the files tell) without loading it."""
    missing = _missing_modules(family)
    if missing:
        raise PotentialSpecError(_needs(spec, family, missing))
    if family.takes_argument and not arg:
        raise PotentialSpecError(f"{spec!r}: {family.name} needs a model: "
                                 f"{family.name}:PATH")
    try:
        identity = family.identify(arg, base)
    except LoaderArgumentError as exc:
        raise PotentialSpecError(f"{spec!r}: {exc}") from exc
    digests = {f.name: sha256_file(f) for f in identity.files}
    if not arg:
        default = family.name
    elif (base / arg).is_file():
        default = _stem(arg)
    else:  # a pretrained model's name: chgnet:0.2.0 is chgnet-0.2.0
        default = f"{family.name}-{arg}"
    if family.name == "lammps" and not arg.endswith(".lammps"):  # inline commands
        style = re.search(r"pair_style\s+([^\s;]+)", arg)
        default = "lammps-" + (style.group(1).replace("/", "-") if style else "model")
    info = PotentialInfo(
        name or default.removesuffix(".nequip"), spec, f"entry-point:{family.name}",
        tuple(str(f) for f in identity.files), combined_digest(digests, identity.text),
        digests, identity.species, loader_probe.distribution_versions(family.modules))
    return _Parsed(info, lambda device="cpu": family.load(identity.argument, device=device))


def default_name(raw: str) -> str:
    """The display name of a spec: its ``NAME=`` or the stem of the spec."""
    name, spec = _split_name(raw)
    return name or _stem(spec)


def _stem(text: str) -> str:
    return Path(text).stem or text


def _file_backed_info(name: str, spec: str, loader: str, path: Path,
                      versions: Mapping[str, str] | None = None) -> PotentialInfo:
    """Identity of a potential whose model may be the file ``path`` (hashed if it is;
    no hash otherwise)."""
    versions = dict(versions or {})
    if not path.is_file():
        return PotentialInfo(name, spec, loader, loader_versions=versions)
    digests = {path.name: sha256_file(path)}
    return PotentialInfo(name, spec, loader, (str(path.resolve()),),
                         combined_digest(digests), digests, loader_versions=versions)


def _versions(loader: str | None, module: str | None = None) -> dict[str, str]:
    return loader_probe.loader_versions(loader or "", module)


# --- probes: load once in a subprocess, so a loader that ends the process cannot end ours

def _probe_gap(info: PotentialInfo, xml_path: Path) -> None:
    key = (f"gap:{info.sha256}:{sorted(info.loader_versions.items())}:"
           f"{sys.executable}:{sys.version}")
    result = loader_probe.probe(str(xml_path), xml_path.parent, info.species, key=key,
                                disk=True)
    if result.timed_out:
        warnings.warn(f"{xml_path}: loading it in a subprocess first (a probe) "
                      f"{result.describe()}; loading it here without that check",
                      RuntimeWarning, stacklevel=3)
    elif not result.ok:
        raise PotentialSpecError(
            f"{xml_path}: quippy cannot load this GAP: loading it in a subprocess first "
            f"(a probe) {result.describe()}")


def _probe_code(parsed: _Parsed, base_dir: str | os.PathLike[str] | None) -> None:
    """Probe a factory or entry point: load it and compute one energy in a subprocess.
    A probe that dies is a PotentialLoadError; one whose loader raised is not (loading
    here raises the same exception, with the usual message)."""
    info = parsed.info
    base = os.fspath(base_dir) if base_dir is not None else os.getcwd()
    key, disk = None, False
    if info.sha256 is not None:  # a family's model: once per content and versions
        key = (f"{info.loader}:{info.sha256}:{sorted(info.loader_versions.items())}:"
               f"{sys.executable}:{sys.version}")
        disk = True
    elif info.loader == "factory":  # the same module file: the same probe, whatever the cwd
        module_spec = importlib.util.find_spec(info.spec.partition(":")[0])
        origin = getattr(module_spec, "origin", None)
        if origin and os.path.isfile(origin):
            key = f"factory:{info.spec}:{origin}:{os.stat(origin).st_mtime_ns}"
    species = info.species if len(info.species) <= 4 else ()  # a universal model: Si
    result = loader_probe.probe(info.spec, base, species, key=key, disk=disk)
    if result.timed_out:
        warnings.warn(f"{info.spec!r}: loading it in a subprocess first (a probe) "
                      f"{result.describe()}; loading it here without that check",
                      RuntimeWarning, stacklevel=3)
    elif result.died:
        raise PotentialLoadError(
            f"{info.spec!r}: loading it and computing one energy in a subprocess first "
            f"(a probe) {result.describe()}\n(loaded in this process it would have ended "
            "the test run)")


def _factory(module_name: str, attr: str, spec: str) -> Callable[..., Any]:
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise PotentialLoadError(f"{spec!r}: {exc}") from exc
    if not callable(target):
        raise PotentialLoadError(f"{spec!r}: {attr} is not callable")
    return target


def _call_with_device(function: Callable[..., Any], device: str, *args: Any) -> Any:
    """``function(*args)``, with ``device=device`` if it has a ``device`` parameter."""
    try:
        takes_device = "device" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        takes_device = False
    return function(*args, device=device) if takes_device else function(*args)


def _identified(info: PotentialInfo, calc: Any, base_dir: str | os.PathLike[str] | None,
                ) -> PotentialInfo:
    """``info`` completed after loading: the species and precision the calculator
    declares or shows, and for a factory (or entry point) without a content hash the
    identity it declares (``mlpval_identity`` on the calculator or the factory)."""
    species = info.species or tuple(getattr(calc, "mlpval_species", ()) or ())
    info = replace(info, species=species, precision=detect_precision(calc))
    code_defined = info.loader == "factory" or info.loader.startswith("entry-point:")
    if info.sha256 is not None or not code_defined:
        return info
    declared = getattr(calc, "mlpval_identity", None)
    if declared is None and info.loader == "factory":
        module_name, _, attr = info.spec.partition(":")
        declared = getattr(_factory(module_name, attr, info.spec), "mlpval_identity", None)
    if declared is None:
        return info
    try:
        files, digests, digest = declared_identity(declared, info.spec, base_dir or ".")
    except LoaderArgumentError as exc:
        raise PotentialLoadError(str(exc)) from exc
    return replace(info, files=files, file_sha256=digests, sha256=digest)


def is_calculator(obj: Any) -> bool:
    """Duck-typed ASE calculator check (ASE's own ``Calculator`` or any object honouring it)."""
    if callable(getattr(obj, "get_property", None)):
        return True
    return callable(getattr(obj, "calculate", None)) and hasattr(obj, "results")


def load_potential(
    raw: str,
    base_dir: str | os.PathLike[str] | None = None,
    fallback: Callable[[str], Any] | None = None,
    probe: bool = True,
    device: str = "cpu",
) -> Potential:
    """Parse ``raw`` and load its calculator.

    ``device`` (``"cpu"``, ``"cuda"``, ...) is passed to the loaders and factories that
    take a ``device`` argument and recorded in ``info.device``.

    ``fallback(spec)`` is asked first (e.g. the pytest hook) and may return a
    calculator or ``None``. With ``probe`` a GAP, factory or entry point is first
    loaded in a subprocess that also computes one energy (once per process; see
    :mod:`pytest_mlpval.loader_probe`): one that ends that process (a Fortran
    ``exit``, a segfault, ``os._exit``) is an error here instead of the end of this
    process. Built-ins and hook-loaded potentials are not probed.
    """
    name, spec = _split_name(raw)
    if fallback is not None:
        info = _file_backed_info(name or _stem(spec), spec, "hook",
                                 Path(base_dir or ".") / spec)
        calc = fallback(info.files[0] if info.files else spec)  # a file: its absolute path
        if calc is not None:
            if is_calculator(calc):
                info = _identified(info, calc, base_dir)
            return _checked(Potential(replace(info, device=device), calc))
    parsed = parse_potential_spec(raw, base_dir, probe=probe)
    if parsed.make is None:
        family = family_for_file(spec)
        if family is not None and _missing_modules(family):
            raise PotentialLoadError(_needs(spec, family, _missing_modules(family)))
        raise PotentialLoadError(
            f"{spec!r} exists but no loader accepted it (known: GAP '.xml', {', '.join(SUFFIXES)}; "
            "register one with the pytest_mlpval_load_potential hook or an entry point "
            f"in {ENTRY_POINT_GROUP!r})"
        )
    code_defined = parsed.info.loader == "factory" or parsed.info.loader.startswith(
        "entry-point:")
    if probe and code_defined:
        _probe_code(parsed, base_dir)
    try:
        calc = parsed.make(device)
    except PotentialLoadError:
        raise
    except Exception as exc:  # the model's own loader failed: say which spec
        raise PotentialLoadError(f"loading {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    info = parsed.info
    if code_defined:  # now the calculator's own package (and torch...) can be named
        module = parsed.info.spec.partition(":")[0] if info.loader == "factory" else None
        versions = {**info.loader_versions,
                    **loader_probe.loader_versions(
                        info.loader, module, calculator=calc,
                        frameworks=info.loader.removeprefix("entry-point:") not in FAMILIES)}
        info = replace(info, loader_versions=dict(sorted(versions.items())))
    if is_calculator(calc):
        info = _identified(info, calc, base_dir)
    return _checked(Potential(replace(info, device=device), calc))


def _checked(potential: Potential) -> Potential:
    calc = potential.calculator
    if not is_calculator(calc):
        raise PotentialLoadError(
            f"{potential.info.spec!r} gave {type(calc).__name__} {calc!r:.60}, "
            "not an ASE calculator (an object with get_property/calculate)"
        )
    return potential
