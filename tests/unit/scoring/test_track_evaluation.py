"""Counting the cells of a track chunk with every method, models stood in for."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dndx.scoring.evaluation import BaselineTuning
from dndx.scoring.track_evaluation import (
    DEDX,
    TRACK_METHODS,
    TRUTH,
    count_track_cells,
)
from dndx.scoring.tuning import ClusterTuning, D2Tuning
from dndx.simulation.tracks import track_sets
from dndx.truth.charge import waveform_charge_electrons
from dndx.waveforms import WaveformSet
from tests.unit.simulation.test_tracks import PARAMS, SIMULATE, TRACKS, _simulate


def _count_with_stand_ins(data: WaveformSet) -> pd.DataFrame:
    """Stand-ins for the models: a peak finder that thresholds the window's
    centre, and a counter that counts the detected peaks of its input."""
    before = PARAMS.prepare.window_before
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


def test_every_method_counts_every_cell_of_a_track_chunk() -> None:
    data = _simulate(track_sets(TRACKS, "test")[2], 0, 3)
    cells = _count_with_stand_ins(data)
    assert list(cells.columns) == [
        "waveform_id",
        "track_id",
        "particle",
        "momentum_gev",
        "path_length_cm",
        *TRACK_METHODS,
    ]
    info = data.info
    assert cells["waveform_id"].tolist() == info["waveform_id"].tolist()
    assert cells["track_id"].tolist() == info["track_id"].tolist()
    assert cells[TRUTH].tolist() == info["n_clusters"].tolist()
    assert np.allclose(cells[DEDX], waveform_charge_electrons(data))
    # Clusterization merges detected peaks, never splits them.
    assert (cells["lstm_clusterization"] <= cells["cnn"]).all()
    assert (cells["cnn"] > 0).all() and (cells["d2_clusterization"] > 0).all()
    # Perfect peaks, clusterized, follow the truth from cell to cell.
    assert np.corrcoef(cells["truth_clusterization"], cells[TRUTH])[0, 1] > 0.75
