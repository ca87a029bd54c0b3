"""What the cluster counter learns from besides its inputs, against the shrinkage of
its count toward the training mean.

A regression trained on the loss of the mean squared error learns the mean
count given the input: where the input leaves the count uncertain it pulls
the answer toward the counts that are frequent in training (linearity slope
below 1). Three remedies live here:

* :func:`flat_count_weights`: weights that make every true count about equally
  frequent in the loss, so that the pull toward the frequent counts weakens;
* :func:`coarsen_bins`: the true clusters per time bin at the resolution of a
  counter that predicts clusters per bin and sums them
  (``cluster_counter.output: per_bin``);
* :func:`fit_calibration`: the linear map of a trained counter's output that
  makes its validation slope 1 and its bias 0. Its scale leaves the separation
  power S of two particles (:mod:`dndx.scoring.separation`) unchanged; its offset,
  added in every cell, adds ``offset * cells / path`` to a track's dN/dx,
  which differs between tracks of different path per cell, so S moves a
  little (``benchmarks/counter_variants.py`` measures by how much).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dndx.scoring.metrics import counting_metrics

__all__ = [
    "MAX_WEIGHT_RATIO",
    "Calibration",
    "CounterData",
    "coarsen_bins",
    "fit_calibration",
    "flat_count_weights",
]


@dataclass(frozen=True, eq=False)
class CounterData:
    """What the cluster counter trains or is scored on.

    Attributes:
        x: ``(n, n_bins, channels)`` float32 counter inputs.
        n_clusters: ``(n,)`` float32 true cluster counts.
        clusters_per_bin: ``(n, n_bins)`` true clusters per input bin
            (:func:`dndx.chain.encoding.clusters_per_bin`); None where not needed.
    """

    x: np.ndarray
    n_clusters: np.ndarray
    clusters_per_bin: np.ndarray | None = None


#: The rarest counts weigh at most this many times the most frequent one: beyond
#: it a handful of waveforms would dominate the loss.
MAX_WEIGHT_RATIO = 10.0


def flat_count_weights(
    n_true: ArrayLike, max_ratio: float = MAX_WEIGHT_RATIO
) -> NDArray[np.float32]:
    """Per-example weights proportional to 1 / frequency of the true count.

    Args:
        n_true: ``(n_examples,)`` true cluster counts (integers).
        max_ratio: the largest weight over the smallest, the clip of rare counts.

    Returns:
        ``(n_examples,)`` weights of mean 1: each count's examples weigh the same
        in total unless clipped.

    >>> [round(float(w), 4) for w in flat_count_weights([3, 3, 3, 5])]
    [0.6667, 0.6667, 0.6667, 2.0]
    >>> weights = flat_count_weights([3] * 20 + [5])
    >>> round(float(weights.max() / weights.min()), 4), round(float(weights.mean()), 4)
    (10.0, 1.0)
    """
    counts = np.asarray(n_true).astype(np.int64)
    if counts.size == 0:
        return np.ones(0, dtype=np.float32)
    _, index, frequency = np.unique(counts, return_inverse=True, return_counts=True)
    weight = np.minimum(1.0 / frequency, max_ratio / frequency.max())[index]
    return (weight / weight.mean()).astype(np.float32)


@dataclass(frozen=True)
class Calibration:
    """The linear map ``scale * N_rec + offset`` of a counter's output."""

    scale: float
    offset: float

    def apply(self, n_rec: ArrayLike) -> NDArray[np.float64]:
        """The calibrated counts of ``n_rec``, ``(n,)``."""
        return self.scale * np.asarray(n_rec, dtype=np.float64) + self.offset


def fit_calibration(n_rec: ArrayLike, n_true: ArrayLike) -> Calibration:
    """The map that makes the linearity slope of ``n_rec`` against ``n_true`` 1
    (:func:`dndx.scoring.metrics.counting_metrics`, its fit range) and their mean
    difference 0.

    Not the least-squares fit of ``N_true`` on ``N_rec``: for a counter that
    outputs the mean count given its input that fit is close to the identity,
    and the shrinkage stays; this one undoes the shrinkage, and widens the
    spread of the counts by the same factor.

    Args:
        n_rec: ``(n,)`` a counter's output on validation waveforms.
        n_true: ``(n,)`` their true cluster counts.

    >>> truth = np.arange(5.0, 41.0)
    >>> c = fit_calibration(0.8 * truth + 4.0, truth)
    >>> round(c.scale, 6), round(c.offset, 6)
    (1.25, -5.0)
    """
    rec = np.asarray(n_rec, dtype=np.float64)
    true = np.asarray(n_true, dtype=np.float64)
    slope = counting_metrics(rec, true)["linearity_slope"]
    if not np.isfinite(slope) or slope <= 0:
        raise ValueError(
            f"cannot calibrate a count whose linearity slope is {slope}: expected a "
            "positive slope over the fit range"
        )
    scale = 1.0 / slope
    return Calibration(scale=scale, offset=float(true.mean() - scale * rec.mean()))


def coarsen_bins(per_bin: NDArray[np.integer], n_coarse: int) -> NDArray[np.float32]:
    """Sum ``(n, n_bins)`` counts per bin into ``n_coarse`` bins of equal width,
    the resolution of a counter whose pooling shortened the time axis.

    Pooling drops the remainder of ``n_bins`` over the width; its counts go into
    the last bin, so that each row keeps its total.

    >>> coarsen_bins(np.array([[1, 0, 2, 1, 0, 1, 1]]), 3).tolist()
    [[1.0, 3.0, 2.0]]
    """
    n, n_bins = per_bin.shape
    if not 1 <= n_coarse <= n_bins:
        raise ValueError(f"cannot sum {n_bins} bins into {n_coarse}")
    width = n_bins // n_coarse
    coarse = per_bin[:, : n_coarse * width].reshape(n, n_coarse, width).sum(axis=2)
    coarse[:, -1] += per_bin[:, n_coarse * width :].sum(axis=1)
    return coarse.astype(np.float32)
