"""A real `mlflow server` on loopback: a scan, a registration and inference over HTTP."""

from __future__ import annotations

import os
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

from dndx.chain.inference import infer_waveforms
from dndx.chain.onnx import OnnxModels
from dndx.config import parse_params
from dndx.io.dataset import read_waveform_set
from dndx.scoring.promotion import CHAMPION
from flows.runtime import dask_task_runner
from flows.train_peak_finder import train_peak_finder
from tasks.registry import COUNTER_NAME, PEAK_FINDER_NAME, fetch_bundle, promote
from tasks.tracking import configure_mlflow
from tests.conftest import free_port, register_pair, stop_process_group, tiny_params


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
        start_new_session=True,
        # MLflow's job runner starts eight consumer processes, each importing MLflow
        # (20 s of CPU in all); dndx submits no server-side jobs.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # its first start migrates the store
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
        stop_process_group(server)


def test_scan_registration_and_inference_against_a_tracking_server(
    mlflow_server: str,
    prepared_data: Path,
    untrained_pair: Path,
    shared_dask: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copytree(prepared_data / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    # One short trial is enough to show that the flow's process logs to the server.
    scan = {"strategy": "grid", "n_trials": 1, "seed": 7, "space": {"lstm_units": [[8]]}}
    params = parse_params(tiny_params(train_peak_finder={"epochs": 1, "scan": scan}))

    # A scan: the flow's process logs every trial to the server.
    runner = dask_task_runner(params.dask, params.train_peak_finder.scan.n_trials)
    train_peak_finder.with_options(task_runner=runner)(params, tmp_path)
    assert mlflow.get_tracking_uri() == mlflow_server
    client = MlflowClient()
    experiment = client.get_experiment_by_name(params.mlflow.experiment)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(trials) == 1 and all(r.info.status == "FINISHED" for r in trials)
    artifacts = {a.path for a in client.list_artifacts(trials[0].info.run_id)}
    assert "model.keras" in artifacts
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the embedded store

    # A registration with promotion, then inference with the fetched champions.
    configure_mlflow(params.mlflow, tmp_path)
    scores = {"peak_efficiency_x_purity": 0.5, "rms_over_sqrt_n": 1.0}
    assert promote(register_pair(untrained_pair, scores), scores, None)["alias"] == CHAMPION
    bundle = fetch_bundle(
        [f"models:/{PEAK_FINDER_NAME}@{CHAMPION}", f"models:/{COUNTER_NAME}@{CHAMPION}"],
        tmp_path / "cache",
        mlflow_server,
    )
    data = read_waveform_set(next((tmp_path / "data/simulated/test").glob("part-*.parquet")))
    rates = data.info["sampling_rate_ghz"].to_numpy()
    rows = np.flatnonzero(rates == rates[0])
    samples, rate = data.adc.take(rows), float(rates[0])
    found = infer_waveforms(samples, rate, "auto", OnnxModels.load(bundle))
    # The fetched champions are the registered pair: the same outputs, row for row.
    expected = infer_waveforms(samples, rate, "auto", OnnxModels.load(untrained_pair / "bundle"))
    assert len(found) == len(rows)
    np.testing.assert_array_equal(found["counter_output"], expected["counter_output"])
    np.testing.assert_array_equal(found["n_peaks"], expected["n_peaks"])
