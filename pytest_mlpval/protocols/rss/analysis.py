"""Analysis of random structure search minima: basins, diamond-like counts, distances
between energy-volume distributions, failure counts, and the energy-volume figure.

Plain library (no pytest). The tests of the tutorial's Fig. 8 (Morrow, Gardner and
Deringer, J. Chem. Phys. 158, 121501 (2023)): the energy-volume distribution of the
minima; the presence of a low-volume basin (sh-like, high-pressure minima of Si, present
for GAP-18, absent for Stillinger-Weber); the count of diamond-like minima (GAP-18 112,
SW 55 out of 10,000).

Energies are *relative*: to the lowest usable minimum of the same search, or to a
reference crystal relaxed with the same candidate (``relative_to="diamond"``, robust to a
spurious deep minimum); enthalpies per atom at the search pressure (energies at zero
pressure). So two potentials with different energy zeros compare. Only usable minima
(``converged`` or ``not_converged``) count; failed and exploded structures are reported
by :func:`assert_failures_at_most`.
Every ``assert_*`` raises :class:`~pytest_mlpval.assertions.MlpvalAssertionError` with
a plain-text table and returns what it measured when it passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from pytest_mlpval.assertions import MlpvalAssertionError, format_table

__all__ = ["energy_volume", "Basin", "find_basin", "assert_basin", "assert_no_basin",
           "assert_diamond_like_fraction", "DistributionDistance", "distribution_distance",
           "assert_distributions_close", "assert_failures_at_most", "energy_volume_figure",
           "gaps", "report_figure"]

#: rows of the minima tables in failure messages
ROWS = 8


def energy_volume(result: Any, relative_to: str = "lowest"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(relative_energy_eV, volume_per_atom_A3, index)`` of the usable minima: enthalpy
    per atom (eV/atom) minus the lowest minimum's (``relative_to="lowest"``) or minus that
    of a reference crystal of the search relaxed with the candidate (e.g.
    ``relative_to="diamond"``, robust to a spurious deep minimum), volume per atom (Å^3),
    structure index."""
    usable = [m for m in result.usable if math.isfinite(m.enthalpy_per_atom_eV)]
    h = np.array([m.enthalpy_per_atom_eV for m in usable], dtype=float)
    v = np.array([m.volume_per_atom_A3 for m in usable], dtype=float)
    index = np.array([m.index for m in usable], dtype=int)
    return h - _zero(result, relative_to, h), v, index


def gaps(result: Any) -> set[str]:
    """Metrics of an :class:`~pytest_mlpval.protocols.rss.result.RssResult` that are NaN
    with nothing to count: ``diamond_like_fraction`` and ``lowest_minus_diamond_eV`` when
    no diamond reference was asked for, the timings when no relaxation recorded its time
    (or took a step). NaN because no minimum is usable (every structure failed or exploded) or
    because the candidate could not relax the diamond reference is a fault, not a gap."""
    out = set()
    if "diamond" not in result.references:
        out |= {"diamond_like_fraction", "lowest_minus_diamond_eV"}
    timed = [m for m in result.minima if m.total_seconds > 0]
    if not timed:
        out |= {"seconds_per_structure", "calculator_fraction"}
    if not any(math.isfinite(m.cpu_seconds) for m in timed):
        out.add("cpu_share")
    if not sum(m.n_steps or 0 for m in timed):
        out.add("seconds_outside_calculator_per_step")
    return out


def _zero(result: Any, relative_to: str, h: np.ndarray) -> float:
    if relative_to == "lowest":
        return float(h.min()) if len(h) else 0.0
    ref = result.references.get(relative_to)
    if ref is None:
        raise ValueError(f"relative_to={relative_to!r}: not 'lowest' nor a reference crystal "
                         f"of this search ({', '.join(result.references) or 'none'})")
    if "error" in ref:
        raise ValueError(f"relative_to={relative_to!r}: that reference failed to relax "
                         f"({ref['error']})")
    return float(ref.get("enthalpy_per_atom_eV", ref["energy_per_atom_eV"]))


def _who(result: Any) -> str:
    return (f"potential {result.potential!r}, {len(result.minima)} structures of "
            f"{result.settings.formula} (seed {result.settings.seed})")


def _status_line(result: Any) -> str:
    return "statuses: " + ", ".join(f"{s} {c}" for s, c in result.counts.items())


def _minima_table(result: Any, indices: Any, rows: int = ROWS,
                  relative_to: str = "lowest") -> list[str]:
    de, v, index = energy_volume(result, relative_to)
    where = {int(i): k for k, i in enumerate(index)}
    refs = list(result.references)
    by_index = {m.index: m for m in result.minima}
    out = []
    for i in list(indices)[:rows]:
        m, k = by_index[int(i)], where.get(int(i))
        out.append([m.index, m.n_atoms, m.status, v[k] if k is not None else math.nan,
                    de[k] if k is not None else math.nan,
                    *[m.similarity.get(r, math.nan) for r in refs]])
    return format_table(["index", "atoms", "status", "V (Å^3/atom)", "dE (eV/atom)",
                         *[f"sim {r}" for r in refs]], out)


def _volume_histogram(result: Any, basin: "Basin") -> list[str]:
    de, v, _ = energy_volume(result, basin.relative_to)
    if not len(v):
        return ["(no usable minima)"]
    lo, hi = basin.volume_per_atom_A3
    window = basin.energy_window_eV
    edges = np.arange(math.floor(min(v.min(), lo)), math.ceil(max(v.max(), hi)) + 1.0)
    rows = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (v >= a) & (v < b)
        inside = "*" if b > lo and a < hi else ""
        rows.append([f"{a:g}-{b:g}{inside}", int(sel.sum()), int((sel & (de <= window)).sum()),
                     float(de[sel].min()) if sel.any() else math.nan])
    return format_table(["V (Å^3/atom)", "minima", f"dE <= {window:g}",
                         "lowest dE (eV/atom)"], rows) + [
        f"(* overlaps the basin's volumes; dE relative to {_zero_name(basin.relative_to)})"]


def _zero_name(relative_to: str, article: str = "the ") -> str:
    return f"{article}lowest minimum" if relative_to == "lowest" \
        else f"{relative_to} (relaxed with the candidate)"


@dataclass(frozen=True)
class Basin:
    """Minima in a volume range within an energy window.

    Attributes
    ----------
    volume_per_atom_A3 : (float, float)
    energy_window_eV : float
        Upper bound of the relative enthalpy per atom, eV/atom.
    relative_to : str
        ``"lowest"`` (the search's lowest minimum) or a reference crystal's name.
    count : int
        Minima in the basin.
    indices : tuple of int
        Their structure indices, lowest energy first.
    n_in_volume : int
        Minima in the volume range whatever their energy.
    lowest_relative_eV : float
        Lowest relative energy in the volume range (NaN if none).
    """

    volume_per_atom_A3: tuple[float, float]
    energy_window_eV: float
    relative_to: str
    count: int
    indices: tuple[int, ...] = field(repr=False)
    n_in_volume: int
    lowest_relative_eV: float


def find_basin(result: Any, volume_per_atom_A3: tuple[float, float],
               energy_window_eV: float = 0.5, relative_to: str = "lowest") -> Basin:
    """The :class:`Basin` of ``result``: usable minima with a volume per atom in
    ``volume_per_atom_A3`` (Å^3/atom, inclusive) and an enthalpy per atom at most
    ``energy_window_eV`` (eV/atom) above ``relative_to`` (see :func:`energy_volume`)."""
    try:
        lo, hi = (float(x) for x in volume_per_atom_A3)
    except (TypeError, ValueError):
        raise ValueError(f"volume_per_atom_A3 must be a (min, max) pair, got "
                         f"{volume_per_atom_A3!r}") from None
    if not lo <= hi:
        raise ValueError(f"volume_per_atom_A3 {volume_per_atom_A3!r} is inverted")
    if not math.isfinite(energy_window_eV):
        raise ValueError(f"energy_window_eV must be finite, got {energy_window_eV!r}")
    de, v, index = energy_volume(result, relative_to)
    in_volume = (v >= lo) & (v <= hi)
    sel = in_volume & (de <= energy_window_eV)
    order = np.argsort(de[sel], kind="stable")
    return Basin((lo, hi), float(energy_window_eV), relative_to, int(sel.sum()),
                 tuple(int(i) for i in index[sel][order]), int(in_volume.sum()),
                 float(de[in_volume].min()) if in_volume.any() else math.nan)


def _basin_message(result: Any, basin: Basin, verb: str, limit: str) -> list[str]:
    lo, hi = basin.volume_per_atom_A3
    lowest = result.lowest
    where = (f"{lowest.enthalpy_per_atom_eV:.4f} eV/atom at {lowest.volume_per_atom_A3:.2f} "
             "Å^3/atom") if lowest else "none"
    return [f"{verb}: {basin.count} minima with {lo:g}-{hi:g} Å^3/atom at most "
            f"{basin.energy_window_eV:g} eV/atom above {_zero_name(basin.relative_to)} "
            f"({limit}); {basin.n_in_volume} in that volume range at any energy (lowest "
            f"there: {basin.lowest_relative_eV:+.3f} eV/atom)",
            f"{_who(result)}; lowest minimum {where}; {_status_line(result)}", ""]


def assert_basin(result: Any, *, volume_per_atom_A3: tuple[float, float],
                 energy_window_eV: float = 0.5, min_count: int = 1,
                 relative_to: str = "lowest") -> Basin:
    """The search found at least ``min_count`` minima with a volume per atom in
    ``volume_per_atom_A3`` (Å^3) at most ``energy_window_eV`` (eV/atom) above
    ``relative_to`` (its lowest minimum, or a reference crystal such as ``"diamond"``);
    e.g. Si's low-volume sh-like basin: ``(12, 17)`` (DFT sh and beta-Sn at 15.1-15.4,
    diamond at 20.4 Å^3/atom)."""
    __tracebackhide__ = True
    basin = find_basin(result, volume_per_atom_A3, energy_window_eV, relative_to)
    if basin.count < min_count:
        lines = _basin_message(result, basin, "basin missing", f"need at least {min_count}")
        lines += ["minima per volume bin:", *_volume_histogram(result, basin)]
        raise MlpvalAssertionError("\n".join(lines))
    return basin


def assert_no_basin(result: Any, *, volume_per_atom_A3: tuple[float, float],
                    energy_window_eV: float = 0.5, max_count: int = 0,
                    relative_to: str = "lowest") -> Basin:
    """At most ``max_count`` minima in the basin (see :func:`assert_basin`): e.g. no
    spurious low-density minima below diamond, ``volume_per_atom_A3=(30, inf),
    energy_window_eV=0, relative_to="diamond"``."""
    __tracebackhide__ = True
    basin = find_basin(result, volume_per_atom_A3, energy_window_eV, relative_to)
    if basin.count > max_count:
        lines = _basin_message(result, basin, "unexpected basin", f"allowed {max_count}")
        lines += ["minima in the basin, lowest energy first:",
                  *_minima_table(result, basin.indices, relative_to=relative_to)]
        raise MlpvalAssertionError("\n".join(lines))
    return basin


def assert_diamond_like_fraction(result: Any, *, min_fraction: float | None = None,
                                 min_count: int | None = None,
                                 max_fraction: float | None = None) -> float:
    """Bounds on the diamond-like minima (mean SOAP similarity to the candidate's ideal
    diamond above ``settings.diamond_cutoff``): their fraction of all structures and/or
    their count. Returns the fraction."""
    __tracebackhide__ = True
    if min_fraction is None and min_count is None and max_fraction is None:
        raise ValueError("assert_diamond_like_fraction: give min_fraction, min_count or "
                         "max_fraction")
    ref = result.references.get("diamond")
    if ref is None or "error" in ref:
        why = "not among settings.references" if ref is None else ref["error"]
        raise MlpvalAssertionError(f"no diamond-like count for {_who(result)}: the diamond "
                                   f"reference is missing ({why})")
    fraction, count = result.diamond_like_fraction, result.n_diamond_like
    checks = [("fraction", fraction, min_fraction, ">="), ("count", count, min_count, ">="),
              ("fraction", fraction, max_fraction, "<=")]
    rows, failed = [], False
    for name, value, limit, op in checks:
        if limit is None:
            continue
        ok = value >= limit if op == ">=" else value <= limit
        failed |= not ok
        rows.append([name, float(value), f"{op} {limit:g}", "ok" if ok else "FAIL"])
    if failed:
        sims = result.similarities("diamond")
        order = [result.minima[k].index for k in np.argsort(-np.nan_to_num(sims, nan=-1.0))]
        lines = [f"diamond-like minima: {count} of {len(result.minima)} ({fraction:.3g}), "
                 f"similarity cutoff {result.settings.diamond_cutoff:g}; {_who(result)}; "
                 f"{_status_line(result)}", "",
                 *format_table(["quantity", "value", "limit", "status"], rows), "",
                 "minima most similar to diamond:", *_minima_table(result, order)]
        raise MlpvalAssertionError("\n".join(lines))
    return fraction


@dataclass(frozen=True)
class DistributionDistance:
    """1-D Wasserstein (earth mover's) distances between the minima of two searches
    (``scipy.stats.wasserstein_distance``): of the energies relative to each search's
    lowest minimum (eV/atom) and of the volumes per atom (Å^3/atom). Zero for identical
    distributions; for two shifted copies, the shift."""

    energy_eV: float
    volume_A3: float
    n_candidate: int
    n_reference: int

    def metrics(self) -> dict[str, float]:
        return {"energy_distance_eV": self.energy_eV, "volume_distance_A3": self.volume_A3}

    def units(self) -> dict[str, str]:
        return {"energy_distance_eV": "eV/atom", "volume_distance_A3": "Å^3/atom"}


def distribution_distance(candidate: Any, reference: Any, relative_to: str = "lowest"
                          ) -> DistributionDistance:
    """:class:`DistributionDistance` between two searches' usable minima, energies
    relative to each search's ``relative_to`` (see :func:`energy_volume`); ``ValueError``
    if either has none."""
    from scipy.stats import wasserstein_distance

    ce, cv, _ = energy_volume(candidate, relative_to)
    re_, rv, _ = energy_volume(reference, relative_to)
    for name, values in (("candidate", cv), ("reference", rv)):
        if not len(values):
            raise ValueError(f"the {name} search has no usable minima")
    return DistributionDistance(float(wasserstein_distance(ce, re_)),
                                float(wasserstein_distance(cv, rv)), len(cv), len(rv))


def assert_distributions_close(candidate: Any, reference: Any, *,
                               max_energy_eV: float | None = None,
                               max_volume_A3: float | None = None,
                               relative_to: str = "lowest") -> DistributionDistance:
    """The energy-volume distribution of ``candidate``'s minima is within Wasserstein
    distances ``max_energy_eV`` (eV/atom) and ``max_volume_A3`` (Å^3/atom) of
    ``reference``'s (see :class:`DistributionDistance`)."""
    __tracebackhide__ = True
    if max_energy_eV is None and max_volume_A3 is None:
        raise ValueError("assert_distributions_close: give max_energy_eV and/or "
                         "max_volume_A3")
    try:
        dist = distribution_distance(candidate, reference, relative_to)
    except ValueError as exc:
        raise MlpvalAssertionError(f"cannot compare the distributions: {exc}") from None
    rows, failed = [], False
    for name, value, limit, unit in (("energy", dist.energy_eV, max_energy_eV, "eV/atom"),
                                     ("volume", dist.volume_A3, max_volume_A3, "Å^3/atom")):
        if limit is None:
            continue
        failed |= not value <= limit
        rows.append([name, value, limit, unit, "ok" if value <= limit else "FAIL"])
    if failed:
        stats = []
        for name, res in (("candidate", candidate), ("reference", reference)):
            de, v, _ = energy_volume(res, relative_to)
            stats.append([f"{name} {res.potential}", len(v), *np.percentile(de, [10, 50, 90]),
                          *np.percentile(v, [10, 50, 90])])
        lines = [f"energy-volume distributions differ: {candidate.potential!r} vs "
                 f"{reference.potential!r} (1-D Wasserstein distances)", "",
                 *format_table(["quantity", "distance", "limit", "unit", "status"], rows), "",
                 *format_table(["search", "minima", "dE p10", "dE p50", "dE p90", "V p10",
                                "V p50", "V p90"], stats),
                 f"(dE: eV/atom above each search's {_zero_name(relative_to, '')}; V: "
                 "Å^3/atom)"]
        raise MlpvalAssertionError("\n".join(lines))
    return dist


def assert_failures_at_most(result: Any, *, max_failed: int = 0,
                            max_exploded: int | None = 0,
                            max_not_converged: int | None = None) -> dict[str, int]:
    """At most ``max_failed`` structures whose relaxation failed (calculator raised or
    returned NaN, worker died), ``max_exploded`` exploded and ``max_not_converged`` at the
    step limit (None: no limit). Returns the counts by status."""
    __tracebackhide__ = True
    counts = result.counts
    limits = {"failed": max_failed, "exploded": max_exploded,
              "not_converged": max_not_converged}
    bad = [s for s, limit in limits.items() if limit is not None and counts[s] > limit]
    if bad:
        rows = [[s, counts[s], "" if limits.get(s) is None else limits[s],
                 "FAIL" if s in bad else "ok"] for s in counts]
        shown = [m for m in result.minima if m.status in bad][:ROWS]
        errors = [[m.index, m.status, (m.error or "")[:110]] for m in shown]
        lines = [f"{', '.join(f'{counts[s]} {s}' for s in bad)} of {len(result.minima)} "
                 f"structures; {_who(result)}", "",
                 *format_table(["status", "count", "limit", "check"], rows), "",
                 "first of them:", *format_table(["index", "status", "error"], errors)]
        raise MlpvalAssertionError("\n".join(lines))
    return counts


class _Points:
    """The minima of a search as shipped in its ``report_data``."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.n_diamond_like = data["n_diamond_like"]


def report_figure(per_potential: Mapping[str, Mapping[str, Any]]):
    """The report's energy-volume figure from ``RssResult.report_data()`` of each
    potential (energies relative to each candidate's own diamond where it relaxed)."""
    zero = {d["relative_to"] for d in per_potential.values()}
    return energy_volume_figure({name: _Points(d) for name, d in per_potential.items()},
                                relative_to=zero.pop() if len(zero) == 1 else "lowest")


def energy_volume_figure(results: Mapping[str, Any], energy_max_eV: float | None = 1.0,
                         relative_to: str = "lowest"):
    """Energy-volume scatter of the minima of each search (one colour per name), with
    the histograms of volume per atom (top) and of relative energy (right). Energies
    relative to each search's ``relative_to`` (see :func:`energy_volume`); minima above
    ``energy_max_eV`` are left out (None: all). Returns a matplotlib ``Figure``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4))
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    right = fig.add_subplot(grid[1, 1], sharey=ax)
    for name, result in results.items():
        if isinstance(result, _Points):
            de = np.asarray(result.data["energy_eV"], dtype=float)
            v = np.asarray(result.data["volume_A3"], dtype=float)
        else:
            de, v, _ = energy_volume(result, relative_to)
        if energy_max_eV is not None:
            keep = de <= energy_max_eV
            de, v = de[keep], v[keep]
        label = f"{name} ({len(v)} minima, {result.n_diamond_like} diamond-like)"
        ax.scatter(v, de, s=10, alpha=0.6, label=label)
        if len(v):
            top.hist(v, bins=30, histtype="step")
            right.hist(de, bins=30, histtype="step", orientation="horizontal")
    ax.set_xlabel("volume (Å$^3$/atom)")
    ax.set_ylabel(f"energy above {_zero_name(relative_to, '')} (eV/atom)")
    top.set_ylabel("minima")
    right.set_xlabel("minima")
    top.tick_params(labelbottom=False)
    right.tick_params(labelleft=False)
    if results:
        ax.legend(fontsize="small")
    top.set_title("Random structure search minima")
    return fig
