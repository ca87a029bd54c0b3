"""The candidates' pre-selection: a cut on a candidate's own window, cheap beside
the peak finder, that drops no candidate the peak finder would accept.

About four candidates in ten sit where the waveform holds only noise: a
fluctuation above the candidate threshold, its window no wider in spread than
noise itself. The peak finder rejects them all, so a cut on the window's
spread (the standard deviation of its samples, in noise units) spares it those
windows. The threshold is set on validation below the least spread window the
peak finder accepts (:func:`recall_safe_threshold`); ``prepare`` and inference
both cut with :func:`select_candidates`, so training, evaluation and inference
see the same candidates, and the evaluation measures what the cut loses
(:func:`check_preselection`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dndx.ragged import Ragged

__all__ = [
    "PreselectionCheck",
    "check_preselection",
    "recall_safe_threshold",
    "select_candidates",
    "window_spread",
]


def window_spread(windows: NDArray[np.float32]) -> NDArray[np.float32]:
    """``(n_windows,)`` the standard deviation of each window's samples, in the
    windows' units (noise units for the windows of :func:`dndx.chain.candidates.extract_windows`).

    >>> window_spread(np.array([[0, 2, 0, 2], [1, 1, 1, 1]], dtype=np.float32)).tolist()
    [1.0, 0.0]
    """
    return windows.std(axis=1, dtype=np.float32)


def select_candidates(
    candidates: Ragged, windows: NDArray[np.float32], min_window_std_sigma: float
) -> tuple[Ragged, NDArray[np.float32]]:
    """The candidates whose window spreads at least ``min_window_std_sigma``, and their windows.

    Args:
        candidates: ``n_rows`` rows of candidate sample indices.
        windows: ``(n_candidates, window_length)`` their windows, in noise units.
        min_window_std_sigma: the cut on :func:`window_spread`; 0 keeps all.

    Returns:
        The kept candidates, row by row, and ``(n_kept, window_length)`` their windows.

    >>> windows = np.array([[0, 3, 0], [1, 1, 2], [0, 4, 0]], dtype=np.float32)
    >>> kept, kept_windows = select_candidates(Ragged.from_lengths(np.array([4, 9, 3]), [2, 1]),
    ...                                        windows, 1.0)
    >>> [row.tolist() for row in kept], kept_windows[:, 1].tolist()
    ([[4], [3]], [3.0, 4.0])
    """
    if min_window_std_sigma <= 0:
        return candidates, windows
    keep = window_spread(windows) >= min_window_std_sigma
    rows = candidates.row_index()[keep]
    return (
        Ragged.from_lengths(candidates.values[keep], np.bincount(rows, minlength=len(candidates))),
        windows[keep],
    )


def recall_safe_threshold(
    feature: NDArray[np.floating], accepted: NDArray[np.bool_], margin: float
) -> float:
    """The pre-selection threshold that keeps every accepted candidate, with a margin.

    Args:
        feature: ``(n_candidates,)`` the cut's feature (:func:`window_spread`) of
            validation candidates found without pre-selection; larger is more peak-like.
        accepted: ``(n_candidates,)`` True where the peak finder calls the
            candidate a peak at its working point.
        margin: fraction below the least accepted feature value, in [0, 1),
            for candidates the validation set did not show.

    Returns:
        ``(1 - margin)`` times the smallest feature value of an accepted
        candidate, 0 (no pre-selection) where nothing was accepted.

    >>> recall_safe_threshold(np.array([0.1, 2.0, 0.5, 4.0]),
    ...                       np.array([False, True, False, True]), 0.25)
    1.5
    """
    if not 0 <= margin < 1:
        raise ValueError(f"margin = {margin}: expected a fraction in [0, 1)")
    kept = np.asarray(feature, dtype=np.float64)[np.asarray(accepted, dtype=bool)]
    if not len(kept):
        return 0.0
    return float(max(kept.min(), 0.0) * (1 - margin))


@dataclass(frozen=True)
class PreselectionCheck:
    """What the pre-selection drops of one split's candidates.

    Attributes:
        min_window_std_sigma: the cut.
        n_candidates: candidates found without the cut.
        n_dropped: those the cut drops.
        n_dropped_accepted: dropped candidates the peak finder accepts at its
            working point: what the cut costs the peak finder's recall.
        n_signal: candidates matched to a true peak (found without the cut).
        n_dropped_signal: dropped candidates matched to a true peak.
    """

    min_window_std_sigma: float
    n_candidates: int
    n_dropped: int
    n_dropped_accepted: int
    n_signal: int
    n_dropped_signal: int

    def to_metrics(self) -> dict[str, float | int]:
        """Flat figures under ``preselection.``.

        >>> PreselectionCheck(0.9, 10, 4, 0, 3, 1).to_metrics()["preselection.dropped_fraction"]
        0.4
        """
        figures = {
            "min_window_std_sigma": self.min_window_std_sigma,
            "candidates": self.n_candidates,
            "dropped": self.n_dropped,
            "dropped_fraction": self.n_dropped / self.n_candidates if self.n_candidates else 0.0,
            "dropped_accepted": self.n_dropped_accepted,
            "signal": self.n_signal,
            "dropped_signal": self.n_dropped_signal,
        }
        return {f"preselection.{key}": value for key, value in figures.items()}


def check_preselection(
    dropped: ArrayLike,
    label: ArrayLike,
    dropped_probability: ArrayLike,
    score_threshold: float,
    min_window_std_sigma: float,
) -> PreselectionCheck:
    """Count what the pre-selection drops.

    Args:
        dropped: ``(n_candidates,)`` True where the cut drops a candidate found without it.
        label: ``(n_candidates,)`` 1 where the candidate matches a true peak.
        dropped_probability: ``(n_dropped,)`` the peak finder's scores of the
            dropped candidates, in their order.
        score_threshold: the peak finder's working point.
        min_window_std_sigma: the cut, recorded.

    >>> check_preselection([True, False, True], [1, 1, 0], [0.2, 0.9], 0.5, 0.9).n_dropped_accepted
    1
    """
    dropped = np.asarray(dropped, dtype=bool)
    signal = np.asarray(label) == 1
    probability = np.asarray(dropped_probability, dtype=np.float64)
    if len(probability) != dropped.sum():
        raise ValueError(f"{len(probability)} scores for {int(dropped.sum())} dropped candidates")
    return PreselectionCheck(
        min_window_std_sigma=float(min_window_std_sigma),
        n_candidates=len(dropped),
        n_dropped=int(dropped.sum()),
        n_dropped_accepted=int((probability >= score_threshold).sum()),
        n_signal=int(signal.sum()),
        n_dropped_signal=int((signal & dropped).sum()),
    )
