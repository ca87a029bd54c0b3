"""Track and path columns beside the waveforms: read per waveform in every format,
checked before any work, and summed per track."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from dndx.config import load_params
from dndx.errors import DndxError, InputError
from dndx.io.inference_store import Chunk
from dndx.io.readers import WaveformSource, read_chunk, resolve_source
from dndx.scoring.separation import counted_tracks
from dndx.simulation.generator import simulate_range
from flows.infer_plan import InferenceRequest, plan_inference, resolve_sources
from tasks.inference import run_chunk

N_WAVEFORMS = 6
N_SAMPLES = 20
TRACKS = np.array([4, 4, 4, 9, 9, 9])
PATHS_CM = np.array([0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
SAMPLES = np.arange(N_WAVEFORMS * N_SAMPLES, dtype=np.float32).reshape(N_WAVEFORMS, N_SAMPLES)

Writer = Callable[[Path, np.ndarray], WaveformSource]


def _root(directory: Path, track: np.ndarray) -> WaveformSource:
    path = directory / "cells.root"
    with uproot.recreate(path) as file:
        file["sim"] = {"wf_i": SAMPLES, "trk": track, "len_cm": PATHS_CM}
    return WaveformSource(path, "root", tree="sim", branch="wf_i")


def _hdf5(directory: Path, track: np.ndarray) -> WaveformSource:
    path = directory / "cells.h5"
    with h5py.File(path, "w") as file:
        file["adc"] = SAMPLES
        file["trk"] = track
        file["len_cm"] = PATHS_CM
    return WaveformSource(path, "hdf5", dataset="adc")


def _parquet(directory: Path, track: np.ndarray) -> WaveformSource:
    path = directory / "cells.parquet"
    table = pa.table({"adc": list(SAMPLES), "trk": track, "len_cm": PATHS_CM})
    pq.write_table(table, path, row_group_size=4)
    return WaveformSource(path, "parquet", column="adc")


def _npz(directory: Path, track: np.ndarray) -> WaveformSource:
    path = directory / "cells.npz"
    np.savez(path, waveforms=SAMPLES, trk=track, len_cm=PATHS_CM)
    return WaveformSource(path, "npz", array="waveforms")


WRITERS: dict[str, Writer] = {"root": _root, "hdf5": _hdf5, "parquet": _parquet, "npz": _npz}


def _named(
    source: WaveformSource, track: str = "trk", path: str | None = "len_cm"
) -> WaveformSource:
    return WaveformSource(
        source.path,
        source.format,
        **{key: getattr(source, key) for key in ("tree", "branch", "dataset", "column", "array")},
        track_column=track,
        path_column=path,
    )


@pytest.mark.parametrize("fmt", WRITERS)
def test_track_and_path_columns_are_read_per_waveform(fmt: str, tmp_path: Path) -> None:
    source = resolve_source(_named(WRITERS[fmt](tmp_path, TRACKS.astype(np.int32))))

    chunk = read_chunk(source, 2, 5)

    assert chunk.track_id is not None and chunk.path_cm is not None
    assert chunk.track_id.dtype == np.int64
    np.testing.assert_array_equal(chunk.track_id, TRACKS[2:5])
    np.testing.assert_allclose(chunk.path_cm, PATHS_CM[2:5])
    np.testing.assert_array_equal(chunk.samples[0], SAMPLES[2])


@pytest.mark.parametrize("fmt", WRITERS)
def test_whole_floats_are_track_ids_and_other_floats_are_refused(fmt: str, tmp_path: Path) -> None:
    whole = resolve_source(_named(WRITERS[fmt](tmp_path, TRACKS.astype(np.float64))))
    np.testing.assert_array_equal(read_chunk(whole, 0, N_WAVEFORMS).track_id, TRACKS)

    broken = TRACKS.astype(np.float64)
    broken[3] = 9.5
    source = _named(WRITERS[fmt](tmp_path, broken))
    with pytest.raises(
        InputError, match=rf"{source.path}: track column 'trk' holds 9.5 at entry 3"
    ):
        resolve_source(source)


def test_a_path_length_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    source = _named(_parquet(tmp_path, TRACKS))
    lengths = PATHS_CM.copy()
    lengths[4] = np.nan
    pq.write_table(pa.table({"adc": list(SAMPLES), "trk": TRACKS, "len_cm": lengths}), source.path)
    with pytest.raises(
        InputError, match=rf"{source.path}: path column 'len_cm' holds nan at entry 4"
    ):
        resolve_source(source)


@pytest.mark.parametrize("fmt", WRITERS)
def test_a_missing_column_is_named_with_its_file(fmt: str, tmp_path: Path) -> None:
    source = WRITERS[fmt](tmp_path, TRACKS)
    with pytest.raises(InputError, match=rf"{source.path}: .*'track' \(the track column"):
        resolve_sources([str(source.path)], None, {}, {"track_column": "track"})
    with pytest.raises(InputError, match=rf"{source.path}: .*'len' \(the path column"):
        resolve_source(_named(source, path="len"))


def test_columns_that_hold_no_number_per_waveform_are_refused(tmp_path: Path) -> None:
    source = _root(tmp_path, TRACKS)
    with pytest.raises(
        InputError, match=r"branch 'wf_i' of tree 'sim' \(the track column.*one number"
    ):
        resolve_source(_named(source, track="wf_i"))
    with h5py.File(tmp_path / "short.h5", "w") as file:
        file["adc"] = SAMPLES
        file["trk"] = TRACKS[:4]
    short = WaveformSource(tmp_path / "short.h5", "hdf5", dataset="adc", track_column="trk")
    with pytest.raises(InputError, match=r"dataset 'trk' .* has shape \(4,\), expected \(6,\)"):
        resolve_source(short)


def test_a_path_column_without_a_track_column_is_refused(tmp_path: Path) -> None:
    source = _hdf5(tmp_path, TRACKS)
    with pytest.raises(DndxError, match=r"--path-column len_cm: .* --track-column"):
        plan_inference(
            InferenceRequest(
                (str(source.path),), str(tmp_path / "out.parquet"), path_column="len_cm"
            )
        )


def test_tracks_sum_their_counted_cells_only() -> None:
    cells = pd.DataFrame(
        {
            "source_file": ["b.h5"] * 3 + ["a.h5"] * 3,
            "track": [1, 1, 1, 1, 2, 2],
            "status": ["ok", "no_signal", "ok", "ok", "ok", "ok"],
            "n_clusters": [10.0, np.nan, 20.0, 8.0, 9.0, 11.0],
            "path_cm": [1.0, 1.0, 2.0, 0.5, 1.0, 1.0],
        }
    )

    tracks = counted_tracks(cells)

    assert list(zip(tracks["source_file"], tracks["track"], strict=True)) == [
        ("a.h5", 1),
        ("a.h5", 2),
        ("b.h5", 1),
    ]
    assert tracks["n_cells"].tolist() == [1, 2, 3]
    assert tracks["n_counted"].tolist() == [1, 2, 2]
    assert tracks["n_clusters"].tolist() == [8.0, 20.0, 30.0]
    assert tracks["path_cm"].tolist() == [0.5, 2.0, 3.0]
    assert tracks["dndx_per_cm"].tolist() == [16.0, 10.0, 10.0]
    without_path = counted_tracks(cells.drop(columns="path_cm"))
    assert without_path["dndx_per_cm"].isna().all()
    assert without_path["clusters_per_cell"].tolist() == [8.0, 10.0, 15.0]


def test_the_models_rows_carry_their_track_and_path_past_a_skipped_waveform(
    untrained_pair: Path, tmp_path: Path
) -> None:
    cfg = dataclasses.replace(
        load_params().simulate, n_train=6, block_size=6, chunk_size=6, sampling_rates_ghz=(1.5,)
    )
    adc = np.stack(list(simulate_range(cfg, "train", 0, N_WAVEFORMS).adc)).astype(np.float64)
    adc[2, 10] = np.nan
    path = tmp_path / "cells.h5"
    with h5py.File(path, "w") as file:
        file["adc"] = adc
        file["trk"] = TRACKS
        file["len_cm"] = PATHS_CM
    source = WaveformSource(path, "hdf5", dataset="adc", track_column="trk", path_column="len_cm")
    chunk = Chunk(resolve_source(source), 1, N_WAVEFORMS, tmp_path / "part.parquet")

    result = run_chunk(chunk, str(untrained_pair / "bundle"), "auto", 1.5, "cpu", "lstm")

    rows = pq.read_table(chunk.path).to_pandas()
    assert [event for event, _ in result.bad_rows] == [2]
    kept = [1, 2, 3, 4, 5]
    assert rows["event"].tolist() == kept
    assert rows["status"].tolist()[1] == "skipped"
    assert rows["track"].tolist() == TRACKS[kept].tolist()
    np.testing.assert_allclose(rows["path_cm"], PATHS_CM[kept])
