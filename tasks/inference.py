"""Prefect task of the inference flow: one entry range of one input file.

The worker opens the file itself and reads its own range, so waveforms never
travel through the scheduler; it returns only a path and counts.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from prefect import Task, task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from dndx.errors import DndxError
from dndx.inference import infer_waveforms, results_table
from dndx.preprocessing import Polarity
from dndx.readers import WaveformSource, read_chunk, validate_rows
from dndx.storage import atomic_file
from tasks.onnx_models import OnnxModels

__all__ = ["infer_chunk", "load_models"]


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
    task_run_name="infer {source.path.name} [{start}, {stop})",
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_transient,
)
def infer_chunk(
    source: WaveformSource,
    start: int,
    stop: int,
    bundle_dir: Path,
    polarity: Polarity,
    sampling_rate_ghz: float,
    out_path: Path,
    device: str = "cpu",
) -> dict[str, Any]:
    """Peaks and cluster counts of entries ``[start, stop)`` of ``source`` into ``out_path``.

    Unusable waveforms (length 0, NaN or inf samples) are skipped and reported.

    Returns:
        ``{"path": out_path, "n_waveforms": rows written, "bad_rows":
        [(event, reason), ...]}`` with ``event`` the entry index in the file.
    """
    chunk = read_chunk(source, start, stop)
    ok, reasons = validate_rows(chunk.samples)
    good = np.flatnonzero(ok)
    samples = chunk.samples if len(good) == len(ok) else chunk.samples.take(good)
    models = load_models(str(bundle_dir), device)
    results = infer_waveforms(samples, sampling_rate_ghz, polarity, models)
    results.insert(0, "event", chunk.first_event + good.astype(np.int64))
    results.insert(0, "source_file", str(source.path))
    with atomic_file(out_path) as tmp:
        pq.write_table(results_table(results), tmp)
    return {
        "path": out_path,
        "n_waveforms": len(results),
        "bad_rows": [(chunk.first_event + row, reason) for row, reason in reasons],
    }
