"""The table of a ranked scan, for ``reports/scan_*.md``."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from dndx.reporting.tables import markdown_table
from dndx.training.scan import COST_COLUMNS

__all__ = ["scan_markdown"]


def scan_markdown(ranked: pd.DataFrame, hyperparameters: list[str], metrics: list[str]) -> str:
    """A Markdown table of a ranked scan: one row per trial, best first.

    >>> ranked = pd.DataFrame({"trial": [1, 0], "status": ["finished", "failed"],
    ...                        "lstm_units": [(32, 32), (32,)], "val_f1": [0.91234, float("nan")]})
    >>> print(scan_markdown(ranked, ["lstm_units"], ["val_f1"]), end="")
    | trial | status | lstm_units | val_f1 |
    |--:|:--|:--|--:|
    | 1 | finished | [32, 32] | 0.9123 |
    | 0 | failed | [32] |  |
    """
    # What each trial costs at inference beside its scores.
    columns = [
        "trial",
        "status",
        *hyperparameters,
        *metrics,
        *COST_COLUMNS,
        "n_parameters",
        "wall_time_s",
        "peak_memory_mb",
    ]
    present = [c for c in columns if c in ranked.columns]
    rows = [[_cell(row[c]) for c in present] for _, row in ranked.iterrows()]
    return markdown_table(present, rows) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
