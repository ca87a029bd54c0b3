"""The tracks stage's flow, simulated and on ingested files, and its task's refusal of
waveforms of no particle (the track sets themselves: tests/unit/simulation/)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dndx.config import parse_params
from dndx.errors import InputError
from dndx.io.dataset import part_name, part_paths, read_waveform_set, write_waveform_set
from dndx.io.labelled_writer import write_labelled
from dndx.paths import TRACKS_DIR
from dndx.scoring.track_evaluation import (
    DEDX,
    TRUTH,
    evaluate_tracks,
)
from dndx.simulation.tracks import TRACK_SPLITS, simulate_tracks, track_chunks, track_sets
from dndx.waveforms import WaveformSet
from flows.ingest import ingest
from flows.tracks import tracks
from tasks.tracks import group_ingested_tracks
from tests.conftest import tiny_params
from tests.track_cells import TRACKS, count_with_stand_ins, simulate_cells


def test_the_tracks_flow_writes_every_chunk_of_every_split(
    tmp_path: Path, shared_dask: str
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


def test_imported_files_of_one_particle_each_are_cut_into_tracks_and_separated(
    tmp_path: Path, shared_dask: str
) -> None:
    """CEPC-layout files, one particle at 10 GeV/c each, through the ingest and
    tracks stages' flows: tracks of consecutive cells of one file, no path
    length (dN/dx per cell), counted and separated as simulated tracks."""
    pion, kaon = track_sets(TRACKS, "test")[1], track_sets(TRACKS, "test")[3]
    # 57 pion and 40 kaon test cells, tracks of 10: 5 + 4 tracks, 7 pions left out.
    files = {
        "test/pi.root": simulate_cells(pion, 0, 3).take(np.arange(57)),
        "test/K.root": simulate_cells(kaon, 0, 2),
        "validation/pi.root": simulate_cells(pion, 0, 1, "validation"),
        "validation/K.root": simulate_cells(kaon, 0, 1, "validation"),
        "train/pi.root": simulate_cells(pion, 3, 4),
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

    cells = count_with_stand_ins(test)
    assert np.isfinite(cells[DEDX]).all() and (cells[DEDX] > 0).all()
    evaluation = evaluate_tracks(cells, params.evaluate.dedx_keep_fraction)
    per_cell = evaluation.tracks.set_index("track_id")[TRUTH]
    assert per_cell.tolist() == pytest.approx((by_track["n_clusters"].sum() / 10).tolist())
    pair = evaluation.pair_table("pi", "K").set_index("method")
    assert pair.loc[TRUTH, "ratio"] == 1.0 and np.isfinite(pair["separation"]).all()


def test_ingested_waveforms_of_no_particle_make_no_track_and_say_why(tmp_path: Path) -> None:
    data = simulate_cells(track_sets(TRACKS, "test")[0], 0, 1)
    data.info["particle"] = ""
    write_waveform_set(data, tmp_path / "ingested" / "test" / part_name(0))
    cfg = dataclasses.replace(TRACKS, n_cells=10)
    with pytest.raises(InputError, match=r"no track of 10 cells in 20 waveforms.*data\.particles"):
        group_ingested_tracks.fn(cfg, "test", tmp_path / "ingested", tmp_path / TRACKS_DIR)
    assert not (tmp_path / TRACKS_DIR).exists()
