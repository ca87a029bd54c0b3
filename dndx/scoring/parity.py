"""Outcome parity: may a cheaper pair (quantized, reduced precision) stand in for
the float pair it was made from?

A quantized graph's raw outputs differ from the float graph's by design, so
comparing them sample by sample (the export's parity check) says nothing
useful. What must not change is what physicists use: peak efficiency x purity
and the counting figures on the test set. The cheaper pair passes when every
compared figure stays within the tolerance of the float pair's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["OUTCOME_FIGURES", "OutcomeParity", "matching_threshold", "outcome_parity"]

#: The figures compared, as :func:`dndx.scoring.bundle_scores.score_bundle` names them.
OUTCOME_FIGURES: tuple[str, ...] = (
    "peak_efficiency_x_purity",
    "rms_over_sqrt_n",
    "relative_bias",
    "linearity_slope",
)


@dataclass(frozen=True)
class OutcomeParity:
    """The verdict and its reason, for logs and the registry report.

    Attributes:
        passed: every figure within the tolerance.
        reason: the figures that moved, or that none did beyond the tolerance.
        differences: ``figure -> cheaper - float``.
    """

    passed: bool
    reason: str
    differences: dict[str, float]


def outcome_parity(
    reference: Mapping[str, float], candidate: Mapping[str, float], tolerance: float
) -> OutcomeParity:
    """Compare a cheaper pair's test figures with the float pair's.

    Args:
        reference: the float pair's figures (at least :data:`OUTCOME_FIGURES`).
        candidate: the cheaper pair's figures, on the same waveforms.
        tolerance: the largest absolute change allowed in any figure.

    >>> ref = {"peak_efficiency_x_purity": 0.80, "rms_over_sqrt_n": 0.60,
    ...        "relative_bias": 0.01, "linearity_slope": 1.00}
    >>> outcome_parity(ref, {**ref, "rms_over_sqrt_n": 0.603}, 0.005).passed
    True
    >>> outcome_parity(ref, {**ref, "relative_bias": 0.02}, 0.005).reason
    'relative_bias moved by +0.0100 (tolerance 0.005)'
    """
    differences = {name: candidate[name] - reference[name] for name in OUTCOME_FIGURES}
    moved = {name: d for name, d in differences.items() if not abs(d) <= tolerance}
    if moved:
        reason = "; ".join(
            f"{n} moved by {d:+.4f} (tolerance {tolerance:g})" for n, d in moved.items()
        )
    else:
        reason = f"every figure within {tolerance:g} of the float pair"
    return OutcomeParity(not moved, reason, differences)


def matching_threshold(
    reference: NDArray[np.floating], reference_threshold: float, candidate: NDArray[np.floating]
) -> float:
    """The working point at which a cheaper peak finder accepts as many windows as
    the float one at its own: ``candidate``'s scores of the same ``(n_windows,)``
    validation windows as ``reference``'s.

    Quantization shifts the scores a little everywhere; the counter was trained
    on the float peak finder's decisions, so the cheaper one keeps their number
    rather than the float threshold's value.

    >>> reference = np.array([0.125, 0.375, 0.625, 0.75, 0.875])
    >>> float(matching_threshold(reference, 0.5, reference - 0.125))
    0.5
    >>> float(matching_threshold(reference, 0.95, reference))
    inf
    """
    n_accepted = int(np.count_nonzero(reference >= reference_threshold))
    if n_accepted == 0:
        return float("inf")
    return float(np.sort(candidate)[len(candidate) - n_accepted])
