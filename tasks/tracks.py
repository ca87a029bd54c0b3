"""Prefect tasks of the ``tracks`` stage: one chunk of tracks each, run on Dask workers.

Apart from ``tasks.data`` so that the other data stages do not depend on the
track code: a change to the track sets re-runs the track sets alone.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from dndx.config import SimulationConfig, TracksConfig
from dndx.dataset import part_name, write_waveform_set
from dndx.tracks import TrackSet, simulate_tracks

__all__ = ["simulate_track_chunk"]


@task(task_run_name="simulate {split} tracks chunk {index}", retries=2, retry_delay_seconds=1)
def simulate_track_chunk(
    simulate: SimulationConfig,
    tracks: TracksConfig,
    split: str,
    index: int,
    track_set: TrackSet,
    start: int,
    stop: int,
    out_dir: Path,
) -> dict[str, int]:
    """Simulate tracks ``start:stop`` of ``track_set`` into ``out_dir/<split>/part-<index>``."""
    data = simulate_tracks(simulate, tracks, split, track_set, start, stop)
    write_waveform_set(data, out_dir / split / part_name(index))
    return {"n_tracks": stop - start, "n_waveforms": len(data)}
