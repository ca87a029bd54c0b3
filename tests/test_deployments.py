"""Prefect deployments for real: a `prefect server` on a free loopback port, the
deployments of infra/prefect.yaml, a `prefect worker` process, and an inference
run triggered as a user would, on a tiny NPZ file with untrained, seeded models."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from dndx.config import load_params
from dndx.simulation import simulate_range
from flows.serve import (
    PREFECT_FILE,
    WORK_POOL,
    deploy,
    ensure_work_pool,
    start_server,
    start_worker,
    wait_for_api,
)
from tests.conftest import ROOT, free_port, stop_process_group, venv_env

PREFECT = Path(sys.executable).parent / "prefect"
N_WAVEFORMS = 12


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real Prefect server of its own; yields the environment that points at it."""
    port = free_port()
    env = {
        **venv_env(),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    process = start_server("127.0.0.1", port, env, tmp_path / "server.log")
    try:
        wait_for_api(env["PREFECT_API_URL"], timeout_s=120)
        yield env
    finally:
        stop_process_group(process)


@pytest.fixture
def bundle_dir(untrained_pair: Path) -> Path:
    """Untrained, seeded models exported as a bundle, as the registry would hold them."""
    return untrained_pair / "bundle"


def test_prefect_yaml_declares_both_deployments_on_the_process_pool() -> None:
    config = yaml.safe_load((ROOT / PREFECT_FILE).read_text())
    deployments = {d["name"]: d for d in config["deployments"]}
    assert deployments["dndx-pipeline"]["entrypoint"] == "flows/pipeline.py:pipeline"
    assert deployments["dndx-infer"]["entrypoint"] == "flows/infer.py:infer"
    for deployment in deployments.values():
        assert deployment["work_pool"]["name"] == WORK_POOL
        path, function = deployment["entrypoint"].split(":")
        assert f"def {function}(" in (ROOT / path).read_text()
    (nightly,) = deployments["dndx-pipeline"]["schedules"]
    assert nightly["cron"] == "0 2 * * *" and nightly["active"] is False
    assert set(deployments["dndx-pipeline"]["parameters"]) == {"repo_dir", "stages"}
    step = config["pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert step["directory"] == "{{ repository.stdout }}"


def test_the_inference_deployment_runs_through_a_worker(
    server: dict[str, str], bundle_dir: Path, tmp_path: Path
) -> None:
    env = server
    ensure_work_pool(env, ROOT)
    ensure_work_pool(env, ROOT)  # a second call finds the pool
    report = deploy(env, ROOT)
    for name in ("pipeline/dndx-pipeline", "infer/dndx-infer"):
        assert f"Deployment '{name}' successfully created" in report

    cfg = dataclasses.replace(
        load_params().simulate,
        n_train=N_WAVEFORMS, block_size=N_WAVEFORMS, chunk_size=N_WAVEFORMS,
        sampling_rates_ghz=(1.5,), polarities=(1,),
    )  # fmt: skip
    waveforms = np.stack(list(simulate_range(cfg, "train", 0, N_WAVEFORMS).adc))
    np.savez(tmp_path / "waveforms.npz", waveforms=waveforms)
    out = tmp_path / "results" / "waveforms.parquet"

    worker = start_worker(env, tmp_path, tmp_path / "worker.log")
    try:
        run = subprocess.run(
            [
                PREFECT, "deployment", "run", "infer/dndx-infer",
                "--param", f"inputs={json.dumps([str(tmp_path / 'waveforms.npz')])}",
                "--param", f"out={out}",
                "--param", f"model_uris={json.dumps([str(bundle_dir)])}",
                "--param", "workers=1",
                "--watch", "--watch-interval", "1", "--watch-timeout", "100",
            ],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        stop_process_group(worker)
    log = run.stdout + run.stderr + (tmp_path / "worker.log").read_text()
    assert run.returncode == 0, log
    assert "Completed" in run.stdout, log

    assert pq.read_metadata(out).num_rows == N_WAVEFORMS
    assert out.with_name("waveforms.summary.md").exists()
    with (
        temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name("infer/dndx-infer")
        pipeline = client.read_deployment_by_name("pipeline/dndx-pipeline")
        (flow_run,) = client.read_flow_runs()
    # The nightly re-training is registered switched off.
    (schedule,) = pipeline.schedules
    assert schedule.active is False
    assert pipeline.work_pool_name == WORK_POOL
    # The worker ran the flow in the repository the deployment was registered from.
    (step,) = deployment.pull_steps or []
    assert step["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
    assert flow_run.deployment_id == deployment.id
    assert flow_run.state is not None and flow_run.state.is_completed()
