"""Whether errors apply: training-set leakage and the domain of applicability, by SOAP.

Plain library (no pytest).

For every atom of a structure, its **similarity to the training set** is the largest SOAP
kernel k = (p.q / |p||q|)^zeta between its environment and any training environment
centred on the same element (:mod:`pytest_mlpval.descriptors`; k = 1: an identical
environment is in the training set). The training descriptor matrix is computed once
(:func:`training_domain`) and compared in chunks of bounded memory.

- **Leakage** (:func:`check_leakage`): a test set too close to the training set flatters
  the model (the tutorial's "training example data leakage", Morrow, Gardner and Deringer,
  J. Chem. Phys. 158, 121501 (2023)). A test structure has a *duplicate* in the training
  set when a training structure of the same composition and size is an exact copy
  (same cell and positions within ``position_tol_A``, same atom order) or a *near*
  duplicate: every atom's environment matches one of that structure's environments with a
  kernel >= ``duplicate_similarity`` (default 0.9999; candidates are first chosen by the
  structure-averaged SOAP kernel >= 0.999, at most 20 per test structure). Calibration
  (SI_SOAP, zeta=4, mlearn Si): rattling a structure by 0.001 / 0.01 / 0.03 Å gives a
  matched per-atom kernel of 0.999998 / 0.9998 / 0.998; three of the 25 mlearn test
  structures (strained crystals) have SOAP-identical training structures (kernel 1: the
  same strain up to symmetry), the nearest 300 K AIMD snapshots reach 0.9998, the other
  test structures 0.94-0.999. The defaults of :func:`assert_no_leakage` flag a test set
  where more than 5% of the structures have a duplicate, or where the median over test
  structures of the lowest per-atom similarity exceeds 0.9999 (a test set of training
  structures scores 1).
- **Applicability**
  (:func:`~pytest_mlpval.protocols.domain.applicability.check_applicability`): the
  fraction of a user's atoms whose similarity to the training set is below ``cutoff``
  (default 0.95) is *outside the training domain*. Calibration (mlearn Si, SI_SOAP): the
  mlearn test set against the mlearn training set: no atom below 0.976; liquid snapshots
  (AIMD-NVT at 2530-3374 K) against the Elastic group alone (strained crystals): 86-97%
  of the atoms below 0.95, mean similarity 0.84-0.88.
- **Errors against similarity**
  (:func:`pytest_mlpval.protocols.domain.errors.errors_by_similarity`): force-component
  errors of atoms and per-atom energy errors of structures, binned by
  similarity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table
from pytest_mlpval.descriptors import SI_SOAP, SoapSettings, soap_descriptors
from pytest_mlpval.errors import SettingsError
from pytest_mlpval.protocols.base import Result, Settings
from pytest_mlpval.threads import one_blas_thread

__all__ = ["DUPLICATE_SIMILARITY", "OUTSIDE_CUTOFF", "TrainingDomain", "training_domain",
           "DomainSimilarity", "similarity_to_training", "Duplicate", "same_geometry",
           "find_duplicates", "duplicate_table", "quantiles", "LeakageSettings",
           "LeakageResult", "check_leakage", "assert_no_leakage", "report_figure"]

#: per-atom kernel at or above which a matched structure is a near duplicate
DUPLICATE_SIMILARITY = 0.9999
#: structure-averaged kernel a training structure needs to be checked as a duplicate
PREFILTER_SIMILARITY = 0.999
#: training structures checked per test structure (the most similar first)
MAX_CANDIDATES = 20
#: per-atom similarity below which an atom is outside the training domain
OUTSIDE_CUTOFF = 0.95
#: memory of one chunk of the kernel matrix, in bytes
CHUNK_BYTES = 64 * 2**20


def _frames(data: Any) -> list[Any]:
    """ASE Atoms of a ReferenceSet, LabelledData, a single Atoms or a sequence."""
    if hasattr(data, "reference") and hasattr(data, "frames"):
        data = data.reference
    if hasattr(data, "structures") and hasattr(data, "config_types"):
        return list(data.structures)
    if hasattr(data, "get_positions"):
        return [data]
    frames = list(data)
    if not frames:
        raise ValueError("no structures given")
    for i, atoms in enumerate(frames):
        if not hasattr(atoms, "get_positions"):
            raise TypeError(f"structure {i} is {type(atoms).__name__}, not ASE Atoms")
    return frames


def quantiles(values: np.ndarray, n: int) -> list[float]:
    """At most ``n`` evenly spaced quantiles of ``values`` (all of them when fewer): the
    similarity distribution a report figure draws."""
    values = np.sort(np.asarray(values, dtype=float))
    if len(values) > n:
        values = np.quantile(values, np.linspace(0.0, 1.0, n))
    return values.tolist()


def _name(data: Any, default: str) -> str:
    name = getattr(getattr(data, "reference", data), "name", None)
    return name if isinstance(name, str) and name else default


def _config_types(data: Any, frames: Sequence[Any]) -> tuple[str, ...]:
    if hasattr(data, "reference") and hasattr(data, "frames"):
        data = data.reference
    if hasattr(data, "config_types"):
        return tuple(data.config_types)
    return tuple(str(a.info.get("config_type", "default")) for a in frames)


@dataclass(frozen=True)
class TrainingDomain:
    """SOAP environments of a training set, computed once.

    Attributes
    ----------
    name : str
    settings : SoapSettings
    species : tuple of str
        Elements of the descriptor (every structure compared must stay within them).
    environments : ndarray, shape (n_environments, n_features)
        Row-normalised per-atom power spectra of all training structures.
    environments32 : ndarray
        The same in single precision (to find the most similar environment fast).
    numbers : ndarray of int
        Atomic number of each environment's centre.
    offsets : ndarray of int, shape (n_structures + 1,)
        Rows of structure i are ``offsets[i]:offsets[i+1]``.
    structure_vectors : ndarray, shape (n_structures, n_features)
        Structure-averaged SOAP vectors.
    frames : tuple of ase.Atoms
        The training structures (for the exact-copy check).
    config_types : tuple of str
    """

    name: str
    settings: Any
    species: tuple[str, ...]
    environments: np.ndarray = field(repr=False)
    environments32: np.ndarray = field(repr=False)
    numbers: np.ndarray = field(repr=False)
    offsets: np.ndarray = field(repr=False)
    structure_vectors: np.ndarray = field(repr=False)
    frames: tuple[Any, ...] = field(repr=False)
    config_types: tuple[str, ...] = field(repr=False)

    @property
    def n_structures(self) -> int:
        return len(self.frames)

    @property
    def n_environments(self) -> int:
        return len(self.environments)


def training_domain(train: Any, settings: Any = None, name: str | None = None,
                    species: Sequence[str] | None = None) -> TrainingDomain:
    """The :class:`TrainingDomain` of ``train`` (ReferenceSet, LabelledData or ASE
    Atoms); ``species`` adds elements absent from it (default: its own). ``name``
    defaults to the dataset's name, else ``"training"``."""
    if isinstance(train, TrainingDomain):
        return train
    settings = settings or SI_SOAP
    name = name or _name(train, "training")
    frames = _frames(train)
    found = {s for a in frames for s in a.get_chemical_symbols()}
    names = tuple(sorted(found | set(species or ()) | set(settings.species or ())))
    per_structure = soap_descriptors(frames, settings, names)
    environments = _readonly(np.concatenate(per_structure))
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in per_structure])]).astype(int)
    vectors = np.array([_unit(p.mean(axis=0)) for p in per_structure])
    numbers = np.concatenate([a.numbers for a in frames]).astype(int)
    return TrainingDomain(name, settings, names, environments,
                          _readonly(environments.astype(np.float32)), _readonly(numbers),
                          _readonly(offsets), _readonly(vectors),
                          tuple(a.copy() for a in frames), _config_types(train, frames))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


def _descriptors(frames: Sequence[Any], domain: TrainingDomain) -> list[np.ndarray]:
    for i, atoms in enumerate(frames):
        extra = set(atoms.get_chemical_symbols()) - set(domain.species)
        if extra:
            raise ValueError(
                f"structure {i} contains {sorted(extra)}, absent from the training set "
                f"{domain.name!r} ({', '.join(domain.species)}): outside its domain by "
                "definition; build the domain with species=... to compare such structures")
    return soap_descriptors(frames, domain.settings, domain.species)


def _max_kernel(p: np.ndarray, numbers: np.ndarray, domain: TrainingDomain) -> np.ndarray:
    """Per-row max kernel of ``p`` against the domain's environments with the same
    centre element (0 where the element has no environment), in chunks of bounded
    memory. The best environment is found with a single-precision product (half the
    time of the dominant cost); its kernel is then computed in double precision, so the
    value differs from the exact maximum by float32 rounding of near-ties only (measured
    at most 1.5e-6 on the mlearn test set against its training set)."""
    env, env_numbers = domain.environments, domain.numbers
    best = np.zeros(len(p))
    chunk = max(1, CHUNK_BYTES // (4 * max(1, len(env))))
    for z in np.unique(numbers):
        same = env_numbers == z
        theirs = env if same.all() else env[same]
        if len(theirs) == 0:
            continue
        screen = domain.environments32 if same.all() else domain.environments32[same]
        mine = np.flatnonzero(numbers == z)
        ours = p if len(mine) == len(p) else p[mine]
        ours32 = ours.astype(np.float32)
        values = np.empty(len(ours))
        for start in range(0, len(ours), chunk):
            stop = start + chunk
            choice = (ours32[start:stop] @ screen.T).argmax(axis=1)
            values[start:stop] = np.einsum("ij,ij->i", ours[start:stop], theirs[choice])
        best[mine] = values
    return np.clip(best, 0.0, 1.0) ** domain.settings.zeta


@dataclass(frozen=True)
class DomainSimilarity:
    """Per-atom similarity of structures to a training set.

    Attributes
    ----------
    training : str
    per_atom : tuple of ndarray
        One array per structure: each atom's largest kernel to a training environment.
    mean, min : ndarray, shape (n_structures,)
        Per-structure mean and minimum of ``per_atom``.
    n_atoms : ndarray of int
    config_types : tuple of str
    """

    training: str
    per_atom: tuple[np.ndarray, ...] = field(repr=False)
    mean: np.ndarray = field(repr=False)
    min: np.ndarray = field(repr=False)
    n_atoms: np.ndarray = field(repr=False)
    config_types: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.per_atom)

    def all_atoms(self) -> np.ndarray:
        return np.concatenate(self.per_atom)


def similarity_to_training(structures: Any, domain: Any) -> DomainSimilarity:
    """Per-atom similarity of ``structures`` (ReferenceSet, LabelledData or ASE Atoms) to
    the training set ``domain`` (a :class:`TrainingDomain` or training data, SI_SOAP)."""
    domain = training_domain(domain)
    frames = _frames(structures)
    return _similarity(frames, _descriptors(frames, domain), domain,
                       _config_types(structures, frames))


def _similarity(frames: Sequence[Any], per_structure: Sequence[np.ndarray],
                domain: TrainingDomain, config_types: tuple[str, ...]) -> DomainSimilarity:
    p = np.concatenate(per_structure)
    numbers = np.concatenate([a.numbers for a in frames]).astype(int)
    sims = _max_kernel(p, numbers, domain)
    split = np.split(sims, np.cumsum([len(a) for a in frames])[:-1])
    per_atom = tuple(_readonly(s) for s in split)
    return DomainSimilarity(domain.name, per_atom,
                            _readonly([s.mean() for s in per_atom]),
                            _readonly([s.min() for s in per_atom]),
                            _readonly(np.array([len(a) for a in frames], dtype=int)),
                            config_types)


@dataclass(frozen=True)
class Duplicate:
    """A test structure with a copy in the training set.

    Attributes
    ----------
    test_index, train_index : int
    kind : str
        ``"exact"`` (same cell and positions) or ``"near"`` (every environment matched).
    similarity : float
        Lowest per-atom kernel of the test structure to the training structure's
        environments (1 for an exact copy).
    structure_similarity : float
        Kernel of the structure-averaged SOAP vectors.
    """

    test_index: int
    train_index: int
    kind: str
    similarity: float
    structure_similarity: float


def same_geometry(a: Any, b: Any, tol_A: float) -> bool:
    """Whether ASE Atoms ``a`` and ``b`` are the same structure: same elements in the
    same order, same periodicity, cells within ``tol_A`` (Å) and every atom within
    ``tol_A`` of its counterpart (across periodic boundaries)."""
    if len(a) != len(b) or not np.array_equal(a.numbers, b.numbers) \
            or not np.array_equal(a.pbc, b.pbc):
        return False
    if not np.allclose(a.cell.array, b.cell.array, atol=tol_A):
        return False
    delta = a.positions - b.positions
    if np.any(a.pbc) and abs(np.linalg.det(a.cell.array)) > 1e-9:
        frac = np.linalg.solve(a.cell.array.T, delta.T).T
        frac[:, a.pbc] -= np.round(frac[:, a.pbc])
        delta = frac @ a.cell.array
    return bool(np.max(np.linalg.norm(delta, axis=1)) <= tol_A)


def find_duplicates(structures: Any, domain: Any,
                    duplicate_similarity: float = DUPLICATE_SIMILARITY,
                    position_tol_A: float = 1e-4) -> tuple[Duplicate, ...]:
    """The closest training copy of every test structure that has one (module
    docstring), exact copies first; at most one :class:`Duplicate` per test structure."""
    domain = training_domain(domain)
    frames = _frames(structures)
    return _find_duplicates(frames, _descriptors(frames, domain), domain,
                            duplicate_similarity, position_tol_A)


def _find_duplicates(frames: Sequence[Any], per_structure: Sequence[np.ndarray],
                     domain: TrainingDomain, duplicate_similarity: float,
                     position_tol_A: float) -> tuple[Duplicate, ...]:
    if not 0 < duplicate_similarity <= 1:
        raise ValueError(f"duplicate_similarity must be in (0, 1], got {duplicate_similarity}")
    zeta = domain.settings.zeta
    compositions = [tuple(sorted(a.numbers)) for a in domain.frames]
    found = []
    with one_blas_thread():  # many small matrix products
        for i, (atoms, p) in enumerate(zip(frames, per_structure)):
            structure_k = np.clip(domain.structure_vectors @ _unit(p.mean(axis=0)), 0, 1)
            structure_k = structure_k ** zeta
            mine = tuple(sorted(atoms.numbers))
            candidates = [int(j) for j in np.argsort(-structure_k)[:4 * MAX_CANDIDATES]
                          if structure_k[j] >= PREFILTER_SIMILARITY
                          and compositions[j] == mine][:MAX_CANDIDATES]
            exact = next((j for j in candidates
                          if same_geometry(atoms, domain.frames[j], position_tol_A)), None)
            if exact is not None:
                found.append(Duplicate(i, exact, "exact", 1.0, float(structure_k[exact])))
                continue
            if not candidates:
                continue
            rows = np.concatenate([np.arange(domain.offsets[j], domain.offsets[j + 1])
                                   for j in candidates])
            k = p @ domain.environments[rows].T
            k[atoms.numbers[:, None] != domain.numbers[rows][None, :]] = -1.0
            starts = np.cumsum([0] + [domain.offsets[j + 1] - domain.offsets[j]
                                      for j in candidates[:-1]])
            per_candidate = np.maximum.reduceat(k, starts, axis=1).min(axis=0)
            best = int(np.argmax(per_candidate))
            value = float(np.clip(per_candidate[best], 0, 1) ** zeta)
            if value >= duplicate_similarity:
                j = candidates[best]
                found.append(Duplicate(i, j, "near", value, float(structure_k[j])))
    return tuple(found)


def duplicate_table(result: Any, rows: int = 10) -> list[str]:
    """Table lines of the first ``rows`` duplicates of a :class:`LeakageResult`: test and
    training index and config_type, kind and lowest per-atom kernel."""
    table = [[d.test_index, result.test_config_types[d.test_index], d.train_index,
              result.train_config_types[d.train_index], d.kind, f"{d.similarity:.6f}"]
             for d in result.duplicates[:rows]]
    return format_table(["test", "config_type", "train", "config_type", "kind",
                         "min atom kernel"], table)


def report_figure(per_potential: Any) -> Any:
    """Cumulative distributions of the per-atom similarity to a training set (from
    ``report_data`` of leakage and applicability results), with each run's cutoff."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for name, data in per_potential.items():
        values = np.asarray(data["similarity"], dtype=float)
        fraction = np.linspace(0.0, 1.0, len(values))
        line, = ax.plot(values, fraction, label=f"{name}: {data.get('title', '')}")
        ax.axvline(data["cutoff"], color=line.get_color(), ls="--", lw=0.8)
    ax.set_xlabel("per-atom SOAP similarity to the training set")
    ax.set_ylabel("fraction of atoms below")
    ax.legend(fontsize=7)
    return fig


@dataclass(frozen=True)
class LeakageSettings(Settings):
    """How :func:`check_leakage` compares a test set with a training set.

    Attributes
    ----------
    soap : SoapSettings or None
        The descriptor (None: ``SI_SOAP``; not used when the training set is given as a
        ready :class:`TrainingDomain`, which has its own).
    duplicate_similarity : float
        Per-atom kernel in (0, 1] at or above which a matched structure is a near
        duplicate.
    position_tol_A : float
        Cell and position tolerance (Å) of an exact copy.
    """

    VERSION: ClassVar[int] = 1

    soap: SoapSettings | None = None
    duplicate_similarity: float = DUPLICATE_SIMILARITY
    position_tol_A: float = 1e-4

    def __post_init__(self) -> None:
        if not 0 < self.duplicate_similarity <= 1:
            raise SettingsError(f"duplicate_similarity must be in (0, 1], got "
                                f"{self.duplicate_similarity}")


@dataclass(frozen=True)
class LeakageResult(Result):
    """How close a test set is to its training set.

    Attributes
    ----------
    training, test : str
    similarity : DomainSimilarity
        Per-atom similarity of the test structures to the training set.
    duplicates : tuple of Duplicate
    duplicate_similarity : float
    test_config_types, train_config_types : tuple of str
    """

    training: str
    test: str
    similarity: DomainSimilarity = field(repr=False)
    duplicates: tuple[Duplicate, ...]
    duplicate_similarity: float
    test_config_types: tuple[str, ...] = field(repr=False, default=())
    train_config_types: tuple[str, ...] = field(repr=False, default=())

    figure = staticmethod(report_figure)

    def metrics(self) -> dict[str, float]:
        """``n_test_structures``, ``n_exact_duplicates``, ``n_near_duplicates``,
        ``duplicate_fraction`` (test structures with a duplicate), and over test structures
        the ``median_min_similarity`` (of each structure's lowest per-atom similarity),
        ``median_mean_similarity`` and the overall ``min_similarity``."""
        n = len(self.similarity)
        exact = sum(d.kind == "exact" for d in self.duplicates)
        return {"n_test_structures": float(n), "n_exact_duplicates": float(exact),
                "n_near_duplicates": float(len(self.duplicates) - exact),
                "duplicate_fraction": len(self.duplicates) / n,
                "median_min_similarity": float(np.median(self.similarity.min)),
                "median_mean_similarity": float(np.median(self.similarity.mean)),
                "min_similarity": float(np.min(self.similarity.min))}

    def units(self) -> dict[str, str]:
        return {name: "" for name in self.metrics()}

    def report_data(self, max_points: int = 2000) -> dict[str, Any]:
        """Quantiles of the test atoms' similarity to the training set, drawn by
        :attr:`figure`."""
        return {"title": f"{self.test} against {self.training}",
                "cutoff": self.duplicate_similarity,
                "similarity": quantiles(self.similarity.all_atoms(), max_points)}

    def as_dict(self) -> dict[str, Any]:
        return {"training": self.training, "test": self.test, "metrics": self.metrics(),
                "duplicate_similarity": self.duplicate_similarity,
                "duplicates": [asdict(d) for d in self.duplicates],
                "per_structure_min_similarity": self.similarity.min.tolist(),
                "per_structure_mean_similarity": self.similarity.mean.tolist()}


def check_leakage(train: Any, test: Any, settings: LeakageSettings | None = None, *,
                  test_name: str = "test") -> LeakageResult:
    """Similarity of ``test`` to ``train`` (data or a :class:`TrainingDomain`) and the
    test structures with a copy in the training set (``settings``: default
    :class:`LeakageSettings`); ``test_name`` names a test set that has no name."""
    settings = LeakageSettings() if settings is None else settings
    duplicate_similarity = settings.duplicate_similarity
    domain = training_domain(train, settings.soap)
    frames = _frames(test)
    per_structure = _descriptors(frames, domain)
    similarity = _similarity(frames, per_structure, domain, _config_types(test, frames))
    duplicates = _find_duplicates(frames, per_structure, domain, duplicate_similarity,
                                  settings.position_tol_A)
    return LeakageResult(domain.name, _name(test, test_name),
                         similarity, duplicates, duplicate_similarity,
                         similarity.config_types, domain.config_types)


def assert_no_leakage(result: LeakageResult, *, max_duplicate_fraction: float = 0.05,
                      max_median_min_similarity: float | None = 0.9999) -> None:
    """Fail when more than ``max_duplicate_fraction`` of the test structures have a copy
    in the training set, or when the median of the per-structure lowest similarity
    exceeds ``max_median_min_similarity`` (None: not checked)."""
    __tracebackhide__ = True
    m = result.metrics()
    checks = [("duplicate_fraction", m["duplicate_fraction"], max_duplicate_fraction)]
    if max_median_min_similarity is not None:
        checks.append(("median_min_similarity", m["median_min_similarity"],
                       max_median_min_similarity))
    for name, _, limit in checks:
        if not 0 <= float(limit) <= 1:
            raise ValueError(f"assert_no_leakage: {name} limit must be in [0, 1], got {limit}")
    failed = [c for c in checks if not c[1] <= c[2]]
    if not failed:
        return
    lines = [f"test set {result.test!r} is too close to training set {result.training!r}: "
             f"{int(m['n_exact_duplicates'])} exact and {int(m['n_near_duplicates'])} near "
             f"duplicates among {int(m['n_test_structures'])} test structures", ""]
    lines += format_table(["metric", "value", "limit", "status"],
                          [(n, v, lim, "FAIL" if not v <= lim else "ok")
                           for n, v, lim in checks])
    if result.duplicates:
        lines += ["", f"duplicates (kernel >= {result.duplicate_similarity}):"]
        lines += duplicate_table(result)
    raise MlpvalAssertionError("\n".join(lines))
