"""Counting the cells of a track chunk with every method, models stood in for."""

from __future__ import annotations

import numpy as np

from dndx.scoring.track_evaluation import (
    DEDX,
    TRACK_METHODS,
    TRUTH,
)
from dndx.simulation.tracks import track_sets
from dndx.truth.charge import waveform_charge_electrons
from tests.track_cells import TRACKS, count_with_stand_ins, simulate_cells


def test_every_method_counts_every_cell_of_a_track_chunk() -> None:
    data = simulate_cells(track_sets(TRACKS, "test")[2], 0, 3)
    cells = count_with_stand_ins(data)
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
