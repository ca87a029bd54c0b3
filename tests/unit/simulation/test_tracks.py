"""Tracks of cells: block-wise streams, sets apart, true dN/dx, the checks of their settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml

from dndx.config import PARAMS_PATH, PARTICLE_MASSES_GEV, parse_params
from dndx.errors import ConfigError
from dndx.physics import cluster_density_per_cm
from dndx.scoring.separation import spread, track_dndx
from dndx.simulation.tracks import TrackSet, simulate_tracks, track_sets
from dndx.truth.charge import waveform_charge_electrons
from dndx.waveforms import WaveformSet
from tests.track_cells import SIMULATE, TRACKS, simulate_cells

N_CELLS = TRACKS.n_cells


def test_track_ranges_simulated_apart_equal_the_set_simulated_whole() -> None:
    kaon = track_sets(TRACKS, "test")[3]
    whole = simulate_cells(kaon, 0, 6)
    parts = WaveformSet.concatenate([simulate_cells(kaon, 0, 2), simulate_cells(kaon, 2, 6)])
    pd.testing.assert_frame_equal(whole.info, parts.info)
    pd.testing.assert_frame_equal(whole.electrons, parts.electrons)
    assert np.array_equal(whole.adc.values, parts.adc.values)


def test_a_set_is_the_same_whatever_else_is_listed() -> None:
    alone = dataclasses.replace(TRACKS, particles=("K",), momenta_gev=(10.0,))
    (kaon_alone,) = track_sets(alone, "test")
    kaon_among_others = track_sets(TRACKS, "test")[3]
    assert (kaon_among_others.particle, kaon_among_others.momentum_gev) == ("K", 10.0)
    a, b = simulate_cells(kaon_alone, 0, 2), simulate_cells(kaon_among_others, 0, 2)
    assert np.array_equal(a.adc.values, b.adc.values)
    # Only the numbering differs: each set has its own range of track ids.
    assert a.info["track_id"].tolist() != b.info["track_id"].tolist()


def test_splits_sets_and_tracks_draw_different_cells() -> None:
    sets = track_sets(TRACKS, "test")
    validation = track_sets(TRACKS, "validation")[0]
    paths = [
        simulate_cells(sets[0], 0, 1).info["path_length_cm"],
        simulate_cells(sets[0], 1, 2).info["path_length_cm"],
        simulate_cells(sets[2], 0, 1).info["path_length_cm"],
        simulate_cells(validation, 0, 1, "validation").info["path_length_cm"],
    ]
    for i, first in enumerate(paths):
        for second in paths[i + 1 :]:
            assert not np.array_equal(first.to_numpy(), second.to_numpy())


def test_a_track_is_one_particle_at_one_momentum_through_cells_of_their_own() -> None:
    pion = track_sets(TRACKS, "test")[1]
    data = simulate_cells(pion, 0, 6)
    info = data.info
    assert len(info) == 6 * N_CELLS
    assert set(info["particle"]) == {"pi"}
    assert set(info["momentum_gev"]) == {10.0}
    assert info["waveform_id"].is_unique
    assert info["track_id"].tolist() == np.repeat(np.arange(6, 12), N_CELLS).tolist()
    assert (info["waveform_id"] == info["track_id"] * N_CELLS + info["cell"]).all()
    for column in ("impact_parameter_cm", "track_angle_deg", "path_length_cm", "noise_fraction"):
        assert info.groupby("track_id")[column].nunique().min() == N_CELLS


def test_true_dndx_of_the_tracks_is_the_cluster_density_of_the_particle() -> None:
    pion = TrackSet(0, "pi", 10.0, 30)
    long_tracks = dataclasses.replace(TRACKS, n_cells=100)
    info = simulate_tracks(SIMULATE, long_tracks, "test", pion, 0, 30).info
    dndx = track_dndx(info["track_id"], info["n_clusters"], info["path_length_cm"])
    s = spread(dndx.to_numpy())
    density = float(cluster_density_per_cm(10.0 / PARTICLE_MASSES_GEV["pi"]))
    assert abs(s.mean - density) < 3 * s.mean_error
    # Poisson: sigma^2 = density / path per track.
    expected_sigma = np.sqrt(density / info.groupby("track_id")["path_length_cm"].sum().mean())
    assert abs(s.sigma - expected_sigma) < 3 * s.sigma_error


def test_waveform_charge_is_the_sum_of_the_electrons_gains() -> None:
    data = simulate_cells(track_sets(TRACKS, "test")[0], 0, 6)
    charge = waveform_charge_electrons(data)
    electrons = data.electrons
    gains = (
        np.bincount(electrons["waveform"], weights=electrons["amplitude_adc"], minlength=len(data))
        / data.info["single_electron_amplitude_adc"].to_numpy()
    )
    assert np.mean(charge / gains) == pytest.approx(1.0, abs=0.01)
    assert np.corrcoef(charge, gains)[0, 1] > 0.99


def test_bad_splits_and_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="track sets exist for"):
        track_sets(TRACKS, "train")
    with pytest.raises(ValueError, match="outside the 6 tracks"):
        simulate_cells(track_sets(TRACKS, "test")[0], 4, 7)


def test_a_repeated_particle_or_momentum_is_a_config_error() -> None:
    mapping = yaml.safe_load(PARAMS_PATH.read_text())
    mapping["tracks"]["particles"] = ["pi", "K", "pi"]
    mapping["tracks"]["momenta_gev"] = [5.0, 5.0]
    with pytest.raises(ConfigError) as error:
        parse_params(mapping, "my.yaml")
    assert (
        "tracks.particles = ['pi', 'K', 'pi']: should list each value once; repeated: ['pi']"
        in (str(error.value))
    )
    assert "tracks.momenta_gev = [5.0, 5.0]: should list each value once" in str(error.value)
