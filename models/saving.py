"""Loading saved models back, with dndx's custom layers registered."""

from __future__ import annotations

import functools
from pathlib import Path

import keras

import models.cluster_counter  # noqa: F401  (registers SumPooling1D before loading)

__all__ = ["load_model", "load_model_once"]


def load_model(path: str | Path) -> keras.Model:
    """A ``.keras`` file written by a scan, uncompiled: ready to predict or export."""
    return keras.saving.load_model(path, compile=False)


@functools.lru_cache(maxsize=4)
def load_model_once(path: str) -> keras.Model:
    """:func:`load_model`, kept for the life of the process: a worker that runs many
    chunks with the same model loads it once."""
    return load_model(path)
