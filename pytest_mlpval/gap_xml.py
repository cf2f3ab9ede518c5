"""Static checks of a GAP model (XML and sparseX files) before quippy reads it.

Plain library (no pytest). quippy parses the XML with Fortran list-directed reads: a
non-numeric attribute (``n_sparseX="abc"``, ``signal_variance="ten"``, ``Z="Si"``) ends
the whole process with ``Fortran runtime error`` (exit status 2, nothing Python can
catch), and a count that disagrees with the data (``n_sparseX``, ``dimensions``) corrupts
the heap (abort) or silently gives garbage energies. :func:`check_gap_xml` finds these
faults in Python first and raises :class:`GapModelError` naming the file, the element and
the value.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from xml.etree import ElementTree

from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.units import chemical_symbol

__all__ = ["GapModelError", "check_gap_xml", "species_of_descriptors"]

# Fortran list-directed numbers: 20, -.795, 1.0E+000, 1.0D0 (and IEEE specials for reals)
_INT = re.compile(r"^\s*[+-]?\d+\s*$")
_REAL = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eEdD][+-]?\d+)?\s*$")
_LOGICAL = re.compile(r"^\s*\.?[tf]", re.IGNORECASE)  # Fortran reads T, .true., False...

# element -> attribute -> kind, as quippy reads them (checked when present)
_ATTRIBUTES: dict[str, dict[str, str]] = {
    "e0": {"Z": "int", "value": "real"},
    "GAP_data": {"do_core": "logical"},
    "gpSparse": {"n_coordinate": "int+"},
    "gpCoordinates": {
        "dimensions": "int+", "n_sparseX": "int+", "n_permutations": "int+",
        "covariance_type": "int", "signal_variance": "real", "signal_mean": "real",
        "zeta": "real", "sparsified": "logical",
    },
    "sparseX": {"i": "int+", "alpha": "real", "sparseCutoff": "real"},
    "permutation": {"i": "int+"},
}
# element -> kind of every whitespace-separated word of its text
_TEXTS = {"theta": "real", "permutation": "int+"}
# descriptor keys whose values are numbers (``cutoff=abc`` fails deep in quippy)
_DESCRIPTOR_KEYS = {
    **dict.fromkeys(("cutoff", "cutoff_transition_width", "atom_sigma", "zeta", "delta",
                     "theta_uniform", "central_weight"), "real"),
    **dict.fromkeys(("l_max", "n_max", "n_sparse", "n_species"), "int"),
    **dict.fromkeys(("Z", "Z1", "Z2", "Z_center"), "Z"),
}
# sparseX files up to this size are parsed number by number (larger: counted only)
PARSE_LIMIT_BYTES = 64 << 20


class GapModelError(MlpvalError, ValueError):
    """A GAP model that quippy could not read safely (message names file and fault)."""


def _is(kind: str, text: str) -> bool:
    if kind == "real":  # finite too: 1e400 reads as infinity and gives NaN energies
        return bool(_REAL.match(text)) and math.isfinite(float(text.lower().replace("d", "e")))
    if kind == "logical":
        return bool(_LOGICAL.match(text))
    if not _INT.match(text):
        return False
    if kind == "Z":
        return 1 <= int(text) <= 118
    return kind == "int" or int(text) >= 1


_KIND_WORDS = {"int": "an integer", "int+": "a positive integer", "real": "a finite number",
               "logical": "T or F", "Z": "an atomic number (1-118)"}


def _where(element: ElementTree.Element) -> str:
    label = element.get("label") or element.get("i")
    return f"<{element.tag}{f' {label}' if label else ''}>"


def _check_numbers(xml_path: Path, root: ElementTree.Element) -> None:
    for element in root.iter():
        for attr, kind in _ATTRIBUTES.get(element.tag, {}).items():
            value = element.get(attr)
            if value is not None and not _is(kind, value):
                unreadable = kind == "logical" or not (_REAL if kind == "real"
                                                       else _INT).match(value)
                raise GapModelError(
                    f"{xml_path}: {_where(element)} {attr}={value!r} is not "
                    f"{_KIND_WORDS[kind]}" + (" (quippy would end the process reading it)"
                                              if unreadable else ""))
        kind = _TEXTS.get(element.tag)
        if kind is not None:
            for word in (element.text or "").split():
                if not _is(kind, word):
                    raise GapModelError(f"{xml_path}: {_where(element)} holds {word!r}, not "
                                        f"{_KIND_WORDS[kind]}")
        if element.tag == "descriptor":
            _check_descriptor(xml_path, element.text or "")


def _check_descriptor(xml_path: Path, text: str) -> None:
    if not text.split():
        raise GapModelError(f"{xml_path}: a <descriptor> is empty")
    for key, value in re.findall(r"(\w+)\s*=\s*([^\s{}]+)", text):
        kind = _DESCRIPTOR_KEYS.get(key)
        if kind is not None and not _is(kind, value):
            raise GapModelError(f"{xml_path}: <descriptor> {text.split()[0]}: {key}={value!r} "
                                f"is not {_KIND_WORDS[kind]}")
    for match in re.finditer(r"species_Z\s*=\s*\{([^}]*)\}", text):
        if not all(_is("Z", z) for z in match.group(1).split()):
            raise GapModelError(f"{xml_path}: <descriptor> species_Z={{{match.group(1)}}} "
                                "holds something other than atomic numbers (1-118)")


def _check_structure(xml_path: Path, root: ElementTree.Element) -> None:
    label_of_potential = None
    for element in root.iter("Potential"):
        match = re.search(r"\blabel\s*=\s*(\S+)", element.get("init_args") or "")
        if match:
            label_of_potential = match.group(1)
    params = [root] if root.tag == "GAP_params" else list(root.iter("GAP_params"))
    if label_of_potential is not None and params and all(
            p.get("label") not in (None, label_of_potential) for p in params):
        raise GapModelError(
            f"{xml_path}: <Potential> asks for GAP label={label_of_potential} but the "
            f"<GAP_params> are labelled {', '.join(repr(p.get('label')) for p in params)}")
    for sparse in root.iter("gpSparse"):
        coordinates = sparse.findall("gpCoordinates")
        declared = sparse.get("n_coordinate")
        if declared is not None and int(declared) != len(coordinates):
            raise GapModelError(f"{xml_path}: <gpSparse> n_coordinate={declared} but it holds "
                                f"{len(coordinates)} <gpCoordinates>")
        for coordinate in coordinates:  # counts that disagree: heap corruption in quippy
            for attr, child in (("n_sparseX", "sparseX"), ("n_permutations", "permutation")):
                declared, found = coordinate.get(attr), coordinate.findall(child)
                if declared is not None and found and int(declared) != len(found):
                    raise GapModelError(
                        f"{xml_path}: {_where(coordinate)} {attr}={declared} but it holds "
                        f"{len(found)} <{child}> elements")


def _check_sparse_file(xml_path: Path, coordinate: ElementTree.Element, path: Path) -> None:
    """The md5 recorded in the XML, and n_sparseX x dimensions numbers in the file."""
    data = path.read_bytes()
    where = f"{xml_path}: {_where(coordinate)}: sparseX file {path.name}"
    md5 = coordinate.get("sparseX_md5sum")
    if md5 and hashlib.md5(data).hexdigest() != md5.strip().lower():
        raise GapModelError(f"{where} does not match the md5 sum recorded in the XML "
                            f"({md5}): the file was changed or truncated")
    n_sparse, dimensions = coordinate.get("n_sparseX"), coordinate.get("dimensions")
    if n_sparse is None or dimensions is None:
        return
    expected = int(n_sparse) * int(dimensions)
    words = data.split()
    if len(words) != expected:
        raise GapModelError(f"{where} holds {len(words)} numbers, the XML says "
                            f"n_sparseX x dimensions = {n_sparse} x {dimensions} = {expected}")
    if len(data) <= PARSE_LIMIT_BYTES:
        bad = _first_bad_number(words)
        if bad is not None:
            raise GapModelError(f"{where}: value {bad + 1} is {words[bad][:40]!r}, not a "
                                "finite number")


def _first_bad_number(words: list[bytes]) -> int | None:
    """Index of the first word that is not a finite number (Fortran spelling allowed)."""
    import numpy as np

    try:
        finite = np.isfinite(np.array(words).astype(float))  # fast path: C conversion
    except ValueError:  # a Fortran 1.0D0 or a non-number: word by word
        finite = [_is("real", word.decode(errors="replace")) for word in words]
    bad = np.flatnonzero(~np.asarray(finite, dtype=bool))
    return int(bad[0]) if bad.size else None


def check_gap_xml(xml_path: Path) -> tuple[list[Path], ElementTree.Element]:
    """Check the GAP model at ``xml_path``; return its files (XML first, then the sparseX
    files it names, found beside it) and the parsed XML root. Raises
    :class:`GapModelError` for malformed XML, a file that is not a GAP, a non-numeric
    attribute, inconsistent counts, a missing, changed or short sparseX file."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as exc:
        raise GapModelError(f"{xml_path} is not well-formed XML: {exc}") from exc
    if root.find(".//GAP_params") is None and root.tag != "GAP_params":
        raise GapModelError(f"{xml_path} is XML but not a GAP model (no <GAP_params> "
                            "element)")
    _check_numbers(xml_path, root)
    _check_structure(xml_path, root)
    files = [xml_path]
    for element in root.iter():
        sparse = element.get("sparseX_filename")
        if sparse:
            sparse_path = xml_path.parent / sparse
            if not sparse_path.is_file():
                raise GapModelError(f"{xml_path} refers to {sparse!r}, which is not beside "
                                    f"it (looked for {sparse_path})")
            _check_sparse_file(xml_path, element, sparse_path)
            files.append(sparse_path)
    return files, root


def species_of_descriptors(root: ElementTree.Element) -> tuple[str, ...]:
    """Chemical symbols named by the descriptors of a GAP XML (``Z=``, ``Z1=``,
    ``species_Z={...}``)."""
    numbers: set[int] = set()
    for element in root.iter("descriptor"):
        text = element.text or ""
        for match in re.finditer(r"\b(?:Z|Z1|Z2|Z_center)\s*=\s*(\d+)", text):
            numbers.add(int(match.group(1)))
        for match in re.finditer(r"species_Z\s*=\s*\{([^}]*)\}", text):
            numbers.update(int(z) for z in match.group(1).split())
    return tuple(chemical_symbol(z) for z in sorted(numbers))
