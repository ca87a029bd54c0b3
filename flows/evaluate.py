"""DVC stage ``evaluate``: models and classical baselines side by side on the test set.

Reads the chosen models' outputs (the peak finder's scores, the CNN applied
here to its encoded input) and the truth; tunes the baselines on validation;
counts the cells of the test tracks with every method, on Dask, for the
separation powers; writes the DVC metrics files, the figures and the Markdown
report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger

from dndx.chain.encoding import COUNTER_INPUT_FILE
from dndx.config import PARAMS_PATH, Params, load_params
from dndx.errors import InputError
from dndx.io.dataset import part_paths
from dndx.paths import (
    COUNTER_DIR,
    COUNTER_INPUTS_DIR,
    EVALUATION_REPORT,
    MODEL_FILE,
    PEAK_FINDER_DIR,
    PLOTS_DIR,
    SELECTION_FILE,
    TRACKS_DIR,
    metrics_file,
)
from dndx.scoring.evaluation import BaselineTuning
from dndx.scoring.track_evaluation import SeparationTargets
from flows.runtime import dask_task_runner, ensure_prefect_api, project_root
from tasks.encoding import read_score_threshold
from tasks.evaluation import (
    check_test_preselection,
    draw_plots,
    load_split,
    predict_counts,
    score_test,
    tune_on_validation,
    write_metrics,
    write_report,
)
from tasks.track_evaluation import count_track_chunk, score_tracks

__all__ = ["evaluate", "main"]


@flow(name="count the test tracks", log_prints=True)
def count_tracks(
    params: Params, tuning: BaselineTuning, score_threshold: float, root: Path
) -> list[pd.DataFrame]:
    """Every cell of the test tracks counted by every method, one chunk per task."""
    root = root.resolve()
    tracks_dir = root / TRACKS_DIR / "test"
    paths = part_paths(tracks_dir)
    if not paths:
        raise InputError(f"{tracks_dir}: no track files; run the tracks stage first")
    futures = [
        count_track_chunk.submit(
            path,
            params.prepare,
            params.counter_input,
            params.simulate.window_ns,
            root / PEAK_FINDER_DIR / MODEL_FILE,
            root / COUNTER_DIR / MODEL_FILE,
            score_threshold,
            tuning,
        )
        for path in paths
    ]
    return [future.result() for future in futures]


@flow(name="evaluate", log_prints=True)
def evaluate(params: Params, root: Path) -> dict[str, Any]:
    """Evaluate on the test split under the project ``root``; write and return the
    flat metrics."""
    logger = get_run_logger()
    cfg = params.evaluate
    tolerance = params.prepare.match_tolerance_samples
    threshold = read_score_threshold(root / PEAK_FINDER_DIR / SELECTION_FILE)
    validation = load_split.submit(params.prepare, "validation", root)
    test = load_split.submit(params.prepare, "test", root)
    cnn = predict_counts.submit(
        root / COUNTER_DIR / MODEL_FILE, root / COUNTER_INPUTS_DIR / "test" / COUNTER_INPUT_FILE
    )
    preselection = check_test_preselection.submit(
        params.prepare, root, root / PEAK_FINDER_DIR / MODEL_FILE, threshold
    )
    tuning = tune_on_validation(validation.result(), tolerance, cfg)
    evaluation = score_test(
        test.result(), tuning, cnn.result(), threshold, tolerance, cfg, params.quality_gate
    )
    cells = count_tracks.with_options(task_runner=dask_task_runner(params.dask))(
        params, tuning, threshold, root
    )
    targets = SeparationTargets(params.quality_gate, params.train_cluster_counter.separation_pair)
    tracks = score_tracks(cells, cfg.dedx_keep_fraction, targets)
    plots = draw_plots(evaluation, test.result(), tracks, params.quality_gate, root / PLOTS_DIR)
    write_report(evaluation, tracks, preselection.result(), plots, root / EVALUATION_REPORT)
    metrics = write_metrics(
        evaluation,
        tracks,
        preselection.result(),
        root / metrics_file("evaluate"),
        root / metrics_file("separation"),
    )
    for check in (*evaluation.targets, *tracks.targets):
        logger.info(
            "target %-28s %s: %.4f %s %g (%s)",
            check.name,
            "met" if check.passed else "NOT met",
            check.value,
            check.comparison,
            check.limit,
            check.param,
        )
    return metrics


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.evaluate``."""
    params = load_params(params_path)
    ensure_prefect_api()
    evaluate(params, project_root(params_path))


if __name__ == "__main__":
    main()
