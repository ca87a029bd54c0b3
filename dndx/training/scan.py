"""Hyperparameter scans: which trials to run, and which trial is best.

Pure functions over the scan's configuration and its table of results; the
flows run the trials and the sequential optimiser.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from dndx.config import METRIC_GOALS, ScanConfig

__all__ = [
    "COST_COLUMNS",
    "grid_choices",
    "rank_trials",
    "select_cheapest",
    "trial_choices",
]

#: A trial's inference cost per waveform, cheapest first by the first (measured
#: ONNX Runtime time on one thread), then by the second (multiply-adds).
COST_COLUMNS = ("onnx_us_per_waveform", "macs_per_waveform")


def grid_choices(space: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Every combination of the space's values, in a fixed order.

    >>> grid_choices({"a": (1, 2), "b": ("x",)})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    names = list(space)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*space.values())]


def trial_choices(scan: ScanConfig) -> list[dict[str, Any]]:
    """The hyperparameters of each trial of a ``grid`` or ``random`` scan.

    A random scan draws ``n_trials`` distinct grid points (all of them if the
    grid is smaller), reproducibly from ``scan.seed``.

    >>> from dndx.config import ScanConfig
    >>> scan = ScanConfig(strategy="random", n_trials=2, seed=7, space={"a": (1, 2, 3)})
    >>> len(trial_choices(scan))
    2
    """
    grid = grid_choices(scan.space)
    if scan.strategy == "grid":
        return grid
    if scan.strategy == "random":
        rng = np.random.default_rng(scan.seed)
        picked = rng.permutation(len(grid))[: min(scan.n_trials, len(grid))]
        return [grid[i] for i in sorted(picked)]
    raise ValueError(f"strategy {scan.strategy!r} chooses its trials sequentially")


def rank_trials(table: pd.DataFrame, selection: tuple[str, ...]) -> pd.DataFrame:
    """Trials sorted best first by ``selection`` (later metrics break ties).

    Failed trials (``status`` other than ``"finished"``) and trials with a
    missing or non-finite selection metric come last.

    >>> t = pd.DataFrame({"trial": [0, 1, 2], "status": ["finished", "failed", "finished"],
    ...                   "val_f1": [0.8, float("nan"), 0.9], "val_auc": [0.9, float("nan"), 0.9]})
    >>> rank_trials(t, ("val_f1", "val_auc"))["trial"].tolist()
    [2, 0, 1]
    """
    keys = []
    for metric in selection:
        values = pd.to_numeric(table.get(metric, pd.Series(np.nan, index=table.index)))
        sign = -1.0 if METRIC_GOALS[metric] == "max" else 1.0
        keys.append((sign * values).where(np.isfinite(values), np.inf))
    usable = table["status"].eq("finished") & np.isfinite(keys[0])
    order = np.lexsort([k.to_numpy() for k in reversed(keys)] + [~usable.to_numpy()])
    return table.iloc[order].reset_index(drop=True)


def select_cheapest(ranked: pd.DataFrame, metric: str, cost_tolerance: float) -> int:
    """Row of ``ranked`` (from :func:`rank_trials`) to keep: the cheapest finished trial
    whose ``metric`` is within ``cost_tolerance`` (relative) of the best trial's.

    Cost is :data:`COST_COLUMNS`, in order; among trials of equal cost the better
    ranked wins. A tolerance of 0 keeps the best-ranked trial, whatever its cost.

    >>> t = pd.DataFrame({"trial": [0, 1, 2], "status": ["finished"] * 3,
    ...                   "val_f1": [0.90, 0.89, 0.80], "onnx_us_per_waveform": [9.0, 3.0, 1.0],
    ...                   "macs_per_waveform": [900, 300, 100]})
    >>> select_cheapest(t, "val_f1", 0.0), select_cheapest(t, "val_f1", 0.02)
    (0, 1)
    """
    if cost_tolerance == 0.0:
        return 0
    values = pd.to_numeric(ranked[metric])
    best = float(values.iloc[0])
    slack = cost_tolerance * abs(best)
    close = values >= best - slack if METRIC_GOALS[metric] == "max" else values <= best + slack
    eligible = ranked[close & ranked["status"].eq("finished")]
    cheapest = eligible.sort_values(list(COST_COLUMNS), kind="stable", na_position="last")
    return int(ranked.index.get_loc(cheapest.index[0]))
