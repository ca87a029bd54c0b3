"""Dask clusters on batch systems: the dask-jobqueue settings for a :class:`DaskConfig`.

Each HTCondor or Slurm job runs one ``dask worker`` with one single-threaded
process per requested core. The job's shell first exports the Prefect API
address (tasks report their states to it), pins TensorFlow and BLAS to one
thread, and changes to the flow's working directory: trials and chunks read
and write paths relative to the repository, so the nodes must see it on a
shared file system.

:mod:`flows.job_script` prints the job script these settings submit.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dndx.config import DaskConfig

__all__ = [
    "JOBQUEUE_CLUSTERS",
    "jobqueue_cluster_kwargs",
    "worker_thread_env",
]


def worker_thread_env(threads: int = 1) -> dict[str, str]:
    """The environment that fixes TensorFlow's and BLAS's threads in a Dask worker
    before they start: ``threads`` each (one per core the worker owns).

    >>> worker_thread_env(2)["TF_NUM_INTRAOP_THREADS"]
    '2'
    """
    count = str(threads)
    return {
        "OMP_NUM_THREADS": count,
        "OPENBLAS_NUM_THREADS": count,
        "MKL_NUM_THREADS": count,
        "TF_NUM_INTRAOP_THREADS": count,
        # Two, not one: with a single inter-op thread a Keras predict was seen to hang
        # for good in a worker (every thread waiting), as TensorFlow warns blocking ops may.
        "TF_NUM_INTEROP_THREADS": "2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


#: The dask-jobqueue cluster class of each batch mode.
JOBQUEUE_CLUSTERS: dict[str, str] = {
    "htcondor": "dask_jobqueue.HTCondorCluster",
    "slurm": "dask_jobqueue.SLURMCluster",
}


def _prologue(environment: Mapping[str, str], workdir: Path) -> list[str]:
    exports = [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]
    return [*exports, f"cd {shlex.quote(str(workdir))}"]


def jobqueue_cluster_kwargs(
    cfg: DaskConfig, environment: Mapping[str, str], workdir: Path
) -> dict[str, Any]:
    """The keyword arguments of the dask-jobqueue cluster for ``cfg.mode``.

    Args:
        cfg: a configuration whose mode is ``htcondor`` or ``slurm``.
        environment: variables every job exports before its worker starts.
        workdir: the directory the workers run in (the repository, shared).

    >>> import dataclasses
    >>> from dndx.config import load_params
    >>> slurm = dataclasses.replace(load_params().dask, mode="slurm")
    >>> kwargs = jobqueue_cluster_kwargs(
    ...     dataclasses.replace(slurm, cores=8, queue="short", python="/opt/venv/bin/python"),
    ...     {"OMP_NUM_THREADS": "1"},
    ...     Path("/home/me/dndx"),
    ... )
    >>> kwargs["cores"], kwargs["processes"], kwargs["queue"], kwargs["walltime"]
    (8, 8, 'short', '04:00:00')
    >>> kwargs["job_script_prologue"]
    ['export OMP_NUM_THREADS=1', 'cd /home/me/dndx']
    """
    if cfg.mode not in JOBQUEUE_CLUSTERS:
        raise ValueError(
            f"dask.mode = {cfg.mode!r} is not a batch mode ({list(JOBQUEUE_CLUSTERS)})"
        )
    kwargs: dict[str, Any] = {
        "cores": cfg.cores,
        # One single-threaded worker process per core, as on the local cluster.
        "processes": cfg.cores,
        "memory": cfg.memory,
        "python": cfg.python or sys.executable,
        "job_name": "dndx-worker",
        "job_script_prologue": _prologue(environment, workdir),
    }
    if cfg.mode == "slurm":
        kwargs["walltime"] = cfg.walltime
        kwargs["job_extra_directives"] = list(cfg.job_extra_directives)
        if cfg.queue:
            kwargs["queue"] = cfg.queue
    else:
        directives = {"MY.MaxRuntime": str(cfg.walltime_seconds)}
        if cfg.queue:
            directives["Requirements"] = cfg.queue
        for line in cfg.job_extra_directives:
            key, _, value = line.partition("=")
            directives[key.strip()] = value.strip()
        kwargs["disk"] = cfg.disk
        kwargs["job_extra_directives"] = directives
    return kwargs
