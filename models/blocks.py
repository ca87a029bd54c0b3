"""Pieces both model builders share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

__all__ = ["dense_head", "optimizer"]


def dense_head(
    x: Any, units: Sequence[int], activation: str, dropout: float, next_seed: Callable[[], int]
) -> Any:
    """Dense layers, each followed by dropout, with seeded initialisers."""
    for i, width in enumerate(units):
        x = keras.layers.Dense(
            width,
            activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=next_seed()),
            name=f"dense_{i}",
        )(x)
        x = keras.layers.Dropout(dropout, seed=next_seed(), name=f"dropout_{i}")(x)
    return x


def optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The named Keras optimizer at ``learning_rate``."""
    return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})
