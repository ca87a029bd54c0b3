"""Prefect task of the inference flow: a run of consecutive chunks, entry ranges
of the input files.

The worker opens each file itself and reads its own ranges, so waveforms never
travel through the scheduler; it reads a range in blocks, the next while one
is computed, writes the chunk's part and its record itself, and returns only
counts (a :class:`~dndx.io.inference_store.ChunkResult` per chunk). A task
covers many chunks, so that Prefect's cost per task run is paid a few times per
worker, not once per chunk; a chunk stays the unit that a resumed run redoes.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from dndx.chain.bundle import ModelBundle
from dndx.chain.inference import (
    SKIPPED,
    infer_rows,
    infer_waveforms,
    infer_waveforms_d2,
    minimum_length,
    results_table,
)
from dndx.chain.onnx import OnnxModels
from dndx.chain.preprocessing import Polarity
from dndx.errors import DndxError
from dndx.io.inference_store import Chunk, ChunkResult, finished_result, record_result
from dndx.io.readers import read_ahead
from dndx.ragged import Ragged
from dndx.storage import atomic_file

__all__ = ["READ_BLOCK", "infer_chunks", "load_models", "run_chunk"]

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
    task_run_name="infer from {chunks[0].source.path.name} entry {chunks[0].start} on",
    # The chunks' records are the cache: a retry redoes only the unfinished ones.
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_transient,
)
def infer_chunks(
    chunks: list[Chunk],
    bundle_dir: str,
    polarity: Polarity,
    sampling_rate_ghz: float,
    device: str,
    method: str,
) -> list[ChunkResult]:
    """:func:`run_chunk` on every chunk of ``chunks`` in order, each recorded as
    finished once its part is written; a chunk that an earlier attempt finished
    is not redone."""
    results = []
    for chunk in chunks:
        result = finished_result(chunk)
        if result is None:
            result = run_chunk(chunk, bundle_dir, polarity, sampling_rate_ghz, device, method)
            record_result(chunk, result)
        results.append(result)
    return results


def run_chunk(
    chunk: Chunk,
    bundle_dir: str,
    polarity: Polarity,
    sampling_rate_ghz: float,
    device: str,
    method: str,
    read_block: int = READ_BLOCK,
) -> ChunkResult:
    """Peaks and cluster counts of the entries of ``chunk`` into its part file.

    Every entry gets its row, in order (:func:`dndx.chain.inference.infer_rows`):
    unusable waveforms (shorter than one window at their rate, NaN or inf
    samples) as ``skipped`` with their reason. Each row is read at its stored
    rate where the source names a rate column, else at ``sampling_rate_ghz``.
    Where the source names a track (and a path) column,
    each row carries its waveform's ``track`` (and ``path_cm``). ``method`` is
    a key of :data:`dndx.chain.inference.METHODS`. The range is read and computed
    ``read_block`` waveforms at a time, the next block read while one is computed.
    """
    parts: list[pd.DataFrame] = []
    if method == "d2":
        bundle = ModelBundle.load(bundle_dir)
        run = functools.partial(_infer_d2, polarity=polarity, bundle=bundle)
    else:
        bundle = load_models(bundle_dir, device).bundle
        run = functools.partial(
            _infer_lstm, polarity=polarity, models=load_models(bundle_dir, device)
        )
    seconds = dict.fromkeys(("read", "chain", "write"), 0.0)
    started = time.perf_counter()
    for waveforms in read_ahead(chunk.source, chunk.start, chunk.stop, read_block):
        seconds["read"] += time.perf_counter() - started
        started = time.perf_counter()
        samples = waveforms.samples
        rates = waveforms.sampling_rate_ghz
        if rates is None:
            rates = np.full(len(samples), sampling_rate_ghz)
        results = infer_rows(samples, rates, run, functools.partial(minimum_length, bundle))
        results.insert(0, "event", waveforms.first_event + np.arange(len(samples)))
        results.insert(0, "source_file", str(chunk.source.path))
        if waveforms.track_id is not None:
            results["track"] = waveforms.track_id
        if waveforms.path_cm is not None:
            results["path_cm"] = waveforms.path_cm
        parts.append(results)
        seconds["chain"] += time.perf_counter() - started
        started = time.perf_counter()
    seconds["read"] += time.perf_counter() - started
    started = time.perf_counter()
    results = pd.concat(parts, ignore_index=True)
    with atomic_file(chunk.path) as tmp:
        pq.write_table(results_table(results), tmp)
    seconds["write"] = time.perf_counter() - started
    skipped = results["status"] == SKIPPED
    processed = results[~skipped]
    contradicted = processed["status"] == "polarity_contradicted"
    return ChunkResult(
        n_waveforms=len(processed),
        bad_rows=tuple(
            (int(event), str(reason))
            for event, reason in zip(
                results["event"][skipped], results["reason"][skipped], strict=True
            )
        ),
        statuses={str(k): int(v) for k, v in processed["status"].value_counts().items()},
        n_polarity_contradicted=int(contradicted.sum()),
        seconds=seconds,
    )


def _infer_lstm(
    samples: Ragged, sampling_rate_ghz: float, polarity: Polarity, models: OnnxModels
) -> pd.DataFrame:
    return infer_waveforms(samples, sampling_rate_ghz, polarity, models)


def _infer_d2(
    samples: Ragged, sampling_rate_ghz: float, polarity: Polarity, bundle: ModelBundle
) -> pd.DataFrame:
    return infer_waveforms_d2(samples, sampling_rate_ghz, polarity, bundle)
