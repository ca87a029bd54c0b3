"""Where flows run: the Prefect API they report to and the Dask cluster they use.

Without ``PREFECT_API_URL``, Prefect starts a temporary server per process.
Dask workers and DVC stage commands are processes too, and dozens of
temporary servers on one SQLite file are slow and fragile; so the first dndx
process starts one temporary server and hands its address to every child
through the environment.
"""

from __future__ import annotations

import logging
import os
from typing import Any, cast

from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from dndx.config import DaskConfig

__all__ = ["dask_task_runner", "ensure_prefect_api"]

# TensorFlow and BLAS in Dask workers: one thread each, fixed before they start.
_WORKER_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "DASK_LOGGING__DISTRIBUTED": "warning",
}


def ensure_prefect_api() -> str:
    """The Prefect API URL this process and its children use, starting a temporary
    server on loopback when none is configured."""
    url = os.environ.get("PREFECT_API_URL", "")
    if url:
        return url
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # Telemetry writes to the SQLite file while flows do and only adds lock contention.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
    os.environ["PREFECT_API_URL"] = server.api_url
    return server.api_url


def dask_task_runner(cfg: DaskConfig) -> TaskRunner[Any]:
    """A Prefect task runner on the Dask cluster that ``cfg`` describes."""
    ensure_prefect_api()
    if cfg.mode == "address":
        return cast(TaskRunner[Any], DaskTaskRunner(address=cfg.address))
    for name, value in _WORKER_THREAD_ENV.items():
        os.environ.setdefault(name, value)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    runner = DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": cfg.n_workers,
            "threads_per_worker": cfg.threads_per_worker,
            "processes": True,
            "memory_limit": cfg.memory_limit,
            "dashboard_address": None,
        },
    )
    return cast(TaskRunner[Any], runner)
