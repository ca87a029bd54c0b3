"""DVC stage ``tracks``: the track sets of every split, chunk by chunk on Dask.

With ``data.source: simulate`` the simulator makes them; with ``files`` the
ingested waveforms of each split are cut into tracks of one particle at one
momentum (:func:`dndx.simulation.tracks.group_cells`).
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.domain.fit import adapted_params
from dndx.paths import INGESTED_DIR, TARGET_FIT_PATH, TRACKS_DIR
from dndx.simulation.tracks import TRACK_SPLITS, track_chunks
from dndx.storage import atomic_directory
from flows.runtime import dask_task_runner, project_root
from tasks.tracks import group_ingested_tracks, simulate_track_chunk

__all__ = ["main", "tracks"]


@flow(name="tracks", log_prints=True)
def tracks(params: Params, root: Path) -> dict[str, int]:
    """Every split's tracks into ``data/tracks/<split>/part-*.parquet`` under the
    project ``root``, simulated or (``data.source: files``) grouped from
    ``data/ingested``; returns the tracks of each split."""
    if params.data.source == "files":
        return _group_ingested(params, root / TRACKS_DIR, root / INGESTED_DIR)
    return _simulate(params, root / TRACKS_DIR)


def _group_ingested(params: Params, out_dir: Path, ingested_dir: Path) -> dict[str, int]:
    logger = get_run_logger()
    cfg = params.tracks
    counts = {}
    with atomic_directory(out_dir) as tmp:
        futures = {
            split: group_ingested_tracks.submit(cfg, split, ingested_dir, tmp)
            for split in TRACK_SPLITS
        }
        for split, future in futures.items():
            result = future.result()
            counts[split] = result["n_tracks"]
            logger.info(
                "%s: %d tracks of %d cells from the ingested waveforms, %d waveforms left "
                "out (the rest of a particle and momentum, or no particle or momentum); "
                "%d tracks without a path length: their dN/dx is clusters per cell",
                split,
                result["n_tracks"],
                cfg.n_cells,
                result["n_left_out"],
                result["n_without_path"],
            )
    return counts


def _simulate(params: Params, out_dir: Path) -> dict[str, int]:
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
    root = project_root(params_path)
    adapted = adapted_params(params, root / TARGET_FIT_PATH)
    tracks.with_options(task_runner=dask_task_runner(params.dask))(adapted, root)


if __name__ == "__main__":
    main()
