"""Where flows run: the Prefect API they report to and the Dask cluster they use.

Without a configured Prefect API (``PREFECT_API_URL`` in the environment or the
active Prefect profile), Prefect starts a temporary server per process. Dask
workers and DVC stage commands are processes too, and dozens of temporary
servers on one SQLite file are slow and fragile; so the first dndx process
starts one temporary server and hands its address to every child through the
environment.

The Dask cluster is the ``dask`` section of ``params.yaml``: a local cluster,
a running scheduler, or HTCondor / Slurm jobs (see :mod:`flows.clusters`).
``DNDX_DASK_ADDRESS`` in the environment overrides it with a running scheduler.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from dndx.config import DaskConfig
from flows.clusters import JOBQUEUE_CLUSTERS, jobqueue_cluster_kwargs, worker_thread_env
from flows.network import check_reachable

__all__ = [
    "DASK_ADDRESS_ENV",
    "configured_prefect_api",
    "dask_config_from_environment",
    "dask_task_runner",
    "die_with_parent",
    "ensure_prefect_api",
    "local_cluster_kwargs",
    "project_root",
    "quiet_prefect_console",
    "start_prefect_api",
    "worker_environment",
]

#: The environment variable that points every flow at a running Dask scheduler.
DASK_ADDRESS_ENV = "DNDX_DASK_ADDRESS"

_logger = logging.getLogger(__name__)


def project_root(params_path: str | Path) -> Path:
    """The project's root: the directory of its ``params.yaml``, whatever the
    working directory. A stage's data, models, reports and metrics are paths
    under it, as ``dvc.yaml`` names them.

    >>> project_root("/repo/params.yaml")
    PosixPath('/repo')
    """
    return Path(params_path).resolve().parent


def configured_prefect_api() -> str:
    """The Prefect API URL from the environment or the active profile; "" if none."""
    url = os.environ.get("PREFECT_API_URL", "")
    if url:
        return url
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "")


def ensure_prefect_api() -> str:
    """The Prefect API URL this process and its children use, starting a temporary
    server on loopback when none is configured."""
    return start_prefect_api()()


def start_prefect_api() -> Callable[[], str]:
    """:func:`ensure_prefect_api` begun: a temporary server, where one is needed,
    boots in its own process while the caller goes on (imports, starting work
    that needs no API yet). Returns the wait for the API, which gives its URL and
    raises what the start raised."""
    url = configured_prefect_api()
    if url:
        check_reachable(url, "the Prefect API (PREFECT_API_URL)")
        # Children (Dask workers, DVC stage commands) inherit the environment.
        os.environ["PREFECT_API_URL"] = url
        return lambda: url
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # Telemetry writes to the SQLite file while flows do and only adds lock contention.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Imported here, not in the thread: two threads importing one package can deadlock.
    server = _own_session_server()
    failure: list[BaseException] = []
    started = threading.Event()

    def start() -> None:
        try:
            server.start(
                timeout=int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
            )
        except BaseException as error:
            failure.append(error)
        finally:
            started.set()
        # The kernel's parent-death signal (die_with_parent) follows the thread that
        # forked the server, not the process: the thread lives as long as the process.
        threading.Event().wait()

    threading.Thread(target=start, name="start the Prefect server", daemon=True).start()

    def wait() -> str:
        started.wait()
        if failure:
            raise failure[0]
        os.environ["PREFECT_API_URL"] = server.api_url
        return str(server.api_url)

    return wait


def die_with_parent() -> None:
    """Have the kernel end this process when the process that started it ends,
    even by SIGKILL, which runs no clean-up (Linux ``PR_SET_PDEATHSIG``;
    elsewhere nothing). Called in a child: the Prefect server, a Dask worker."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The parent may have died before the call: then nothing would signal us.
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _own_session_server() -> Any:
    """Prefect's temporary server, started in a session of its own: Ctrl-C at the
    terminal then stops dndx and its workers but not the server, which stays up
    while dndx reports the interruption and is stopped at exit. Started in the
    terminal's process group, the server dies first and Prefect's client retries
    against it for minutes. It dies with this process, even when this one is
    killed (:func:`die_with_parent`)."""
    import subprocess

    from prefect.server.api.server import SubprocessASGIServer

    class OwnSessionServer(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            popen = subprocess.Popen
            subprocess.Popen = functools.partial(  # type: ignore[assignment,misc]
                popen, start_new_session=True, preexec_fn=die_with_parent
            )
            try:
                return super()._run_uvicorn_command()
            finally:
                subprocess.Popen = popen  # type: ignore[misc]

    return OwnSessionServer()


def quiet_prefect_console() -> None:
    """Keep Prefect's console handler and Dask's logs to critical messages, in this
    process and in every process it starts from now on (Dask workers), tracebacks
    of failures included: the caller reports progress and failures in its own
    words."""
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    # Workers warn of the tasks a failure cancels; a nanny, of a worker that Ctrl-C
    # left busy; and a worker whose scheduler Ctrl-C stopped first logs its failed
    # heartbeat as an error, with a traceback.
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "critical"
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def worker_environment(prefect_api_url: str | None = None) -> dict[str, str]:
    """What a batch or remote Dask worker's environment needs before it starts: the
    Prefect API (default: the configured one), one thread for TensorFlow and BLAS,
    and Dask's logs at warnings.

    >>> worker_environment("http://10.0.0.5:4200/api")["PREFECT_API_URL"]
    'http://10.0.0.5:4200/api'
    """
    url = configured_prefect_api() if prefect_api_url is None else prefect_api_url
    return {
        **({"PREFECT_API_URL": url} if url else {}),
        **worker_thread_env(),
        "DASK_LOGGING__DISTRIBUTED": "warning",
    }


def dask_config_from_environment(cfg: DaskConfig) -> DaskConfig:
    """``cfg``, switched to mode ``address`` when ``DNDX_DASK_ADDRESS`` is set."""
    address = os.environ.get(DASK_ADDRESS_ENV, "")
    return dataclasses.replace(cfg, mode="address", address=address) if address else cfg


def dask_task_runner(cfg: DaskConfig, tasks_at_once: int | None = None) -> TaskRunner[Any]:
    """A Prefect task runner on the Dask cluster that ``cfg`` describes
    (``DNDX_DASK_ADDRESS`` in the environment overrides it).

    ``tasks_at_once``: the most tasks the flow ever runs together (a scan's trials).
    A local cluster then starts no more workers than that and shares the cores and
    memory of the others among them: a lone trial trains on every core, not one.
    """
    cfg = dask_config_from_environment(cfg)
    api_url = ensure_prefect_api()
    if cfg.mode == "address":
        check_reachable(cfg.address, f"the Dask scheduler ({DASK_ADDRESS_ENV} or dask.address)")
        # The workers are someone else's processes: their environment is set where
        # they start (infra/dask/README.md).
        return cast(TaskRunner[Any], DaskTaskRunner(address=cfg.address))
    if cfg.mode in JOBQUEUE_CLUSTERS:
        host = urlparse(api_url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            _logger.warning(
                "dask.mode %s: the Prefect API %s is on loopback, which batch nodes cannot "
                "reach; set PREFECT_API_URL to a server they can reach",
                cfg.mode,
                api_url,
            )
        runner = DaskTaskRunner(
            cluster_class=JOBQUEUE_CLUSTERS[cfg.mode],
            cluster_kwargs=jobqueue_cluster_kwargs(cfg, worker_environment(api_url), Path.cwd()),
            adapt_kwargs={"minimum_jobs": cfg.minimum_jobs, "maximum_jobs": cfg.maximum_jobs},
        )
        return cast(TaskRunner[Any], runner)
    distributed = logging.getLogger("distributed")
    distributed.setLevel(max(distributed.getEffectiveLevel(), logging.WARNING))
    # A worker configures its logging as it imports Dask, before the worker environment
    # applies: its level has to be inherited (unless the caller chose one).
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    return cast(TaskRunner[Any], DaskTaskRunner(**local_cluster_kwargs(cfg, tasks_at_once)))


def local_cluster_kwargs(cfg: DaskConfig, tasks_at_once: int | None = None) -> dict[str, Any]:
    """The ``DaskTaskRunner`` arguments of the local cluster of ``cfg``, sized for at
    most ``tasks_at_once`` tasks at a time (see :func:`dask_task_runner`).

    >>> from dndx.config import load_params
    >>> kwargs = local_cluster_kwargs(load_params().dask, tasks_at_once=1)["cluster_kwargs"]
    >>> kwargs["n_workers"], kwargs["env"]["TF_NUM_INTRAOP_THREADS"]
    (1, '2')
    """
    from dask.utils import format_bytes, parse_bytes

    n_workers = min(cfg.n_workers, tasks_at_once or cfg.n_workers)
    share = cfg.n_workers // n_workers  # workers' worth of cores and memory each
    return {
        "cluster_class": "distributed.LocalCluster",
        "cluster_kwargs": {
            "n_workers": n_workers,
            "threads_per_worker": cfg.threads_per_worker,
            "processes": True,
            "memory_limit": format_bytes(parse_bytes(cfg.memory_limit) * share),
            # Set in each worker process before TensorFlow or BLAS start.
            "env": worker_thread_env(share * cfg.threads_per_worker),
            "dashboard_address": ":0",  # any free port: several clusters may run at once
        },
    }
