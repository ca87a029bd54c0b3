"""The promotion rule: which alias a newly registered pair of models earns against
the champion pair, from figures both pairs were scored on through ONNX Runtime
(:mod:`dndx.scoring.bundle_scores`).

1. separation decides: S / S_Poisson of ``train_cluster_counter.separation_pair``
   on the validation tracks, averaged over ``separation_momenta_gev``. The new
   pair becomes :data:`CHAMPION` if it keeps at least as much of the Poisson
   separation power as the champion, else :data:`CHALLENGER`; the test figures
   of :data:`COMPARED` are reported beside it;
2. without a separation figure for both pairs, the test figures decide: the new
   pair becomes :data:`CHAMPION` only if it is at least as good on each.

Where the user requires the quality gate (``quality_gate.require``), a pair that
missed one of its thresholds in the evaluate stage
(:func:`dndx.scoring.quality_gate.missed_thresholds`) is registered but promoted to
neither.
"""

from __future__ import annotations

__all__ = ["CHALLENGER", "CHAMPION", "COMPARED", "SEPARATION", "decide"]

CHAMPION = "champion"
CHALLENGER = "challenger"

#: The test figures a pair is compared on after the separation, and which way is better.
COMPARED = {"peak_efficiency_x_purity": "max", "rms_over_sqrt_n": "min"}
#: The figure compared first: S / S_Poisson on the validation tracks (larger is better).
SEPARATION = "separation_ratio"


def decide(new: dict[str, float], champion: dict[str, float] | None) -> tuple[str, str]:
    """The alias of a new pair against the champion pair's figures, and why: the
    separation (:data:`SEPARATION`) where both were measured, else every test
    figure of :data:`COMPARED`; the reason names every figure either way.

    >>> decide({"separation_ratio": 0.80, "peak_efficiency_x_purity": 0.9,
    ...         "rms_over_sqrt_n": 0.5}, {"separation_ratio": 0.82,
    ...         "peak_efficiency_x_purity": 0.8, "rms_over_sqrt_n": 0.7})[0]
    'challenger'
    >>> decide({"separation_ratio": 0.84, "peak_efficiency_x_purity": 0.8,
    ...         "rms_over_sqrt_n": 0.72}, {"separation_ratio": 0.82,
    ...         "peak_efficiency_x_purity": 0.8, "rms_over_sqrt_n": 0.7})[0]
    'champion'
    """
    if champion is None:
        return CHAMPION, "no champion yet: the first registered pair becomes champion"

    def verdict(key: str, ok: bool) -> str:
        return (
            f"{key} {new[key]:.4f} vs champion {champion[key]:.4f} "
            f"({'at least as good' if ok else 'worse'})"
        )

    better_or_equal = {
        key: new[key] >= champion[key] if goal == "max" else new[key] <= champion[key]
        for key, goal in COMPARED.items()
    }
    figures = [verdict(key, ok) for key, ok in better_or_equal.items()]
    if SEPARATION in new and SEPARATION in champion:
        kept = new[SEPARATION] >= champion[SEPARATION]
        return (
            CHAMPION if kept else CHALLENGER,
            "; ".join([verdict(SEPARATION, kept) + ": the separation decides", *figures]),
        )
    not_measured = (
        f"{SEPARATION} not measured on both pairs (no validation tracks of the "
        "chosen particles and momenta): the test figures decide"
    )
    return (
        CHAMPION if all(better_or_equal.values()) else CHALLENGER,
        "; ".join([not_measured, *figures]),
    )
