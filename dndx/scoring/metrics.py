"""Figures of merit for peak finding and cluster counting (docs/physics.md, "Metrics").

Peak finding is scored against the expected peaks: efficiency (matched
expected peaks over expected peaks), purity (matched detections over
detections), their product and F1; candidate classifiers also by ROC AUC and
the scores at a threshold. Counting is scored per cell against the true number
of primary clusters: relative bias, RMS of the residual in units of the Poisson
fluctuation sqrt(N), and the linearity slope that shows regression to the mean.

Every score that has nothing to count (no expected peaks, one class only, no
waveforms) is NaN rather than an error, so that sparse bins of a table stay
in the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from dndx.ragged import Ragged
from dndx.truth.labels import Matching

__all__ = [
    "LINEARITY_RANGE",
    "PeakCounts",
    "best_threshold",
    "binary_scores",
    "binned",
    "count_matches",
    "counting_metrics",
    "counting_table",
    "peak_scores",
    "peak_table_by_drift_time",
    "peak_table_by_waveform",
    "roc_auc",
    "roc_curve",
]

#: The true cluster counts the linearity slope is fitted over (docs/physics.md).
LINEARITY_RANGE: tuple[int, int] = (5, 40)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def peak_scores(n_true: int, n_detected: int, n_matched: int) -> dict[str, float]:
    """Peak-finding scores from the counts of a one-to-one matching.

    Args:
        n_true: expected peaks.
        n_detected: detections.
        n_matched: matched pairs.

    Returns:
        The three counts and ``efficiency``, ``purity``, ``efficiency_x_purity``, ``f1``.

    >>> s = peak_scores(n_true=10, n_detected=8, n_matched=4)
    >>> s["efficiency"], s["purity"], s["efficiency_x_purity"], round(s["f1"], 4)
    (0.4, 0.5, 0.2, 0.4444)
    """
    efficiency = _ratio(n_matched, n_true)
    purity = _ratio(n_matched, n_detected)
    return {
        "n_true": n_true,
        "n_detected": n_detected,
        "n_matched": n_matched,
        "efficiency": efficiency,
        "purity": purity,
        "efficiency_x_purity": efficiency * purity,
        "f1": _ratio(2 * n_matched, n_true + n_detected),
    }


@dataclass(frozen=True, eq=False)
class PeakCounts:
    """Per-waveform counts of a matching between detections and expected peaks.

    Attributes:
        n_true: ``(n_waveforms,)`` expected peaks.
        n_detected: ``(n_waveforms,)`` detections.
        n_matched: ``(n_waveforms,)`` matched pairs.
    """

    n_true: NDArray[np.int64]
    n_detected: NDArray[np.int64]
    n_matched: NDArray[np.int64]

    def scores(self, rows: NDArray[np.int64] | slice = slice(None)) -> dict[str, float]:
        """:func:`peak_scores` of the waveforms ``rows`` (all by default), pooled."""
        return peak_scores(
            int(self.n_true[rows].sum()),
            int(self.n_detected[rows].sum()),
            int(self.n_matched[rows].sum()),
        )


def count_matches(detected: Ragged, expected: Ragged, matching: Matching) -> PeakCounts:
    """Count, per waveform, what :func:`dndx.truth.labels.match_peaks` matched.

    Args:
        detected: ``n_waveforms`` rows of detections (the matching's first argument).
        expected: ``n_waveforms`` rows of expected peaks (its second).
        matching: the result of matching them.

    >>> from dndx.truth.labels import match_peaks
    >>> det = Ragged.from_lengths(np.array([10, 30, 5]), [2, 1])
    >>> exp = Ragged.from_lengths(np.array([11.0, 50.0, 5.0]), [2, 1])
    >>> c = count_matches(det, exp, match_peaks(det, exp, 2))
    >>> c.n_true.tolist(), c.n_detected.tolist(), c.n_matched.tolist()
    ([2, 1], [2, 1], [1, 1])
    """
    matched = (matching.expected_match >= 0).astype(np.int64)
    n_matched = np.bincount(expected.row_index(), weights=matched, minlength=len(expected))
    return PeakCounts(expected.lengths, detected.lengths, n_matched.astype(np.int64))


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: the probability that a random positive scores
    above a random negative, ties counting one half (Mann-Whitney, average ranks).

    Args:
        labels: ``(n,)`` true classes, 1/True for positive.
        scores: ``(n,)`` classifier outputs, higher for positive.

    Returns:
        The AUC, or NaN when one class is absent.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])
    0.5
    """
    positive = np.asarray(labels).astype(bool)
    values = np.asarray(scores, dtype=np.float64)
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][positive].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative)


def roc_curve(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The ROC curve at every distinct score.

    Args:
        labels: ``(n,)`` true classes, 1/True for positive.
        scores: ``(n,)`` classifier outputs, higher for positive.

    Returns:
        ``fpr``, ``tpr`` and ``thresholds``, each ``(n_distinct + 1,)``:
        classifying ``scores >= thresholds[i]`` as positive gives the rates
        ``fpr[i]``, ``tpr[i]``; the first threshold is ``inf`` (nothing positive).
        A rate whose class is absent is NaN.

    >>> fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> fpr.tolist(), tpr.tolist(), thr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0], [inf, 0.8, 0.4, 0.35, 0.1])
    """
    positive = np.asarray(labels).astype(bool)
    values = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-values, kind="stable")
    values, positive = values[order], positive[order]
    last_of_score = np.ones(len(values), dtype=bool)
    last_of_score[:-1] = values[1:] != values[:-1]
    true_positive = np.concatenate([[0], np.cumsum(positive)[last_of_score]])
    false_positive = np.concatenate([[0], np.cumsum(~positive)[last_of_score]])
    n_positive, n_negative = true_positive[-1], false_positive[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = true_positive / np.float64(n_positive)
        fpr = false_positive / np.float64(n_negative)
    thresholds = np.concatenate([[np.inf], values[last_of_score]])
    return fpr, tpr, thresholds


def best_threshold(labels: ArrayLike, scores: ArrayLike) -> float:
    """The score threshold with the largest efficiency x purity (precision x recall).

    >>> best_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.7, 0.9]))
    0.7
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_positives = np.cumsum(sorted_labels)
    precision = true_positives / np.arange(1, len(scores) + 1)
    recall = true_positives / max(sorted_labels.sum(), 1)
    # Only the last of equal scores is a real cut.
    last = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    product = np.where(last, precision * recall, -1.0)
    return float(sorted_scores[int(np.argmax(product))])


def binary_scores(labels: ArrayLike, scores: ArrayLike, threshold: float) -> dict[str, float]:
    """Scores of the decision ``scores >= threshold``.

    Args:
        labels: ``(n,)`` true classes, 1/True for positive.
        scores: ``(n,)`` classifier outputs.
        threshold: the smallest score called positive.

    Returns:
        ``precision``, ``recall``, ``f1``, ``accuracy`` and
        ``balanced_accuracy`` (mean of the true-positive and true-negative rates).

    >>> s = binary_scores([1, 1, 1, 0, 0], [0.9, 0.8, 0.2, 0.6, 0.1], 0.5)
    >>> [round(s[k], 4) for k in ("precision", "recall", "f1", "accuracy", "balanced_accuracy")]
    [0.6667, 0.6667, 0.6667, 0.6, 0.5833]
    """
    positive = np.asarray(labels).astype(bool)
    called = np.asarray(scores, dtype=np.float64) >= threshold
    true_positive = int(np.count_nonzero(positive & called))
    false_positive = int(np.count_nonzero(~positive & called))
    false_negative = int(np.count_nonzero(positive & ~called))
    true_negative = int(np.count_nonzero(~positive & ~called))
    recall = _ratio(true_positive, true_positive + false_negative)
    specificity = _ratio(true_negative, true_negative + false_positive)
    return {
        "precision": _ratio(true_positive, true_positive + false_positive),
        "recall": recall,
        "f1": _ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative),
        "accuracy": _ratio(true_positive + true_negative, len(positive)),
        "balanced_accuracy": (recall + specificity) / 2.0,
    }


def counting_metrics(
    n_rec: ArrayLike,
    n_true: ArrayLike,
    linearity_range: tuple[float, float] = LINEARITY_RANGE,
) -> dict[str, float]:
    """Per-cell counting scores of reconstructed against true cluster counts.

    The linearity slope is the least-squares slope of ``N_rec`` against
    ``N_true`` over all cells with ``N_true`` in ``linearity_range``
    (inclusive); over all points, which is the fit to the per-``N_true`` means
    weighted by the number of cells at each ``N_true``, so sparse ends of the
    range do not pull it. A slope below 1 is regression to the mean.

    Args:
        n_rec: ``(n_cells,)`` reconstructed counts (any real number).
        n_true: ``(n_cells,)`` true numbers of primary clusters.
        linearity_range: the ``N_true`` range of the slope fit.

    Returns:
        ``n``, ``mean_true``, ``mean_rec``, ``mean_residual`` and
        ``rms_residual`` of ``N_rec - N_true``, ``relative_bias``
        (``mean_residual / mean_true``), ``rms_over_sqrt_n``
        (``rms_residual / sqrt(mean_true)``) and ``linearity_slope``.

    >>> m = counting_metrics([9, 21, 30], [10, 20, 30])
    >>> m["mean_residual"], m["relative_bias"], round(m["rms_over_sqrt_n"], 4), m["linearity_slope"]
    (0.0, 0.0, 0.1826, 1.05)
    """
    rec = np.asarray(n_rec, dtype=np.float64)
    true = np.asarray(n_true, dtype=np.float64)
    n = len(true)
    if n == 0:
        return {"n": 0, **dict.fromkeys(_COUNTING_FIGURES[1:], float("nan"))}
    residual = rec - true
    mean_true = float(true.mean())
    mean_residual = float(residual.mean())
    rms_residual = float(np.sqrt(np.mean(residual**2)))
    return {
        "n": n,
        "mean_true": mean_true,
        "mean_rec": float(rec.mean()),
        "mean_residual": mean_residual,
        "rms_residual": rms_residual,
        "relative_bias": _ratio(mean_residual, mean_true),
        "rms_over_sqrt_n": _ratio(rms_residual, np.sqrt(mean_true)),
        "linearity_slope": _linearity_slope(rec, true, linearity_range),
    }


#: The figures of :func:`counting_metrics`, in order.
_COUNTING_FIGURES = (
    "n",
    "mean_true",
    "mean_rec",
    "mean_residual",
    "rms_residual",
    "relative_bias",
    "rms_over_sqrt_n",
    "linearity_slope",
)


def _linearity_slope(
    rec: NDArray[np.float64], true: NDArray[np.float64], linearity_range: tuple[float, float]
) -> float:
    """The least-squares slope of ``rec`` against ``true`` ``(n_cells,)`` over the cells
    with ``true`` in ``linearity_range``; NaN where they hold no spread."""
    low, high = linearity_range
    in_range = (true >= low) & (true <= high)
    x, y = true[in_range], rec[in_range]
    spread = float(np.sum((x - x.mean()) ** 2)) if len(x) else 0.0
    return float(np.sum((x - x.mean()) * (y - y.mean()))) / spread if spread else float("nan")


def _bin_index(values: ArrayLike, edges: ArrayLike) -> NDArray[np.int64]:
    """The bin of each value, ``-1`` outside ``[edges[0], edges[-1]]`` or NaN."""
    x = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    index = np.searchsorted(e, x, side="right") - 1
    index[x == e[-1]] = len(e) - 2
    index[(index < 0) | (index >= len(e) - 1)] = -1
    return index.astype(np.int64)


def binned(
    values: ArrayLike,
    edges: ArrayLike,
    metric_fn: Callable[[NDArray[np.int64]], Mapping[str, float]],
    name: str = "bin",
) -> pd.DataFrame:
    """A table of ``metric_fn`` over the items in each bin of ``values``.

    Bins are ``[edges[i], edges[i + 1])``, the last one closed; items outside
    all bins or NaN are left out.

    Args:
        values: ``(n,)`` the quantity binned.
        edges: ``(n_bins + 1,)`` increasing bin edges.
        metric_fn: maps the ``(k,)`` indices of a bin's items to named figures.
        name: the columns of the edges are ``{name}_low`` and ``{name}_high``.

    Returns:
        ``(n_bins, 2 + n_figures)``: the edges, then what ``metric_fn`` returns.

    >>> x = np.array([0.5, 1.5, 1.7, 3.0, 9.0])
    >>> binned(x, [0, 1, 2, 3], lambda i: {"n": len(i), "mean": x[i].mean()}, "x")
       x_low  x_high  n  mean
    0    0.0     1.0  1   0.5
    1    1.0     2.0  2   1.6
    2    2.0     3.0  1   3.0
    """
    e = np.asarray(edges, dtype=np.float64)
    index = _bin_index(values, e)
    records = [
        {f"{name}_low": e[b], f"{name}_high": e[b + 1], **metric_fn(np.flatnonzero(index == b))}
        for b in range(len(e) - 1)
    ]
    return pd.DataFrame.from_records(records)


def peak_table_by_waveform(
    values: ArrayLike, edges: ArrayLike, counts: PeakCounts, name: str
) -> pd.DataFrame:
    """:func:`peak_scores` per bin of a per-waveform quantity (e.g. ``noise_fraction``).

    Args:
        values: ``(n_waveforms,)`` the quantity binned.
        edges: ``(n_bins + 1,)`` bin edges, as for :func:`binned`.
        counts: the per-waveform counts of the matching.
        name: the quantity's name, for the edge columns.

    >>> c = PeakCounts(np.array([4, 4, 6]), np.array([4, 2, 6]), np.array([4, 2, 3]))
    >>> t = peak_table_by_waveform([0.04, 0.05, 0.09], [0.03, 0.06, 0.1], c, "noise_fraction")
    >>> t[["noise_fraction_low", "n_true", "efficiency", "purity"]].to_numpy().tolist()
    [[0.03, 8.0, 0.75, 1.0], [0.06, 6.0, 0.5, 0.5]]
    """
    return binned(values, edges, counts.scores, name)


def peak_table_by_drift_time(
    detected_time_ns: Ragged,
    expected_time_ns: Ragged,
    expected_drift_time_ns: ArrayLike,
    matching: Matching,
    edges_ns: ArrayLike,
) -> pd.DataFrame:
    """:func:`peak_scores` per drift-time bin.

    Expected peaks are binned by their drift time. A matched detection takes
    the drift time of its expected peak, so the two agree on the matched count
    of every bin; an unmatched detection takes its own time less the waveform's
    smallest ``expected_time_ns - expected_drift_time_ns`` (the trigger offset
    plus the pulse's rise to its maximum). Unmatched detections in a waveform
    without expected peaks have no drift time and count in no bin.

    Args:
        detected_time_ns: ``n_waveforms`` rows of detection times.
        expected_time_ns: ``n_waveforms`` rows of expected peak times.
        expected_drift_time_ns: ``(n_expected,)`` drift time of each expected peak.
        matching: :func:`dndx.truth.labels.match_peaks` of the two (in any unit).
        edges_ns: ``(n_bins + 1,)`` drift-time bin edges.

    >>> det = Ragged.from_lengths(np.array([30.0, 70.0, 150.0]), [3])
    >>> exp = Ragged.from_lengths(np.array([30.0, 150.0, 160.0]), [3])
    >>> m = Matching(np.array([0, -1, 1]), np.array([0, 2, -1]))
    >>> t = peak_table_by_drift_time(det, exp, [0.0, 120.0, 130.0], m, [0, 100, 200])
    >>> t[["n_true", "n_detected", "n_matched"]].to_numpy().tolist()
    [[1, 2, 1], [2, 1, 1]]
    """
    expected_drift = np.asarray(expected_drift_time_ns, dtype=np.float64)
    detection_drift = _detection_drift_ns(
        detected_time_ns, expected_time_ns, expected_drift, matching
    )
    e = np.asarray(edges_ns, dtype=np.float64)
    n_bins = len(e) - 1
    expected_bin = _bin_index(expected_drift, e)
    n_true = _count_in_bins(expected_bin, n_bins)
    n_detected = _count_in_bins(_bin_index(detection_drift, e), n_bins)
    n_matched = _count_in_bins(expected_bin, n_bins, matching.expected_match >= 0)
    records = [
        {
            "drift_time_ns_low": e[b],
            "drift_time_ns_high": e[b + 1],
            **peak_scores(int(n_true[b]), int(n_detected[b]), int(n_matched[b])),
        }
        for b in range(n_bins)
    ]
    return pd.DataFrame.from_records(records)


def _detection_drift_ns(
    detected_time_ns: Ragged,
    expected_time_ns: Ragged,
    expected_drift_ns: NDArray[np.float64],
    matching: Matching,
) -> NDArray[np.float64]:
    """``(n_detected,)`` the drift time of each detection, as
    :func:`peak_table_by_drift_time` assigns it (inf in a waveform without expected
    peaks)."""
    offset = np.full(len(expected_time_ns), np.inf)
    np.minimum.at(offset, expected_time_ns.row_index(), expected_time_ns.values - expected_drift_ns)
    detection_drift = (
        np.asarray(detected_time_ns.values, dtype=np.float64) - offset[detected_time_ns.row_index()]
    )
    matched = matching.detection_match >= 0
    detection_drift[matched] = expected_drift_ns[matching.detection_match[matched]]
    return detection_drift


def _count_in_bins(
    bins: NDArray[np.int64], n_bins: int, selected: NDArray[np.bool_] | None = None
) -> NDArray[np.int64]:
    """``(n_bins,)`` how many of ``bins`` (``-1``: in none), of the ``selected`` ones,
    fall in each bin."""
    inside = bins >= 0
    weights = None if selected is None else selected[inside]
    return np.bincount(bins[inside], weights=weights, minlength=n_bins).astype(np.int64)


def counting_table(
    n_rec: ArrayLike,
    n_true: ArrayLike,
    particle: ArrayLike,
    momentum_gev: ArrayLike,
    momentum_edges_gev: ArrayLike,
) -> pd.DataFrame:
    """:func:`counting_metrics` per particle type and momentum bin.

    Args:
        n_rec: ``(n_cells,)`` reconstructed counts.
        n_true: ``(n_cells,)`` true numbers of primary clusters.
        particle: ``(n_cells,)`` particle names.
        momentum_gev: ``(n_cells,)`` momenta.
        momentum_edges_gev: ``(n_bins + 1,)`` momentum bin edges, as for :func:`binned`.

    Returns:
        ``(n_particles * n_bins, ...)``: ``particle``, ``momentum_gev_low``,
        ``momentum_gev_high`` and the counting metrics, particles sorted by name.

    >>> t = counting_table([10, 12, 20, 30], [10, 10, 20, 30], ["pi", "pi", "K", "K"],
    ...                    [2.0, 3.0, 2.0, 20.0], [1, 10, 50])
    >>> t[["particle", "momentum_gev_low", "n", "mean_residual"]].to_numpy().tolist()
    [['K', 1.0, 1, 0.0], ['K', 10.0, 1, 0.0], ['pi', 1.0, 2, 1.0], ['pi', 10.0, 0, nan]]
    """
    rec = np.asarray(n_rec, dtype=np.float64)
    true = np.asarray(n_true, dtype=np.float64)
    names = np.asarray(particle)
    momentum = np.asarray(momentum_gev, dtype=np.float64)
    tables = []
    for name in np.unique(names):
        # Other particles' cells get no momentum, which puts them in no bin.
        table = binned(
            np.where(names == name, momentum, np.nan),
            momentum_edges_gev,
            lambda i: counting_metrics(rec[i], true[i]),
            "momentum_gev",
        )
        table.insert(0, "particle", str(name))
        tables.append(table)
    return pd.concat(tables, ignore_index=True)
