"""Dask clusters on batch systems: the dask-jobqueue settings for a :class:`DaskConfig`.

Each HTCondor or Slurm job runs one ``dask worker`` with one single-threaded
process per requested core. The job's shell first exports the Prefect API
address (tasks report their states to it), pins TensorFlow and BLAS to one
thread, and changes to the flow's working directory: trials and chunks read
and write paths relative to the repository, so the nodes must see it on a
shared file system.

``python -m flows.clusters [FILE]`` prints the job script that the
``dask`` section of a parameter file (or of ``infra/dask/slurm.yaml``) would
submit, without submitting it.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dndx.config import PARAMS_PATH, DaskConfig, load_section

__all__ = [
    "JOBQUEUE_CLUSTERS",
    "jobqueue_cluster_kwargs",
    "render_job_script",
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


def render_job_script(
    cfg: DaskConfig,
    environment: Mapping[str, str],
    workdir: Path,
    scheduler_address: str = "tcp://SCHEDULER:8786",
) -> str:
    """The batch job script that ``cfg`` would submit, rendered without a
    scheduler or a job: for checking a configuration before using it.

    >>> import dataclasses
    >>> from dndx.config import load_params
    >>> cfg = dataclasses.replace(load_params().dask, mode="slurm", cores=2, memory="8GiB")
    >>> script = render_job_script(cfg, {}, Path("/srv/dndx"))
    >>> print("\\n".join(line for line in script.splitlines() if line.startswith("#SBATCH")))
    #SBATCH -J dndx-worker
    #SBATCH -n 1
    #SBATCH --cpus-per-task=2
    #SBATCH --mem=8G
    #SBATCH -t 04:00:00
    """
    from dask_jobqueue.htcondor import HTCondorJob
    from dask_jobqueue.slurm import SLURMJob

    kwargs = jobqueue_cluster_kwargs(cfg, environment, workdir)
    job_class = HTCondorJob if cfg.mode == "htcondor" else SLURMJob
    return str(job_class(scheduler=scheduler_address, name="dndx", **kwargs).job_script())


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.clusters [FILE]``: print the job script of the ``dask``
    section of FILE (default: the project's ``params.yaml``)."""
    from flows.runtime import configured_prefect_api, worker_environment

    args = sys.argv[1:] if argv is None else argv
    cfg = load_section(args[0] if args else PARAMS_PATH, "dask", DaskConfig)
    if cfg.mode not in JOBQUEUE_CLUSTERS:
        print(f"dask.mode is {cfg.mode!r}: no batch jobs to render", file=sys.stderr)
        raise SystemExit(2)
    # At run time the flow's own Prefect API goes here.
    api_url = configured_prefect_api() or "http://PREFECT_HOST:4200/api"
    print(render_job_script(cfg, worker_environment(api_url), Path.cwd()))


if __name__ == "__main__":
    main()
