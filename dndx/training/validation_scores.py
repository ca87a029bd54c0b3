"""The validation figures a scan trial is judged and stopped on, from a model's
predictions alone: the ``val_*`` names of ``params.yaml``'s ``selection`` and
``early_stopping_metric``.
"""

from __future__ import annotations

import numpy as np

from dndx.scoring.metrics import best_threshold, binary_scores, counting_metrics, roc_auc

__all__ = ["counting_scores", "peak_finder_scores"]


def peak_finder_scores(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Validation metrics of peak-finder scores ``(n,)`` against labels ``(n,)`` at
    their best threshold.

    >>> s = peak_finder_scores(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    >>> s["val_efficiency_x_purity"], s["val_auc"]
    (1.0, 1.0)
    """
    at_threshold = binary_scores(labels, scores, best_threshold(labels, scores))
    return {
        "val_precision": at_threshold["precision"],
        "val_recall": at_threshold["recall"],
        "val_f1": at_threshold["f1"],
        "val_efficiency_x_purity": at_threshold["precision"] * at_threshold["recall"],
        "val_auc": roc_auc(labels, scores),
    }


def counting_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Validation metrics of counter outputs ``(n,)`` against true counts ``(n,)``."""
    scores = counting_metrics(predicted, truth)
    return {
        "val_rms_over_sqrt_n": scores["rms_over_sqrt_n"],
        "val_relative_bias": scores["relative_bias"],
        "val_abs_relative_bias": abs(scores["relative_bias"]),
        "val_linearity_slope": scores["linearity_slope"],
        "val_abs_slope_error": abs(scores["linearity_slope"] - 1.0),
        "val_mae": float(np.mean(np.abs(predicted - truth))),
    }
