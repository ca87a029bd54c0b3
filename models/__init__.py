"""Keras model builders: each takes its config dataclass and returns a compiled model."""

from models.cluster_counter import build_cluster_counter
from models.peak_finder import build_peak_finder

__all__ = ["build_cluster_counter", "build_peak_finder"]
