"""The Prefect task of the prepare stage: candidates, windows and labels of one part.

It calls one ``dndx`` function and writes its result; what it returns is small
(counts), never arrays.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from dndx.config import PrepareConfig
from dndx.io.dataset import read_waveform_set
from dndx.io.prepared import write_prepared
from dndx.truth.preparation import prepare_waveforms

__all__ = ["prepare_chunk"]


@task(task_run_name="prepare {split} chunk {index}", retries=2, retry_delay_seconds=1)
def prepare_chunk(
    cfg: PrepareConfig, split: str, index: int, in_path: Path, out_dir: Path
) -> dict[str, int]:
    """Candidates, windows and labels of one simulated part; returns the class counts."""
    chunk = prepare_waveforms(read_waveform_set(in_path), cfg)
    write_prepared(chunk, out_dir / split, index)
    n_signal = int(chunk.candidates["label"].sum())
    return {
        "n_waveforms": len(chunk.waveforms),
        "n_candidates": len(chunk.candidates),
        "n_signal": n_signal,
        "n_noise": len(chunk.candidates) - n_signal,
        "n_expected_peaks": int(chunk.waveforms["n_expected_peaks"].sum()),
    }
