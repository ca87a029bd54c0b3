"""Prefect tasks of the ``evaluate`` stage's track level: every cell of the test
tracks counted by every method, one chunk per task on Dask workers, then the
separation powers.

A worker loads each model once and keeps it for the chunks it is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from prefect import task
from prefect.cache_policies import NO_CACHE

from dndx.config import CounterInputConfig, PrepareConfig
from dndx.errors import InputError
from dndx.io.dataset import read_waveform_set
from dndx.scoring.evaluation import BaselineTuning
from dndx.scoring.track_evaluation import (
    SeparationTargets,
    TrackEvaluation,
    count_track_cells,
    evaluate_tracks,
)

__all__ = ["count_track_chunk", "score_tracks"]


def _model(model_path: str) -> Any:
    if not Path(model_path).is_file():
        raise InputError(f"{model_path}: no such model; run the training stages first")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.saving import load_model_once

    return load_model_once(model_path)


@task(
    task_run_name="count the test tracks of {path.name}",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=1,
)
def count_track_chunk(
    path: Path,
    prepare: PrepareConfig,
    counter_input: CounterInputConfig,
    window_ns: float,
    peak_finder_path: Path,
    cluster_counter_path: Path,
    score_threshold: float,
    tuning: BaselineTuning,
) -> pd.DataFrame:
    """:func:`dndx.scoring.track_evaluation.count_track_cells` of one file of track cells."""
    peak_finder = _model(str(peak_finder_path))
    cluster_counter = _model(str(cluster_counter_path))

    def probability(windows: NDArray[np.float32]) -> NDArray[np.float32]:
        return peak_finder.predict(windows[:, :, None], batch_size=8192, verbose=0)[:, 0]

    def count(encoded: NDArray[np.float32]) -> NDArray[np.float32]:
        return cluster_counter.predict(encoded, batch_size=256, verbose=0)[:, 0]

    return count_track_cells(
        read_waveform_set(path),
        prepare,
        counter_input.n_bins,
        window_ns,
        probability,
        count,
        score_threshold,
        tuning,
    )


@task(task_run_name="separation power on the test tracks", cache_policy=NO_CACHE)
def score_tracks(
    cells: list[pd.DataFrame], keep_fraction: float, targets: SeparationTargets
) -> TrackEvaluation:
    """:func:`dndx.scoring.track_evaluation.evaluate_tracks` of every counted cell,
    checked against ``targets``."""
    return evaluate_tracks(pd.concat(cells, ignore_index=True), keep_fraction, targets)
