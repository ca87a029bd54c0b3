"""The main job: every DVC stage in order, one Prefect task each.

DVC decides what to run: a stage whose code, inputs and params are unchanged
is skipped, and changing one parameter re-runs only what depends on it.
``dvc repro`` does the same work without Prefect.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, task

from dndx.config import PARAMS_PATH, load_params
from flows.runtime import ensure_prefect_api

__all__ = ["main", "pipeline", "stage_names"]


def stage_names(repo_dir: Path) -> list[str]:
    """The stages of ``dvc.yaml``, in the order they are written (dependency order)."""
    return list(yaml.safe_load((repo_dir / "dvc.yaml").read_text())["stages"])


@task(task_run_name="dvc stage {stage}", retries=1, retry_delay_seconds=5)
def reproduce_stage(stage: str, repo_dir: Path) -> bool:
    """Run one DVC stage if it is out of date; True when it ran."""
    from dvc.repo import Repo

    # Stage commands run `python`: make it this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # DVC prints its lines itself; through Prefect's root handler each would print twice.
    logging.getLogger("dvc").propagate = False
    with Repo(str(repo_dir)) as repo:
        # DVC's hint to `git add` its lock file would follow every stage: the
        # pipeline gives it once, at the end. The user's git index is left alone.
        repo.scm_context.quiet = True
        ran = repo.reproduce(stage, single_item=True)
    get_run_logger().info("stage %s: %s", stage, "ran" if ran else "up to date, skipped")
    return bool(ran)


@flow(name="pipeline", log_prints=True)
def pipeline(repo_dir: Path = Path("."), stages: list[str] | None = None) -> dict[str, bool]:
    """Reproduce ``stages`` (default: all of ``dvc.yaml``) in order; returns which ran."""
    ran = {stage: reproduce_stage(stage, repo_dir) for stage in stages or stage_names(repo_dir)}
    if any(ran.values()):
        get_run_logger().info(
            "dvc.lock records what ran: `git add dvc.lock` to keep it with the code"
        )
    return ran


def main(params_path: str | Path = PARAMS_PATH, stages: list[str] | None = None) -> dict[str, bool]:
    """Validate the parameters, then run the pipeline on one shared Prefect API."""
    load_params(params_path)
    ensure_prefect_api()
    return pipeline(Path(params_path).resolve().parent, stages)


if __name__ == "__main__":
    main()
