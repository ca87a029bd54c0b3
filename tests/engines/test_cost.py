"""Inference cost of the built models: multiply-adds counted against a hand count."""

from __future__ import annotations

import keras
import pytest

from dndx.config import ClusterCounterModelConfig, PeakFinderModelConfig
from dndx.errors import DndxError
from models import build_cluster_counter, build_peak_finder
from models.cost import multiply_adds


def test_an_lstm_peak_finder_costs_its_gates_at_every_step_then_its_dense_head() -> None:
    cfg = PeakFinderModelConfig(
        lstm_units=(4, 3), dense_units=(8,), activation="relu", dropout=0.1,
        optimizer="adam", learning_rate=0.001,
    )  # fmt: skip
    model = build_peak_finder(cfg, window_length=15, n_features=1)
    # Four gates of u units read f inputs and u recurrent values at each of 15 steps.
    lstm_0 = 15 * 4 * 4 * (1 + 4)
    lstm_1 = 15 * 4 * 3 * (4 + 3)
    head = 3 * 8 + 8 * 1
    assert multiply_adds(model) == lstm_0 + lstm_1 + head


def test_a_cnn_counter_costs_each_kernel_at_every_output_position_then_its_dense_head() -> None:
    cfg = ClusterCounterModelConfig(
        filters=(2, 3), kernel_size=3, pool_size=2, dense_units=(5,), activation="relu",
        dropout=0.1, optimizer="adam", learning_rate=0.001, output="total",
    )  # fmt: skip
    model = build_cluster_counter(cfg, n_bins=16, n_channels=4)
    # 'same' padding keeps the length; pooling halves it (16 -> 8 -> 4); pooling, the
    # mean and the sum over time have no weights; the head reads 3 means and 3 sums.
    conv_0 = 16 * 3 * 4 * 2
    conv_1 = 8 * 3 * 2 * 3
    head = (3 + 3) * 5 + 5 * 1
    assert multiply_adds(model) == conv_0 + conv_1 + head


def test_a_weighted_layer_it_cannot_count_is_named() -> None:
    inputs = keras.Input(shape=(8, 2))
    outputs = keras.layers.GRU(3, name="gru_0")(inputs)
    with pytest.raises(DndxError, match="layer 'gru_0' \\(GRU\\) has weights"):
        multiply_adds(keras.Model(inputs, outputs))
