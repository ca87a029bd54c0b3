"""Prefect task of the inference flow: one entry range of one input file.

The worker opens the file itself and reads its own range, so waveforms never
travel through the scheduler; it reads the range in blocks, the next while one
is computed, and returns only counts (a :class:`~dndx.inference_store.ChunkResult`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from prefect import Task, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from dndx.bundle import ModelBundle
from dndx.errors import DndxError
from dndx.inference import infer_waveforms, infer_waveforms_d2, results_table
from dndx.inference_store import Chunk, ChunkResult
from dndx.preprocessing import Polarity
from dndx.readers import read_ahead, validate_rows
from dndx.storage import atomic_file
from tasks.onnx_models import OnnxModels

__all__ = ["READ_BLOCK", "infer_chunk", "load_models"]

#: Waveforms a chunk is read and computed in: while one block is computed, the
#: next is read. A block holds about 50k candidate windows: dozens of the peak
#: finder's batches on a CPU, most of one on a GPU.
READ_BLOCK = 512


@functools.lru_cache(maxsize=2)
def load_models(bundle_dir: str, device: str = "cpu") -> OnnxModels:
    """The bundle's ONNX sessions on ``device``, opened once per worker process."""
    return OnnxModels.on_device(bundle_dir, device)


def _transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry unexpected failures (I/O hiccups), not a bad file or bundle."""
    try:
        state.result()
    except DndxError:
        return False
    except Exception:
        return True
    return True


@task(
    task_run_name="infer {chunk.source.path.name} [{chunk.start}, {chunk.stop})",
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_transient,
)
def infer_chunk(
    chunk: Chunk,
    bundle_dir: str,
    polarity: Polarity,
    sampling_rate_ghz: float,
    min_length: int,
    device: str = "cpu",
    method: str = "lstm",
    read_block: int = READ_BLOCK,
) -> ChunkResult:
    """Peaks and cluster counts of the entries of ``chunk`` into its part file.

    Unusable waveforms (shorter than ``min_length``, NaN or inf samples) are
    skipped and reported. Where the source names a track (and a path) column,
    each row carries its waveform's ``track`` (and ``path_cm``). ``method`` is
    a key of :data:`dndx.inference.METHODS`. The range is read and computed
    ``read_block`` waveforms at a time, the next block read while one is computed.
    """
    parts: list[pd.DataFrame] = []
    bad_rows: list[tuple[int, str]] = []
    for waveforms in read_ahead(chunk.source, chunk.start, chunk.stop, read_block):
        samples = waveforms.samples
        ok, reasons = validate_rows(samples, min_length)
        bad_rows += [(waveforms.first_event + row, reason) for row, reason in reasons]
        good = np.flatnonzero(ok)
        if len(good) != len(ok):
            samples = samples.take(good)
        if method == "d2":
            results = infer_waveforms_d2(
                samples, sampling_rate_ghz, polarity, ModelBundle.load(bundle_dir)
            )
        else:
            models = load_models(bundle_dir, device)
            results = infer_waveforms(samples, sampling_rate_ghz, polarity, models)
        results.insert(0, "event", waveforms.first_event + good.astype(np.int64))
        results.insert(0, "source_file", str(chunk.source.path))
        if waveforms.track_id is not None:
            results["track"] = waveforms.track_id[good]
        if waveforms.path_cm is not None:
            results["path_cm"] = waveforms.path_cm[good]
        parts.append(results)
    results = pd.concat(parts, ignore_index=True)
    with atomic_file(chunk.path) as tmp:
        pq.write_table(results_table(results), tmp)
    contradicted = results["polarity"] != results["read_polarity"]
    return ChunkResult(
        n_waveforms=len(results),
        bad_rows=tuple(bad_rows),
        statuses={str(k): int(v) for k, v in results["status"].value_counts().items()},
        n_polarity_contradicted=int(contradicted.sum()),
    )
