"""The cluster counter's input: the peaks of a waveform as a fixed-length image.

The time axis of the waveform (at the model rate) is cut into ``n_bins``
bins. Each bin holds four channels:

0. detected peaks in the bin (the peak finder's decisions);
1. their summed height, in units of the waveform's typical single-peak
   height (the median detected height), so that no amplitude unit, gain or
   noise level leaks in;
2. the summed peak-finder probability of every candidate in the bin (a soft
   count that keeps what the threshold throws away);
3. the mean waveform in the bin, in the same height unit.

Peak times alone make a CNN regress towards the mean (docs/physics.md); heights
tell a two-electron pile-up from one electron, and the waveform shows the
pile-ups that no candidate resolved.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dndx.ragged import Ragged

__all__ = ["N_CHANNELS", "encode_peaks"]

N_CHANNELS = 4


def encode_peaks(
    candidate_samples: Ragged,
    candidate_height: NDArray[np.floating],
    candidate_probability: NDArray[np.floating],
    detected: NDArray[np.bool_],
    samples: NDArray[np.float32],
    lengths: NDArray[np.int64],
    n_bins: int,
    samples_per_bin: float,
) -> NDArray[np.float32]:
    """Encode each waveform's candidates into ``(n_waveforms, n_bins, N_CHANNELS)``.

    Args:
        candidate_samples: candidate sample indices per waveform (model rate).
        candidate_height: ``(n_candidates,)`` smoothed heights in noise units.
        candidate_probability: ``(n_candidates,)`` peak-finder outputs.
        detected: ``(n_candidates,)`` which candidates are called peaks.
        samples: ``(n_waveforms, n_samples)`` the normalised waveforms.
        lengths: ``(n_waveforms,)`` valid samples per row.
        n_bins: bins of the encoding; samples past ``n_bins * samples_per_bin``
            are not encoded.
        samples_per_bin: width of a bin in samples.

    >>> c = Ragged.from_lengths(np.array([3, 4, 9]), [3])
    >>> x = encode_peaks(c, np.array([10.0, 20.0, 10.0]), np.array([0.9, 0.2, 0.8]),
    ...                  np.array([True, False, True]), np.zeros((1, 12), np.float32),
    ...                  np.array([12]), 4, 3.0)
    >>> x[0, :, 0].tolist(), x[0, :, 1].tolist()
    ([0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0])
    """
    n_waveforms = len(candidate_samples)
    rows = candidate_samples.row_index()
    height = np.asarray(candidate_height, dtype=np.float64)
    unit = _typical_height(rows[detected], height[detected], n_waveforms)
    bins = (candidate_samples.values / samples_per_bin).astype(np.int64)
    inside = bins < n_bins
    flat = rows * n_bins + bins
    size = n_waveforms * n_bins
    keep = detected & inside
    flat_out = np.zeros((size, N_CHANNELS), dtype=np.float64)
    flat_out[:, 0] = np.bincount(flat[keep], minlength=size)
    flat_out[:, 1] = np.bincount(
        flat[keep], weights=height[keep] / unit[rows[keep]], minlength=size
    )
    flat_out[:, 2] = np.bincount(
        flat[inside], weights=np.asarray(candidate_probability, float)[inside], minlength=size
    )
    out = flat_out.reshape(n_waveforms, n_bins, N_CHANNELS)
    out[:, :, 3] = _bin_means(samples, lengths, n_bins, samples_per_bin) / unit[:, None]
    return out.astype(np.float32)


def _typical_height(
    rows: NDArray[np.int64], height: NDArray[np.float64], n_waveforms: int
) -> NDArray[np.float64]:
    """Median detected height per waveform; 1 where a waveform has no detection."""
    unit = np.ones(n_waveforms)
    if len(rows):
        order = np.lexsort((height, rows))
        sorted_rows, sorted_height = rows[order], height[order]
        starts = np.searchsorted(sorted_rows, np.arange(n_waveforms), side="left")
        stops = np.searchsorted(sorted_rows, np.arange(n_waveforms), side="right")
        has = stops > starts
        lower = sorted_height[(starts + (stops - starts - 1) // 2)[has]]
        upper = sorted_height[(starts + (stops - starts) // 2)[has]]
        unit[has] = 0.5 * (lower + upper)
    return np.maximum(unit, 1e-6)


def _bin_means(
    samples: NDArray[np.float32], lengths: NDArray[np.int64], n_bins: int, samples_per_bin: float
) -> NDArray[np.float64]:
    """``(n_waveforms, n_bins)`` mean of the valid samples in each bin (0 where none)."""
    n_waveforms, n_samples = samples.shape
    column = np.arange(n_samples)
    bins = (column / samples_per_bin).astype(np.int64)
    valid = (column[None, :] < lengths[:, None]) & (bins[None, :] < n_bins)
    flat = (np.arange(n_waveforms)[:, None] * n_bins + bins[None, :])[valid]
    size = n_waveforms * n_bins
    total = np.bincount(flat, weights=samples[valid], minlength=size)
    count = np.bincount(flat, minlength=size)
    return (total / np.maximum(count, 1)).reshape(n_waveforms, n_bins)
