"""The inference chunk store: chunk plans, resume records, joining, the output lock."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dndx.chain.inference import results_table
from dndx.io.inference_store import (
    Chunk,
    ChunkResult,
    OutputBusyError,
    finished_result,
    join_chunks,
    lock_path,
    output_lock,
    plan_chunks,
    record_result,
    remove_stale_work,
    settings_key,
    work_directory,
    written_settings_key,
)
from dndx.io.readers import WaveformSource
from tests.conftest import hold_output_lock


def _source(tmp_path: Path, name: str = "a.h5") -> WaveformSource:
    path = tmp_path / name
    path.write_bytes(b"waveforms")
    return WaveformSource(path, "hdf5", dataset="adc")


def _part(chunk: Chunk, n_rows: int, status: str = "ok") -> None:
    frame = pd.DataFrame(
        {
            "source_file": [str(chunk.source.path)] * n_rows,
            "event": np.arange(chunk.start, chunk.start + n_rows),
            "status": [status] * n_rows,
            "n_peaks": np.ones(n_rows, np.int32),
            "peak_time_ns": [np.array([5.0], np.float32)] * n_rows,
            "n_clusters": np.full(n_rows, 2.5 if status == "ok" else np.nan, np.float32),
            "n_candidates": np.full(n_rows, 3, np.int32),
            "baseline": np.zeros(n_rows),
            "noise_sigma": np.ones(n_rows),
            "polarity": np.ones(n_rows, np.int8),
        }
    )
    pq.write_table(results_table(frame), chunk.path)


def test_chunks_cover_every_entry_in_order_and_change_with_their_file(tmp_path: Path) -> None:
    a, b = _source(tmp_path, "a.h5"), _source(tmp_path, "b.h5")
    chunks = plan_chunks([a, b], [5, 2], 2, tmp_path)
    assert [(c.source.path.name, c.start, c.stop) for c in chunks] == [
        ("a.h5", 0, 2),
        ("a.h5", 2, 4),
        ("a.h5", 4, 5),
        ("b.h5", 0, 2),
    ]
    assert len({c.path for c in chunks}) == 4
    a.path.write_bytes(b"other waveforms")
    assert plan_chunks([a], [5], 2, tmp_path)[0].path != chunks[0].path


def test_a_chunk_is_finished_only_with_both_its_part_and_its_record(tmp_path: Path) -> None:
    (chunk,) = plan_chunks([_source(tmp_path)], [3], 3, tmp_path)
    result = ChunkResult(2, ((1, "length 0"),), {"ok": 1, "no_signal": 1}, 1)
    record_result(chunk, result)
    assert finished_result(chunk) is None  # a record without its part
    _part(chunk, 2)
    assert finished_result(chunk) == result
    assert result.n_entries == 3


def test_settings_key_follows_the_settings_and_the_models_bytes(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "peak_finder.onnx").write_bytes(b"graph")
    key = settings_key(bundle, {"polarity": "auto"})
    assert key == settings_key(bundle, {"polarity": "auto"})
    assert key != settings_key(bundle, {"polarity": "negative"})
    (bundle / "peak_finder.onnx").write_bytes(b"graph, retrained")
    assert key != settings_key(bundle, {"polarity": "auto"})


def test_join_writes_parts_in_order_marked_with_the_settings_key(tmp_path: Path) -> None:
    chunks = plan_chunks([_source(tmp_path)], [5], 3, tmp_path)
    _part(chunks[0], 3)
    _part(chunks[1], 2, status="saturated")
    out = tmp_path / "out.parquet"
    columns = join_chunks(chunks, out, "abc123")
    table = pq.read_table(out).to_pandas()
    assert table["event"].tolist() == [0, 1, 2, 3, 4]
    assert table["status"].tolist() == ["ok"] * 3 + ["saturated"] * 2
    assert table["n_clusters"].isna().tolist() == [False] * 3 + [True] * 2
    assert columns["chunk"].tolist() == [0, 0, 0, 1, 1]
    assert columns["row"].tolist() == [0, 1, 2, 0, 1]
    assert written_settings_key(out) == "abc123"
    not_ours = tmp_path / "notes.parquet"
    not_ours.write_text("not a parquet file")
    assert written_settings_key(not_ours) is None
    assert written_settings_key(tmp_path / "absent.parquet") is None
    assert join_chunks([], tmp_path / "empty.parquet", "abc123").empty


def test_stale_work_of_other_settings_is_removed_and_ours_kept(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    ours, stale = work_directory(out, "aaaa"), work_directory(out, "bbbb")
    other_output = work_directory(tmp_path / "other.parquet", "cccc")
    for directory in (ours, stale, other_output):
        directory.mkdir()
    assert remove_stale_work(out, ours) == [stale]
    assert ours.is_dir() and other_output.is_dir() and not stale.exists()


def test_a_second_run_is_refused_naming_the_first_or_waits_for_it(tmp_path: Path) -> None:
    out = tmp_path / "results.parquet"
    with (
        hold_output_lock(out) as holder,
        pytest.raises(OutputBusyError, match=rf"pid {holder.pid} .*pass --wait"),
        output_lock(out),
    ):
        pass
    # The system released the killed holder's lock: nothing stale blocks the next run.
    # A run takes its lock once: a second lock, from the same process too, is refused.
    with (
        output_lock(out) as lock,
        pytest.raises(OutputBusyError, match=rf"pid {os.getpid()} "),
        output_lock(out),
    ):
        pass
    assert lock.path == lock_path(out).absolute() and not lock.held
    assert not lock_path(out).exists()

    told: list[str] = []

    def waiting(line: str) -> None:
        # Released only once this run says it waits: it cannot come too late.
        told.append(line)
        holder.release()

    with hold_output_lock(out) as holder:
        with output_lock(out, wait=True, on_wait=waiting):
            holder.expect("released")
        assert len(told) == 1 and f"pid {holder.pid}" in told[0]
