"""Prefect tasks of the ``evaluate`` stage: load the test inputs, score, write.

Inputs (the contract of the training and encode stages):

* ``models/peak_finder/selection.json``: the working point ``score_threshold``;
* ``models/cluster_counter/model.keras``: the chosen CNN;
* ``counter_inputs/<split>/scores.parquet``: the peak finder's score and
  decision for every prepared candidate;
* ``counter_inputs/test/encoded.npz``: the CNN's input ``x`` and ``waveform_id``;
* ``simulated/<split>`` and ``prepared/<split>``: waveforms and truth;
* ``models/peak_finder/model.keras``: the chosen LSTM, to score the test
  candidates the pre-selection drops.

The tasks run in the flow's process (no Dask): they pass arrays, so none of
them caches on its inputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from prefect import task
from prefect.cache_policies import NO_CACHE

from dndx.chain.preselection import PreselectionCheck, check_preselection, window_spread
from dndx.config import EvaluateConfig, PrepareConfig, QualityGateConfig, with_candidates
from dndx.errors import InputError
from dndx.io.dataset import part_paths, read_waveform_set
from dndx.io.prepared import read_prepared_waveforms
from dndx.paths import COUNTER_INPUTS_DIR, PREPARED_DIR, SCORES_FILE, SIMULATED_DIR
from dndx.ragged import Ragged
from dndx.reporting.plots import (
    plot_counting_by_bin,
    plot_linearity,
    plot_peak_scores_by_bin,
    plot_residuals,
    plot_roc,
    plot_score_distributions,
    plot_separation,
)
from dndx.reporting.report import pair_name, render_report
from dndx.scoring.evaluation import (
    BaselineTuning,
    Evaluation,
    SplitInputs,
    assemble_split,
    evaluate_split,
    tune_baselines,
)
from dndx.scoring.track_evaluation import TrackEvaluation
from dndx.storage import atomic_directory, atomic_file
from dndx.truth.preparation import prepare_waveforms

__all__ = [
    "check_test_preselection",
    "draw_plots",
    "load_split",
    "predict_counts",
    "score_test",
    "tune_on_validation",
    "write_metrics",
    "write_report",
]

_SCORE_COLUMNS = ("waveform_id", "sample", "probability", "detected", "label")


def _read_scores(path: Path) -> pd.DataFrame:
    try:
        scores = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise InputError(
            f"{path}: cannot read the peak finder's scores ({error}); run the encode stage first"
        ) from None
    missing = sorted(set(_SCORE_COLUMNS) - set(scores.columns))
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {list(_SCORE_COLUMNS)}")
    return scores


@task(task_run_name="load {split}", cache_policy=NO_CACHE)
def load_split(prepare: PrepareConfig, split: str, root: Path) -> SplitInputs:
    """Raw waveforms, prepared truth and peak-finder scores of ``split`` under the
    project ``root``, aligned."""
    simulated = root / SIMULATED_DIR / split
    parts = [read_waveform_set(path) for path in part_paths(simulated)]
    if not parts:
        raise InputError(f"{simulated}: no simulated waveforms found")
    info = pd.concat([p.info[["waveform_id", "sampling_rate_ghz"]] for p in parts])
    return assemble_split(
        read_prepared_waveforms(root / PREPARED_DIR / split),
        _read_scores(root / COUNTER_INPUTS_DIR / split / SCORES_FILE),
        Ragged.concatenate([p.adc for p in parts]),
        info["waveform_id"].to_numpy(),
        info["sampling_rate_ghz"].to_numpy(),
        prepare.candidates.model_sampling_rate_ghz,
    )


@task(task_run_name="predict cluster counts with the CNN", cache_policy=NO_CACHE)
def predict_counts(model_path: Path, encoded_path: Path) -> tuple[NDArray[Any], NDArray[Any]]:
    """The CNN's cluster count for every encoded waveform: ``(waveform_id, n_rec)``."""
    try:
        with np.load(encoded_path) as encoded:
            x, waveform_id = encoded["x"], encoded["waveform_id"]
    except (OSError, KeyError, ValueError) as error:
        raise InputError(
            f"{encoded_path}: cannot read the arrays 'x' and 'waveform_id' ({error})"
        ) from None
    if not Path(model_path).is_file():
        raise InputError(f"{model_path}: no cluster counter; run train_cluster_counter first")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.saving import load_model

    model = load_model(model_path)
    n_rec = model.predict(x, batch_size=256, verbose=0)[:, 0]
    return waveform_id, n_rec.astype(np.float64)


@task(task_run_name="measure what the pre-selection drops on test", cache_policy=NO_CACHE)
def check_test_preselection(
    prepare: PrepareConfig, root: Path, model_path: Path, score_threshold: float
) -> PreselectionCheck:
    """The test candidates under the project ``root`` found without the window-spread
    cut; the ones it drops scored by the chosen peak finder
    (:func:`dndx.chain.preselection.check_preselection`)."""
    every = with_candidates(prepare, min_window_std_sigma=0.0)
    dropped, labels, dropped_windows = [], [], []
    simulated = root / SIMULATED_DIR / "test"
    for path in part_paths(simulated):
        prepared = prepare_waveforms(read_waveform_set(path), every)
        cut = window_spread(prepared.windows) < prepare.candidates.min_window_std_sigma
        dropped.append(cut)
        labels.append(prepared.candidates["label"].to_numpy())
        dropped_windows.append(prepared.windows[cut])
    if not dropped:
        raise InputError(f"{simulated}: no simulated waveforms found")
    windows = np.concatenate(dropped_windows)
    probability = np.zeros(0)
    if len(windows):
        if not Path(model_path).is_file():
            raise InputError(f"{model_path}: no peak finder; run train_peak_finder first")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from models.saving import load_model_once

        peak_finder = load_model_once(str(model_path))
        probability = peak_finder.predict(windows[:, :, None], batch_size=8192, verbose=0)[:, 0]
    return check_preselection(
        np.concatenate(dropped),
        np.concatenate(labels),
        probability,
        score_threshold,
        prepare.candidates.min_window_std_sigma,
    )


@task(task_run_name="tune the baselines on validation", cache_policy=NO_CACHE)
def tune_on_validation(
    validation: SplitInputs, tolerance_samples: float, cfg: EvaluateConfig
) -> BaselineTuning:
    """D2 thresholds and clusterization windows chosen on the validation split."""
    return tune_baselines(validation, tolerance_samples, cfg)


@task(task_run_name="score models and baselines on test", cache_policy=NO_CACHE)
def score_test(
    test: SplitInputs,
    tuning: BaselineTuning,
    cnn: tuple[NDArray[Any], NDArray[Any]],
    score_threshold: float,
    tolerance_samples: float,
    cfg: EvaluateConfig,
    gate: QualityGateConfig,
) -> Evaluation:
    """:func:`dndx.scoring.evaluation.evaluate_split` of the test split, checked
    against the user's ``gate``."""
    waveform_id, n_rec = cnn
    return evaluate_split(
        test,
        tuning,
        waveform_id,
        n_rec,
        score_threshold=score_threshold,
        tolerance_samples=tolerance_samples,
        cfg=cfg,
        gate=gate,
    )


@task(task_run_name="draw the figures", cache_policy=NO_CACHE)
def draw_plots(
    evaluation: Evaluation,
    test: SplitInputs,
    tracks: TrackEvaluation,
    gate: QualityGateConfig,
    plots_dir: Path,
) -> dict[str, Path]:
    """Every figure as a PNG in ``plots_dir`` (replaced whole); title to final path."""
    c = evaluation.candidate
    peak_tables = {name: evaluation.peaks[name] for name in ("lstm", "d2")}
    n_rec = {name: counting.n_rec for name, counting in evaluation.counting.items()}
    n_true = test.n_clusters
    figures = {
        "ROC curve of the LSTM peak finder": "roc.png",
        "Peak-finder scores by class": "scores.png",
        "Peak finding vs drift time": "peaks_vs_drift_time.png",
        "Peak finding vs noise level": "peaks_vs_noise.png",
        "N_rec vs N_true": "linearity.png",
        "Counting residuals": "residuals.png",
        "Counting RMS / √N per particle and momentum": "counting_by_momentum.png",
    }
    if tracks.headline_pair is not None:
        figures[f"Separation power {pair_name(*tracks.headline_pair)} against momentum"] = (
            "separation.png"
        )
    names = list(figures.values())
    with atomic_directory(plots_dir) as tmp:
        plot_roc(c.fpr, c.tpr, c.scores["auc"], c.working_point, tmp / names[0])
        plot_score_distributions(
            test.candidate_probability, test.candidate_label, c.threshold, tmp / names[1]
        )
        plot_peak_scores_by_bin(
            {n: p.by_drift_time for n, p in peak_tables.items()},
            "drift_time_ns",
            "drift time [ns]",
            tmp / names[2],
        )
        plot_peak_scores_by_bin(
            {n: p.by_noise for n, p in peak_tables.items()},
            "noise_fraction",
            "noise sigma / 1-electron amplitude",
            tmp / names[3],
        )
        plot_linearity(n_true, n_rec, tmp / names[4])
        plot_residuals(n_true, n_rec, tmp / names[5])
        plot_counting_by_bin(
            {name: counting.table for name, counting in evaluation.counting.items()},
            tmp / names[6],
        )
        if tracks.headline_pair is not None:
            plot_separation(
                tracks.pair_table(*tracks.headline_pair),
                tracks.reference,
                pair_name(*tracks.headline_pair),
                gate.min_separation_ratio_to_poisson,
                tmp / names[7],
            )
    return {title: plots_dir / name for title, name in figures.items()}


@task(task_run_name="write the report", cache_policy=NO_CACHE)
def write_report(
    evaluation: Evaluation,
    tracks: TrackEvaluation,
    preselection: PreselectionCheck,
    plots: Mapping[str, Path],
    report_path: Path,
) -> Path:
    """The Markdown report, linking the figures by paths relative to it."""
    relative = {
        title: Path(os.path.relpath(path, report_path.parent)).as_posix()
        for title, path in plots.items()
    }
    with atomic_file(report_path) as tmp:
        tmp.write_text(render_report(evaluation, tracks, preselection, relative))
    return report_path


@task(task_run_name="write the metrics", cache_policy=NO_CACHE)
def write_metrics(
    evaluation: Evaluation,
    tracks: TrackEvaluation,
    preselection: PreselectionCheck,
    metrics_path: Path,
    separation_path: Path,
) -> dict[str, Any]:
    """The flat metrics of the waveforms (with what the pre-selection drops) and
    the nested ones of the tracks as JSON (DVC metrics files); returns the former."""
    metrics = {**evaluation.to_metrics(), **preselection.to_metrics()}
    for path, figures in ((metrics_path, metrics), (separation_path, tracks.to_metrics())):
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return metrics
