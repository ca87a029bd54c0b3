"""Prefect task of the ``ingest`` stage: one chunk of one labelled file, on a Dask worker.

Apart from tasks/simulation.py and tasks/preparation.py so that the simulate and
prepare stages do not depend on the labelled-file readers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from dndx.io.dataset import part_name, write_waveform_set
from dndx.io.ingestion import IngestJob, summarise_chunk
from dndx.io.labelled import LabelledLayout, read_labelled

__all__ = ["ingest_chunk"]


# No retries: reading is deterministic, and a bad file is the user's to fix.
@task(task_run_name="ingest {job.split} chunk {job.index}")
def ingest_chunk(
    layout: LabelledLayout, job: IngestJob, min_samples: int, out_dir: Path
) -> dict[str, Any]:
    """Check and convert one chunk of a labelled file into ``out_dir/<split>/part-<index>``;
    returns what the split's metrics need."""
    chunk = read_labelled(job.path, layout, job.start, job.stop, min_samples)
    info = chunk.data.info
    info["waveform_id"] = job.first_id + info["entry"].to_numpy() - job.start
    if len(chunk.data):
        write_waveform_set(chunk.data, out_dir / job.split / part_name(job.index))
    return summarise_chunk(chunk)
