"""Peak candidates and the fixed windows around them that the peak finder classifies.

A candidate is a local minimum of the second difference (the point of
strongest downward curvature) of the lightly smoothed, noise-normalised
waveform, above a low threshold. Every isolated pulse has one at its top;
a pulse riding on the tail of another shows one at its shoulder even where
there is no local maximum, which plain maxima would miss.

A candidate's curvature (minus that second difference, in noise units) can
also pre-select it (``min_curvature_sigma``); on the simulated waveforms the
peak finder accepts candidates of every curvature down to 0, so the recall-safe
cut is the window's spread instead (:mod:`dndx.chain.preselection`). Training,
evaluation and inference all find candidates here, so the pre-selection is the
same everywhere: :func:`candidate_step` is the one step, normalise -> find ->
pre-select, that training and serving both run, configured by one
:class:`~dndx.config.CandidateConfig`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dndx.chain.preprocessing import Normalised, Polarity, normalise
from dndx.chain.preselection import select_candidates
from dndx.config import CandidateConfig
from dndx.ragged import Ragged

__all__ = [
    "candidate_curvature",
    "candidate_step",
    "extract_windows",
    "find_candidates",
    "smooth",
    "smoothed_at",
]


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
    min_curvature_sigma: float,
) -> Ragged:
    """Candidate sample indices of each row, sorted.

    Args:
        samples: ``(n_rows, n_samples)`` noise-normalised, signal positive.
        lengths: ``(n_rows,)`` valid samples per row.
        threshold_sigma: the smoothed amplitude a candidate must exceed.
        window_before, window_after: candidates whose window would leave the
            row are dropped.
        min_curvature_sigma: the pre-selection: candidates whose curvature
            (:func:`candidate_curvature`) is below this are dropped; 0 keeps all.

    Returns:
        ``n_rows`` rows of int64 sample indices.

    >>> x = np.zeros((1, 40), dtype=np.float32)
    >>> x[0, 10:14] = [5, 10, 6, 3]
    >>> find_candidates(x, np.array([40]), 2.0, 5, 9, 0.0)[0].tolist()
    [11]
    >>> find_candidates(x, np.array([40]), 2.0, 5, 9, 6.0)[0].tolist()
    []
    """
    s = smooth(samples)
    n_rows, n_samples = s.shape
    # Only columns whose window fits in the longest row can hold a candidate.
    first = max(2, window_before)
    stop = min(n_samples - 2, int(lengths.max(initial=0)) - window_after)
    if stop <= first:
        return Ragged.from_lengths(np.zeros(0, np.int64), np.zeros(n_rows, np.int64))
    # d2[:, j] is the second difference at column first - 1 + j.
    d2 = s[:, first : stop + 2] + s[:, first - 2 : stop] - 2 * s[:, first - 1 : stop + 1]
    centre = d2[:, 1:-1]
    is_candidate = centre < 0
    is_candidate &= centre < d2[:, :-2]
    is_candidate &= centre <= d2[:, 2:]
    is_candidate &= s[:, first:stop] > threshold_sigma
    if min_curvature_sigma > 0:
        is_candidate &= centre <= -min_curvature_sigma
    if (lengths < stop + window_after).any():
        is_candidate &= np.arange(first, stop)[None, :] < (lengths[:, None] - window_after)
    rows, cols = np.nonzero(is_candidate)
    return Ragged.from_lengths(
        cols.astype(np.int64) + first, np.bincount(rows, minlength=n_rows).astype(np.int64)
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


def smoothed_at(
    samples: NDArray[np.float32], rows: NDArray[np.int64], columns: NDArray[np.int64]
) -> NDArray[np.float32]:
    """:func:`smooth` of ``samples`` at interior points only, ``(n_points,)``:
    a candidate's height in noise units, without smoothing every sample.

    >>> x = np.array([[0, 0, 4, 0, 0]], dtype=np.float32)
    >>> smoothed_at(x, np.array([0, 0]), np.array([1, 2])).tolist() == smooth(x)[0, 1:3].tolist()
    True
    """
    return (
        0.25 * samples[rows, columns - 1]
        + 0.5 * samples[rows, columns]
        + 0.25 * samples[rows, columns + 1]
    )


def candidate_curvature(samples: NDArray[np.float32], candidates: Ragged) -> NDArray[np.float32]:
    """``(n_candidates,)`` minus the second difference of the smoothed waveform at
    each candidate, in noise units: the number :func:`find_candidates` compares
    with ``min_curvature_sigma``, bit for bit.

    Args:
        samples: ``(n_rows, n_samples)`` the waveforms the candidates were found in.
        candidates: their candidates, each at least two samples from either end.

    >>> x = np.zeros((1, 40), dtype=np.float32)
    >>> x[0, 10:14] = [5, 10, 6, 3]
    >>> candidate_curvature(x, find_candidates(x, np.array([40]), 2.0, 5, 9, 0.0)).tolist()
    [4.25]
    """
    rows, columns = candidates.row_index(), candidates.values
    d2 = (
        smoothed_at(samples, rows, columns + 1)
        + smoothed_at(samples, rows, columns - 1)
        - 2 * smoothed_at(samples, rows, columns)
    )
    return -d2


def candidate_step(
    samples: Ragged,
    sampling_rate_ghz: NDArray[np.floating] | float,
    polarity: Polarity,
    settings: CandidateConfig,
) -> tuple[Normalised, Ragged, NDArray[np.float32]]:
    """Normalise raw waveforms, find their candidates and pre-select them, as
    training (:func:`dndx.truth.preparation.prepare_waveforms`) and serving
    (:func:`dndx.chain.inference.infer_waveforms`) both do.

    Args:
        samples: ``n_waveforms`` rows of raw samples in any unit.
        sampling_rate_ghz: the rate of each row, ``(n_waveforms,)``, or one for all.
        polarity: the sign of the signal, or ``"auto"``
            (:func:`dndx.chain.preprocessing.normalise`).
        settings: the candidate step's settings.

    Returns:
        The waveforms at the model rate, their kept candidates (``n_waveforms``
        rows of sample indices) and the candidates' windows,
        ``(n_candidates, window_length)`` float32, C-contiguous.
    """
    norm = normalise(samples, sampling_rate_ghz, settings.model_sampling_rate_ghz, polarity)
    before, after = settings.window_before, settings.window_after
    candidates = find_candidates(
        norm.samples,
        norm.lengths,
        settings.candidate_threshold_sigma,
        before,
        after,
        settings.min_curvature_sigma,
    )
    candidates, windows = select_candidates(
        candidates,
        extract_windows(norm.samples, candidates, before, after),
        settings.min_window_std_sigma,
    )
    return norm, candidates, np.ascontiguousarray(windows, dtype=np.float32)
