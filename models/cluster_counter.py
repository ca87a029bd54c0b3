"""The 1-D CNN cluster counter: how many primary clusters made a waveform's peaks?

The network reads the found peaks of one waveform, binned in time into
``n_bins`` bins of ``n_channels`` features, and regresses the number of
primary clusters. The count is extensive, it grows with the number of peaks,
so the convolutional features are pooled both by their mean (the shape of the
peak train) and by their sum over time (its size), which a mean alone loses.
"""

from __future__ import annotations

from typing import Any

import keras

from dndx.config import ClusterCounterModelConfig
from models.blocks import dense_head, optimizer
from models.seeds import seed_stream

__all__ = ["SumPooling1D", "build_cluster_counter"]


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
    cfg: ClusterCounterModelConfig, n_bins: int = 1024, n_channels: int = 4, seed: int = 0
) -> keras.Model:
    """Build and compile the cluster counter.

    One ``Conv1D`` block per entry of ``cfg.filters``, each followed by max
    pooling while the pooled length stays at least ``cfg.pool_size``; then the
    mean and the sum over time, concatenated; then dense layers each followed
    by dropout; then one linear unit.

    Args:
        cfg: topology and optimiser.
        n_bins: time bins per waveform.
        n_channels: features per bin.
        seed: source of the per-layer initialiser and dropout seeds.

    Returns:
        A compiled model named ``cluster_counter`` mapping the input ``peaks``,
        ``(n_waveforms, n_bins, n_channels)`` float32, to the output
        ``n_clusters``, ``(n_waveforms, 1)``.
    """
    next_seed = seed_stream(seed)

    peaks = keras.Input(shape=(n_bins, n_channels), dtype="float32", name="peaks")
    x = peaks
    length = n_bins
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
        name="n_clusters",
    )(x)

    model = keras.Model(peaks, n_clusters, name="cluster_counter")
    model.compile(
        optimizer=optimizer(cfg.optimizer, cfg.learning_rate),
        loss="mse",
        metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
    )
    return model
