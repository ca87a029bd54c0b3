"""The 1-D CNN cluster counter: how many primary clusters made a waveform's peaks?

The network reads the found peaks of one waveform, binned in time into
``n_bins`` bins of ``n_channels`` features, and regresses the number of
primary clusters. The count is extensive, it grows with the number of peaks,
so the convolutional features are pooled both by their mean (the shape of the
peak train) and by their sum over time (its size), which a mean alone loses.

With ``output: per_bin`` the network instead predicts, at every time step
left after pooling (a coarse time bin), a non-negative number of clusters
from that step's features, and the count is their sum: a count built from
local evidence, with no global regression to pull it toward the training
mean. Such a model trains on two outputs, the count and the clusters per
coarse bin; :func:`serving_counter` keeps the count alone, the one output
that the export, the registry and ``dndx infer`` read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from dndx.config import ClusterCounterModelConfig
from models.blocks import dense_head, optimizer
from models.seeds import seed_stream

__all__ = [
    "COUNT_OUTPUT",
    "PER_BIN_OUTPUT",
    "SumPooling1D",
    "build_cluster_counter",
    "fold_calibration",
    "serving_counter",
]

#: The counter's output: clusters per waveform, ``(n_waveforms, 1)``.
COUNT_OUTPUT = "n_clusters"
#: The per-bin counter's second, training-only output: ``(n_waveforms, n_coarse_bins)``.
PER_BIN_OUTPUT = "clusters_per_bin"
#: Bias of the per-bin unit at initialisation: softplus(-2.25) = 0.1 clusters a bin.
PER_BIN_START_BIAS = -2.25


@keras.saving.register_keras_serializable(package="dndx")
class SumPooling1D(keras.layers.Layer):
    """Sum over the steps axis: ``(batch, steps, channels)`` to ``(batch, channels)``.

    Registered with Keras, so a saved model holding it loads once this module
    is imported.
    """

    def call(self, inputs: Any) -> Any:
        """Sum ``inputs``, ``(batch, steps, channels)``, over its steps."""
        return keras.ops.sum(inputs, axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """``(batch, channels)`` from ``(batch, steps, channels)``."""
        return (input_shape[0], input_shape[2])


def build_cluster_counter(
    cfg: ClusterCounterModelConfig, n_bins: int, n_channels: int, seed: int = 0
) -> keras.Model:
    """Build and compile the cluster counter.

    One ``Conv1D`` block per entry of ``cfg.filters``, each followed by max
    pooling while the pooled length stays at least ``cfg.pool_size``. Then,
    for ``cfg.output`` ``total``: the mean and the sum over time, concatenated;
    dense layers each followed by dropout; one linear unit. For ``per_bin``:
    the same dense layers at every time step, one softplus unit per step (the
    clusters in that coarse bin), and their sum through a fixed all-ones
    ``Dense`` (so that :func:`fold_calibration` treats both alike).

    Args:
        cfg: topology, output and optimiser.
        n_bins: time bins per waveform (``counter_input.n_bins``).
        n_channels: features per bin (:data:`dndx.chain.encoding.N_CHANNELS`).
        seed: source of the per-layer initialiser and dropout seeds.

    Returns:
        A compiled model named ``cluster_counter`` mapping the input ``peaks``,
        ``(n_waveforms, n_bins, n_channels)`` float32, to :data:`COUNT_OUTPUT`,
        ``(n_waveforms, 1)``, trained on the mean squared error; for ``per_bin``
        also to :data:`PER_BIN_OUTPUT`, ``(n_waveforms, n_coarse_bins)``, whose
        squared errors are summed over the bins.
    """
    next_seed = seed_stream(seed)
    peaks = keras.Input(shape=(n_bins, n_channels), dtype="float32", name="peaks")
    features, length = _convolutions(peaks, cfg, next_seed)
    if cfg.output == "per_bin":
        return _per_bin_counter(peaks, features, length, cfg, next_seed)
    return _total_counter(peaks, features, cfg, next_seed)


def _convolutions(
    peaks: Any, cfg: ClusterCounterModelConfig, next_seed: Callable[[], int]
) -> tuple[Any, int]:
    """The ``Conv1D`` blocks over ``peaks``: their output ``(batch, length, filters)``
    and its pooled ``length``."""
    x = peaks
    length = int(peaks.shape[1])
    for i, filters in enumerate(cfg.filters):
        x = keras.layers.Conv1D(
            filters,
            cfg.kernel_size,
            padding="same",
            activation=cfg.activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=next_seed()),
            name=f"conv_{i}",
        )(x)
        if cfg.pool_size > 1 and length // cfg.pool_size >= cfg.pool_size:
            x = keras.layers.MaxPooling1D(cfg.pool_size, name=f"pool_{i}")(x)
            length //= cfg.pool_size
    return x, length


def _per_bin_counter(
    peaks: Any,
    x: Any,
    length: int,
    cfg: ClusterCounterModelConfig,
    next_seed: Callable[[], int],
) -> keras.Model:
    """The ``per_bin`` head on the convolutions' output ``x``, compiled."""
    x = dense_head(x, cfg.dense_units, cfg.activation, cfg.dropout, next_seed)
    per_step = keras.layers.Dense(
        1,
        activation="softplus",
        kernel_initializer=keras.initializers.GlorotUniform(seed=next_seed()),
        # Starting at softplus(0) = 0.69 clusters in every bin, the sum would be
        # several times any count, and the first steps' gradients would kill the
        # ReLUs below; this bias starts each bin at about 0.1.
        bias_initializer=keras.initializers.Constant(PER_BIN_START_BIAS),
        name="clusters_per_step",
    )(x)
    per_bin = keras.layers.Reshape((length,), name=PER_BIN_OUTPUT)(per_step)
    n_clusters = keras.layers.Dense(
        1, kernel_initializer="ones", trainable=False, name=COUNT_OUTPUT
    )(per_bin)
    model = keras.Model(peaks, [n_clusters, per_bin], name="cluster_counter")
    model.compile(
        optimizer=optimizer(cfg.optimizer, cfg.learning_rate),
        loss={COUNT_OUTPUT: "mse", PER_BIN_OUTPUT: "mse"},
        # Keras' mse averages over the bins: weighted by their number, it sums.
        loss_weights={COUNT_OUTPUT: 1.0, PER_BIN_OUTPUT: float(length)},
    )
    return model


def _total_counter(
    peaks: Any, x: Any, cfg: ClusterCounterModelConfig, next_seed: Callable[[], int]
) -> keras.Model:
    """The ``total`` head on the convolutions' output ``x``, compiled."""
    x = keras.layers.Concatenate(name="pooled")(
        [
            keras.layers.GlobalAveragePooling1D(name="mean_over_time")(x),
            SumPooling1D(name="sum_over_time")(x),
        ]
    )
    x = dense_head(x, cfg.dense_units, cfg.activation, cfg.dropout, next_seed)
    n_clusters = keras.layers.Dense(
        1,
        kernel_initializer=keras.initializers.GlorotUniform(seed=next_seed()),
        name=COUNT_OUTPUT,
    )(x)
    model = keras.Model(peaks, n_clusters, name="cluster_counter")
    model.compile(
        optimizer=optimizer(cfg.optimizer, cfg.learning_rate),
        loss="mse",
        metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
    )
    return model


def serving_counter(model: keras.Model) -> keras.Model:
    """The counter as it is saved and served: ``model`` with its count output
    alone (the same layers and weights)."""
    if len(model.outputs) == 1:
        return model
    count = model.get_layer(COUNT_OUTPUT).output
    return keras.Model(model.inputs[0], count, name=model.name)


def fold_calibration(model: keras.Model, scale: float, offset: float) -> None:
    """Make ``model``'s count ``scale * count + offset`` by rescaling its last
    ``Dense`` layer, :data:`COUNT_OUTPUT`, in place: the export and every
    consumer then read the calibrated count at no cost."""
    layer = model.get_layer(COUNT_OUTPUT)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * scale, bias * scale + offset])
