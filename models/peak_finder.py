"""The LSTM peak finder: is the centre of a candidate window a true peak?

The network reads one window of ``window_length`` samples around a candidate
and returns the probability that a primary-cluster peak sits at its centre.
Every initialiser and dropout layer takes its own seed derived from ``seed``,
so two builds with the same seed start from identical weights on any backend.
"""

from __future__ import annotations

import keras

from dndx.config import PeakFinderModelConfig
from models.blocks import dense_head, optimizer
from models.seeds import seed_stream

__all__ = ["build_peak_finder"]


def build_peak_finder(
    cfg: PeakFinderModelConfig, window_length: int = 15, n_features: int = 1, seed: int = 0
) -> keras.Model:
    """Build and compile the peak finder.

    Stacked LSTMs (all but the last return sequences), then dense layers each
    followed by dropout, then one sigmoid unit.

    Args:
        cfg: topology and optimiser.
        window_length: samples per candidate window.
        n_features: values per sample.
        seed: source of the per-layer initialiser and dropout seeds.

    Returns:
        A compiled model named ``peak_finder`` mapping the input ``window``,
        ``(n_windows, window_length, n_features)`` float32, to the output
        ``peak_probability``, ``(n_windows, 1)``.
    """
    next_seed = seed_stream(seed)

    window = keras.Input(shape=(window_length, n_features), dtype="float32", name="window")
    x = window
    for i, units in enumerate(cfg.lstm_units):
        x = keras.layers.LSTM(
            units,
            return_sequences=i < len(cfg.lstm_units) - 1,
            kernel_initializer=keras.initializers.GlorotUniform(seed=next_seed()),
            recurrent_initializer=keras.initializers.Orthogonal(seed=next_seed()),
            name=f"lstm_{i}",
        )(x)
    x = dense_head(x, cfg.dense_units, cfg.activation, cfg.dropout, next_seed)
    probability = keras.layers.Dense(
        1,
        activation="sigmoid",
        kernel_initializer=keras.initializers.GlorotUniform(seed=next_seed()),
        name="peak_probability",
    )(x)

    model = keras.Model(window, probability, name="peak_finder")
    model.compile(
        optimizer=optimizer(cfg.optimizer, cfg.learning_rate),
        loss="binary_crossentropy",
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
            keras.metrics.AUC(name="auc"),
        ],
    )
    return model
