"""The quality gate: the user's acceptance thresholds (``params.yaml``
``quality_gate``), which check the evaluate stage checks the figures against
(:class:`dndx.scoring.evaluation.TargetCheck`), and which of them a pair missed, as
``register`` reads them when ``quality_gate.require`` is on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["THRESHOLDS", "missed_thresholds"]

#: Each check, by name, and the key of ``quality_gate`` that holds its threshold.
THRESHOLDS: dict[str, str] = {
    "candidate_precision": "min_candidate_precision",
    "candidate_recall": "min_candidate_recall",
    "candidate_auc": "min_candidate_auc",
    "peak_gain_over_d2": "min_peak_gain_over_d2",
    "peak_efficiency_x_purity": "min_peak_efficiency_x_purity",
    "counting_abs_relative_bias": "max_abs_relative_bias",
    "separation_ratio_to_poisson": "min_separation_ratio_to_poisson",
    "separation_gain_over_d2": "min_separation_gain_over_d2",
}


def missed_thresholds(evaluation: Mapping[str, Any], separation: Mapping[str, Any]) -> list[str]:
    """The ``quality_gate`` thresholds the evaluate stage found missed, each as
    ``name value vs quality_gate.key limit``.

    Args:
        evaluation: ``metrics/evaluate.json``: flat ``target.<name>.{value, limit,
            passed}``.
        separation: ``metrics/separation.json``: ``target`` holds ``<name>`` with
            ``value``, ``limit`` and ``passed`` (a value not measured is None).

    >>> missed_thresholds(
    ...     {"target.candidate_recall.value": 0.926, "target.candidate_recall.limit": 0.94,
    ...      "target.candidate_recall.passed": False, "target.candidate_auc.value": 0.995,
    ...      "target.candidate_auc.limit": 0.99, "target.candidate_auc.passed": True},
    ...     {"target": {"separation_gain_over_d2": {"value": None, "limit": 1.6,
    ...                                             "passed": False}}})
    ['candidate_recall 0.926 vs quality_gate.min_candidate_recall 0.94', \
'separation_gain_over_d2 not measured vs quality_gate.min_separation_gain_over_d2 1.6']
    """
    checks = {
        key.removeprefix("target.").removesuffix(".passed"): passed
        for key, passed in evaluation.items()
        if key.startswith("target.") and key.endswith(".passed")
    }
    figures = {
        name: (evaluation[f"target.{name}.value"], evaluation[f"target.{name}.limit"])
        for name in checks
    }
    for name, check in separation.get("target", {}).items():
        checks[name] = check["passed"]
        figures[name] = (check["value"], check["limit"])
    missed = []
    for name, passed in checks.items():
        if passed:
            continue
        value, limit = figures[name]
        measured = "not measured" if value is None or math.isnan(value) else f"{value:.4g}"
        missed.append(f"{name} {measured} vs quality_gate.{THRESHOLDS[name]} {limit:g}")
    return missed
