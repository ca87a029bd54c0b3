"""Classical baselines: D2 derivative peak finding and time clusterization.

Both are tuned on validation data by the pipeline itself, on the same
normalised waveforms and expected peaks the models see, so that they are
reported beside the models on equal terms.

**D2 derivative** (docs/physics.md): on the lightly smoothed, noise-normalised
waveform ``w``, ``D1[i] = max(w[i] - w[i-1], 0)`` and
``D2[i] = max(D1[i] - D1[i-1], 0)``. D2 is accumulated over each run of
samples where it is positive and ``w`` exceeds ``T1``; when the run ends and
its sum exceeds ``T2``, a peak is recorded. A run covers the start of a
pulse's rise (where the slope grows), so the peak is placed at the first local
maximum of ``w`` at or after the run's last sample, but at most
``max_shift_samples`` after it: expected peaks sit at pulse maxima, and the
cap keeps a pulse piled up on the rise of a larger one from being moved onto
that one's maximum. On simulated data this placement matches truth better
than the run end itself (which lies 1-2 samples early) or the uncapped
maximum (which loses piled-up pulses).

**Time clusterization**: consecutive peaks of a waveform closer than
``window_ns + growth_ns_per_sqrt_ns * sqrt(t - t_first)`` belong to one
cluster; the window grows like the diffusion spread, ``sqrt`` of the drift
time, measured from the waveform's first peak because the trigger offset is
unknown at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dndx.chain.candidates import smooth
from dndx.ragged import Ragged

__all__ = [
    "D2Runs",
    "d2_peaks",
    "d2_runs",
    "time_clusterize",
]


@dataclass(frozen=True, eq=False)
class D2Runs:
    """Every run of positive D2 above T1, flat over all rows, in row-major order.

    Attributes:
        row: ``(n_runs,)`` the row of each run.
        position: ``(n_runs,)`` the sample a peak from this run is placed at.
        d2_sum: ``(n_runs,)`` D2 summed over the run.
    """

    row: NDArray[np.int64]
    position: NDArray[np.int64]
    d2_sum: NDArray[np.float64]

    def peaks(self, t2: float, n_rows: int) -> Ragged:
        """The peaks of runs whose D2 sum exceeds ``t2``, one row per waveform."""
        keep = self.d2_sum > t2
        row, position = self.row[keep], self.position[keep]
        # Two runs can place their peaks on the same sample; that is one peak.
        distinct = np.ones(len(row), dtype=bool)
        distinct[1:] = (row[1:] != row[:-1]) | (position[1:] != position[:-1])
        row, position = row[distinct], position[distinct]
        return Ragged.from_lengths(position, np.bincount(row, minlength=n_rows).astype(np.int64))


def d2_runs(
    samples: NDArray[np.float32],
    lengths: NDArray[np.int64],
    t1_sigma: float,
    smoothing_passes: int,
    max_shift_samples: int,
) -> D2Runs:
    w = samples
    for _ in range(smoothing_passes):
        w = smooth(w)
    d1 = np.zeros_like(w)
    d1[:, 1:] = np.maximum(np.diff(w, axis=1), 0.0)
    d2 = np.zeros_like(d1)
    d2[:, 1:] = np.maximum(np.diff(d1, axis=1), 0.0)
    column = np.arange(w.shape[1], dtype=np.int32)
    active = (d2 > 0) & (w > t1_sigma) & (column[None, :] < lengths[:, None])
    padded = np.pad(active, ((0, 0), (1, 1)))
    start_row, start_col = np.nonzero(active & ~padded[:, :-2])
    end_row, end_col = np.nonzero(active & ~padded[:, 2:])
    # Starts and ends both come in row-major order, so the k-th start and the
    # k-th end bound the same run.
    cumulative = np.cumsum(d2, axis=1, dtype=np.float64)
    d2_sum = cumulative[end_row, end_col] - cumulative[start_row, start_col]
    d2_sum += d2[start_row, start_col]
    # The first local maximum at or after each sample, by a reversed running minimum.
    is_maximum = np.ones(w.shape, dtype=bool)
    is_maximum[:, :-1] = w[:, :-1] >= w[:, 1:]
    maximum_at = np.where(is_maximum, column[None, :], w.shape[1] - 1)
    next_maximum = np.minimum.accumulate(maximum_at[:, ::-1], axis=1)[:, ::-1]
    position = np.minimum(next_maximum[end_row, end_col], end_col + max_shift_samples)
    position = np.minimum(position, lengths[end_row] - 1)
    return D2Runs(end_row.astype(np.int64), position.astype(np.int64), d2_sum)


def d2_peaks(
    samples: NDArray[np.float32],
    lengths: NDArray[np.int64],
    t1_sigma: float,
    t2: float,
    smoothing_passes: int = 1,
    max_shift_samples: int = 2,
) -> Ragged:
    """Peaks found by the D2 derivative algorithm (see the module docstring).

    Args:
        samples: ``(n_rows, n_samples)`` noise-normalised, signal positive
            (``Normalised.samples``).
        lengths: ``(n_rows,)`` valid samples per row.
        t1_sigma: the smoothed amplitude, in noise sigma, D2 is accumulated above.
        t2: the D2 sum a run must exceed to make a peak.
        smoothing_passes: how many times :func:`dndx.chain.candidates.smooth` is applied.
        max_shift_samples: the furthest a peak is placed after its run's end.

    Returns:
        ``n_rows`` rows of int64 sample indices, strictly increasing in each row.

    >>> x = np.zeros((2, 40), dtype=np.float32)
    >>> x[0, 10:16] = [0, 8, 10, 6, 3, 1]
    >>> x[0, 25:31] = [0, 8, 10, 6, 3, 1]
    >>> [row.tolist() for row in d2_peaks(x, np.array([40, 40]), 3.0, 1.0)]
    [[12, 27], []]
    """
    runs = d2_runs(samples, lengths, t1_sigma, smoothing_passes, max_shift_samples)
    return runs.peaks(t2, samples.shape[0])


def time_clusterize(peak_time_ns: Ragged, window_ns: float, growth_ns_per_sqrt_ns: float) -> Ragged:
    """Group each waveform's peaks into clusters; return the clusters' start times.

    A peak at time ``t`` joins the cluster of the peak before it when the gap
    between them is below ``window_ns + growth_ns_per_sqrt_ns * sqrt(t - t_first)``,
    with ``t_first`` the waveform's first peak; gaps are between consecutive
    peaks, so a cluster can grow as a chain.

    Args:
        peak_time_ns: ``n_waveforms`` rows of peak times, sorted within each row.
        window_ns: the window at the first peak.
        growth_ns_per_sqrt_ns: the window's growth with the square root of the
            time since the first peak.

    Returns:
        ``n_waveforms`` rows holding the time of each cluster's first peak;
        ``.lengths`` is the ``(n_waveforms,)`` int64 number of clusters.

    >>> t = Ragged.from_lengths(np.array([0.0, 1.0, 10.0, 100.0, 103.0, 120.0]), [6])
    >>> time_clusterize(t, 2.0, 0.0)[0].tolist()
    [0.0, 10.0, 100.0, 103.0, 120.0]
    >>> time_clusterize(t, 2.0, 0.2).lengths.tolist()  # the window is 4 ns at 100 ns
    [4]
    """
    times = np.asarray(peak_time_ns.values, dtype=np.float64)
    rows = peak_time_ns.row_index()
    first = peak_time_ns.offsets[:-1][rows]
    since_first = np.maximum(times - times[first], 0.0)
    window = window_ns + growth_ns_per_sqrt_ns * np.sqrt(since_first)
    starts = np.ones(len(times), dtype=bool)
    starts[1:] = (rows[1:] != rows[:-1]) | (np.diff(times) >= window[1:])
    lengths = np.bincount(rows[starts], minlength=len(peak_time_ns)).astype(np.int64)
    return Ragged.from_lengths(times[starts], lengths)
