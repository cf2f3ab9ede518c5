"""Who a record judges: a candidate potential, a dataset or a fitting recipe (plain
library, no pytest).

Every record of a run carries ``subject``::

    {"kind": "candidate", "name": "gap_si", "identity": {"sha256": "..."}}
    {"kind": "dataset", "name": "train", "identity": {"sha256": "...", ...}}
    {"kind": "recipe", "name": "fit_gap.py", "identity": {"fitter": {...}, "sha256": ...}}

- A **candidate** is one potential (``--potential``): errors, physics, structure search,
  MD and properties judge it. Its records keep ``potential`` (the potential's identity).
- A **dataset** (the training set) is judged by the leakage and applicability checks;
  they run once per run, not once per candidate. ``potential`` is None.
- A **recipe** (a fitting command or callable with its settings) is judged by
  cross-validation and learning curves; once per recipe. ``potential`` is None.

A candidate is *linked* to the recipe that made it only when the user says so (ini
``mlpval_fitted_by = gap_si=fit_gap.py``, or ``--mlpval-fitted-by=gap_si=fit_gap.py``):
then its subject says ``fitted_by``, the recipe's ``fits``, and the summary puts the
candidate's test-set errors beside the recipe's cross-validation errors
(:func:`side_by_side_rows`). Nothing else ever uses a recipe's numbers as a candidate's.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["KINDS", "candidate_subject", "dataset_subject", "recipe_subject",
           "default_recipe_name", "subject_of", "subject_label", "subject_brief",
           "is_candidate", "parse_links", "linked_recipe", "side_by_side_rows",
           "LINK_HEADERS"]

#: the kinds of subject, in the order a summary lists them
KINDS = ("candidate", "dataset", "recipe")


def candidate_subject(info: Any, fitted_by: str | None = None) -> dict[str, Any]:
    """The subject of a candidate's records: name and content hash (``info`` a
    PotentialInfo or its ``as_dict()``), with the recipe it is linked to, if any."""
    data = info if isinstance(info, Mapping) else info.as_dict()
    subject = {"kind": "candidate", "name": data["name"],
               "identity": {"sha256": data.get("sha256")}}
    if fitted_by is not None:
        subject["fitted_by"] = fitted_by
    return subject


def dataset_subject(reference: Any = None, name: str | None = None) -> dict[str, Any]:
    """The subject of a dataset's records: a ReferenceSet (name, sha256, label keys), or
    only a ``name`` while the data is not read yet (a test that skips before)."""
    if reference is None:
        return {"kind": "dataset", "name": name or "no-dataset", "identity": {}}
    data = reference.as_dict() if hasattr(reference, "as_dict") else dict(reference)
    identity = {k: data[k] for k in ("sha256", "keys", "index", "n_structures")
                if k in data}
    return {"kind": "dataset", "name": name or data["name"], "identity": identity}


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def default_recipe_name(fitter: Any) -> str:
    """A recipe's name when the user gives none: the script a command runs (the first
    argument after a Python interpreter, ``fit_gap.py``), else the command's program
    (``gap_fit``); a callable's qualified name (``mymodule.fit``)."""
    argv = getattr(fitter, "argv", None)
    if argv:
        program = os.path.basename(argv[0])
        if program.startswith("python") and len(argv) > 1 and not argv[1].startswith("-"):
            return os.path.basename(argv[1])
        return program
    return getattr(fitter, "name", None) or repr(fitter)


def recipe_subject(fitter: Any, name: str | None = None,
                   fits: Sequence[str] = ()) -> dict[str, Any]:
    """The subject of a recipe's records: a fitter of :mod:`pytest_mlpval.protocols.fitting.fit`
    (its identity: the command's arguments and model file name, or the callable's name
    and source digest; its time limit) under ``name`` (default
    :func:`default_recipe_name`), with the candidates linked to it (``fits``)."""
    identity = {"fitter": fitter.identity(),
                "settings": {"timeout_s": getattr(fitter, "timeout_s", None)}}
    identity["sha256"] = _digest(identity["fitter"])
    subject = {"kind": "recipe", "name": name or default_recipe_name(fitter),
               "identity": identity, "command": fitter.describe()}
    if fits:
        subject["fits"] = list(fits)
    return subject


def subject_of(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A record's subject; a record without one (an older JSON file) is its potential's
    candidate record."""
    subject = rec.get("subject")
    if isinstance(subject, Mapping):
        return dict(subject)
    potential = rec.get("potential")
    if isinstance(potential, Mapping):
        return candidate_subject(potential)
    return {"kind": "candidate", "name": str(potential), "identity": {}}


def subject_label(rec_or_subject: Mapping[str, Any]) -> str:
    """How a subject is named in tables and baseline keys: a candidate by its name
    (``gap_si``), others with their kind (``recipe:fit_gap.py``, ``dataset:train``)."""
    subject = (rec_or_subject if rec_or_subject.get("kind") in KINDS
               and "name" in rec_or_subject else subject_of(rec_or_subject))
    if subject["kind"] == "candidate":
        return str(subject["name"])
    return f"{subject['kind']}:{subject['name']}"


def subject_brief(subject: Mapping[str, Any]) -> dict[str, str]:
    """``{"kind", "name"}``: what a test report carries (user property
    ``mlpval_subject``)."""
    return {"kind": subject["kind"], "name": subject["name"]}


def is_candidate(rec: Mapping[str, Any]) -> bool:
    return subject_of(rec)["kind"] == "candidate"


def parse_links(lines: Iterable[str], where: str) -> dict[str, str]:
    """``{candidate: recipe}`` from ``CANDIDATE=RECIPE`` lines (a candidate's
    ``--potential`` name, or its sha256 or a prefix of at least 12 hex digits, and a
    recipe's name); ValueError naming the line at fault."""
    links: dict[str, str] = {}
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        candidate, sep, recipe = (part.strip() for part in text.partition("="))
        if not sep or not candidate or not recipe:
            raise ValueError(f"{where}: {text!r}: expected CANDIDATE=RECIPE, e.g. "
                             "gap_si=fit_gap.py (the --potential name of the candidate and "
                             "the name of the recipe that fitted it)")
        if links.get(candidate, recipe) != recipe:
            raise ValueError(f"{where}: candidate {candidate!r} is linked to two recipes, "
                             f"{links[candidate]!r} and {recipe!r}")
        links[candidate] = recipe
    return links


#: the shortest sha256 prefix a link may name a candidate by
MIN_SHA256_PREFIX = 12


def linked_recipe(links: Mapping[str, str], name: str, sha256: str | None) -> str | None:
    """The recipe a candidate is linked to: by its ``--potential`` name, else by its
    content hash (a link's key of at least 12 hex digits that starts the candidate's
    sha256: the model under any name); None if it is not linked."""
    if name in links:
        return links[name]
    if sha256:
        for key, recipe in links.items():
            digits = key.lower()
            hexadecimal = all(c in "0123456789abcdef" for c in digits)
            if (hexadecimal and len(digits) >= MIN_SHA256_PREFIX
                    and sha256.lower().startswith(digits)):
                return recipe
    return None


#: columns of the side-by-side table of a candidate and the recipe that fitted it
LINK_HEADERS = ["candidate", "fitted by", "subject", "dataset", "n", "E RMSE", "F RMSE",
                "S RMSE"]


def side_by_side_rows(records: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    """Rows putting each linked candidate's error records (subset ``all``) beside those of
    the recipe that fitted it (its cross-validation errors); only for candidates whose
    subject says ``fitted_by`` and a recipe of that name that ran. Energies in
    meV/atom, forces in eV/Å, stresses in GPa."""
    errors = [r for r in records if r.get("kind", "errors") == "errors"
              and r.get("subset") == "all"]
    candidates: dict[str, dict[str, Any]] = {}
    recipes: dict[str, list[Mapping[str, Any]]] = {}
    for rec in errors:
        subject = subject_of(rec)
        if subject["kind"] == "candidate" and subject.get("fitted_by"):
            candidates.setdefault(subject["name"], {"recipe": subject["fitted_by"],
                                                    "records": {}})
            candidates[subject["name"]]["records"].setdefault(rec["dataset"]["name"], rec)
        elif subject["kind"] == "recipe":
            recipes.setdefault(subject["name"], []).append(rec)
    rows = []
    for name, entry in candidates.items():
        recipe = entry["recipe"]
        if recipe not in recipes:
            continue
        seen: dict[str, Mapping[str, Any]] = {}
        for rec in recipes[recipe]:
            seen.setdefault(rec["dataset"]["name"], rec)
        for label, group in ((name, entry["records"]), (f"recipe:{recipe}", seen)):
            for dataset, rec in group.items():
                rows.append([name, recipe, label, dataset, rec.get("n_structures"),
                             *_errors(rec["metrics"])])
    return rows


def _errors(metrics: Mapping[str, Any]) -> list[Any]:
    def value(name: str, scale: float = 1.0) -> Any:
        v = metrics.get(name)
        if isinstance(v, Mapping):  # a JSON document's {"value", "unit"}
            v = v.get("value")
        return float("nan") if v is None else scale * float(v)

    return [value("energy_rmse", 1000.0), value("force_rmse"), value("stress_rmse")]
