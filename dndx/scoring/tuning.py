"""Tuning the classical baselines on validation data, on the models' own footing.

The D2 thresholds and the time-clusterization window are chosen by scanning a grid
against the expected peaks and the true cluster counts
(:func:`dndx.chain.baselines.d2_peaks`, :func:`dndx.chain.baselines.time_clusterize`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.chain.baselines import d2_runs, time_clusterize
from dndx.ragged import Ragged
from dndx.scoring.metrics import counting_metrics, peak_scores
from dndx.truth.labels import match_peaks

__all__ = ["ClusterTuning", "D2Tuning", "tune_d2", "tune_time_clusterization"]


@dataclass(frozen=True, eq=False)
class D2Tuning:
    """The D2 thresholds chosen on validation data, with the whole scan.

    Attributes:
        t1_sigma: the chosen amplitude threshold.
        t2: the chosen D2-sum threshold.
        scan: ``(n_t1 * n_t2, ...)`` one row per grid point: ``t1_sigma``,
            ``t2`` and :func:`dndx.scoring.metrics.peak_scores` (``n_true``,
            ``n_detected``, ``n_matched``, ``efficiency``, ``purity``,
            ``efficiency_x_purity``, ``f1``).
    """

    t1_sigma: float
    t2: float
    scan: pd.DataFrame

    @property
    def best(self) -> dict[str, float]:
        """The scan's row of the chosen thresholds."""
        chosen = (self.scan["t1_sigma"] == self.t1_sigma) & (self.scan["t2"] == self.t2)
        return {str(k): float(v) for k, v in self.scan[chosen].iloc[0].items()}


def tune_d2(
    samples: NDArray[np.float32],
    lengths: NDArray[np.int64],
    expected_samples: Ragged,
    tolerance_samples: float,
    t1_grid_sigma: Sequence[float],
    t2_grid: Sequence[float],
    smoothing_passes: int = 1,
    max_shift_samples: int = 2,
) -> D2Tuning:
    """Choose the D2 thresholds with the highest efficiency x purity.

    Detections are matched one-to-one to the expected peaks with
    :func:`dndx.truth.labels.match_peaks`. Ties go to the first grid point
    (``t1_grid_sigma`` outer, ``t2_grid`` inner).

    Args:
        samples, lengths: as for :func:`d2_peaks`.
        expected_samples: ``n_rows`` rows of expected peak positions in
            samples at the rate of ``samples``, sorted in each row.
        tolerance_samples: the matching tolerance.
        t1_grid_sigma, t2_grid: the values scanned: T1 in noise sigma, T2 in
            noise sigma per sample squared.
        smoothing_passes, max_shift_samples: as for :func:`d2_peaks`.

    >>> x = np.zeros((1, 60), dtype=np.float32)
    >>> x[0, 10:16] = x[0, 40:46] = [0, 8, 10, 6, 3, 1]
    >>> x[0, 25:30] = [0, 2, 4, 2, 0]  # a small bump that is not a peak
    >>> expected = Ragged.from_lengths(np.array([12.0, 42.0]), [2])
    >>> tuning = tune_d2(x, np.array([60]), expected, 2, t1_grid_sigma=(1.0,), t2_grid=(0.5, 1.5))
    >>> tuning.t2, tuning.best["efficiency_x_purity"]
    (1.5, 1.0)
    """
    n_rows = samples.shape[0]
    records = []
    for t1 in t1_grid_sigma:
        runs = d2_runs(samples, lengths, t1, smoothing_passes, max_shift_samples)
        for t2 in t2_grid:
            detected = runs.peaks(t2, n_rows)
            matching = match_peaks(detected, expected_samples, tolerance_samples)
            scores = peak_scores(
                len(matching.expected_match),
                len(matching.detection_match),
                int(np.count_nonzero(matching.expected_match >= 0)),
            )
            records.append({"t1_sigma": float(t1), "t2": float(t2), **scores})
    scan = pd.DataFrame.from_records(records)
    best = int(np.nanargmax(scan["efficiency_x_purity"].to_numpy()))
    return D2Tuning(float(scan["t1_sigma"].iloc[best]), float(scan["t2"].iloc[best]), scan)


@dataclass(frozen=True, eq=False)
class ClusterTuning:
    """The time-clusterization window chosen on validation data, with the whole scan.

    Attributes:
        window_ns: the chosen constant part of the window.
        growth_ns_per_sqrt_ns: the chosen growth with sqrt(time since the first peak).
        scan: ``(n_window * n_growth, ...)`` one row per grid point:
            ``window_ns``, ``growth_ns_per_sqrt_ns`` and
            :func:`dndx.scoring.metrics.counting_metrics`.
    """

    window_ns: float
    growth_ns_per_sqrt_ns: float
    scan: pd.DataFrame


def tune_time_clusterization(
    peak_time_ns: Ragged,
    n_clusters_true: NDArray[np.integer],
    window_grid_ns: Sequence[float],
    growth_grid: Sequence[float],
) -> ClusterTuning:
    """Choose the clusterization window with the smallest RMS of ``N_rec - N_true``.

    The smallest ``|mean(N_rec - N_true)|`` breaks ties, then the grid order
    (``window_grid_ns`` outer, ``growth_grid`` inner).

    Args:
        peak_time_ns: ``n_waveforms`` rows of detected peak times, sorted in
            each row (e.g. :func:`d2_peaks` over the sampling rate).
        n_clusters_true: ``(n_waveforms,)`` the true number of primary clusters.
        window_grid_ns, growth_grid: the values scanned: the constant part of the
            window in ns, its growth in ns per sqrt(ns).

    >>> t = Ragged.from_lengths(np.array([0.0, 1.0, 10.0, 11.0, 0.0, 20.0]), [4, 2])
    >>> tuning = tune_time_clusterization(t, np.array([2, 2]), (0.0, 2.0, 30.0), (0.0,))
    >>> tuning.window_ns, tuning.scan["rms_residual"].tolist()
    (2.0, [1.4142135623730951, 0.0, 1.0])
    """
    records = []
    for window in window_grid_ns:
        for growth in growth_grid:
            n_rec = time_clusterize(peak_time_ns, window, growth).lengths
            metrics = counting_metrics(n_rec, n_clusters_true)
            records.append(
                {"window_ns": float(window), "growth_ns_per_sqrt_ns": float(growth), **metrics}
            )
    scan = pd.DataFrame.from_records(records)
    order = np.lexsort((np.abs(scan["mean_residual"].to_numpy()), scan["rms_residual"].to_numpy()))
    best = int(order[0])
    return ClusterTuning(
        float(scan["window_ns"].iloc[best]), float(scan["growth_ns_per_sqrt_ns"].iloc[best]), scan
    )
