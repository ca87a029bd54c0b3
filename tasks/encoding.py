"""Scoring every candidate with the chosen peak finder and encoding the cluster
counter's input: one chunk per task, then one task per split joins the chunks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from dndx.config import CounterInputConfig, PrepareConfig
from dndx.dataset import part_name, read_waveform_set
from dndx.encoding import (
    COUNTER_INPUT_FILE,
    clusters_per_bin,
    encode_scored_candidates,
    samples_per_bin,
)
from dndx.errors import InputError
from dndx.preprocessing import normalise
from dndx.ragged import Ragged
from dndx.storage import atomic_file

__all__ = ["encode_chunk", "merge_split", "read_score_threshold"]


@task(task_run_name="read the peak finder's working point")
def read_score_threshold(selection_path: Path) -> float:
    """``score_threshold`` of the peak finder's ``selection.json``."""
    try:
        selection = json.loads(Path(selection_path).read_text())
    except OSError as error:
        raise InputError(
            f"{selection_path}: cannot read the peak finder's selection ({error.strerror}); "
            "run the train_peak_finder stage first"
        ) from None
    except json.JSONDecodeError as error:
        raise InputError(f"{selection_path}: not valid JSON ({error})") from None
    threshold = selection.get("score_threshold") if isinstance(selection, dict) else None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InputError(f"{selection_path}: expected a number under 'score_threshold'")
    return float(threshold)


def _peak_finder(model_path: str) -> Any:
    from models.saving import load_model_once

    return load_model_once(model_path)


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
    bin_width = samples_per_bin(window_ns, rate, n_bins)
    counter = encode_scored_candidates(
        norm.samples,
        norm.lengths,
        candidates,
        probability,
        score_threshold,
        n_bins,
        bin_width,
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
            clusters_per_bin=clusters_per_bin(data, rate, n_bins, bin_width),
        )
    return {"n_waveforms": len(waveform_ids), "n_detected": int(counter.detected.sum())}


@task(task_run_name="merge {split_dir.name}")
def merge_split(split_dir: Path) -> int:
    """Join a split's chunk files into ``scores.parquet`` and ``encoded.npz``, in
    chunk order; returns the number of waveforms."""
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
        clusters_per_bin=merged["clusters_per_bin"],
    )
    for path in [*scores, *encoded]:
        path.unlink()
    return len(merged["waveform_id"])
