"""``python -m flows.job_script [FILE]``: the batch job script that the ``dask``
section of a parameter file (default: the project's ``params.yaml``; or
``infra/dask/slurm.yaml``) would submit, printed without submitting it.

Apart from :mod:`flows.clusters` so that no stage depends on this printer.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from dndx.config import PARAMS_PATH, DaskConfig, load_section
from flows.clusters import JOBQUEUE_CLUSTERS, jobqueue_cluster_kwargs
from flows.runtime import configured_prefect_api, worker_environment

__all__ = ["main", "render_job_script"]


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
    """``python -m flows.job_script [FILE]``: print the job script of the ``dask``
    section of FILE (default: the project's ``params.yaml``)."""
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
