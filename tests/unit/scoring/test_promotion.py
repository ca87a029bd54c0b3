"""The promotion rule: which alias a new pair earns against the champion's figures."""

from __future__ import annotations

import pytest

from dndx.scoring.promotion import CHALLENGER, CHAMPION, decide


@pytest.mark.parametrize(
    ("separation", "efficiency", "alias", "reason"),
    [
        # Less separation loses whatever the test figures.
        (0.79, 0.90, CHALLENGER, "separation_ratio 0.7900 vs champion 0.8000 (worse): the"),
        # As much separation wins even with a worse test figure, which the reason names.
        (0.80, 0.70, CHAMPION, "peak_efficiency_x_purity 0.7000 vs champion 0.7500 (worse)"),
        (0.81, 0.75, CHAMPION, "separation_ratio 0.8100 vs champion 0.8000 (at least as good)"),
        # Not measured (no validation tracks of the pair): the test figures decide.
        (None, 0.76, CHAMPION, "separation_ratio not measured on both pairs"),
        (None, 0.74, CHALLENGER, "peak_efficiency_x_purity 0.7400 vs champion 0.7500 (worse)"),
    ],
)
def test_promotion_is_decided_by_the_separation_where_both_pairs_have_it(
    separation: float | None, efficiency: float, alias: str, reason: str
) -> None:
    champion = {"separation_ratio": 0.80, "peak_efficiency_x_purity": 0.75, "rms_over_sqrt_n": 0.7}
    new = {"peak_efficiency_x_purity": efficiency, "rms_over_sqrt_n": 0.6}
    if separation is not None:
        new["separation_ratio"] = separation
    decided, why = decide(new, champion)
    assert (decided, reason in why) == (alias, True)
    assert "rms_over_sqrt_n 0.6000 vs champion 0.7000 (at least as good)" in why
