"""One scan trial: build a model, train it, score it on validation, measure what it
costs at inference, save it.

Runs inside a Dask worker process (one thread; thread counts are fixed in the
environment before TensorFlow starts). A trial returns metrics and paths,
never models, and never writes to MLflow: the flow's own process logs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task

from dndx.chain.encoding import COUNTER_INPUT_FILE, VALIDATION_TRACKS_DIR
from dndx.config import (
    ClusterCounterModelConfig,
    CounterTrainingConfig,
    PeakFinderModelConfig,
    TrainingConfig,
)
from dndx.errors import InputError
from dndx.io.prepared import read_candidates, read_prepared_waveforms
from dndx.paths import MODEL_FILE
from dndx.reporting.plots import (
    plot_linearity,
    plot_roc,
    plot_score_distributions,
    plot_training_curves,
)
from dndx.scoring.metrics import best_threshold, binary_scores, roc_curve
from dndx.scoring.separation import mean_separation_ratio
from dndx.storage import atomic_file
from dndx.training.counter_training import CounterData
from dndx.training.validation_scores import counting_scores, peak_finder_scores
from tasks.resources import measure_resources

if TYPE_CHECKING:  # models import Keras: a trial imports them once its worker has started
    from models.fitting import TrialLogger

__all__ = ["TrialSpec", "run_trial"]


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """One trial of a scan: its number and the hyperparameters it overrides."""

    number: int
    hyperparameters: dict[str, Any]

    @property
    def name(self) -> str:
        """``trial-007``."""
        return f"trial-{self.number:03d}"


@functools.lru_cache(maxsize=4)
def _load_windows(split_dir: str, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(n, L, 1)`` and labels ``(n,)`` of a prepared split, at most ``limit``,
    a fixed random subset; cached for the later trials of the same worker."""
    table, windows = read_candidates(split_dir)
    labels = table["label"].to_numpy().astype(np.float32)
    if len(labels) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))
        windows, labels = windows[keep], labels[keep]
    return windows[:, :, None], labels


@functools.lru_cache(maxsize=4)
def _load_encoded(split_dir: str, limit: int, per_bin: bool) -> CounterData:
    """The first ``limit`` waveforms of a split's counter inputs, with their
    clusters per bin when ``per_bin``."""
    path = Path(split_dir) / COUNTER_INPUT_FILE
    with np.load(path) as data:
        if per_bin and "clusters_per_bin" not in data:
            raise InputError(
                f"{path}: no array 'clusters_per_bin', which cluster_counter.output "
                "per_bin trains on; rerun the encode stage"
            )
        return CounterData(
            data["x"][:limit],
            data["n_clusters"][:limit].astype(np.float32),
            data["clusters_per_bin"][:limit] if per_bin else None,
        )


def _seed(training: TrainingConfig, spec: TrialSpec) -> int:
    return training.seed * 1000 + spec.number


def _peak_finder_trial(
    spec: TrialSpec,
    model_cfg: PeakFinderModelConfig,
    training: TrainingConfig,
    data_dir: Path,
    trial_dir: Path,
    opset: int,
    logger: TrialLogger,
) -> dict[str, Any]:
    import keras

    from models import build_peak_finder
    from models.cost import inference_cost
    from models.fitting import fit, predict

    x, y = _load_windows(str(data_dir / "train"), training.max_train_examples, training.seed)
    xv, yv = _load_windows(
        str(data_dir / "validation"), training.max_validation_examples, training.seed
    )
    cfg = dataclasses.replace(model_cfg, **spec.hyperparameters)
    seed = _seed(training, spec)
    keras.utils.set_random_seed(seed)
    model = build_peak_finder(cfg, window_length=x.shape[1], seed=seed)
    label = f"peak_finder {spec.name}"
    history = fit(model, x, y, training, (xv, yv), peak_finder_scores, label, logger)
    scores = predict(model, xv)
    threshold = best_threshold(yv, scores)
    at_threshold = binary_scores(yv, scores, threshold)
    validation_dir = data_dir / "validation"
    candidates_per_waveform = float(read_prepared_waveforms(validation_dir)["n_candidates"].mean())
    cost, inference_time = inference_cost(model, xv, candidates_per_waveform, trial_dir, opset)
    metrics = {
        "val_loss": min(h["val_loss"] for h in history),
        **peak_finder_scores(scores, yv),
        "score_threshold": threshold,
        "epochs_trained": len(history),
        "n_train_windows": len(y),
        "n_parameters": model.count_params(),
        "candidates_per_waveform": candidates_per_waveform,
        **cost,
    }
    model.save(trial_dir / MODEL_FILE)
    fpr, tpr, _ = roc_curve(yv, scores)
    specificity = 2 * at_threshold["balanced_accuracy"] - at_threshold["recall"]
    working_point = (1.0 - specificity, at_threshold["recall"])
    plot_roc(fpr, tpr, metrics["val_auc"], working_point, trial_dir / "roc.png")
    plot_score_distributions(scores, yv, threshold, trial_dir / "scores.png")
    return {
        "metrics": metrics,
        "inference_time": inference_time,
        "history": history,
        "score_threshold": threshold,
    }


def _counter_trial(
    spec: TrialSpec,
    model_cfg: ClusterCounterModelConfig,
    training: CounterTrainingConfig,
    data_dir: Path,
    trial_dir: Path,
    opset: int,
    logger: TrialLogger,
) -> dict[str, Any]:
    from models.cost import inference_cost
    from models.fitting import calibrate_counter, predict, train_counter

    cfg = dataclasses.replace(model_cfg, **spec.hyperparameters)
    per_bin = cfg.output == "per_bin"
    train = _load_encoded(str(data_dir / "train"), training.max_train_examples, per_bin)
    validation = _load_encoded(
        str(data_dir / "validation"), training.max_validation_examples, per_bin
    )
    label = f"cluster_counter {spec.name}"
    model, history = train_counter(
        cfg, training, _seed(training, spec), train, validation, label, logger
    )
    calibration = calibrate_counter(model, validation) if training.calibrate else None
    xv, yv = validation.x, validation.n_clusters
    predicted = predict(model, xv)
    cost, inference_time = inference_cost(model, xv, 1.0, trial_dir, opset)
    metrics = {
        "val_loss": min(h["val_loss"] for h in history),
        **counting_scores(predicted, yv),
        **_separation_scores(model, data_dir / VALIDATION_TRACKS_DIR, training),
        "epochs_trained": len(history),
        "n_train_waveforms": len(train.n_clusters),
        "n_parameters": model.count_params(),
        **cost,
    }
    if calibration is not None:
        metrics.update(calibration_scale=calibration.scale, calibration_offset=calibration.offset)
    model.save(trial_dir / MODEL_FILE)
    plot_linearity(yv, {"cnn": predicted}, trial_dir / "counts.png")
    return {"metrics": metrics, "inference_time": inference_time, "history": history}


def _separation_scores(
    model: Any, tracks_dir: Path, training: CounterTrainingConfig
) -> dict[str, float]:
    """``val_separation_ratio`` (and its ``_error``): what the counter keeps of the
    Poisson separation power on the encoded validation tracks; nothing where the
    encode stage found none of the chosen particles and momenta."""
    from models.fitting import predict

    path = tracks_dir / COUNTER_INPUT_FILE
    if not path.is_file():
        return {}
    with np.load(path) as data:
        cells = pd.DataFrame(
            {key: data[key] for key in ("track_id", "particle", "momentum_gev", "path_length_cm")}
        )
        cells["truth"] = data["n_clusters"]
        cells["cnn"] = predict(model, data["x"])
    ratio = mean_separation_ratio(
        cells, "cnn", "truth", training.separation_pair, training.separation_momenta_gev
    )
    if not math.isfinite(ratio.value):
        return {}
    return {"val_separation_ratio": ratio.value, "val_separation_ratio_error": ratio.error}


_TRIALS: dict[str, Callable[..., dict[str, Any]]] = {
    "peak_finder": _peak_finder_trial,
    "cluster_counter": _counter_trial,
}


def _worker_address() -> str:
    """The Dask worker running this trial ("" outside Dask): where a trial ran."""
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:
        return ""


@task(task_run_name="{kind} {spec.name}", retries=1, retry_delay_seconds=2)
def run_trial(
    kind: str,
    spec: TrialSpec,
    model_cfg: PeakFinderModelConfig | ClusterCounterModelConfig,
    training: TrainingConfig,
    data_dir: Path,
    out_dir: Path,
    opset: int,
) -> dict[str, Any]:
    """Run one trial of ``kind`` (``peak_finder`` or ``cluster_counter``) into
    ``out_dir/<trial>``, its model exported at ONNX ``opset`` to time it; a trial
    that fails is returned as failed, with its reason."""
    trial_dir = out_dir / spec.name
    trial_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "trial": spec.number,
        "hyperparameters": spec.hyperparameters,
        "trial_dir": str(trial_dir),
        "worker": _worker_address(),
    }
    with measure_resources() as usage:
        try:
            result.update(
                _TRIALS[kind](
                    spec, model_cfg, training, data_dir, trial_dir, opset, get_run_logger()
                )
            )
            result["status"] = "finished"
        except Exception as error:  # a trial that raises is recorded, the scan goes on
            result.update(status="failed", reason=f"{type(error).__name__}: {error}")
            (trial_dir / "error.txt").write_text(traceback.format_exc())
    # The ONNX time is a measurement of this machine, like the trial's wall time.
    result["resources"] = {**usage, **result.pop("inference_time", {})}
    if result["status"] == "finished":
        plot_training_curves(pd.DataFrame(result["history"]), trial_dir / "curves.png")
    with atomic_file(trial_dir / "result.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result
