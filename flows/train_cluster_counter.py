"""DVC stage ``train_cluster_counter``: scan the CNN cluster counter on the inputs
the ``encode`` stage wrote, and keep the best."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.paths import COUNTER_INPUTS_DIR, PEAK_FINDER_SELECTION_FILE
from flows.runtime import dask_task_runner, project_root
from flows.scan import ScanOutputs, run_scan
from tasks.tracking import configure_mlflow, lineage_tags

__all__ = ["main", "train_cluster_counter"]


@flow(name="train_cluster_counter", log_prints=True)
def train_cluster_counter(params: Params, root: Path) -> dict[str, object]:
    """Run the counter scan on the encoded splits; returns the best trial's row."""
    configure_mlflow(params.mlflow, root)
    tags = lineage_tags(
        root,
        params,
        ["simulate", "prepare", "counter_input", "cluster_counter", "train_cluster_counter"],
        [str(COUNTER_INPUTS_DIR)],
    )
    selection = json.loads((root / COUNTER_INPUTS_DIR / PEAK_FINDER_SELECTION_FILE).read_text())
    tags["peak_finder_trial_run_id"] = selection["trial_run_id"]
    return run_scan(
        "cluster_counter",
        params.cluster_counter,
        params.train_cluster_counter,
        root / COUNTER_INPUTS_DIR,
        ScanOutputs.of("cluster_counter", root),
        tags,
        n_parallel=params.dask.n_workers,
        opset=params.register.opset,
    )


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.train_cluster_counter``."""
    params = load_params(params_path)
    # Trials are the only tasks: a lone trial gets every worker's cores.
    runner = dask_task_runner(params.dask, params.train_cluster_counter.scan.n_trials)
    train_cluster_counter.with_options(task_runner=runner)(params, project_root(params_path))


if __name__ == "__main__":
    main()
