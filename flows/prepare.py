"""DVC stage ``prepare``: peak candidates, windows, labels and the class balance."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.io.dataset import part_paths
from dndx.paths import PREPARED_DIR, SIMULATED_DIR, metrics_file
from dndx.storage import atomic_directory, atomic_file
from dndx.waveforms import SPLITS
from flows.runtime import dask_task_runner, project_root
from tasks.preparation import prepare_chunk

__all__ = ["main", "prepare"]


@flow(name="prepare", log_prints=True)
def prepare(params: Params, root: Path) -> dict[str, dict[str, float]]:
    """Prepare every simulated split under the project ``root``; write and return
    the class balance per split."""
    logger = get_run_logger()
    in_dir = root / SIMULATED_DIR
    jobs = [
        (split, i, path) for split in SPLITS for i, path in enumerate(part_paths(in_dir / split))
    ]
    balance: dict[str, dict[str, float]] = {s: {} for s in SPLITS}
    with atomic_directory(root / PREPARED_DIR) as tmp:
        futures = [prepare_chunk.submit(params.prepare, s, i, p, tmp) for s, i, p in jobs]
        for done, ((split, index, _), future) in enumerate(zip(jobs, futures, strict=True), 1):
            for key, value in future.result().items():
                balance[split][key] = balance[split].get(key, 0) + value
            logger.info("prepare: %d/%d chunks (%s chunk %d)", done, len(jobs), split, index)
    for split, counts in balance.items():
        counts["signal_fraction"] = counts["n_signal"] / max(counts["n_candidates"], 1)
        counts["candidate_recall"] = counts["n_signal"] / max(counts["n_expected_peaks"], 1)
        logger.info(
            "class balance %-10s %9d candidates: %5.1f %% signal, %5.1f %% noise "
            "(%.1f %% of expected peaks have a candidate)",
            split,
            counts["n_candidates"],
            100 * counts["signal_fraction"],
            100 * (1 - counts["signal_fraction"]),
            100 * counts["candidate_recall"],
        )
    with atomic_file(root / metrics_file("prepare")) as tmp_metrics:
        tmp_metrics.write_text(json.dumps(balance, indent=2, sort_keys=True) + "\n")
    return balance


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.prepare``."""
    params = load_params(params_path)
    runner = dask_task_runner(params.dask)
    prepare.with_options(task_runner=runner)(params, project_root(params_path))


if __name__ == "__main__":
    main()
