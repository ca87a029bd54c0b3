"""A real `mlflow server` on loopback: a scan, a registration and inference over HTTP."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from dndx.config import parse_params
from dndx.dataset import read_waveform_set
from dndx.inference import infer_waveforms
from flows.runtime import dask_task_runner
from flows.train_peak_finder import train_peak_finder
from tasks.onnx_models import OnnxModels
from tasks.registry import CHAMPION, COUNTER_NAME, PEAK_FINDER_NAME, fetch_bundle, promote
from tasks.tracking import configure_mlflow
from tests.conftest import free_port, tiny_params
from tests.test_registry import _register


@pytest.fixture
def mlflow_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An MLflow tracking server (SQLite backend, proxied local artifacts) on loopback."""
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination", (tmp_path / "server-artifacts").as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not start")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_scan_registration_and_inference_against_a_tracking_server(
    mlflow_server: str,
    prepared_data: Path,
    untrained_pair: Path,
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copytree(prepared_data / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    params = parse_params(tiny_params())

    # A scan: the flow's process logs every trial to the server.
    train_peak_finder.with_options(task_runner=dask_task_runner(params.dask))(params, tmp_path)
    assert mlflow.get_tracking_uri() == mlflow_server
    client = MlflowClient()
    experiment = client.get_experiment_by_name(params.mlflow.experiment)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    artifacts = {a.path for a in client.list_artifacts(trials[0].info.run_id)}
    assert "model.keras" in artifacts
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the embedded store

    # A registration with promotion, then inference with the fetched champions.
    configure_mlflow(params.mlflow, tmp_path)
    scores = {"peak_efficiency_x_purity": 0.5, "rms_over_sqrt_n": 1.0}
    assert promote(_register(untrained_pair, scores), scores, None)["alias"] == CHAMPION
    bundle = fetch_bundle(
        [f"models:/{PEAK_FINDER_NAME}@{CHAMPION}", f"models:/{COUNTER_NAME}@{CHAMPION}"],
        tmp_path / "cache",
        mlflow_server,
    )
    data = read_waveform_set(next((tmp_path / "data/simulated/test").glob("part-*.parquet")))
    rates = data.info["sampling_rate_ghz"].to_numpy()
    rows = np.flatnonzero(rates == rates[0])
    found = infer_waveforms(data.adc.take(rows), float(rates[0]), "auto", OnnxModels.load(bundle))
    assert len(found) == len(rows) and np.all(found["counter_output"] >= 0)
