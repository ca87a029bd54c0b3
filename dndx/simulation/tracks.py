"""Track sets for particle identification: one particle at one momentum, many cells.

A track crosses ``n_cells`` drift cells. Each cell is one waveform of the
simulator (:func:`dndx.simulation.generator.simulate_block`) with the particle and the
momentum fixed and everything else drawn per cell as for the other splits:
cell size, impact parameter and angle (so the path length and the cluster
count), drift, front end and digitiser. The truth keeps ``path_length_cm``,
which a track fit would give, and ``n_clusters``.

Every track is one random stream, from the set's seed (derived from the
``tracks`` seed, the particle and the momentum) and the track's index within
its split, so a set generated whole or track range by track range is the same,
and adding a particle or a momentum leaves the other sets as they were.

Imported data (``data.source: files``) holds no tracks, but its test files
each hold one particle at one momentum, like the public CEPC pion and kaon
files: :func:`group_cells` cuts the waveforms of every particle and momentum
into tracks of ``n_cells`` consecutive cells, evaluated as the simulated ones.
Their path lengths are the files' own truth where the layout carries one
(``path_length_cm``), else unknown (NaN): dN/dx is then clusters per cell.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dndx.config import PARTICLE_MASSES_GEV, Range, SimulationConfig, TracksConfig
from dndx.simulation.generator import block_rng, simulate_block
from dndx.waveforms import WaveformSet

__all__ = [
    "CALIBRATION_COLUMNS",
    "TRACK_SPLITS",
    "TrackSet",
    "group_cells",
    "simulate_tracks",
    "track_chunks",
    "track_sets",
    "track_simulation_config",
    "tracks_of_cells",
]

#: The per-cell truth that calibrates a cell's charge in electrons
#: (:func:`waveform_charge_electrons`); imported files do not carry it.
CALIBRATION_COLUMNS: tuple[str, ...] = (
    "rise_time_ns",
    "fall_time_ns",
    "ion_tail_fraction",
    "ion_tail_time_ns",
    "shaping_time_ns",
    "polarity",
    "baseline_adc",
    "single_electron_amplitude_adc",
)

#: The splits of the track sets: validation for choosing, test for reporting.
TRACK_SPLITS: tuple[str, ...] = ("validation", "test")


@dataclass(frozen=True)
class TrackSet:
    """The tracks of one particle at one momentum in one split.

    Attributes:
        index: the set's place in :func:`track_sets`.
        particle: the particle's name.
        momentum_gev: the momentum of every track.
        n_tracks: tracks in the set; they are numbered ``first_track`` onwards
            within the split.
    """

    index: int
    particle: str
    momentum_gev: float
    n_tracks: int

    @property
    def first_track(self) -> int:
        """The split-wide ``track_id`` of the set's first track."""
        return self.index * self.n_tracks


def track_sets(cfg: TracksConfig, split: str) -> list[TrackSet]:
    """Every particle at every momentum of ``split``, particle by particle.

    >>> from dndx.config import load_params
    >>> sets = track_sets(load_params().tracks, "test")
    >>> sets[0].particle, sets[0].momentum_gev, sets[1].momentum_gev, len(sets)
    ('pi', 2.0, 5.0, 30)
    """
    if split not in TRACK_SPLITS:
        raise ValueError(f"split {split!r}: track sets exist for {list(TRACK_SPLITS)}")
    pairs = [(p, m) for p in cfg.particles for m in cfg.momenta_gev]
    return [TrackSet(i, p, m, cfg.n_tracks(split)) for i, (p, m) in enumerate(pairs)]


def track_chunks(cfg: TracksConfig, split: str) -> list[tuple[TrackSet, int, int]]:
    """The split's tracks in chunks of at most ``tracks_per_chunk`` tracks of one set:
    ``(track_set, start, stop)`` each.

    >>> import dataclasses
    >>> from dndx.config import load_params
    >>> cfg = dataclasses.replace(load_params().tracks, n_test=25, tracks_per_chunk=10)
    >>> [(s.particle, s.momentum_gev, a, b) for s, a, b in track_chunks(cfg, "test")][:4]
    [('pi', 2.0, 0, 10), ('pi', 2.0, 10, 20), ('pi', 2.0, 20, 25), ('pi', 5.0, 0, 10)]
    """
    size = cfg.tracks_per_chunk
    return [
        (track_set, start, min(start + size, track_set.n_tracks))
        for track_set in track_sets(cfg, split)
        for start in range(0, track_set.n_tracks, size)
    ]


def track_simulation_config(
    simulate: SimulationConfig, particle: str, momentum_gev: float
) -> SimulationConfig:
    """The simulator's settings with the particle and the momentum fixed.

    >>> from dndx.config import load_params
    >>> cfg = track_simulation_config(load_params().simulate, "K", 10.0)
    >>> cfg.particles, cfg.momentum_gev.is_point
    (('K',), True)
    """
    return dataclasses.replace(
        simulate, particles=(particle,), momentum_gev=Range(low=momentum_gev, high=momentum_gev)
    )


def _set_seed(seed: int, particle: str, momentum_gev: float) -> int:
    # The set's identity, not its place in the lists, picks its streams.
    entropy = (seed, list(PARTICLE_MASSES_GEV).index(particle), round(momentum_gev * 1e6))
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def simulate_tracks(
    simulate: SimulationConfig,
    tracks: TracksConfig,
    split: str,
    track_set: TrackSet,
    start: int,
    stop: int,
) -> WaveformSet:
    """Tracks ``start:stop`` of ``track_set``, ``tracks.n_cells`` waveforms each.

    ``info`` starts with ``waveform_id`` (``track_id * n_cells + cell``), unique
    in the split, ``track_id`` and ``cell``; ``momentum_gev`` is the set's.

    >>> import dataclasses
    >>> from dndx.config import load_params
    >>> params = load_params()
    >>> cfg = dataclasses.replace(params.tracks, n_cells=4)
    >>> one = track_sets(cfg, "test")[7]
    >>> whole = simulate_tracks(params.simulate, cfg, "test", one, 0, 3)
    >>> parts = [simulate_tracks(params.simulate, cfg, "test", one, a, a + 1) for a in range(3)]
    >>> bool(np.array_equal(whole.adc.values, WaveformSet.concatenate(parts).adc.values))
    True
    >>> whole.info["track_id"].unique().tolist(), whole.info["cell"].tolist()[:5]
    ([140, 141, 142], [0, 1, 2, 3, 0])
    """
    if not 0 <= start < stop <= track_set.n_tracks:
        raise ValueError(
            f"tracks {start}:{stop} are outside the {track_set.n_tracks} tracks of the set"
        )
    cfg = track_simulation_config(simulate, track_set.particle, track_set.momentum_gev)
    set_seed = _set_seed(tracks.seed, track_set.particle, track_set.momentum_gev)
    n_cells = tracks.n_cells
    cells = np.arange(n_cells, dtype=np.int64)
    simulated = []
    for track in range(start, stop):
        data = simulate_block(cfg, block_rng(set_seed, split, track), n_cells)
        track_id = track_set.first_track + track
        data.info.insert(0, "cell", cells)
        data.info.insert(0, "track_id", np.full(n_cells, track_id, dtype=np.int64))
        data.info.insert(0, "waveform_id", track_id * n_cells + cells)
        data.info["momentum_gev"] = track_set.momentum_gev
        simulated.append(data)
    return WaveformSet.concatenate(simulated)


def group_cells(info: pd.DataFrame, n_cells: int, particles: Sequence[str] = ()) -> pd.DataFrame:
    """Imported waveforms cut into tracks: ``n_cells`` consecutive waveforms of one
    particle at one momentum make a track.

    Args:
        info: ``(n_waveforms, ...)`` one row per waveform in the split's order,
            with ``particle`` and ``momentum_gev``.
        n_cells: cells per track.
        particles: the order of the sets' particles (``tracks.particles``), so
            that pairs are named as for simulated tracks; others follow by name.

    Returns:
        One row per cell of a track, in track order: ``row`` (the waveform's
        row in ``info``), ``track_id`` (from 0, set after set: particle by
        particle, each by ascending momentum) and ``cell``. The last
        ``n_cells - 1`` or fewer waveforms of a set make no track, nor do
        waveforms without a particle or a momentum.

    >>> info = pd.DataFrame({"particle": ["K", "pi", "K", "pi", "K", "", "K", "pi"],
    ...                      "momentum_gev": 5.0})
    >>> group_cells(info, 2, ["pi", "K"]).to_dict("list")
    {'row': [1, 3, 0, 2, 4, 6], 'track_id': [0, 0, 1, 1, 2, 2], 'cell': [0, 1, 0, 1, 0, 1]}
    """
    known = (info["particle"].astype(str) != "") & info["momentum_gev"].notna()
    rows = np.flatnonzero(known.to_numpy())
    cells = pd.DataFrame(
        {
            "particle": info["particle"].astype(str).to_numpy()[rows],
            "momentum": info["momentum_gev"].round(6).to_numpy()[rows],
        }
    )
    rank = {particle: place for place, particle in enumerate(particles)}
    cells["rank"] = cells["particle"].map(rank).fillna(len(rank))
    set_index = cells.groupby(["rank", "particle", "momentum"], sort=True).ngroup().to_numpy()
    order = np.lexsort((rows, set_index))
    rows, set_index = rows[order], set_index[order]
    place = np.arange(len(rows)) - np.searchsorted(set_index, set_index)
    tracks_in_set = np.bincount(set_index, minlength=int(set_index.max(initial=-1)) + 1) // n_cells
    kept = place < tracks_in_set[set_index] * n_cells
    first_track = np.concatenate([[0], np.cumsum(tracks_in_set)[:-1]]).astype(np.int64)
    return pd.DataFrame(
        {
            "row": rows[kept].astype(np.int64),
            "track_id": first_track[set_index[kept]] + place[kept] // n_cells,
            "cell": place[kept] % n_cells,
        }
    )


def tracks_of_cells(
    data: WaveformSet, cfg: TracksConfig
) -> tuple[list[WaveformSet], dict[str, int]]:
    """The tracks of :func:`group_cells` (``cfg.n_cells`` cells, sets in the order
    of ``cfg.particles``) as track sets like :func:`simulate_tracks`'s
    (``track_id`` and ``cell`` in ``info``), ``cfg.tracks_per_chunk`` tracks a part.

    Returns:
        The parts, and what they hold: ``n_tracks``, ``n_waveforms`` (their
        cells), ``n_left_out`` (waveforms of ``data`` in no track) and
        ``n_without_path`` (tracks with a cell whose ``path_length_cm`` is unknown).
    """
    n_cells = cfg.n_cells
    cells = group_cells(data.info, n_cells, cfg.particles)
    tracks = data.take(cells["row"].to_numpy())
    track_id = cells["track_id"].to_numpy()
    tracks.info["track_id"] = track_id
    tracks.info["cell"] = cells["cell"].to_numpy()
    per_part = cfg.tracks_per_chunk * n_cells
    parts = [
        tracks.take(np.arange(start, min(start + per_part, len(tracks))))
        for start in range(0, len(tracks), per_part)
    ]
    without_path = track_id[tracks.info["path_length_cm"].isna().to_numpy()]
    return parts, {
        "n_tracks": len(np.unique(track_id)),
        "n_waveforms": len(tracks),
        "n_left_out": len(data) - len(tracks),
        "n_without_path": len(np.unique(without_path)),
    }
