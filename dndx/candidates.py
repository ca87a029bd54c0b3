"""Peak candidates and the fixed windows around them that the peak finder classifies.

A candidate is a local minimum of the second difference (the point of
strongest downward curvature) of the lightly smoothed, noise-normalised
waveform, above a low threshold. Every isolated pulse has one at its top;
a pulse riding on the tail of another shows one at its shoulder even where
there is no local maximum, which plain maxima would miss.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dndx.ragged import Ragged

__all__ = ["extract_windows", "find_candidates", "smooth"]


def smooth(samples: NDArray[np.float32]) -> NDArray[np.float32]:
    """The [1, 2, 1]/4 smoothing of each row of ``(n_rows, n_samples)``; ends kept.

    >>> smooth(np.array([[0, 0, 4, 0, 0]], dtype=np.float32)).tolist()
    [[0.0, 1.0, 2.0, 1.0, 0.0]]
    """
    out = samples.copy()
    out[:, 1:-1] = 0.25 * samples[:, :-2] + 0.5 * samples[:, 1:-1] + 0.25 * samples[:, 2:]
    return out


def find_candidates(
    samples: NDArray[np.float32],
    lengths: NDArray[np.int64],
    threshold_sigma: float,
    window_before: int,
    window_after: int,
) -> Ragged:
    """Candidate sample indices of each row, sorted.

    Args:
        samples: ``(n_rows, n_samples)`` noise-normalised, signal positive.
        lengths: ``(n_rows,)`` valid samples per row.
        threshold_sigma: the smoothed amplitude a candidate must exceed.
        window_before, window_after: candidates whose window would leave the
            row are dropped.

    Returns:
        ``n_rows`` rows of int64 sample indices.

    >>> x = np.zeros((1, 40), dtype=np.float32)
    >>> x[0, 10:14] = [5, 10, 6, 3]
    >>> find_candidates(x, np.array([40]), 2.0, 5, 9)[0].tolist()
    [11]
    """
    s = smooth(samples)
    d2 = np.zeros_like(s)
    d2[:, 1:-1] = s[:, 2:] + s[:, :-2] - 2 * s[:, 1:-1]
    is_candidate = np.zeros(s.shape, dtype=bool)
    is_candidate[:, 2:-2] = (
        (d2[:, 2:-2] < 0)
        & (d2[:, 2:-2] < d2[:, 1:-3])
        & (d2[:, 2:-2] <= d2[:, 3:-1])
        & (s[:, 2:-2] > threshold_sigma)
    )
    column = np.arange(s.shape[1])
    is_candidate &= column >= window_before
    is_candidate &= column[None, :] < (lengths[:, None] - window_after)
    rows, cols = np.nonzero(is_candidate)
    return Ragged.from_lengths(
        cols.astype(np.int64), np.bincount(rows, minlength=s.shape[0]).astype(np.int64)
    )


def extract_windows(
    samples: NDArray[np.float32], candidates: Ragged, window_before: int, window_after: int
) -> NDArray[np.float32]:
    """The windows around all candidates, ``(n_candidates, window_before + 1 + window_after)``.

    >>> x = np.arange(20, dtype=np.float32)[None, :]
    >>> extract_windows(x, Ragged.from_lengths(np.array([5]), [1]), 2, 3).tolist()
    [[3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]
    """
    offsets = np.arange(-window_before, window_after + 1)
    rows = candidates.row_index()
    return samples[rows[:, None], candidates.values[:, None] + offsets[None, :]]
