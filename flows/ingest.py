"""DVC stage ``ingest``: labelled files checked and converted, chunk by chunk on Dask,
into the Parquet parts that ``prepare`` reads; a metrics section per split.

With ``data.source: simulate`` it writes an empty output and says so: the
``simulate`` stage makes the data. With ``files`` the ``simulate`` stage
publishes this stage's parts as ``data/simulated`` (see flows/simulate.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.errors import InputError
from dndx.io.ingestion import labelled_layout, plan_jobs, split_files
from dndx.io.labelled import count_entries
from dndx.paths import INGESTED_DIR, metrics_file
from dndx.storage import atomic_directory, atomic_file
from dndx.waveforms import SPLITS
from flows.runtime import dask_task_runner, project_root
from tasks.ingestion import ingest_chunk

__all__ = ["ingest", "main"]

SOURCE_FILE = "SOURCE"


def _add(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict):
            for reason, n in value.items():
                total[key][reason] = total[key].get(reason, 0) + n
        elif isinstance(value, list) and key == "tag_counts":
            total[key] = [a + b for a, b in zip(total[key], value, strict=True)]
        elif isinstance(value, list):
            total[key] = (
                sorted(set(total[key]) | set(value))
                if key != "first_skipped"
                else (total[key] + value)[:5]
            )
        else:
            total[key] += value


def _empty_metrics(files: list[Path]) -> dict[str, Any]:
    return {
        "files": [str(p) for p in files],
        "n_files": len(files),
        "n_waveforms": 0,
        "n_skipped": 0,
        "skipped": {},
        "first_skipped": [],
        "sampling_rates_ghz": [],
        "particles": [],
        "momenta_gev": [],
        "sum_n_clusters": 0,
        "tag_counts": [0, 0, 0],
    }


@flow(name="ingest", log_prints=True)
def ingest(params: Params, root: Path) -> dict[str, Any]:
    """Ingest every split's labelled files into ``data/ingested`` under the project
    ``root``; write and return the metrics per split."""
    logger = get_run_logger()
    cfg = params.data
    metrics: dict[str, Any] = {"source": cfg.source}
    with atomic_directory(root / INGESTED_DIR) as tmp:
        (tmp / SOURCE_FILE).write_text(f"{cfg.source}\n")
        if cfg.source == "files":
            # From the project root, not the working directory: Dask workers elsewhere
            # (dask.mode address, batch jobs) open these paths.
            data_root = root / cfg.root
            files = split_files(cfg, data_root)
            layouts = {
                path: labelled_layout(cfg, path.relative_to(data_root))
                for paths in files.values()
                for path in paths
            }
            entries = {path: count_entries(path, layout) for path, layout in layouts.items()}
            jobs = plan_jobs(files, entries, cfg.chunk_size)
            totals = {split: _empty_metrics(files[split]) for split in SPLITS}
            futures = [
                ingest_chunk.submit(
                    layouts[job.path], job, params.prepare.candidates.window_length, tmp
                )
                for job in jobs
            ]
            for done, (job, future) in enumerate(zip(jobs, futures, strict=True), 1):
                _add(totals[job.split], future.result())
                logger.info(
                    "ingest: %d/%d chunks (%s chunk %d)", done, len(jobs), job.split, job.index
                )
            for split, total in totals.items():
                if not total["n_waveforms"]:
                    raise InputError(
                        f"{cfg.root}: split {split} has no usable waveform in "
                        f"{total['n_files']} file(s); skipped: {total['skipped']}"
                    )
                total["mean_n_clusters"] = total.pop("sum_n_clusters") / total["n_waveforms"]
                logger.info(
                    "ingested %-10s %d files, %d waveforms, %d skipped",
                    split,
                    total["n_files"],
                    total["n_waveforms"],
                    total["n_skipped"],
                )
            metrics.update(totals)
    with atomic_file(root / metrics_file("ingest")) as tmp_metrics:
        tmp_metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.ingest``."""
    params = load_params(params_path)
    runner = dask_task_runner(params.dask)
    ingest.with_options(task_runner=runner)(params, project_root(params_path))


if __name__ == "__main__":
    main()
