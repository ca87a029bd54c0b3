"""Prefect tasks of the data stages: one chunk of work each, run on Dask workers.

Each task calls one ``dndx`` function and writes its result; what it returns
is small (paths and counts), never arrays.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from dndx.config import PrepareConfig, SimulationConfig
from dndx.dataset import part_name, read_waveform_set, write_prepared, write_waveform_set
from dndx.preparation import prepare_waveforms
from dndx.simulation import simulate_range

__all__ = ["prepare_chunk", "simulate_chunk"]


@task(task_run_name="simulate {split} chunk {index}", retries=2, retry_delay_seconds=1)
def simulate_chunk(
    cfg: SimulationConfig, split: str, index: int, start: int, stop: int, out_dir: Path
) -> dict[str, int]:
    """Simulate waveforms ``start:stop`` of ``split`` into ``out_dir/<split>/part-<index>``."""
    data = simulate_range(cfg, split, start, stop)
    write_waveform_set(data, out_dir / split / part_name(index))
    return {"n_waveforms": len(data), "n_electrons": len(data.electrons)}


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
