"""Truth labels: the peaks a perfect peak finder would see, and one-to-one matching.

Electrons closer in time than the resolving time make one visible pulse, so
they form one *expected peak* (at their amplitude-weighted mean time). A
candidate is signal when it is matched one-to-one to an expected peak within
a tolerance in samples; matching is greedy by distance, so each expected peak
takes at most one candidate and each candidate at most one expected peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dndx.ragged import Ragged

__all__ = ["ExpectedPeaks", "Matching", "expected_peaks", "match_peaks"]


@dataclass(frozen=True, eq=False)
class ExpectedPeaks:
    """The expected peaks of each waveform, sorted in time.

    Attributes:
        time_ns: ``n_waveforms`` rows of peak times (pulse maxima), ns from
            the window start.
        n_electrons: ``(n_peaks,)`` electrons merged into each peak.
        n_primary: ``(n_peaks,)`` primary electrons among them.
        arrival_ns: ``(n_peaks,)`` arrival time of the first electron, for
            binning in drift time.
    """

    time_ns: Ragged
    n_electrons: NDArray[np.int64]
    n_primary: NDArray[np.int64]
    arrival_ns: NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Matching:
    """Result of matching detections to expected peaks, both flat over all waveforms.

    Attributes:
        detection_match: ``(n_detections,)`` index of the matched expected peak, or -1.
        expected_match: ``(n_expected,)`` index of the matched detection, or -1.
    """

    detection_match: NDArray[np.int64]
    expected_match: NDArray[np.int64]


def expected_peaks(
    electron_time_ns: Ragged,
    electron_amplitude: NDArray[np.floating],
    electron_primary: NDArray[np.bool_],
    peak_delay_ns: NDArray[np.floating],
    resolving_time_ns: float,
    window_ns: float | NDArray[np.floating] = np.inf,
) -> ExpectedPeaks:
    """Merge electrons into the peaks a perfect finder would resolve.

    Args:
        electron_time_ns: arrival times per waveform, sorted within each row.
        electron_amplitude: ``(n_electrons,)`` pulse heights, the merge weights.
        electron_primary: ``(n_electrons,)`` primary flags.
        peak_delay_ns: ``(n_waveforms,)`` arrival-to-maximum delay of the pulse.
        resolving_time_ns: consecutive electrons closer than this merge.
        window_ns: peaks at or after this time (per waveform or for all) are dropped.

    >>> t = Ragged.from_lengths(np.array([10.0, 10.5, 20.0]), [3])
    >>> p = expected_peaks(t, np.ones(3), np.array([True, False, True]), np.array([1.0]), 1.0)
    >>> p.time_ns[0].tolist(), p.n_electrons.tolist(), p.n_primary.tolist()
    ([11.25, 21.0], [2, 1], [1, 1])
    """
    times = electron_time_ns.values.astype(np.float64)
    rows = electron_time_ns.row_index()
    new_row = np.ones(len(times), dtype=bool)
    new_row[1:] = rows[1:] != rows[:-1]
    starts_group = new_row.copy()
    starts_group[1:] |= np.diff(times) >= resolving_time_ns
    group = np.cumsum(starts_group) - 1
    n_groups = int(group[-1]) + 1 if len(group) else 0
    weight = np.asarray(electron_amplitude, dtype=np.float64)
    weight_sum = np.bincount(group, weights=weight, minlength=n_groups)
    mean_time = np.bincount(group, weights=weight * times, minlength=n_groups) / np.where(
        weight_sum > 0, weight_sum, 1.0
    )
    group_row = rows[starts_group]
    peak_time = mean_time + np.asarray(peak_delay_ns, dtype=np.float64)[group_row]
    n_electrons = np.bincount(group, minlength=n_groups).astype(np.int64)
    n_primary = np.bincount(group, weights=electron_primary, minlength=n_groups).astype(np.int64)
    arrival = times[starts_group]
    limit = np.broadcast_to(np.asarray(window_ns, dtype=float), (len(electron_time_ns),))
    keep = peak_time < limit[group_row]
    lengths = np.bincount(group_row[keep], minlength=len(electron_time_ns)).astype(np.int64)
    return ExpectedPeaks(
        Ragged.from_lengths(peak_time[keep], lengths),
        n_electrons[keep],
        n_primary[keep],
        arrival[keep],
    )


def match_peaks(
    detected_samples: Ragged, expected_samples: Ragged, tolerance_samples: float
) -> Matching:
    """Match detections to expected peaks one-to-one within ``tolerance_samples``.

    Both arguments have one row per waveform, sorted within the row; expected
    positions may be fractional. Nearest pairs are matched first.

    >>> det = Ragged.from_lengths(np.array([10, 12, 30]), [3])
    >>> exp = Ragged.from_lengths(np.array([11.2, 29.0, 50.0]), [3])
    >>> m = match_peaks(det, exp, 2)
    >>> m.detection_match.tolist(), m.expected_match.tolist()
    ([-1, 0, 1], [1, 2, -1])
    """
    det_pos = detected_samples.values.astype(np.float64)
    exp_pos = expected_samples.values.astype(np.float64)
    det_row = detected_samples.row_index()
    exp_row = expected_samples.row_index()
    # All pairs in the same row within tolerance, found by a sorted sweep.
    span = float(max(det_pos.max(initial=0), exp_pos.max(initial=0))) + 4 * tolerance_samples + 4
    det_key = det_row * span + det_pos
    exp_key = exp_row * span + exp_pos
    order = np.argsort(exp_key, kind="stable")
    sorted_keys = exp_key[order]
    lo = np.searchsorted(sorted_keys, det_key - tolerance_samples, side="left")
    hi = np.searchsorted(sorted_keys, det_key + tolerance_samples, side="right")
    n_pairs = hi - lo
    pair_det = np.repeat(np.arange(len(det_pos)), n_pairs)
    pair_exp = order[np.repeat(lo, n_pairs) + _ranges(n_pairs)]
    distance = np.abs(det_pos[pair_det] - exp_pos[pair_exp])
    # Greedy by distance: take a pair only if neither end is taken yet.
    detection_match = np.full(len(det_pos), -1, dtype=np.int64)
    expected_match = np.full(len(exp_pos), -1, dtype=np.int64)
    by_distance = np.lexsort((pair_exp, pair_det, distance))
    pair_det, pair_exp = pair_det[by_distance], pair_exp[by_distance]
    while len(pair_det):
        # The first pair of each detection and of each expected peak in distance order;
        # a pair that is first for both is certainly in the greedy matching.
        first_for_det = _first_occurrence(pair_det)
        first_for_exp = _first_occurrence(pair_exp)
        take = first_for_det & first_for_exp
        detection_match[pair_det[take]] = pair_exp[take]
        expected_match[pair_exp[take]] = pair_det[take]
        free = (detection_match[pair_det] < 0) & (expected_match[pair_exp] < 0)
        pair_det, pair_exp = pair_det[free], pair_exp[free]
    return Matching(detection_match, expected_match)


def _ranges(lengths: NDArray[np.int64]) -> NDArray[np.int64]:
    """``concatenate([arange(n) for n in lengths])`` without a loop."""
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - starts


def _first_occurrence(values: NDArray[np.int64]) -> NDArray[np.bool_]:
    first = np.zeros(len(values), dtype=bool)
    _, index = np.unique(values, return_index=True)
    first[index] = True
    return first
