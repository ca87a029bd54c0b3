"""Fixtures of the engine tests (real MLflow, Prefect, DVC, ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dndx.config import load_params
from tasks.tracking import configure_mlflow


@pytest.fixture
def local_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh embedded MLflow store (SQLite) in ``tmp_path``, the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    configure_mlflow(load_params().mlflow, tmp_path)
    return tmp_path
