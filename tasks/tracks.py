"""Prefect tasks of the ``tracks`` stage: one chunk of tracks each, run on Dask workers.

Apart from ``tasks.simulation`` so that the other data stages do not depend on the
track code: a change to the track sets re-runs the track sets alone.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from dndx.config import SimulationConfig, TracksConfig
from dndx.errors import InputError
from dndx.io.dataset import part_name, part_paths, read_waveform_set, write_waveform_set
from dndx.simulation.tracks import TrackSet, simulate_tracks, tracks_of_cells
from dndx.waveforms import WaveformSet

__all__ = ["group_ingested_tracks", "simulate_track_chunk"]


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


@task(task_run_name="group the ingested {split} waveforms into tracks")
def group_ingested_tracks(
    tracks: TracksConfig, split: str, ingested_dir: Path, out_dir: Path
) -> dict[str, int]:
    """Cut the ingested waveforms of ``split`` into tracks of ``tracks.n_cells``
    (:func:`dndx.simulation.tracks.tracks_of_cells`), ``tracks_per_chunk`` tracks to a part
    in ``out_dir/<split>``; returns what the parts hold.

    Raises:
        InputError: the split has no ingested waveforms, or too few of one
            particle at one momentum for a track.
    """
    paths = part_paths(ingested_dir / split)
    if not paths:
        raise InputError(f"{ingested_dir / split}: no ingested waveforms; run the ingest stage")
    ingested = WaveformSet.concatenate([read_waveform_set(p) for p in paths])
    parts, counts = tracks_of_cells(ingested, tracks)
    if not parts:
        raise InputError(
            f"{ingested_dir / split}: no track of {tracks.n_cells} cells in {len(ingested)} "
            "waveforms: every track needs that many waveforms of one particle at one "
            "momentum; name the particles of the files (data.particle or data.particles) "
            "or lower tracks.n_cells"
        )
    for index, part in enumerate(parts):
        write_waveform_set(part, out_dir / split / part_name(index))
    return counts
