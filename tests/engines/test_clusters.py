"""Dask beyond one machine: batch job scripts, and scans on a real scheduler with
two real worker processes on loopback, one of which is killed mid-scan."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from distributed import Client
from mlflow.tracking import MlflowClient

from dndx.config import DaskConfig, load_params, load_section, parse_params
from dndx.errors import ConfigError
from flows.job_script import render_job_script
from flows.runtime import dask_config_from_environment, dask_task_runner, worker_environment
from flows.train_peak_finder import train_peak_finder
from tests.conftest import ROOT, free_port, stop_process_group, tiny_params, venv_env

API_URL = "http://10.20.30.40:4200/api"
WORKDIR = Path("/shared/dndx")
DASK = Path(sys.executable).parent / "dask"
DASK_PARAMS = load_params().dask


def test_htcondor_job_script_requests_the_configured_resources() -> None:
    cfg = dataclasses.replace(
        DASK_PARAMS,
        mode="htcondor",
        cores=8,
        memory="32GiB",
        disk="20GiB",
        walltime="02:30:00",
        queue='(OpSysAndVer =?= "AlmaLinux9")',
        job_extra_directives=('+JobFlavour = "workday"',),
        python="/opt/dndx/bin/python",
    )
    script = render_job_script(cfg, worker_environment(API_URL), WORKDIR, "tcp://10.0.0.1:8786")
    lines = script.splitlines()
    assert "MY.DaskWorkerCores = 8" in lines
    assert f"MY.DaskWorkerMemory = {32 * 2**30}" in lines
    assert f"MY.DaskWorkerDisk = {20 * 2**30}" in lines
    assert "MY.MaxRuntime = 9000" in lines
    assert 'Requirements = (OpSysAndVer =?= "AlmaLinux9")' in lines
    assert '+JobFlavour = "workday"' in lines
    assert f"export PREFECT_API_URL={API_URL}" in script
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        assert f"export {name}=1" in script
    assert "export TF_NUM_INTEROP_THREADS=2" in script
    assert f"cd {WORKDIR}" in script
    assert "/opt/dndx/bin/python -m distributed.cli.dask_worker tcp://10.0.0.1:8786" in script
    assert "--nthreads 1" in script and "--nworkers 8" in script


def test_slurm_job_script_requests_the_configured_resources() -> None:
    cfg = dataclasses.replace(
        DASK_PARAMS,
        mode="slurm",
        cores=4,
        memory="16GiB",
        walltime="1-00:00:00",
        queue="long",
        job_extra_directives=("--account=dndx",),
    )
    script = render_job_script(cfg, worker_environment(API_URL), WORKDIR)
    lines = script.splitlines()
    for directive in ("-p long", "--cpus-per-task=4", "--mem=16G", "-t 1-00:00:00"):
        assert f"#SBATCH {directive}" in lines
    assert "#SBATCH --account=dndx" in lines
    assert f"export PREFECT_API_URL={API_URL}" in lines
    assert "export OMP_NUM_THREADS=1" in lines and "export TF_NUM_INTRAOP_THREADS=1" in lines
    assert f"cd {WORKDIR}" in lines
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script
    assert "--nthreads 1" in script and "--nworkers 4" in script


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"mode": "slurm", "walltime": "4h"}, "dask.walltime = '4h': should be [D-]HH:MM:SS"),
        ({"mode": "htcondor", "disk": "big"}, "dask.disk = 'big': should be a size"),
        ({"mode": "address"}, "mode address needs the scheduler's address"),
        ({"minimum_jobs": 5, "maximum_jobs": 2}, "dask: minimum_jobs = 5 exceeds"),
        ({"mode": "htcondor", "job_extra_directives": ["oops"]}, "'key = value' lines"),
    ],
)
def test_bad_cluster_settings_are_config_errors(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"params\.yaml: ") as error:
        parse_params(tiny_params(dask=mapping))
    assert message in str(error.value)


@pytest.mark.parametrize("name", ["local", "address", "htcondor", "slurm"])
def test_the_example_configs_are_valid_dask_sections(name: str) -> None:
    path = ROOT / "infra" / "dask" / f"{name}.yaml"
    assert list(yaml.safe_load(path.read_text())) == ["dask"]
    cfg = load_section(path, "dask", DaskConfig)
    assert cfg.mode == name
    if name in ("htcondor", "slurm"):
        assert f"{cfg.cores}" in render_job_script(cfg, worker_environment(API_URL), WORKDIR)


def test_the_environment_selects_a_running_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNDX_DASK_ADDRESS", "tcp://10.0.0.1:8786")
    cfg = dask_config_from_environment(dataclasses.replace(DASK_PARAMS, mode="slurm"))
    assert (cfg.mode, cfg.address) == ("address", "tcp://10.0.0.1:8786")


@pytest.mark.parametrize("mode", ["htcondor", "slurm"])
def test_batch_modes_give_an_adaptive_jobqueue_runner(
    mode: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dask_jobqueue import HTCondorCluster, SLURMCluster

    monkeypatch.setenv("PREFECT_API_URL", API_URL)
    monkeypatch.delenv("DNDX_DASK_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    runner: Any = dask_task_runner(
        dataclasses.replace(DASK_PARAMS, mode=mode, minimum_jobs=1, maximum_jobs=3)
    )
    module, _, name = runner.cluster_class.rpartition(".")
    cluster_class = getattr(importlib.import_module(module), name)
    assert cluster_class is {"htcondor": HTCondorCluster, "slurm": SLURMCluster}[mode]
    assert runner.adapt_kwargs == {"minimum_jobs": 1, "maximum_jobs": 3}
    prologue = runner.cluster_kwargs["job_script_prologue"]
    assert f"export PREFECT_API_URL={API_URL}" in prologue
    assert prologue[-1] == f"cd {tmp_path}"


@dataclass
class LoopbackCluster:
    """A scheduler and two single-threaded workers, each its own process group."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]]  # by worker name

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker with its nanny, as when a batch node dies."""
        os.killpg(self.workers[name].pid, signal.SIGKILL)


@pytest.fixture
def workdir(prepared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(prepared_data / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DNDX_DASK_ADDRESS", raising=False)
    return tmp_path


# A test-only worker preload: each trial says on which worker it started, then
# waits until both trials have started and the test says go, so that the two
# run side by side, one on each single-threaded worker, whatever the machine's load.
_TRIALS_MEET = """
import os, time
from pathlib import Path
from distributed import get_worker
import tasks.training


def _meeting(trial):
    def trial_after_meeting(spec, *args):
        meeting = Path(os.environ["DNDX_TEST_TRIALS"])
        (meeting / f"{spec.name}.worker").write_text(get_worker().name)
        deadline = time.monotonic() + 300
        while len(list(meeting.glob("*.worker"))) < 2 or not (meeting / "go").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{meeting}: the trials never met or the test never said go")
            time.sleep(0.05)
        return trial(spec, *args)

    return trial_after_meeting


# By name: the scan's task reaches its trials by reference to the module's functions.
for trial in tasks.training._TRIALS.values():
    setattr(tasks.training, trial.__name__, _meeting(trial))
"""


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:g} s"
        time.sleep(0.1)


@pytest.fixture
def cluster(workdir: Path, prefect_api: str) -> Iterator[LoopbackCluster]:
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, started in
    the scan's directory with the Prefect API and one thread each; their trials
    meet (:data:`_TRIALS_MEET`) in ``workdir/trials``."""
    address = f"tcp://127.0.0.1:{free_port()}"
    (workdir / "trials").mkdir()
    (workdir / "trials_meet.py").write_text(_TRIALS_MEET)
    env = {**venv_env(), **worker_environment(prefect_api)}
    env["DNDX_TEST_TRIALS"] = str(workdir / "trials")
    common = {"cwd": workdir, "env": env, "start_new_session": True}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        log = (workdir / "scheduler.log").open("wb")
        scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
             "--no-dashboard"],
            stdout=log, stderr=subprocess.STDOUT, **common,
        )  # fmt: skip
        processes.append(scheduler)
        workers = {}
        for name in ("w0", "w1"):
            log = (workdir / f"{name}.log").open("wb")
            workers[name] = subprocess.Popen(
                [DASK, "worker", address, "--name", name, "--nthreads", "1", "--nworkers", "1",
                 "--no-dashboard", "--local-directory", str(workdir / "dask-worker-space"),
                 "--preload", str(workdir / "trials_meet.py")],
                stdout=log, stderr=subprocess.STDOUT, **common,
            )  # fmt: skip
            processes.append(workers[name])
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield LoopbackCluster(address, scheduler, workers)
    finally:
        for process in reversed(processes):
            stop_process_group(process)


def _scan(workdir: Path, address: str) -> dict[str, Any]:
    params = parse_params(
        tiny_params(mlflow={"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}"})
    )
    runner = dask_task_runner(dataclasses.replace(params.dask, mode="address", address=address))
    return dict(train_peak_finder.with_options(task_runner=runner)(params, workdir))


def _trial_results(workdir: Path) -> list[dict[str, Any]]:
    paths = sorted((workdir / "data/scans/peak_finder").glob("trial-*/result.json"))
    return [json.loads(path.read_text()) for path in paths]


def _trial_runs(workdir: Path) -> list[Any]:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dndx")
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if "trial" in r.data.tags]


def _worker_names(address: str) -> dict[str, str]:
    with Client(address, timeout=30) as client:
        return {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}


def test_scans_through_a_running_scheduler_use_both_workers_and_survive_a_dead_one(
    workdir: Path, cluster: LoopbackCluster
) -> None:
    """One cluster, two scans: the first spreads its trials over both workers; in the
    second a worker dies mid-trial and the survivor runs its trial again."""
    names = _worker_names(cluster.address)
    meeting = workdir / "trials"
    (meeting / "go").touch()
    _scan(workdir, cluster.address)

    results = _trial_results(workdir)
    assert [r["status"] for r in results] == ["finished", "finished"]
    assert {names[r["worker"]] for r in results} == {"w0", "w1"}
    runs = _trial_runs(workdir)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert Path("data/models/peak_finder/model.keras").exists()

    second = workdir / "second"
    for name in ("simulated", "prepared"):
        shutil.copytree(workdir / "data" / name, second / "data" / name)
    for path in meeting.iterdir():
        path.unlink()
    killed: list[str] = []

    def kill_a_busy_worker() -> None:
        # Both trials have started, one on each worker, and wait for "go": the kill
        # lands mid-trial, however fast or slow the machine.
        _wait_for(lambda: len(list(meeting.glob("*.worker"))) == 2, 300, "both trials started")
        killed.append(sorted(meeting.glob("*.worker"))[-1].read_text())
        cluster.kill_worker(killed[0])
        (meeting / "go").touch()

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    _scan(second, cluster.address)
    killer.join(timeout=5)

    assert len(killed) == 1
    assert cluster.workers[killed[0]].poll() is not None
    results = _trial_results(second)
    assert [r["status"] for r in results] == ["finished", "finished"]
    # The dead worker's trial was run again by the survivor.
    assert {names[r["worker"]] for r in results} == {"w0", "w1"} - {killed[0]}
    # Only the flow's process writes MLflow: one run per trial, none left half-written.
    runs = _trial_runs(second)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
