"""The fit loop of both models: early stopping, an optional cosine learning rate, one
validation prediction per epoch that every validation figure comes from, and a
line per epoch in the trial's log.

A scan trial (:mod:`tasks.training`) loads its data, calls :func:`fit` (or
:func:`train_counter`) and saves what it returns; this module reads and writes no
file.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from dndx.config import (
    METRIC_GOALS,
    ClusterCounterModelConfig,
    CounterTrainingConfig,
    TrainingConfig,
)
from dndx.training.counter_training import (
    Calibration,
    CounterData,
    coarsen_bins,
    fit_calibration,
    flat_count_weights,
)
from dndx.training.validation_scores import counting_scores
from models.cluster_counter import build_cluster_counter, fold_calibration, serving_counter

__all__ = [
    "PREDICT_BATCH",
    "TrainingDiverged",
    "calibrate_counter",
    "cosine_learning_rate",
    "fit",
    "predict",
    "train_counter",
]

#: Examples per step when a trial predicts its validation split: inference alone
#: runs faster per example in large batches, whatever the training batch.
PREDICT_BATCH = {"peak_finder": 8192, "cluster_counter": 512}

TrialLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]
Scores = Callable[[np.ndarray, np.ndarray], dict[str, float]]


class TrainingDiverged(Exception):
    """Training ended without a usable model (e.g. a NaN loss)."""


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's (first) output for each example of ``x``: ``(n,)``."""
    outputs = model.predict(x, batch_size=PREDICT_BATCH[model.name], verbose=0)
    first = outputs[0] if isinstance(outputs, list) else outputs
    return np.asarray(first)[:, 0]


def cosine_learning_rate(start: float, epochs: int, epoch: int, _current: float) -> float:
    """The learning rate of ``epoch`` (from 0): half a cosine from ``start`` towards
    zero over ``epochs``.

    >>> [round(cosine_learning_rate(0.004, 4, epoch, 0.0), 5) for epoch in range(4)]
    [0.004, 0.00341, 0.002, 0.00059]
    """
    return start * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


class _EpochEnd(keras.callbacks.Callback):
    """Scores the validation split at the end of each epoch into the logs (where
    early stopping reads them) and the history, logs a line, and stops a diverged
    fit."""

    def __init__(
        self,
        validation: tuple[np.ndarray, np.ndarray],
        score: Scores,
        training: TrainingConfig,
        label: str,
        logger: TrialLogger,
    ) -> None:
        super().__init__()
        self.validation = validation
        self.score = score
        self.epochs = training.epochs
        self.label = label
        self.logger = logger
        # The stopping metric and the first selection metric an epoch computes (the
        # counter's separation is measured once, on the final model).
        self.shown = list(dict.fromkeys([training.early_stopping_metric, *training.selection]))
        self.history: list[dict[str, float]] = []
        self.started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs if logs is not None else {}
        xv, yv = self.validation
        predicted = predict(self.model, xv)
        loss = keras.losses.get(
            self.model.loss[self.model.output_names[0]]
            if isinstance(self.model.loss, dict)
            else self.model.loss
        )
        per_example = loss(yv[:, None], predicted[:, None])
        logs["val_loss"] = float(np.mean(keras.ops.convert_to_numpy(per_example)))
        logs.update(self.score(predicted, yv))
        seconds = time.perf_counter() - self.started
        self.history.append(
            {"epoch": epoch, **{k: float(v) for k, v in logs.items()}, "epoch_time_s": seconds}
        )
        shown = [n for n in self.shown if n in logs][:2]
        self.logger.info(
            "%s epoch %d/%d: %s (%.1f s)",
            self.label,
            epoch + 1,
            self.epochs,
            ", ".join(f"{name} {logs[name]:.4f}" for name in shown),
            seconds,
        )
        if not math.isfinite(logs.get("loss", 0.0)):
            self.model.stop_training = True


def _callbacks(
    model: Any, training: TrainingConfig, epoch_end: _EpochEnd
) -> list[keras.callbacks.Callback]:
    """The learning-rate schedule (if any), ``epoch_end`` and early stopping."""
    monitor = training.early_stopping_metric
    stopping = keras.callbacks.EarlyStopping(
        monitor=monitor,
        mode=METRIC_GOALS[monitor],
        patience=training.patience,
        restore_best_weights=True,
    )
    callbacks: list[keras.callbacks.Callback] = [epoch_end, stopping]
    if training.learning_rate_schedule == "cosine":
        start = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        schedule = functools.partial(cosine_learning_rate, start, training.epochs)
        # Before epoch_end, so that each epoch's history holds its learning rate.
        callbacks.insert(0, keras.callbacks.LearningRateScheduler(schedule))
    return callbacks


def fit(
    model: Any,
    x: np.ndarray,
    y: np.ndarray | list[np.ndarray],
    training: TrainingConfig,
    validation: tuple[np.ndarray, np.ndarray],
    score: Scores,
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

    Raises:
        TrainingDiverged: the loss became NaN or inf.
    """
    epoch_end = _EpochEnd(validation, score, training, label, logger)
    model.fit(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=training.batch_size,
        epochs=training.epochs,
        callbacks=_callbacks(model, training, epoch_end),
        verbose=0,
        shuffle=True,
    )
    history = epoch_end.history
    if not history or not all(math.isfinite(h["loss"]) for h in history):
        raise TrainingDiverged("NaN loss")
    return history


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
        :func:`fit`.
    """
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
    history = fit(
        model, train.x, y, training, validation_pair, counting_scores, label, logger,
        sample_weight,
    )  # fmt: skip
    return serving_counter(model), history


def calibrate_counter(model: Any, validation: CounterData) -> Calibration:
    """Fit :func:`dndx.training.counter_training.fit_calibration` on ``validation`` and fold
    it into ``model`` (:func:`models.cluster_counter.fold_calibration`)."""
    calibration = fit_calibration(predict(model, validation.x), validation.n_clusters)
    fold_calibration(model, calibration.scale, calibration.offset)
    return calibration
