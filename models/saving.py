"""Loading saved models back, with dndx's custom layers registered."""

from __future__ import annotations

from pathlib import Path

import keras

import models.cluster_counter  # noqa: F401  (registers SumPooling1D before loading)

__all__ = ["load_model"]


def load_model(path: str | Path) -> keras.Model:
    """A ``.keras`` file written by a scan, uncompiled: ready to predict or export."""
    return keras.saving.load_model(path, compile=False)
