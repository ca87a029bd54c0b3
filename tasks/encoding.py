"""Scoring every candidate with the chosen peak finder and encoding the cluster
counter's input, one chunk per task."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from dndx.config import CounterInputConfig, PrepareConfig
from dndx.dataset import part_name, read_waveform_set
from dndx.encoding import encode_scored_candidates, samples_per_bin
from dndx.preprocessing import normalise
from dndx.ragged import Ragged
from dndx.storage import atomic_file

__all__ = ["encode_chunk"]


@functools.lru_cache(maxsize=2)
def _peak_finder(model_path: str) -> Any:
    from models.saving import load_model

    return load_model(model_path)


@task(task_run_name="encode {split} chunk {index}", retries=2, retry_delay_seconds=1)
def encode_chunk(
    split: str,
    index: int,
    simulated_path: Path,
    candidates_path: Path,
    model_path: Path,
    score_threshold: float,
    prepare: PrepareConfig,
    counter_input: CounterInputConfig,
    window_ns: float,
    out_dir: Path,
) -> dict[str, int]:
    """Score the candidates of one chunk and encode its waveforms; writes
    ``scores-part-*.parquet`` and ``encoded-part-*.npz`` under ``out_dir/<split>``."""
    data = read_waveform_set(simulated_path)
    norm = normalise(
        data.adc, data.info["sampling_rate_ghz"].to_numpy(), prepare.model_sampling_rate_ghz
    )
    table = pd.read_parquet(candidates_path)
    windows = np.stack(table.pop("window").to_numpy()).astype(np.float32)
    waveform_ids = data.info["waveform_id"].to_numpy()
    rows = np.searchsorted(waveform_ids, table["waveform_id"].to_numpy())
    candidates = Ragged.from_lengths(
        table["sample"].to_numpy().astype(np.int64), np.bincount(rows, minlength=len(waveform_ids))
    )
    probability = _peak_finder(str(model_path)).predict(
        windows[:, :, None], batch_size=8192, verbose=0
    )[:, 0]
    rate = prepare.model_sampling_rate_ghz
    n_bins = counter_input.n_bins
    counter = encode_scored_candidates(
        norm.samples,
        norm.lengths,
        candidates,
        probability,
        score_threshold,
        n_bins,
        samples_per_bin(window_ns, rate, n_bins),
    )
    scores = table[["waveform_id", "sample", "label"]].assign(
        probability=probability, detected=counter.detected
    )
    split_dir = out_dir / split
    with atomic_file(split_dir / f"scores-{part_name(index)}") as tmp:
        scores.to_parquet(tmp, index=False)
    encoded_name = f"encoded-{part_name(index).replace('.parquet', '.npz')}"
    with atomic_file(split_dir / encoded_name) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            x=counter.encoded,
            waveform_id=waveform_ids,
            n_clusters=data.info["n_clusters"].to_numpy(),
        )
    return {"n_waveforms": len(waveform_ids), "n_detected": int(counter.detected.sum())}
