"""DVC stage ``train_peak_finder``: scan the LSTM peak finder, keep the best."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.paths import PREPARED_DIR
from flows.runtime import dask_task_runner, project_root
from flows.scan import ScanOutputs, run_scan
from tasks.tracking import configure_mlflow, lineage_tags

__all__ = ["main", "train_peak_finder"]


@flow(name="train_peak_finder", log_prints=True)
def train_peak_finder(params: Params, root: Path) -> dict[str, object]:
    """Run the peak-finder scan on the prepared windows under the project ``root``;
    returns the best trial's row."""
    configure_mlflow(params.mlflow, root)
    tags = lineage_tags(
        root,
        params,
        ["simulate", "prepare", "peak_finder", "train_peak_finder"],
        [str(PREPARED_DIR)],
    )
    return run_scan(
        "peak_finder",
        params.peak_finder,
        params.train_peak_finder,
        root / PREPARED_DIR,
        ScanOutputs.of("peak_finder", root),
        tags,
        n_parallel=params.dask.n_workers,
        opset=params.register.opset,
    )


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.train_peak_finder``."""
    params = load_params(params_path)
    # Trials are the only tasks: a lone trial gets every worker's cores.
    runner = dask_task_runner(params.dask, params.train_peak_finder.scan.n_trials)
    train_peak_finder.with_options(task_runner=runner)(params, project_root(params_path))


if __name__ == "__main__":
    main()
