"""The Prefect task of the simulate stage: one chunk of waveforms, run on a Dask worker.

It calls one ``dndx`` function and writes its result; what it returns
is small (counts), never arrays. Apart from :mod:`tasks.preparation` so that the
simulate stage does not depend on the candidate chain or the labels.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from dndx.config import SimulationConfig
from dndx.io.dataset import part_name, write_waveform_set
from dndx.simulation.generator import simulate_range

__all__ = ["simulate_chunk"]


@task(task_run_name="simulate {split} chunk {index}", retries=2, retry_delay_seconds=1)
def simulate_chunk(
    cfg: SimulationConfig, split: str, index: int, start: int, stop: int, out_dir: Path
) -> dict[str, int]:
    """Simulate waveforms ``start:stop`` of ``split`` into ``out_dir/<split>/part-<index>``."""
    data = simulate_range(cfg, split, start, stop)
    write_waveform_set(data, out_dir / split / part_name(index))
    return {"n_waveforms": len(data), "n_electrons": len(data.electrons)}
