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
import logging
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from dndx.reporting.plots import (
    plot_linearity,
    plot_roc,
    plot_score_distributions,
    plot_training_curves,
)
from dndx.scoring.metrics import best_threshold, binary_scores, counting_metrics, roc_auc, roc_curve
from dndx.scoring.separation import mean_separation_ratio
from dndx.storage import atomic_file
from dndx.training.counter_training import (
    Calibration,
    coarsen_bins,
    fit_calibration,
    flat_count_weights,
)
from dndx.training.scan import COST_COLUMNS
from tasks.resources import measure_resources

__all__ = ["CounterData", "TrialSpec", "calibrate_counter", "run_trial", "train_counter"]

#: Examples per step when a trial predicts its validation split: inference alone
#: runs faster per example in large batches, whatever the training batch.
PREDICT_BATCH = {"peak_finder": 8192, "cluster_counter": 512}

#: Validation examples, and timed passes over them, behind a trial's ONNX Runtime
#: time: enough for a stable median, a few seconds at most per trial.
COST_EXAMPLES = {"peak_finder": 1024, "cluster_counter": 256}
COST_REPEATS = 5

TrialLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """One trial of a scan: its number and the hyperparameters it overrides."""

    number: int
    hyperparameters: dict[str, Any]

    @property
    def name(self) -> str:
        """``trial-007``."""
        return f"trial-{self.number:03d}"


class _TrialFailed(Exception):
    """A trial ended without a usable model (e.g. a NaN loss)."""


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


@dataclasses.dataclass(frozen=True, eq=False)
class CounterData:
    """What the cluster counter trains or is scored on.

    Attributes:
        x: ``(n, n_bins, channels)`` float32 counter inputs.
        n_clusters: ``(n,)`` float32 true cluster counts.
        clusters_per_bin: ``(n, n_bins)`` true clusters per input bin
            (:func:`dndx.chain.encoding.clusters_per_bin`); None where not needed.
    """

    x: np.ndarray
    n_clusters: np.ndarray
    clusters_per_bin: np.ndarray | None = None


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


def _fit(
    model: Any,
    x: np.ndarray,
    y: np.ndarray | list[np.ndarray],
    training: TrainingConfig,
    validation: tuple[np.ndarray, np.ndarray],
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    label: str,
    logger: TrialLogger,
    sample_weight: np.ndarray | list[np.ndarray] | None = None,
) -> list[dict[str, float]]:
    """Train with early stopping, logging a line per epoch; returns the per-epoch
    history: the training logs, ``val_loss``, the metrics ``score`` computes from
    the validation predictions ``(n,)`` and truth ``(n,)``, and ``epoch_time_s``.

    ``y`` and ``sample_weight`` hold one array per output of ``model``; the
    validation figures, ``val_loss`` included (unweighted), are those of its
    first output.

    The validation split is predicted once per epoch, here, and every validation
    metric comes from those predictions: Keras' own validation pass would predict
    it a second time.
    """
    import keras

    from dndx.config import METRIC_GOALS

    xv, yv = validation
    loss = keras.losses.get(
        model.loss[model.output_names[0]] if isinstance(model.loss, dict) else model.loss
    )
    history: list[dict[str, float]] = []
    # The stopping metric and the first selection metric an epoch computes (the
    # counter's separation is measured once, on the final model).
    shown = list(dict.fromkeys([training.early_stopping_metric, *training.selection]))

    class EpochEnd(keras.callbacks.Callback):
        started = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs if logs is not None else {}
            predicted = _predict(self.model, xv)
            per_example = loss(yv[:, None], predicted[:, None])
            logs["val_loss"] = float(np.mean(keras.ops.convert_to_numpy(per_example)))
            logs.update(score(predicted, yv))
            seconds = time.perf_counter() - self.started
            history.append(
                {"epoch": epoch, **{k: float(v) for k, v in logs.items()}, "epoch_time_s": seconds}
            )
            logger.info(
                "%s epoch %d/%d: %s (%.1f s)",
                label,
                epoch + 1,
                training.epochs,
                ", ".join(
                    f"{name} {logs[name]:.4f}" for name in [n for n in shown if n in logs][:2]
                ),
                seconds,
            )
            if not math.isfinite(logs.get("loss", 0.0)):
                self.model.stop_training = True

    monitor = training.early_stopping_metric
    stopping = keras.callbacks.EarlyStopping(
        monitor=monitor,
        mode=METRIC_GOALS[monitor],
        patience=training.patience,
        restore_best_weights=True,
    )
    callbacks: list[keras.callbacks.Callback] = [EpochEnd(), stopping]
    if training.learning_rate_schedule == "cosine":
        start = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        schedule = functools.partial(_cosine_learning_rate, start, training.epochs)
        # Before EpochEnd, so that each epoch's history holds its learning rate.
        callbacks.insert(0, keras.callbacks.LearningRateScheduler(schedule))
    model.fit(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=training.batch_size,
        epochs=training.epochs,
        callbacks=callbacks,
        verbose=0,
        shuffle=True,
    )
    if not history or not all(math.isfinite(h["loss"]) for h in history):
        raise _TrialFailed("NaN loss")
    return history


def _cosine_learning_rate(start: float, epochs: int, epoch: int, _current: float) -> float:
    """The learning rate of ``epoch`` (from 0): half a cosine from ``start`` towards
    zero over ``epochs``.

    >>> [round(_cosine_learning_rate(0.004, 4, epoch, 0.0), 5) for epoch in range(4)]
    [0.004, 0.00341, 0.002, 0.00059]
    """
    return start * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's (first) output for each example of ``x``: ``(n,)``."""
    batch = PREDICT_BATCH[model.name]
    outputs = model.predict(x, batch_size=batch, verbose=0)
    first = outputs[0] if isinstance(outputs, list) else outputs
    return np.asarray(first)[:, 0]


def _inference_cost(
    model: Any, inputs: np.ndarray, examples_per_waveform: float, trial_dir: Path
) -> tuple[dict[str, float], dict[str, float]]:
    """What the trial's model costs per waveform at inference: its multiply-adds
    (deterministic, a metric) and ONNX Runtime's time on one thread (a measurement
    of this worker's machine, a resource).

    The model is exported as ``register`` exports it, to ``trial_dir/model.onnx``,
    and timed on the first :data:`COST_EXAMPLES` of ``inputs``, ``(n, *input_shape)``,
    in the batches :mod:`dndx.chain.onnx` uses. ``examples_per_waveform`` is the
    number of model inputs one waveform makes: mean candidates for the peak finder,
    1 for the counter.
    """
    from dndx.chain.onnx import COUNTER_BATCH, PEAK_FINDER_BATCH, time_per_example_us
    from models.cost import multiply_adds
    from models.export import export_onnx

    batch = {"peak_finder": PEAK_FINDER_BATCH, "cluster_counter": COUNTER_BATCH}[model.name]
    path = export_onnx(model, trial_dir / "model.onnx")
    microseconds = time_per_example_us(
        path, model.inputs[0].name, inputs[: COST_EXAMPLES[model.name]], batch, COST_REPEATS
    )
    onnx_time, macs = COST_COLUMNS
    return (
        {macs: float(multiply_adds(model) * examples_per_waveform)},
        {onnx_time: microseconds * examples_per_waveform},
    )


def _peak_finder_trial(
    spec: TrialSpec,
    model_cfg: PeakFinderModelConfig,
    training: TrainingConfig,
    data_dir: Path,
    trial_dir: Path,
    logger: TrialLogger,
) -> dict[str, Any]:
    import keras

    from models import build_peak_finder

    x, y = _load_windows(str(data_dir / "train"), training.max_train_examples, training.seed)
    xv, yv = _load_windows(
        str(data_dir / "validation"), training.max_validation_examples, training.seed
    )
    cfg = dataclasses.replace(model_cfg, **spec.hyperparameters)
    seed = _seed(training, spec)
    keras.utils.set_random_seed(seed)
    model = build_peak_finder(cfg, window_length=x.shape[1], seed=seed)
    label = f"peak_finder {spec.name}"
    history = _fit(model, x, y, training, (xv, yv), _peak_finder_scores, label, logger)
    scores = _predict(model, xv)
    threshold = best_threshold(yv, scores)
    at_threshold = binary_scores(yv, scores, threshold)
    validation_dir = data_dir / "validation"
    candidates_per_waveform = float(read_prepared_waveforms(validation_dir)["n_candidates"].mean())
    cost, inference_time = _inference_cost(model, xv, candidates_per_waveform, trial_dir)
    metrics = {
        "val_loss": min(h["val_loss"] for h in history),
        **_peak_finder_scores(scores, yv),
        "score_threshold": threshold,
        "epochs_trained": len(history),
        "n_train_windows": len(y),
        "n_parameters": model.count_params(),
        "candidates_per_waveform": candidates_per_waveform,
        **cost,
    }
    model.save(trial_dir / "model.keras")
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


def _peak_finder_scores(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Validation metrics of peak-finder scores ``(n,)`` at their best threshold."""
    at_threshold = binary_scores(labels, scores, best_threshold(labels, scores))
    return {
        "val_precision": at_threshold["precision"],
        "val_recall": at_threshold["recall"],
        "val_f1": at_threshold["f1"],
        "val_efficiency_x_purity": at_threshold["precision"] * at_threshold["recall"],
        "val_auc": roc_auc(labels, scores),
    }


def train_counter(
    model_cfg: ClusterCounterModelConfig,
    training: CounterTrainingConfig,
    seed: int,
    train: CounterData,
    validation: CounterData,
    label: str,
    logger: TrialLogger,
) -> tuple[Any, list[dict[str, float]]]:
    """Build and train one cluster counter as ``model_cfg`` and ``training`` say
    (``output``, ``target_weighting``; not ``calibrate``: :func:`calibrate_counter`).

    Returns:
        The model as it is saved and served
        (:func:`models.cluster_counter.serving_counter`), and the history of
        :func:`_fit`.
    """
    import keras

    from models import build_cluster_counter
    from models.cluster_counter import serving_counter

    keras.utils.set_random_seed(seed)
    model = build_cluster_counter(
        model_cfg, n_bins=train.x.shape[1], n_channels=train.x.shape[2], seed=seed
    )
    weight = flat_count_weights(train.n_clusters) if training.target_weighting == "flat" else None
    y: np.ndarray | list[np.ndarray] = train.n_clusters
    sample_weight: np.ndarray | list[np.ndarray] | None = weight
    if len(model.outputs) > 1:
        if train.clusters_per_bin is None:
            raise ValueError("a per-bin counter trains on clusters_per_bin")
        n_coarse = int(model.outputs[1].shape[1])
        y = [train.n_clusters, coarsen_bins(train.clusters_per_bin, n_coarse)]
        sample_weight = None if weight is None else [weight, weight]
    validation_pair = (validation.x, validation.n_clusters)
    history = _fit(
        model, train.x, y, training, validation_pair, _counting_scores, label, logger,
        sample_weight,
    )  # fmt: skip
    return serving_counter(model), history


def calibrate_counter(model: Any, validation: CounterData) -> Calibration:
    """Fit :func:`dndx.training.counter_training.fit_calibration` on ``validation`` and fold
    it into ``model`` (:func:`models.cluster_counter.fold_calibration`)."""
    from models.cluster_counter import fold_calibration

    calibration = fit_calibration(_predict(model, validation.x), validation.n_clusters)
    fold_calibration(model, calibration.scale, calibration.offset)
    return calibration


def _counter_trial(
    spec: TrialSpec,
    model_cfg: ClusterCounterModelConfig,
    training: CounterTrainingConfig,
    data_dir: Path,
    trial_dir: Path,
    logger: TrialLogger,
) -> dict[str, Any]:
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
    predicted = _predict(model, xv)
    cost, inference_time = _inference_cost(model, xv, 1.0, trial_dir)
    metrics = {
        "val_loss": min(h["val_loss"] for h in history),
        **_counting_scores(predicted, yv),
        **_separation_scores(model, data_dir / VALIDATION_TRACKS_DIR, training),
        "epochs_trained": len(history),
        "n_train_waveforms": len(train.n_clusters),
        "n_parameters": model.count_params(),
        **cost,
    }
    if calibration is not None:
        metrics.update(calibration_scale=calibration.scale, calibration_offset=calibration.offset)
    model.save(trial_dir / "model.keras")
    plot_linearity(yv, {"cnn": predicted}, trial_dir / "counts.png")
    return {"metrics": metrics, "inference_time": inference_time, "history": history}


def _separation_scores(
    model: Any, tracks_dir: Path, training: CounterTrainingConfig
) -> dict[str, float]:
    """``val_separation_ratio`` (and its ``_error``): what the counter keeps of the
    Poisson separation power on the encoded validation tracks; nothing where the
    encode stage found none of the chosen particles and momenta."""
    path = tracks_dir / COUNTER_INPUT_FILE
    if not path.is_file():
        return {}
    with np.load(path) as data:
        cells = pd.DataFrame(
            {key: data[key] for key in ("track_id", "particle", "momentum_gev", "path_length_cm")}
        )
        cells["truth"] = data["n_clusters"]
        cells["cnn"] = _predict(model, data["x"])
    ratio = mean_separation_ratio(
        cells, "cnn", "truth", training.separation_pair, training.separation_momenta_gev
    )
    if not math.isfinite(ratio.value):
        return {}
    return {"val_separation_ratio": ratio.value, "val_separation_ratio_error": ratio.error}


def _counting_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    scores = counting_metrics(predicted, truth)
    return {
        "val_rms_over_sqrt_n": scores["rms_over_sqrt_n"],
        "val_relative_bias": scores["relative_bias"],
        "val_abs_relative_bias": abs(scores["relative_bias"]),
        "val_linearity_slope": scores["linearity_slope"],
        "val_abs_slope_error": abs(scores["linearity_slope"] - 1.0),
        "val_mae": float(np.mean(np.abs(predicted - truth))),
    }


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
) -> dict[str, Any]:
    """Run one trial of ``kind`` (``peak_finder`` or ``cluster_counter``) into
    ``out_dir/<trial>``; a trial that fails is returned as failed, with its reason."""
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
                _TRIALS[kind](spec, model_cfg, training, data_dir, trial_dir, get_run_logger())
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
