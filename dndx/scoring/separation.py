"""Particle identification along a track: dN/dx, dE/dx and the separation power.

Per track, from its cells:

* **dN/dx** = sum of the cells' cluster counts / sum of their path lengths
  (clusters per cm); the path is the truth's, as a track fit would give it;
* **dE/dx**, the classical reference = the truncated mean of the cells'
  charge per path length: the mean of the lowest ``keep_fraction`` of the
  cells, which cuts the long tail of large clusters and high gains.

Per set of tracks (one particle at one momentum): the mean ``mu`` and the
resolution ``sigma`` (standard deviation) of the per-track values, and
``sigma / mu``. For two particles a and b at one momentum the separation power is

    S = |mu_a - mu_b| / ((sigma_a + sigma_b) / 2).

Counting every primary cluster exactly gives the limit: the true counts are
Poisson, so ``S_Poisson`` is S of the true counts of the same tracks, and a
method is judged by ``S / S_Poisson``.

**Uncertainties** are statistical, from the tracks, by the delta method with
each track's empirical influence (no Gaussian assumption). In a set of ``n``
tracks with values ``x_i``, track ``i`` moves the mean by ``u_i = x_i - mu`` and
the standard deviation by ``v_i = ((x_i - mu)^2 - sigma^2) / (2 sigma)``. A
statistic ``T`` of the sets' means and deviations has the influence
``t_i = dT/dmu u_i + dT/dsigma v_i`` and the variance

    var T = sum over sets of  sum_i t_i^2 / (n (n - 1)),

which is ``sigma^2 / n`` for the mean itself. For S, with
``D = mu_a - mu_b`` and ``W = (sigma_a + sigma_b) / 2``:
``dS/dmu_a = -dS/dmu_b = sign(D) / W`` and ``dS/dsigma_a = dS/dsigma_b = -S / (2 W)``;
for Gaussian tracks this is
``var S = (sigma_a^2/n_a + sigma_b^2/n_b) / W^2 + S^2 (sigma_a^2/n_a + sigma_b^2/n_b) / (8 W^2)``.
For a ratio ``R = S / S_ref`` of two methods on the same tracks the influence of a
track is ``R (t_i / S - t_ref_i / S_ref)``, so the two methods' common
fluctuations cancel as they should.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Estimate",
    "Spread",
    "counted_tracks",
    "mean_separation_ratio",
    "particle_pairs",
    "resolution_table",
    "selection_rows",
    "separation_power",
    "separation_ratio",
    "separation_table",
    "spread",
    "track_dndx",
    "track_table",
    "truncated_mean",
]


@dataclass(frozen=True)
class Estimate:
    """A figure with its statistical uncertainty (one standard deviation)."""

    value: float
    error: float


@dataclass(frozen=True)
class Spread:
    """The distribution of one per-track quantity over a set of tracks.

    Attributes:
        n_tracks: tracks in the set.
        mean: mean over the tracks, with ``mean_error``.
        sigma: standard deviation over the tracks (the resolution), with
            ``sigma_error``.
        resolution: ``sigma / mean``, with ``resolution_error``.
    """

    n_tracks: int
    mean: float
    mean_error: float
    sigma: float
    sigma_error: float
    resolution: float
    resolution_error: float


@dataclass(frozen=True, eq=False)
class _Moments:
    """Mean and deviation of a set with each value's influence on them."""

    mean: float
    sigma: float
    u: NDArray[np.float64]
    v: NDArray[np.float64]

    @classmethod
    def of(cls, values: ArrayLike) -> _Moments:
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1 or len(x) < 2:
            raise ValueError(f"need at least 2 tracks in a set, got {x.size}")
        mean = float(x.mean())
        sigma = float(x.std(ddof=1))
        u = x - mean
        v = (u**2 - sigma**2) / (2.0 * sigma) if sigma > 0 else np.zeros_like(u)
        return cls(mean, sigma, u, v)

    def variance(self, influence: NDArray[np.float64]) -> float:
        n = len(influence)
        return float(np.sum(influence**2) / (n * (n - 1)))


def spread(values: ArrayLike) -> Spread:
    """Mean, deviation and resolution of per-track ``values``, ``(n_tracks,)``, with errors.

    >>> s = spread([9.0, 11.0, 9.0, 11.0])
    >>> s.mean, round(s.sigma, 4), round(s.resolution, 4), round(s.mean_error, 4)
    (10.0, 1.1547, 0.1155, 0.5774)
    """
    m = _Moments.of(values)
    relative = m.v / m.sigma - m.u / m.mean if m.sigma > 0 else np.zeros_like(m.u)
    resolution = m.sigma / m.mean
    return Spread(
        n_tracks=len(m.u),
        mean=m.mean,
        mean_error=math.sqrt(m.variance(m.u)),
        sigma=m.sigma,
        sigma_error=math.sqrt(m.variance(m.v)),
        resolution=resolution,
        resolution_error=abs(resolution) * math.sqrt(m.variance(relative)),
    )


def _separation(a: _Moments, b: _Moments) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """S and the influence of each track of ``a`` and of ``b`` on it."""
    width = (a.sigma + b.sigma) / 2.0
    if width <= 0:
        raise ValueError("both sets have zero spread: the separation power is undefined")
    difference = a.mean - b.mean
    s = abs(difference) / width
    sign = math.copysign(1.0, difference)
    influence_a = (sign * a.u - s / 2.0 * a.v) / width
    influence_b = (-sign * b.u - s / 2.0 * b.v) / width
    return s, influence_a, influence_b


def separation_power(a: ArrayLike, b: ArrayLike) -> Estimate:
    """S = |mu_a - mu_b| / ((sigma_a + sigma_b) / 2) of the per-track values of two
    particles, ``(n_a,)`` and ``(n_b,)``, with its uncertainty.

    >>> s = separation_power([9.0, 11.0, 9.0, 11.0], [5.0, 7.0, 5.0, 7.0])
    >>> round(s.value, 4), round(s.error, 4)
    (3.4641, 0.7289)
    """
    ma, mb = _Moments.of(a), _Moments.of(b)
    s, ia, ib = _separation(ma, mb)
    return Estimate(s, math.sqrt(ma.variance(ia) + mb.variance(ib)))


def separation_ratio(
    a: ArrayLike, b: ArrayLike, reference_a: ArrayLike, reference_b: ArrayLike
) -> Estimate:
    """S of ``a`` and ``b`` over S of ``reference_a`` and ``reference_b``, with its
    uncertainty; ``reference_a[i]`` belongs to the same track as ``a[i]``. A method
    that is a linear function of the reference keeps all of its separation.

    >>> truth_a, truth_b = [9.0, 11.0, 9.0, 11.0], [5.0, 7.0, 5.0, 7.0]
    >>> r = separation_ratio(truth_a, truth_b, truth_a, truth_b)
    >>> r.value, r.error
    (1.0, 0.0)
    >>> twice_plus_one = separation_ratio([19.0, 23.0, 19.0, 23.0], [11.0, 15.0, 11.0, 15.0],
    ...                                   truth_a, truth_b)
    >>> twice_plus_one.value, twice_plus_one.error
    (1.0, 0.0)
    """
    ma, mb = _Moments.of(a), _Moments.of(b)
    ra, rb = _Moments.of(reference_a), _Moments.of(reference_b)
    if len(ra.u) != len(ma.u) or len(rb.u) != len(mb.u):
        raise ValueError("a method and its reference must measure the same tracks")
    s, ia, ib = _separation(ma, mb)
    s_ref, ira, irb = _separation(ra, rb)
    ratio = s / s_ref
    influence_a = ratio * (ia / s - ira / s_ref) if s > 0 else -ratio * ira / s_ref
    influence_b = ratio * (ib / s - irb / s_ref) if s > 0 else -ratio * irb / s_ref
    return Estimate(ratio, math.sqrt(ma.variance(influence_a) + mb.variance(influence_b)))


def track_dndx(track_id: ArrayLike, counts: ArrayLike, path_cm: ArrayLike) -> pd.Series:
    """dN/dx of every track: the sum of its cells' ``counts`` over the sum of their
    ``path_cm``, indexed by ``track_id``; all arguments ``(n_cells_total,)``.

    >>> track_dndx([0, 0, 1], [10, 14, 7], [1.0, 1.0, 0.5]).tolist()
    [12.0, 14.0]
    """
    cells = pd.DataFrame(
        {"counts": np.asarray(counts, np.float64), "path": np.asarray(path_cm, np.float64)},
        index=pd.Index(np.asarray(track_id), name="track_id"),
    )
    sums = cells.groupby(level="track_id", sort=True).sum()
    return (sums["counts"] / sums["path"]).rename("dndx_per_cm")


def truncated_mean(track_id: ArrayLike, values: ArrayLike, keep_fraction: float) -> pd.Series:
    """The mean of the lowest ``keep_fraction`` of each track's cell ``values``
    (at least one cell; the count rounded), indexed by ``track_id``.

    >>> truncated_mean([0] * 10 + [1] * 4, list(range(10, 0, -1)) + [1, 2, 3, 50], 0.7).tolist()
    [4.0, 2.0]
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction = {keep_fraction}: should be in (0, 1]")
    track = np.asarray(track_id)
    x = np.asarray(values, dtype=np.float64)
    order = np.lexsort((x, track))
    track, x = track[order], x[order]
    ids, first, n_cells = np.unique(track, return_index=True, return_counts=True)
    rank = np.arange(len(x)) - np.repeat(first, n_cells)
    n_keep = np.maximum(np.rint(keep_fraction * n_cells), 1).astype(np.int64)
    kept = rank < np.repeat(n_keep, n_cells)
    sums = np.bincount(np.repeat(np.arange(len(ids)), n_cells)[kept], x[kept], len(ids))
    return pd.Series(sums / n_keep, index=pd.Index(ids, name="track_id"), name="truncated_mean")


def track_table(
    cells: pd.DataFrame,
    counts: Sequence[str],
    charge: str | None = None,
    keep_fraction: float = 1.0,
) -> pd.DataFrame:
    """One row per track from one row per cell.

    Args:
        cells: ``track_id``, ``particle``, ``momentum_gev``, ``path_length_cm``,
            a column of counts per name of ``counts`` and the ``charge`` column.
        counts: the count columns; each becomes the track's dN/dx, per cm.
        charge: a per-cell charge column; it becomes the track's dE/dx (the
            truncated mean of charge / path length), in the charge's unit per cm.
        keep_fraction: the share of cells the truncated mean keeps.

    A cell without a path length (NaN: imported files that carry none) counts
    as one unit of path, so that such a track's dN/dx is its clusters per cell
    and its dE/dx the truncated mean of its cells' charge; its
    ``path_length_cm`` is NaN.

    Returns:
        ``track_id``, ``particle``, ``momentum_gev``, ``n_cells``,
        ``path_length_cm`` (summed), then the columns of ``counts`` and
        ``charge`` with per-track values, in ``track_id`` order.

    >>> cells = pd.DataFrame({"track_id": [3, 3, 4, 4], "particle": ["pi", "pi", "K", "K"],
    ...                       "momentum_gev": 10.0, "path_length_cm": [1.0, 1.0, 2.0, 2.0],
    ...                       "n_clusters": [10, 12, 30, 26], "q": [10.0, 40.0, 20.0, 30.0]})
    >>> track_table(cells, ["n_clusters"], "q", 0.5)[["track_id", "n_cells", "n_clusters", "q"]]
       track_id  n_cells  n_clusters     q
    0         3        2        11.0  10.0
    1         4        2        14.0  10.0
    """
    by_track = cells.groupby("track_id", sort=True)
    table = by_track.agg(
        particle=("particle", "first"),
        momentum_gev=("momentum_gev", "first"),
        n_cells=("path_length_cm", "size"),
        path_length_cm=("path_length_cm", "sum"),
    )
    unknown = cells["path_length_cm"].isna().groupby(cells["track_id"], sort=True).any()
    table.loc[unknown.to_numpy(), "path_length_cm"] = np.nan
    track_id = cells["track_id"].to_numpy()
    path_cm = np.nan_to_num(cells["path_length_cm"].to_numpy(np.float64), nan=1.0)
    for name in counts:
        table[name] = track_dndx(track_id, cells[name].to_numpy(), path_cm)
    if charge is not None:
        per_cm = cells[charge].to_numpy() / path_cm
        table[charge] = truncated_mean(track_id, per_cm, keep_fraction)
    return table.reset_index()


def counted_tracks(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per track of an inference output, from its one row per waveform.

    A track is a track id within one file. Only counted cells (status ``ok``)
    enter the sums, so that dN/dx is the count over the path where clusters
    were counted.

    Args:
        cells: ``(n_waveforms, ...)`` with ``source_file``, ``track``,
            ``status``, ``n_clusters`` (NaN where not counted) and, where the
            input gives path lengths, ``path_cm``.

    Returns:
        ``source_file``, ``track``, ``n_cells`` (waveforms of the track),
        ``n_counted`` (of them counted), ``n_clusters`` (summed),
        ``path_cm`` (summed; NaN without ``path_cm``), ``dndx_per_cm``
        (``n_clusters / path_cm``, clusters per cm; NaN without a path) and
        ``clusters_per_cell`` (``n_clusters / n_counted``), in (file, track) order.

    >>> cells = pd.DataFrame({"source_file": "a.root", "track": [7, 7, 7, 2],
    ...     "status": ["ok", "ok", "saturated", "ok"], "n_clusters": [10.0, 14.0, np.nan, 6.0],
    ...     "path_cm": [1.0, 1.0, 1.0, 0.5]})
    >>> counted_tracks(cells)[["track", "n_cells", "n_counted", "path_cm", "dndx_per_cm"]]
       track  n_cells  n_counted  path_cm  dndx_per_cm
    0      2        1          1      0.5         12.0
    1      7        3          2      2.0         12.0
    """
    counted = (cells["status"] == "ok").to_numpy()
    path = cells["path_cm"] if "path_cm" in cells else pd.Series(np.nan, index=cells.index)
    frame = pd.DataFrame(
        {
            "source_file": cells["source_file"].astype(str),
            "track": cells["track"].astype(np.int64),
            "n_cells": 1,
            "n_counted": counted.astype(np.int64),
            "n_clusters": np.where(counted, cells["n_clusters"].to_numpy(np.float64), 0.0),
            "path_cm": np.where(counted, path.to_numpy(np.float64), 0.0),
        }
    )
    tracks = frame.groupby(["source_file", "track"], sort=True).sum().reset_index()
    if "path_cm" not in cells:
        tracks["path_cm"] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        tracks["dndx_per_cm"] = tracks["n_clusters"] / tracks["path_cm"].where(
            tracks["path_cm"] > 0
        )
        tracks["clusters_per_cell"] = tracks["n_clusters"] / tracks["n_counted"].where(
            tracks["n_counted"] > 0
        )
    return tracks


def particle_pairs(particles: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of ``particles``, in their order (the first pair first).

    >>> particle_pairs(["pi", "K", "p"])
    [('pi', 'K'), ('pi', 'p'), ('K', 'p')]
    """
    return list(itertools.combinations(particles, 2))


def resolution_table(tracks: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """The :class:`Spread` of every method per particle and momentum.

    Args:
        tracks: one row per track (:func:`track_table`): ``particle``,
            ``momentum_gev`` and a column per method.
        methods: the method columns.

    Returns:
        One row per method, particle and momentum: ``method``, ``particle``,
        ``momentum_gev`` and the fields of :class:`Spread`.
    """
    rows = []
    for (particle, momentum), group in tracks.groupby(["particle", "momentum_gev"], sort=False):
        for method in methods:
            s = spread(group[method].to_numpy())
            rows.append(
                {"method": method, "particle": particle, "momentum_gev": momentum, **vars(s)}
            )
    return pd.DataFrame(rows)


_SEPARATION_COLUMNS = (
    "method",
    "particle_a",
    "particle_b",
    "momentum_gev",
    "separation",
    "separation_error",
    "ratio",
    "ratio_error",
)


def separation_table(
    tracks: pd.DataFrame,
    methods: Sequence[str],
    reference: str,
    pairs: Sequence[tuple[str, str]],
) -> pd.DataFrame:
    """S of every method for every pair of particles at every momentum, and S
    over the reference's S on the same tracks.

    Args:
        tracks: one row per track (:func:`track_table`): ``track_id``,
            ``particle``, ``momentum_gev`` and a column per method and for ``reference``.
        methods: the method columns (the reference may be one of them).
        reference: the column of the limit, e.g. the true counts' dN/dx.
        pairs: the particle pairs (:func:`particle_pairs`); a pair missing at
            a momentum is skipped.

    Returns:
        One row per method, pair and momentum: ``method``, ``particle_a``,
        ``particle_b``, ``momentum_gev``, ``separation``, ``separation_error``,
        ``ratio`` (S / S_reference) and ``ratio_error``.

    >>> tracks = pd.DataFrame({"track_id": range(8), "particle": ["pi"] * 4 + ["K"] * 4,
    ...                        "momentum_gev": 10.0,
    ...                        "truth": [9.0, 11.0, 9.0, 11.0, 5.0, 7.0, 5.0, 7.0],
    ...                        "half": [9.0, 11.0, 9.0, 11.0, 7.0, 9.0, 7.0, 9.0]})
    >>> table = separation_table(tracks, ["truth", "half"], "truth", [("pi", "K")])
    >>> table[["method", "separation", "ratio", "ratio_error"]].round(4)
      method  separation  ratio  ratio_error
    0  truth      3.4641    1.0       0.0000
    1   half      1.7321    0.5       0.1021
    """
    rows = []
    sets = {
        key: group.sort_values("track_id")
        for key, group in tracks.groupby(["particle", "momentum_gev"])
    }
    momenta = sorted({momentum for _, momentum in sets})
    for method in methods:
        for a, b in pairs:
            for momentum in momenta:
                if (a, momentum) not in sets or (b, momentum) not in sets:
                    continue
                set_a, set_b = sets[a, momentum], sets[b, momentum]
                s = separation_power(set_a[method], set_b[method])
                r = separation_ratio(
                    set_a[method], set_b[method], set_a[reference], set_b[reference]
                )
                rows.append((method, a, b, momentum, s.value, s.error, r.value, r.error))
    return pd.DataFrame(rows, columns=list(_SEPARATION_COLUMNS))


def selection_rows(
    particle: ArrayLike,
    momentum_gev: ArrayLike,
    pair: tuple[str, str],
    momenta_gev: Sequence[float],
) -> NDArray[np.int64]:
    """The cells, ``(n_selected,)`` rows of ``particle`` and ``momentum_gev`` (both
    ``(n_cells,)``), of the two particles of ``pair`` at one of ``momenta_gev``.

    >>> selection_rows(["pi", "K", "mu", "K"], [5.0, 10.0, 5.0, 2.0], ("pi", "K"), [5.0, 10.0])
    array([0, 1])
    """
    momentum = np.asarray(momentum_gev, dtype=np.float64)
    chosen = np.isin(np.asarray(particle).astype(str), pair) & np.isclose(
        momentum[:, None], np.asarray(momenta_gev, dtype=np.float64)[None, :]
    ).any(axis=1)
    return np.flatnonzero(chosen)


def mean_separation_ratio(
    cells: pd.DataFrame,
    method: str,
    reference: str,
    pair: tuple[str, str],
    momenta_gev: Sequence[float],
) -> Estimate:
    """S / S_reference of ``pair`` averaged over ``momenta_gev``: the figure a
    counter is chosen and promoted on.

    Args:
        cells: one row per cell (as :func:`track_table` takes them) with the
            count columns ``method`` and ``reference``.
        method: the counts judged.
        reference: the counts of the limit, the truth.
        pair: the two particles.
        momenta_gev: the momenta averaged over; one where either particle has
            fewer than 2 tracks is left out.

    Returns:
        The mean ratio and its uncertainty (the momenta's track sets are
        independent); NaN for both where no momentum is measured.

    >>> cells = pd.DataFrame({"track_id": np.repeat(np.arange(8), 2),
    ...     "particle": np.repeat(["pi"] * 4 + ["K"] * 4, 2), "momentum_gev": 10.0,
    ...     "path_length_cm": 1.0, "truth": np.repeat([9, 11, 9, 11, 5, 7, 5, 7], 2),
    ...     "half": np.repeat([9, 11, 9, 11, 7, 9, 7, 9], 2)})
    >>> r = mean_separation_ratio(cells, "half", "truth", ("pi", "K"), [10.0, 20.0])
    >>> round(r.value, 4), round(r.error, 4)
    (0.5, 0.1021)
    """
    tracks = track_table(cells, [method, reference])
    tracks = tracks.iloc[
        selection_rows(tracks["particle"], tracks["momentum_gev"], pair, momenta_gev)
    ]
    n_tracks = tracks.groupby(["momentum_gev", "particle"]).size().unstack(fill_value=0)
    enough = (n_tracks.reindex(columns=list(pair), fill_value=0) >= 2).all(axis=1)
    chosen = tracks[tracks["momentum_gev"].isin(n_tracks.index[enough])]
    if chosen.empty:
        return Estimate(math.nan, math.nan)
    ratios = separation_table(chosen, [method], reference, [pair])
    return Estimate(
        float(ratios["ratio"].mean()),
        math.sqrt(float((ratios["ratio_error"] ** 2).sum())) / len(ratios),
    )
