"""DVC stage ``encode``: the chosen peak finder scores every prepared candidate and
the peaks it detects are encoded as the cluster counter's input, chunk by chunk;
so are the cells of the validation tracks the counter is chosen on (the
``separation_pair`` at the ``separation_momenta_gev`` of ``train_cluster_counter``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import flow, get_run_logger

from dndx.chain.encoding import VALIDATION_TRACKS_DIR
from dndx.config import PARAMS_PATH, Params, load_params
from dndx.io.dataset import part_paths
from dndx.paths import (
    COUNTER_INPUTS_DIR,
    MODEL_FILE,
    PEAK_FINDER_DIR,
    PEAK_FINDER_SELECTION_FILE,
    PREPARED_DIR,
    SELECTION_FILE,
    SIMULATED_DIR,
    TRACKS_DIR,
)
from dndx.storage import atomic_directory
from dndx.waveforms import SPLITS
from flows.runtime import dask_task_runner, project_root
from tasks.encoding import encode_chunk, encode_track_chunk, merge_split, read_score_threshold

__all__ = ["encode", "main"]


@flow(name="encode", log_prints=True)
def encode(params: Params, root: Path) -> dict[str, int]:
    """Score and encode every split and the validation tracks' chosen cells;
    returns the waveforms (cells) of each."""
    logger = get_run_logger()
    selection = root / PEAK_FINDER_DIR / SELECTION_FILE
    threshold = read_score_threshold(selection)
    jobs = [
        (split, index, path)
        for split in SPLITS
        for index, path in enumerate(part_paths(root / SIMULATED_DIR / split))
    ]
    training = params.train_cluster_counter
    with atomic_directory(root / COUNTER_INPUTS_DIR) as tmp:
        track_futures = [
            encode_track_chunk.submit(
                index, path, training.separation_pair, training.separation_momenta_gev,
                root / PEAK_FINDER_DIR / MODEL_FILE, threshold,
                params.prepare, params.counter_input, params.simulate.window_ns, tmp,
            )
            for index, path in enumerate(part_paths(root / TRACKS_DIR / "validation"))
        ]  # fmt: skip
        futures = [
            encode_chunk.submit(
                split, index, path, root / PREPARED_DIR / split / "candidates" / path.name,
                root / PEAK_FINDER_DIR / MODEL_FILE, threshold,
                params.prepare, params.counter_input, params.simulate.window_ns, tmp,
            )
            for split, index, path in jobs
        ]  # fmt: skip
        for done, ((split, index, _), future) in enumerate(zip(jobs, futures, strict=True), 1):
            result = future.result()
            logger.info(
                "encode: %d/%d chunks (%s chunk %d, %d peaks detected)",
                done, len(jobs), split, index, result["n_detected"],
            )  # fmt: skip
        n_waveforms = {split: merge_split(tmp / split) for split in SPLITS}
        chosen = f"{'/'.join(training.separation_pair)} at " + ", ".join(
            f"{m:g}" for m in training.separation_momenta_gev
        )
        if sum(future.result()["n_waveforms"] for future in track_futures):
            n_waveforms[VALIDATION_TRACKS_DIR] = merge_split(tmp / VALIDATION_TRACKS_DIR)
            logger.info(
                "encode: %d cells of the validation tracks of %s GeV/c",
                n_waveforms[VALIDATION_TRACKS_DIR], chosen,
            )  # fmt: skip
        else:
            logger.warning(
                "encode: no validation track of %s GeV/c: the counter's "
                "val_separation_ratio cannot be measured", chosen,
            )  # fmt: skip
        shutil.copy(selection, tmp / PEAK_FINDER_SELECTION_FILE)
    return n_waveforms


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.encode``."""
    params = load_params(params_path)
    encode.with_options(task_runner=dask_task_runner(params.dask))(
        params, project_root(params_path)
    )


if __name__ == "__main__":
    main()
