"""DVC stage ``train_cluster_counter``: encode the peaks the chosen peak finder
detects, then scan the CNN cluster counter and keep the best."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.dataset import part_paths
from dndx.simulation import SPLITS
from dndx.storage import atomic_directory
from flows.runtime import dask_task_runner
from flows.scan import ScanOutputs, run_scan
from tasks.encoding import encode_chunk
from tasks.tracking import configure_mlflow, lineage_tags
from tasks.training import COUNTER_INPUT_FILE

__all__ = ["OUTPUTS", "main", "train_cluster_counter"]

SIMULATED_DIR = Path("data/simulated")
PREPARED_DIR = Path("data/prepared")
PEAK_FINDER_DIR = Path("data/models/peak_finder")
INPUTS_DIR = Path("data/counter_inputs")
OUTPUTS = ScanOutputs(
    model_dir=Path("data/models/cluster_counter"),
    trials_dir=Path("data/scans/cluster_counter"),
    metrics=Path("metrics/train_cluster_counter.json"),
    table_csv=Path("reports/scan_cluster_counter.csv"),
    table_md=Path("reports/scan_cluster_counter.md"),
    history_csv=Path("reports/cluster_counter_history.csv"),
)


def _merge(split_dir: Path) -> None:
    """Join a split's per-chunk files into ``scores.parquet`` and ``encoded.npz``."""
    scores = sorted(split_dir.glob("scores-part-*.parquet"))
    pd.concat([pd.read_parquet(p) for p in scores], ignore_index=True).to_parquet(
        split_dir / "scores.parquet", index=False
    )
    encoded = sorted(split_dir.glob("encoded-part-*.npz"))
    parts = [dict(np.load(p)) for p in encoded]
    merged = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    np.savez(
        split_dir / COUNTER_INPUT_FILE,
        x=merged["x"],
        waveform_id=merged["waveform_id"],
        n_clusters=merged["n_clusters"],
    )
    for path in [*scores, *encoded]:
        path.unlink()


@flow(name="train_cluster_counter", log_prints=True)
def train_cluster_counter(params: Params, root: Path = Path(".")) -> dict[str, object]:
    """Encode every split with the chosen peak finder, then run the counter scan."""
    logger = get_run_logger()
    selection = json.loads((PEAK_FINDER_DIR / "selection.json").read_text())
    jobs = [
        (split, index, path)
        for split in SPLITS
        for index, path in enumerate(part_paths(SIMULATED_DIR / split))
    ]
    with atomic_directory(INPUTS_DIR) as tmp:
        futures = [
            encode_chunk.submit(
                split, index, path, PREPARED_DIR / split / "candidates" / path.name,
                PEAK_FINDER_DIR / "model.keras", selection["score_threshold"],
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
        for split in SPLITS:
            _merge(tmp / split)

    configure_mlflow(params.mlflow, root)
    tags = lineage_tags(
        root,
        params,
        ["simulate", "prepare", "counter_input", "cluster_counter", "train_cluster_counter"],
        [str(PREPARED_DIR), str(PEAK_FINDER_DIR)],
    )
    tags["peak_finder_trial_run_id"] = selection["trial_run_id"]
    return run_scan(
        "cluster_counter",
        params.cluster_counter,
        params.train_cluster_counter,
        INPUTS_DIR,
        OUTPUTS,
        tags,
        n_parallel=params.dask.n_workers,
    )


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.train_cluster_counter``."""
    params = load_params(params_path)
    train_cluster_counter.with_options(task_runner=dask_task_runner(params.dask))(params)


if __name__ == "__main__":
    main()
