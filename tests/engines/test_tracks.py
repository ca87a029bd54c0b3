"""Track sets: determinism, independence of the sets, truth, the cell charge and the stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dndx.config import PARAMS_PATH, PARTICLE_MASSES_GEV, load_params, parse_params
from dndx.errors import ConfigError, InputError
from dndx.io.dataset import part_name, part_paths, read_waveform_set, write_waveform_set
from dndx.io.labelled_writer import write_labelled
from dndx.paths import TRACKS_DIR
from dndx.physics import cluster_density_per_cm
from dndx.scoring.evaluation import BaselineTuning
from dndx.scoring.separation import spread, track_dndx
from dndx.scoring.track_evaluation import (
    DEDX,
    TRACK_METHODS,
    TRUTH,
    count_track_cells,
    evaluate_tracks,
)
from dndx.scoring.tuning import ClusterTuning, D2Tuning
from dndx.simulation.tracks import TRACK_SPLITS, TrackSet, simulate_tracks, track_chunks, track_sets
from dndx.truth.charge import waveform_charge_electrons
from dndx.waveforms import WaveformSet
from flows.ingest import ingest
from flows.tracks import tracks
from tasks.tracks import group_ingested_tracks
from tests.conftest import tiny_params

PARAMS = load_params()
SIMULATE = PARAMS.simulate
TRACKS = dataclasses.replace(
    PARAMS.tracks, particles=("pi", "K"), momenta_gev=(5.0, 10.0), n_cells=20, n_test=6
)
N_CELLS = TRACKS.n_cells


def _simulate(track_set: TrackSet, start: int, stop: int, split: str = "test") -> WaveformSet:
    return simulate_tracks(SIMULATE, TRACKS, split, track_set, start, stop)


def test_track_ranges_simulated_apart_equal_the_set_simulated_whole() -> None:
    kaon = track_sets(TRACKS, "test")[3]
    whole = _simulate(kaon, 0, 6)
    parts = WaveformSet.concatenate([_simulate(kaon, 0, 2), _simulate(kaon, 2, 6)])
    pd.testing.assert_frame_equal(whole.info, parts.info)
    pd.testing.assert_frame_equal(whole.electrons, parts.electrons)
    assert np.array_equal(whole.adc.values, parts.adc.values)


def test_a_set_is_the_same_whatever_else_is_listed() -> None:
    alone = dataclasses.replace(TRACKS, particles=("K",), momenta_gev=(10.0,))
    (kaon_alone,) = track_sets(alone, "test")
    kaon_among_others = track_sets(TRACKS, "test")[3]
    assert (kaon_among_others.particle, kaon_among_others.momentum_gev) == ("K", 10.0)
    a, b = _simulate(kaon_alone, 0, 2), _simulate(kaon_among_others, 0, 2)
    assert np.array_equal(a.adc.values, b.adc.values)
    # Only the numbering differs: each set has its own range of track ids.
    assert a.info["track_id"].tolist() != b.info["track_id"].tolist()


def test_splits_sets_and_tracks_draw_different_cells() -> None:
    sets = track_sets(TRACKS, "test")
    validation = track_sets(TRACKS, "validation")[0]
    paths = [
        _simulate(sets[0], 0, 1).info["path_length_cm"],
        _simulate(sets[0], 1, 2).info["path_length_cm"],
        _simulate(sets[2], 0, 1).info["path_length_cm"],
        _simulate(validation, 0, 1, "validation").info["path_length_cm"],
    ]
    for i, first in enumerate(paths):
        for second in paths[i + 1 :]:
            assert not np.array_equal(first.to_numpy(), second.to_numpy())


def test_a_track_is_one_particle_at_one_momentum_through_cells_of_their_own() -> None:
    pion = track_sets(TRACKS, "test")[1]
    data = _simulate(pion, 0, 6)
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
    data = _simulate(track_sets(TRACKS, "test")[0], 0, 6)
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
        _simulate(track_sets(TRACKS, "test")[0], 4, 7)


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


def test_the_tracks_flow_writes_every_chunk_of_every_split(
    tmp_path: Path, prefect_api: str
) -> None:
    params = parse_params(tiny_params())
    cfg = params.tracks
    counts = tracks(params, tmp_path)
    n_sets = len(cfg.particles) * len(cfg.momenta_gev)
    assert counts == {"validation": n_sets * cfg.n_validation, "test": n_sets * cfg.n_test}
    for split in TRACK_SPLITS:
        paths = part_paths(tmp_path / TRACKS_DIR / split)
        chunks = track_chunks(cfg, split)
        assert len(paths) == len(chunks)
        written = read_waveform_set(paths[-1])
        expected = simulate_tracks(params.simulate, cfg, split, *chunks[-1])
        pd.testing.assert_frame_equal(written.info, expected.info)
        assert np.array_equal(written.adc.values, expected.adc.values)
    assert not list(tmp_path.glob(".tracks*")), "no temporary directory is left behind"


def _count_with_stand_ins(data: WaveformSet) -> pd.DataFrame:
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


def test_imported_files_of_one_particle_each_are_cut_into_tracks_and_separated(
    tmp_path: Path, prefect_api: str
) -> None:
    """CEPC-layout files, one particle at 10 GeV/c each, through the ingest and
    tracks stages' flows: tracks of consecutive cells of one file, no path
    length (dN/dx per cell), counted and separated as simulated tracks."""
    pion, kaon = track_sets(TRACKS, "test")[1], track_sets(TRACKS, "test")[3]
    # 57 pion and 40 kaon test cells, tracks of 10: 5 + 4 tracks, 7 pions left out.
    files = {
        "test/pi.root": _simulate(pion, 0, 3).take(np.arange(57)),
        "test/K.root": _simulate(kaon, 0, 2),
        "validation/pi.root": _simulate(pion, 0, 1, "validation"),
        "validation/K.root": _simulate(kaon, 0, 1, "validation"),
        "train/pi.root": _simulate(pion, 3, 4),
    }
    root = tmp_path / "labelled"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_labelled(data, root / name, "cepc")
    data = {
        "source": "files",
        "root": str(root),
        "splits": {split: [f"{split}/*.root"] for split in ("train", "validation", "test")},
        "particles": {"*/pi.root": "pi", "*/K.root": "K"},
    }
    params = parse_params(tiny_params(data=data))
    ingest(params, tmp_path)

    counts = tracks(params, tmp_path)

    assert counts == {"validation": 4, "test": 9}
    test = WaveformSet.concatenate(
        [read_waveform_set(p) for p in part_paths(tmp_path / TRACKS_DIR / "test")]
    )
    info = test.info
    assert len(info) == 90
    by_track = info.groupby("track_id")
    assert (by_track.size() == 10).all()
    assert (by_track["particle"].nunique() == 1).all() and (
        by_track["entry"].diff().dropna() == 1
    ).all()
    # Sets in the order of tracks.particles; the first 50 pion cells of their file.
    assert by_track["particle"].first().tolist() == ["pi"] * 5 + ["K"] * 4
    pions = info.loc[info["particle"] == "pi", "n_clusters"]
    assert pions.tolist() == files["test/pi.root"].info["n_clusters"].to_numpy()[:50].tolist()
    assert info["path_length_cm"].isna().all()

    cells = _count_with_stand_ins(test)
    assert np.isfinite(cells[DEDX]).all() and (cells[DEDX] > 0).all()
    evaluation = evaluate_tracks(cells, params.evaluate.dedx_keep_fraction)
    per_cell = evaluation.tracks.set_index("track_id")[TRUTH]
    assert per_cell.tolist() == pytest.approx((by_track["n_clusters"].sum() / 10).tolist())
    pair = evaluation.pair_table("pi", "K").set_index("method")
    assert pair.loc[TRUTH, "ratio"] == 1.0 and np.isfinite(pair["separation"]).all()


def test_ingested_waveforms_of_no_particle_make_no_track_and_say_why(tmp_path: Path) -> None:
    data = _simulate(track_sets(TRACKS, "test")[0], 0, 1)
    data.info["particle"] = ""
    write_waveform_set(data, tmp_path / "ingested" / "test" / part_name(0))
    cfg = dataclasses.replace(TRACKS, n_cells=10)
    with pytest.raises(InputError, match=r"no track of 10 cells in 20 waveforms.*data\.particles"):
        group_ingested_tracks.fn(cfg, "test", tmp_path / "ingested", tmp_path / TRACKS_DIR)
    assert not (tmp_path / TRACKS_DIR).exists()
