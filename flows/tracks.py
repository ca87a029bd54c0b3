"""DVC stage ``tracks``: the track sets of every split, chunk by chunk on Dask."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.storage import atomic_directory
from dndx.tracks import TRACK_SPLITS, track_chunks
from flows.runtime import dask_task_runner
from tasks.tracks import simulate_track_chunk

__all__ = ["main", "tracks"]

OUT_DIR = Path("data/tracks")


@flow(name="tracks", log_prints=True)
def tracks(params: Params, out_dir: Path = OUT_DIR) -> dict[str, int]:
    """Simulate every track set into ``out_dir/<split>/part-*.parquet``; returns
    the tracks of each split."""
    logger = get_run_logger()
    cfg = params.tracks
    jobs = [
        (split, index, chunk)
        for split in TRACK_SPLITS
        for index, chunk in enumerate(track_chunks(cfg, split))
    ]
    started = time.perf_counter()
    counts = {split: 0 for split in TRACK_SPLITS}
    n_waveforms = 0
    with atomic_directory(out_dir) as tmp:
        futures = [
            simulate_track_chunk.submit(params.simulate, cfg, split, index, *chunk, tmp)
            for split, index, chunk in jobs
        ]
        for done, ((split, _, (track_set, _, _)), future) in enumerate(
            zip(jobs, futures, strict=True), 1
        ):
            result = future.result()
            counts[split] += result["n_tracks"]
            n_waveforms += result["n_waveforms"]
            logger.info(
                "tracks: %d/%d chunks (%s, %s at %g GeV/c, %d tracks)",
                done,
                len(jobs),
                split,
                track_set.particle,
                track_set.momentum_gev,
                result["n_tracks"],
            )
    elapsed = time.perf_counter() - started
    logger.info(
        "simulated %d tracks of %d cells in %.1f s (%.0f waveforms/s)",
        sum(counts.values()),
        cfg.n_cells,
        elapsed,
        n_waveforms / elapsed,
    )
    return counts


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.tracks``."""
    params = load_params(params_path)
    tracks.with_options(task_runner=dask_task_runner(params.dask))(params)


if __name__ == "__main__":
    main()
