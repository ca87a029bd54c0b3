"""DVC stage ``simulate``: the train, validation and test waveforms, chunk by chunk on Dask.

With ``data.source: files`` it simulates nothing: it publishes the ``ingest``
stage's parts as ``data/simulated``, so ``prepare`` and every stage after it
read labelled files with no change. (DVC allows one stage per output, so
``ingest`` cannot write ``data/simulated`` itself.)
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.domain.fit import adapted_params
from dndx.paths import INGESTED_DIR, SIMULATED_DIR, TARGET_FIT_PATH
from dndx.storage import atomic_directory, link_files
from dndx.waveforms import SPLITS
from flows.runtime import dask_task_runner, project_root
from tasks.simulation import simulate_chunk

__all__ = ["main", "simulate"]


@flow(name="publish ingested", log_prints=True)
def publish_ingested(root: Path) -> dict[str, int]:
    """The ingested parts under the project ``root`` as
    ``data/simulated/<split>/part-*.parquet``; returns parts per split."""
    in_dir = root / INGESTED_DIR
    with atomic_directory(root / SIMULATED_DIR) as tmp:
        counts = {
            split: link_files(in_dir / split, tmp / split, "part-*.parquet") for split in SPLITS
        }
    get_run_logger().info("published ingested parts: %s", counts)
    return counts


@flow(name="simulate", log_prints=True)
def simulate(params: Params, root: Path) -> dict[str, int]:
    """Simulate every split into ``data/simulated/<split>/part-*.parquet`` under the
    project ``root``; returns waveforms per split."""
    logger = get_run_logger()
    cfg = params.simulate
    jobs = [
        (split, index, start, min(start + cfg.chunk_size, cfg.n_waveforms(split)))
        for split in SPLITS
        for index, start in enumerate(range(0, cfg.n_waveforms(split), cfg.chunk_size))
    ]
    started = time.perf_counter()
    with atomic_directory(root / SIMULATED_DIR) as tmp:
        futures = [simulate_chunk.submit(cfg, s, i, a, b, tmp) for s, i, a, b in jobs]
        counts = {split: 0 for split in SPLITS}
        for done, ((split, index, _, _), future) in enumerate(zip(jobs, futures, strict=True), 1):
            result = future.result()
            counts[split] += result["n_waveforms"]
            logger.info(
                "simulate: %d/%d chunks (%s chunk %d, %d waveforms)",
                done,
                len(jobs),
                split,
                index,
                result["n_waveforms"],
            )
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    logger.info("simulated %d waveforms in %.1f s (%.0f /s)", total, elapsed, total / elapsed)
    return counts


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.simulate``."""
    params = load_params(params_path)
    root = project_root(params_path)
    if params.data.source == "files":
        publish_ingested(root)
        return
    adapted = adapted_params(params, root / TARGET_FIT_PATH)
    simulate.with_options(task_runner=dask_task_runner(params.dask))(adapted, root)


if __name__ == "__main__":
    main()
