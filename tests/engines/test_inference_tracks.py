"""Track and path columns through the inference plan and a chunk's task: columns named
where the plan resolves its inputs, and the models' rows carrying track and path past a
skipped waveform (the columns' reading itself: tests/unit/io/test_track_columns.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from dndx.config import load_params
from dndx.errors import DndxError, InputError
from dndx.io.inference_store import Chunk
from dndx.io.readers import WaveformSource, resolve_source
from dndx.simulation.generator import simulate_range
from flows.infer_plan import InferenceRequest, plan_inference, resolve_sources
from tasks.inference import run_chunk
from tests.cell_files import (
    N_WAVEFORMS,
    PATHS_CM,
    TRACKS,
    WRITERS,
    cells_hdf5,
    with_columns,
)


@pytest.mark.parametrize("fmt", WRITERS)
def test_a_missing_column_is_named_with_its_file(fmt: str, tmp_path: Path) -> None:
    source = WRITERS[fmt](tmp_path, TRACKS)
    with pytest.raises(InputError, match=rf"{source.path}: .*'track' \(the track column"):
        resolve_sources([str(source.path)], None, {}, {"track_column": "track"})
    with pytest.raises(InputError, match=rf"{source.path}: .*'len' \(the path column"):
        resolve_source(with_columns(source, path="len"))


def test_a_path_column_without_a_track_column_is_refused(tmp_path: Path) -> None:
    source = cells_hdf5(tmp_path, TRACKS)
    with pytest.raises(DndxError, match=r"--path-column len_cm: .* --track-column"):
        plan_inference(
            InferenceRequest(
                (str(source.path),), str(tmp_path / "out.parquet"), path_column="len_cm"
            )
        )


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
