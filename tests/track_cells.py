"""Track cells the tests simulate, and stand-ins for the models that count them;
shared by the track tests of tests/unit and tests/engines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from dndx.config import load_params
from dndx.scoring.evaluation import BaselineTuning
from dndx.scoring.track_evaluation import count_track_cells
from dndx.scoring.tuning import ClusterTuning, D2Tuning
from dndx.simulation.tracks import TrackSet, simulate_tracks
from dndx.waveforms import WaveformSet

PARAMS = load_params()
SIMULATE = PARAMS.simulate
TRACKS = dataclasses.replace(
    PARAMS.tracks, particles=("pi", "K"), momenta_gev=(5.0, 10.0), n_cells=20, n_test=6
)


def simulate_cells(track_set: TrackSet, start: int, stop: int, split: str = "test") -> WaveformSet:
    """Tracks ``start`` to ``stop`` of ``track_set`` in ``split``, as the stage simulates them."""
    return simulate_tracks(SIMULATE, TRACKS, split, track_set, start, stop)


def count_with_stand_ins(data: WaveformSet) -> pd.DataFrame:
    """Stand-ins for the models: a peak finder that thresholds the window's
    centre, and a counter that counts the detected peaks of its input."""
    before = PARAMS.prepare.candidates.window_before
    no_scan = pd.DataFrame()
    tuning = BaselineTuning(
        D2Tuning(3.0, 1.0, no_scan),
        lstm_clusterization=ClusterTuning(2.0, 0.2, no_scan),
        d2_clusterization=ClusterTuning(2.0, 0.2, no_scan),
        truth_clusterization=ClusterTuning(2.0, 0.2, no_scan),
    )
    return count_track_cells(
        data,
        PARAMS.prepare,
        256,
        SIMULATE.window_ns,
        lambda windows: (windows[:, before] > 4.0).astype(np.float32),
        lambda encoded: encoded[:, :, 0].sum(axis=1),
        0.5,
        tuning,
    )
