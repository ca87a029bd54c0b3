"""Track and path-length columns read per waveform from every format, the refusals of
columns that cannot be read so, and the tracks of counted cells."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dndx.errors import InputError
from dndx.io.readers import WaveformSource, read_chunk, resolve_source
from dndx.scoring.separation import counted_tracks
from tests.cell_files import (
    N_WAVEFORMS,
    PATHS_CM,
    SAMPLES,
    TRACKS,
    WRITERS,
    cells_parquet,
    cells_root,
    with_columns,
)


@pytest.mark.parametrize("fmt", WRITERS)
def test_track_and_path_columns_are_read_per_waveform(fmt: str, tmp_path: Path) -> None:
    source = resolve_source(with_columns(WRITERS[fmt](tmp_path, TRACKS.astype(np.int32))))

    chunk = read_chunk(source, 2, 5)

    assert chunk.track_id is not None and chunk.path_cm is not None
    assert chunk.track_id.dtype == np.int64
    np.testing.assert_array_equal(chunk.track_id, TRACKS[2:5])
    np.testing.assert_allclose(chunk.path_cm, PATHS_CM[2:5])
    np.testing.assert_array_equal(chunk.samples[0], SAMPLES[2])


@pytest.mark.parametrize("fmt", WRITERS)
def test_whole_floats_are_track_ids_and_other_floats_are_refused(fmt: str, tmp_path: Path) -> None:
    whole = resolve_source(with_columns(WRITERS[fmt](tmp_path, TRACKS.astype(np.float64))))
    np.testing.assert_array_equal(read_chunk(whole, 0, N_WAVEFORMS).track_id, TRACKS)

    broken = TRACKS.astype(np.float64)
    broken[3] = 9.5
    source = with_columns(WRITERS[fmt](tmp_path, broken))
    with pytest.raises(
        InputError, match=rf"{source.path}: track column 'trk' holds 9.5 at entry 3"
    ):
        resolve_source(source)


def test_a_path_length_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    source = with_columns(cells_parquet(tmp_path, TRACKS))
    lengths = PATHS_CM.copy()
    lengths[4] = np.nan
    pq.write_table(pa.table({"adc": list(SAMPLES), "trk": TRACKS, "len_cm": lengths}), source.path)
    with pytest.raises(
        InputError, match=rf"{source.path}: path column 'len_cm' holds nan at entry 4"
    ):
        resolve_source(source)


def test_columns_that_hold_no_number_per_waveform_are_refused(tmp_path: Path) -> None:
    source = cells_root(tmp_path, TRACKS)
    with pytest.raises(
        InputError, match=r"branch 'wf_i' of tree 'sim' \(the track column.*one number"
    ):
        resolve_source(with_columns(source, track="wf_i"))
    with h5py.File(tmp_path / "short.h5", "w") as file:
        file["adc"] = SAMPLES
        file["trk"] = TRACKS[:4]
    short = WaveformSource(tmp_path / "short.h5", "hdf5", dataset="adc", track_column="trk")
    with pytest.raises(InputError, match=r"dataset 'trk' .* has shape \(4,\), expected \(6,\)"):
        resolve_source(short)


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
