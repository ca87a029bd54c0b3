"""Scoring every candidate with the chosen peak finder and encoding the cluster
counter's input: one chunk per task, then one task per split joins the chunks.
The cells of the validation tracks the counter is chosen on are encoded the same
way, their candidates found as the ``prepare`` stage finds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from prefect import task

from dndx.chain.encoding import (
    COUNTER_INPUT_FILE,
    VALIDATION_TRACKS_DIR,
    CounterInput,
    clusters_per_bin,
    encode_scored_candidates,
    samples_per_bin,
)
from dndx.chain.preprocessing import normalise
from dndx.config import CounterInputConfig, PrepareConfig
from dndx.errors import InputError
from dndx.io.dataset import part_name, read_waveform_set
from dndx.paths import SCORES_FILE
from dndx.ragged import Ragged
from dndx.scoring.separation import selection_rows
from dndx.storage import atomic_file
from dndx.truth.preparation import prepare_waveforms
from dndx.waveforms import WaveformSet

__all__ = ["encode_chunk", "encode_track_chunk", "merge_split", "read_score_threshold"]


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


def _score_and_encode(
    data: WaveformSet,
    table: pd.DataFrame,
    windows: NDArray[np.float32],
    model_path: Path,
    score_threshold: float,
    prepare: PrepareConfig,
    counter_input: CounterInputConfig,
    window_ns: float,
) -> tuple[CounterInput, NDArray[np.float32]]:
    """The peak finder's probability for each candidate of ``table`` (``waveform_id``
    and ``sample`` per candidate, its window ``(n_candidates, window_length)`` in
    ``windows``) and the counter's input of every waveform of ``data``."""
    norm = normalise(
        data.adc,
        data.info["sampling_rate_ghz"].to_numpy(),
        prepare.candidates.model_sampling_rate_ghz,
    )
    waveform_ids = data.info["waveform_id"].to_numpy()
    rows = np.searchsorted(waveform_ids, table["waveform_id"].to_numpy())
    candidates = Ragged.from_lengths(
        table["sample"].to_numpy().astype(np.int64), np.bincount(rows, minlength=len(waveform_ids))
    )
    probability = _peak_finder(str(model_path)).predict(
        windows[:, :, None], batch_size=8192, verbose=0
    )[:, 0]
    rate = prepare.candidates.model_sampling_rate_ghz
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
    return counter, probability


def _encoded_path(split_dir: Path, index: int) -> Path:
    return split_dir / f"encoded-{part_name(index).replace('.parquet', '.npz')}"


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
    table = pd.read_parquet(candidates_path)
    windows = np.stack(table.pop("window").to_numpy()).astype(np.float32)
    counter, probability = _score_and_encode(
        data, table, windows, model_path, score_threshold, prepare, counter_input, window_ns
    )
    scores = table[["waveform_id", "sample", "label"]].assign(
        probability=probability, detected=counter.detected
    )
    split_dir = out_dir / split
    with atomic_file(split_dir / f"scores-{part_name(index)}") as tmp:
        scores.to_parquet(tmp, index=False)
    with atomic_file(_encoded_path(split_dir, index)) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            x=counter.encoded,
            waveform_id=data.info["waveform_id"].to_numpy(),
            n_clusters=data.info["n_clusters"].to_numpy(),
            clusters_per_bin=clusters_per_bin(
                data,
                prepare.candidates.model_sampling_rate_ghz,
                counter_input.n_bins,
                samples_per_bin(
                    window_ns, prepare.candidates.model_sampling_rate_ghz, counter_input.n_bins
                ),
            ),
        )
    return {"n_waveforms": len(data), "n_detected": int(counter.detected.sum())}


@task(
    task_run_name="encode the validation tracks of {tracks_path.name}",
    retries=2,
    retry_delay_seconds=1,
)
def encode_track_chunk(
    index: int,
    tracks_path: Path,
    pair: tuple[str, str],
    momenta_gev: tuple[float, ...],
    model_path: Path,
    score_threshold: float,
    prepare: PrepareConfig,
    counter_input: CounterInputConfig,
    window_ns: float,
    out_dir: Path,
) -> dict[str, int]:
    """Encode the cells of one file of validation tracks that are of ``pair`` at
    ``momenta_gev`` (:func:`dndx.scoring.separation.selection_rows`), candidates found as
    the ``prepare`` stage finds them; writes ``encoded-part-*.npz`` under
    ``out_dir/<VALIDATION_TRACKS_DIR>`` where the file holds any."""
    data = read_waveform_set(tracks_path)
    rows = selection_rows(data.info["particle"], data.info["momentum_gev"], pair, momenta_gev)
    if len(rows) == 0:
        return {"n_waveforms": 0, "n_detected": 0}
    cells = data.take(rows)
    prepared = prepare_waveforms(cells, prepare)
    counter, _ = _score_and_encode(
        cells, prepared.candidates, prepared.windows, model_path, score_threshold,
        prepare, counter_input, window_ns,
    )  # fmt: skip
    info = cells.info
    with (
        atomic_file(_encoded_path(out_dir / VALIDATION_TRACKS_DIR, index)) as tmp,
        open(tmp, "wb") as handle,
    ):
        np.savez(
            handle,
            x=counter.encoded,
            waveform_id=info["waveform_id"].to_numpy(),
            n_clusters=info["n_clusters"].to_numpy(),
            track_id=info["track_id"].to_numpy(),
            particle=info["particle"].to_numpy().astype(str),
            momentum_gev=info["momentum_gev"].to_numpy(np.float64),
            path_length_cm=info["path_length_cm"].to_numpy(np.float64),
        )
    return {"n_waveforms": len(cells), "n_detected": int(counter.detected.sum())}


@task(task_run_name="merge {split_dir.name}")
def merge_split(split_dir: Path) -> int:
    """Join a split's chunk files into ``scores.parquet`` (where the chunks wrote
    scores) and ``encoded.npz`` (every array of the chunks), in chunk order;
    returns the number of waveforms."""
    scores = sorted(split_dir.glob("scores-part-*.parquet"))
    if scores:
        pd.concat([pd.read_parquet(p) for p in scores], ignore_index=True).to_parquet(
            split_dir / SCORES_FILE, index=False
        )
    encoded = sorted(split_dir.glob("encoded-part-*.npz"))
    parts = [dict(np.load(p)) for p in encoded]
    merged: dict[str, Any] = {
        key: np.concatenate([part[key] for part in parts]) for key in parts[0]
    }
    np.savez(split_dir / COUNTER_INPUT_FILE, **merged)
    for path in [*scores, *encoded]:
        path.unlink()
    return len(merged["waveform_id"])
