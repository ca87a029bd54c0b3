"""Tests of dndx.io.readers on small files written with each library."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from dndx.chain.preprocessing import validate_rows
from dndx.errors import InputError
from dndx.io.readers import (
    WAVEFORM_FORMATS,
    WaveformChunk,
    WaveformSource,
    count_waveforms,
    detect_format,
    iter_chunks,
    read_ahead,
    read_chunk,
    resolve_source,
)
from dndx.ragged import Ragged

N_WAVEFORMS = 12
N_SAMPLES = 9

Rows = list[np.ndarray]
Writer = Callable[[Path], tuple[WaveformSource, Rows]]


def _jagged_rows(dtype: str = "float32") -> Rows:
    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 15, size=N_WAVEFORMS)
    lengths[3] = 0
    return [(rng.normal(size=n) * 100).astype(dtype) for n in lengths]


def _block(dtype: str = "float32") -> np.ndarray:
    rng = np.random.default_rng(11)
    return (rng.normal(size=(N_WAVEFORMS, N_SAMPLES)) * 100).astype(dtype)


def _write_root_sim(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    """The CEPC layout: tree ``sim``, jagged int branch ``wf_i``, filled in two baskets."""
    rows = _jagged_rows("int16")
    path = tmp_path / "sim.root"
    with uproot.recreate(path) as file:
        file.mktree("sim", {"wf_i": "var * int16", "event": "int64"})
        file["sim"].extend({"wf_i": ak.Array(rows[:5]), "event": np.arange(5)})
        file["sim"].extend({"wf_i": ak.Array(rows[5:]), "event": np.arange(5, N_WAVEFORMS)})
    return WaveformSource.from_path(path), rows


def _write_root_fixed(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    block = _block("float64")
    path = tmp_path / "fixed.root"
    with uproot.recreate(path) as file:
        file.mktree("waves", {"adc": ("f8", (N_SAMPLES,)), "run": "int32"})
        file["waves"].extend({"adc": block, "run": np.zeros(N_WAVEFORMS, dtype=np.int32)})
    return WaveformSource.from_path(path), list(block)


def _write_root_rntuple(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    """uproot 5.7 writes a dict of arrays as an RNTuple."""
    rows = _jagged_rows("float32")
    path = tmp_path / "rntuple.root"
    with uproot.recreate(path) as file:
        file["sim"] = {"wf_i": ak.Array(rows), "event": np.arange(N_WAVEFORMS)}
    return WaveformSource.from_path(path), rows


def _write_hdf5(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    block = _block("int16")
    path = tmp_path / "waves.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("run1/adc", data=block, chunks=(5, N_SAMPLES), compression="gzip")
        file["run1/event"] = np.arange(N_WAVEFORMS)
        file.attrs["note"] = "attributes are not datasets"
    return WaveformSource.from_path(path), list(block)


def _write_parquet(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    rows = _jagged_rows("float32")
    table = pa.table(
        {
            "event": pa.array(np.arange(N_WAVEFORMS)),
            "samples": pa.array([r.tolist() for r in rows], type=pa.list_(pa.float32())),
        }
    )
    path = tmp_path / "waves.parquet"
    pq.write_table(table, path, row_group_size=5)
    return WaveformSource.from_path(path), rows


def _write_parquet_fixed_size(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    block = _block("int32")
    column = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), N_SAMPLES)
    path = tmp_path / "fixed.pq"
    pq.write_table(pa.table({"adc": column}), path, row_group_size=4)
    return WaveformSource.from_path(path), list(block)


def _write_npz(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    block = _block("float32")
    path = tmp_path / "stored.npz"
    np.savez(path, event=np.arange(N_WAVEFORMS), adc=block)
    return WaveformSource.from_path(path), list(block)


def _write_npz_compressed(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    block = _block(">i4")
    path = tmp_path / "compressed.npz"
    np.savez_compressed(path, waveforms=block, pedestals=np.zeros((N_WAVEFORMS, 2)))
    return WaveformSource.from_path(path), list(block)


def _write_npz_fortran(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    block = np.asfortranarray(_block("float64"))
    np.savez(tmp_path / "fortran.npz", waveforms=block)
    return WaveformSource.from_path(tmp_path / "fortran.npz"), list(block)


def _write_npz_compressed_fortran(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    block = np.asfortranarray(_block("float64"))
    np.savez_compressed(tmp_path / "fortran_z.npz", waveforms=block)
    return WaveformSource.from_path(tmp_path / "fortran_z.npz"), list(block)


WRITERS: dict[str, Writer] = {
    "root-sim-jagged": _write_root_sim,
    "root-fixed": _write_root_fixed,
    "root-rntuple": _write_root_rntuple,
    "hdf5": _write_hdf5,
    "parquet-list": _write_parquet,
    "parquet-fixed-size-list": _write_parquet_fixed_size,
    "npz-stored": _write_npz,
    "npz-compressed": _write_npz_compressed,
    "npz-stored-fortran": _write_npz_fortran,
    "npz-compressed-fortran": _write_npz_compressed_fortran,
}

EXPECTED_LOCATION = {
    "root-sim-jagged": {"tree": "sim", "branch": "wf_i"},
    "root-fixed": {"tree": "waves", "branch": "adc"},
    "root-rntuple": {"tree": "sim", "branch": "wf_i"},
    "hdf5": {"dataset": "run1/adc"},
    "parquet-list": {"column": "samples"},
    "parquet-fixed-size-list": {"column": "adc"},
    "npz-stored": {"array": "adc"},
    "npz-compressed": {"array": "waveforms"},
    "npz-stored-fortran": {"array": "waveforms"},
    "npz-compressed-fortran": {"array": "waveforms"},
}


def _assert_rows(samples: Ragged, expected: Rows) -> None:
    assert samples.values.dtype == np.float64
    assert samples.lengths.tolist() == [len(row) for row in expected]
    for got, want in zip(samples, expected, strict=True):
        np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float64))


def _assert_same_chunk(got: WaveformChunk, want: WaveformChunk) -> None:
    assert got.first_event == want.first_event
    np.testing.assert_array_equal(got.samples.offsets, want.samples.offsets)
    np.testing.assert_array_equal(got.samples.values, want.samples.values)


def _raises(*fragments: str | Path) -> pytest.RaisesExc[InputError]:
    """Expect an InputError whose message holds every fragment, in order."""
    return pytest.raises(InputError, match=".*".join(re.escape(str(f)) for f in fragments))


@pytest.mark.parametrize("kind", list(WRITERS))
@pytest.mark.parametrize("chunk_size", [1, 3, 4, 5, 7, N_WAVEFORMS, 100])
def test_iter_chunks_returns_the_stored_waveforms(
    tmp_path: Path, kind: str, chunk_size: int
) -> None:
    source, rows = WRITERS[kind](tmp_path)
    chunks = list(iter_chunks(source, chunk_size))
    starts = list(range(0, N_WAVEFORMS, chunk_size))
    assert [chunk.first_event for chunk in chunks] == starts
    assert [len(chunk.samples) for chunk in chunks] == [
        min(chunk_size, N_WAVEFORMS - start) for start in starts
    ]
    _assert_rows(Ragged.concatenate([chunk.samples for chunk in chunks]), rows)
    for chunk in chunks:
        stop = chunk.first_event + len(chunk.samples)
        _assert_same_chunk(read_chunk(source, chunk.first_event, stop), chunk)


@pytest.mark.parametrize("kind", list(WRITERS))
def test_defaults_counts_and_random_access(tmp_path: Path, kind: str) -> None:
    source, rows = WRITERS[kind](tmp_path)
    resolved = resolve_source(source)
    assert resolved == WaveformSource(source.path, source.format, **EXPECTED_LOCATION[kind])
    assert count_waveforms(source) == N_WAVEFORMS
    assert count_waveforms(resolved) == N_WAVEFORMS
    for start, stop in [(2, 9), (11, 12), (0, 0), (N_WAVEFORMS, N_WAVEFORMS)]:
        chunk = read_chunk(resolved, start, stop)
        assert chunk.first_event == start
        _assert_rows(chunk.samples, rows[start:stop])


@pytest.mark.parametrize("kind", ["root-sim-jagged", "hdf5", "parquet-list", "npz-compressed"])
@pytest.mark.parametrize("start, stop", [(-1, 3), (5, 4), (0, N_WAVEFORMS + 1)])
def test_read_chunk_rejects_ranges_outside_the_file(
    tmp_path: Path, kind: str, start: int, stop: int
) -> None:
    source, _ = WRITERS[kind](tmp_path)
    with _raises(source.path, f"entries [{start}, {stop})", f"holds {N_WAVEFORMS} entries"):
        read_chunk(source, start, stop)


@pytest.mark.parametrize("kind", ["root-sim-jagged", "hdf5", "parquet-list", "npz-compressed"])
def test_read_ahead_gives_the_range_in_blocks_as_read_chunk_reads_them(
    tmp_path: Path, kind: str
) -> None:
    source, _ = WRITERS[kind](tmp_path)
    blocks = list(read_ahead(source, 1, N_WAVEFORMS, 5))
    # The ROOT file is one basket, which a block never cuts.
    starts = [1] if kind.startswith("root") else [1, 6, 11]
    assert [block.first_event for block in blocks] == starts
    for block, stop in zip(blocks, [*starts[1:], N_WAVEFORMS], strict=True):
        _assert_same_chunk(block, read_chunk(source, block.first_event, stop))
    with _raises(source.path, "entries [0, 13)", f"holds {N_WAVEFORMS} entries"):
        list(read_ahead(source, 0, N_WAVEFORMS + 1, 5))
    with pytest.raises(ValueError, match="block_size"):
        read_ahead(source, 0, N_WAVEFORMS, 0)


def test_read_ahead_ends_blocks_on_root_baskets(tmp_path: Path) -> None:
    source, rows = _write_big_root(tmp_path)
    blocks = list(read_ahead(source, 20, 230, 60))
    # Baskets of 50 entries: a block of 60 runs on to the end of its second basket.
    assert [(b.first_event, len(b.samples)) for b in blocks] == [(20, 80), (100, 100), (200, 30)]
    for block in blocks:
        for row, samples in enumerate(block.samples):
            np.testing.assert_array_equal(samples, rows[block.first_event + row])


def test_read_ahead_stops_reading_when_the_caller_stops(tmp_path: Path) -> None:
    source, _ = _write_hdf5(tmp_path)
    blocks = read_ahead(source, 0, N_WAVEFORMS, 2)
    assert next(blocks).first_event == 0
    blocks.close()
    assert not [t for t in threading.enumerate() if t.name == f"read {source.path.name}"]


def test_read_ahead_raises_the_damaged_block_where_it_is_taken(tmp_path: Path) -> None:
    source, _ = _write_big_root(tmp_path)
    data = source.path.read_bytes()
    source.path.write_bytes(data[: len(data) // 2])
    with _raises(source.path, "truncated or damaged"):
        for _ in read_ahead(source, 0, 300, 64):
            pass


def test_chunk_size_must_be_positive(tmp_path: Path) -> None:
    source, _ = _write_hdf5(tmp_path)
    with pytest.raises(ValueError, match="chunk_size"):
        iter_chunks(source, 0)


def test_root_tree_in_a_directory_and_explicit_names(tmp_path: Path) -> None:
    rows = _jagged_rows("float64")
    path = tmp_path / "dirs.root"
    with uproot.recreate(path) as file:
        file.mktree("run/sim", {"wf_i": "var * float64", "wf_q": "var * float64"})
        file["run/sim"].extend({"wf_i": ak.Array(rows), "wf_q": ak.Array(rows) * 2})
    source = WaveformSource.from_path(path, branch="wf_q")
    assert resolve_source(source).tree == "run/sim"
    _assert_rows(read_chunk(source, 0, N_WAVEFORMS).samples, [row * 2 for row in rows])


@pytest.mark.parametrize(
    ("suffix", "fmt"),
    [
        (".root", "root"),
        (".h5", "hdf5"),
        (".HDF5", "hdf5"),
        (".hdf", "hdf5"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
        (".npz", "npz"),
    ],
)
def test_detect_format(suffix: str, fmt: str) -> None:
    assert detect_format(f"data/run{suffix}") == fmt
    assert fmt in WAVEFORM_FORMATS


def test_detect_format_names_the_file_and_suffix() -> None:
    with _raises("data/run.csv", "'.csv'", ".root"):
        detect_format("data/run.csv")


def test_source_rejects_unknown_format_and_foreign_keys() -> None:
    with _raises("a.dat", "unknown format 'csv'", "root, hdf5, parquet, npz"):
        WaveformSource(Path("a.dat"), "csv")
    with _raises("a.npz", "'column' applies to parquet", "npz"):
        WaveformSource.from_path("a.npz", column="adc")
    assert WaveformSource("a.h5", "hdf5").path == Path("a.h5")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["gone.root", "gone.h5", "gone.parquet", "gone.npz"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    source = WaveformSource.from_path(tmp_path / name)
    with _raises(tmp_path / name, "no such file"):
        count_waveforms(source)
    with _raises(tmp_path / name, "no such file"):
        next(iter_chunks(source, 4))
    with _raises(tmp_path / name, "no such file"):
        read_chunk(source, 0, 1)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.h5").mkdir()
    with _raises(tmp_path / "dir.h5", "not a regular file"):
        count_waveforms(WaveformSource.from_path(tmp_path / "dir.h5"))


@pytest.mark.parametrize(
    ("name", "label"),
    [("x.root", "ROOT"), ("x.h5", "HDF5"), ("x.parquet", "Parquet"), ("x.npz", "NPZ")],
)
def test_file_of_another_format(tmp_path: Path, name: str, label: str) -> None:
    (tmp_path / name).write_text("event,adc\n0,1\n")
    with _raises(tmp_path / name, f"not a readable {label} file"):
        count_waveforms(WaveformSource.from_path(tmp_path / name))


def _write_big_root(tmp_path: Path) -> tuple[WaveformSource, Rows]:
    """Enough data that half of the file cuts into the baskets."""
    rng = np.random.default_rng(3)
    rows = [rng.normal(size=200) for _ in range(300)]
    path = tmp_path / "big.root"
    with uproot.recreate(path) as file:
        file.mktree("sim", {"wf_i": "var * float64"})
        for start in range(0, 300, 50):
            file["sim"].extend({"wf_i": ak.Array(rows[start : start + 50])})
    return WaveformSource.from_path(path), rows


@pytest.mark.parametrize(
    "writer", [_write_big_root, _write_hdf5, _write_parquet, _write_npz, _write_npz_compressed]
)
def test_truncated_file(tmp_path: Path, writer: Writer) -> None:
    source, _ = writer(tmp_path)
    data = source.path.read_bytes()
    source.path.write_bytes(data[: len(data) // 2])
    with _raises(source.path, "truncated or damaged"):
        for _ in iter_chunks(source, 64):
            pass


def test_truncated_root_names_the_entries(tmp_path: Path) -> None:
    source, _ = _write_big_root(tmp_path)
    data = source.path.read_bytes()
    source.path.write_bytes(data[: len(data) // 2])
    with _raises(source.path, "entries", "of branch 'wf_i' of tree 'sim'", "truncated"):
        read_chunk(source, 250, 300)


def test_root_wrong_names(tmp_path: Path) -> None:
    source, _ = _write_root_sim(tmp_path)
    with _raises(source.path, "no tree 'events'", "'sim'"):
        count_waveforms(WaveformSource.from_path(source.path, tree="events"))
    with _raises(source.path, "tree 'sim' has no branch 'wf'", "'wf_i' (int16_t[])", "'event'"):
        count_waveforms(WaveformSource.from_path(source.path, branch="wf"))
    with _raises(source.path, "branch 'event' of tree 'sim' has type int64_t", "array of numbers"):
        count_waveforms(WaveformSource.from_path(source.path, branch="event"))


def test_root_string_field_is_not_numeric(tmp_path: Path) -> None:
    path = tmp_path / "strings.root"
    with uproot.recreate(path) as file:
        file["sim"] = {"label": ak.Array(["a", "bc", "d"]), "wf_i": ak.Array([[1], [2], [3]])}
    with _raises(path, "branch 'label' of tree 'sim' has type std::string"):
        count_waveforms(WaveformSource.from_path(path, branch="label"))
    assert resolve_source(WaveformSource.from_path(path)).branch == "wf_i"


def test_root_ambiguous_and_missing_defaults(tmp_path: Path) -> None:
    path = tmp_path / "two.root"
    with uproot.recreate(path) as file:
        file.mktree("a", {"wf_i": "var * float32", "wf_q": ("f4", (3,))})
        file["a"].extend({"wf_i": ak.Array([[1.0], []]), "wf_q": np.zeros((2, 3), "f4")})
        file.mktree("b", {"x": "int32"})
        file["b"].extend({"x": np.arange(2, dtype=np.int32)})
        file["h"] = np.histogram(np.arange(4.0))
    with _raises(path, "several trees ('a', 'b')", "--tree"):
        count_waveforms(WaveformSource.from_path(path))
    with _raises(path, "tree 'a' has several branches", "'wf_i', 'wf_q'", "--branch"):
        count_waveforms(WaveformSource.from_path(path, tree="a"))
    with _raises(path, "tree 'b' has no branch holding an array", "'x' (int32_t)"):
        count_waveforms(WaveformSource.from_path(path, tree="b"))
    with _raises(path, "'h' is a TH1D, not a TTree or RNTuple"):
        count_waveforms(WaveformSource.from_path(path, tree="h"))
    assert count_waveforms(WaveformSource.from_path(path, tree="a", branch="wf_q")) == 2


def test_root_without_trees(tmp_path: Path) -> None:
    path = tmp_path / "histo.root"
    with uproot.recreate(path) as file:
        file["h"] = np.histogram(np.arange(4.0))
    with _raises(path, "holds no TTree or RNTuple", "'h' (TH1D)"):
        count_waveforms(WaveformSource.from_path(path))


def test_hdf5_wrong_names_types_and_ranks(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as file:
        file["cube"] = np.zeros((2, 3, 4))
        file["labels"] = np.array([[b"ab", b"cd"], [b"ef", b"gh"]])
        file["grid/a"] = np.zeros((2, 3))
        file["grid/b"] = np.zeros((2, 3))
    with _raises(path, "no dataset 'adc'", "'cube' (2, 3, 4) float64", "'grid/a'"):
        count_waveforms(WaveformSource.from_path(path, dataset="adc"))
    with _raises(path, "no dataset 'grid'", "'grid/b'"):
        count_waveforms(WaveformSource.from_path(path, dataset="grid"))
    with _raises(path, "dataset 'cube' has shape (2, 3, 4) (3-D), expected 2-D"):
        count_waveforms(WaveformSource.from_path(path, dataset="/cube"))
    with _raises(path, "dataset 'labels' holds |S2, expected integers or floats"):
        count_waveforms(WaveformSource.from_path(path, dataset="labels"))
    with _raises(path, "several 2-D numeric datasets", "'grid/a', 'grid/b'", "--dataset"):
        count_waveforms(WaveformSource.from_path(path))
    assert count_waveforms(WaveformSource.from_path(path, dataset="/grid/b")) == 2


def test_parquet_wrong_names_and_types(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    table = pa.table(
        {
            "event": pa.array([0, 1]),
            "tags": pa.array([["a"], ["b", "c"]]),
            "wf_a": pa.array([[1.0], [2.0]]),
            "wf_b": pa.array([[1], [2, 3]], type=pa.large_list(pa.int16())),
        }
    )
    pq.write_table(table, path)
    with _raises(path, "no column 'adc'", "'event' (int64)", "'wf_b'"):
        count_waveforms(WaveformSource.from_path(path, column="adc"))
    with _raises(path, "column 'tags' has type list<element: string>", "list of integers"):
        count_waveforms(WaveformSource.from_path(path, column="tags"))
    with _raises(path, "column 'event' has type int64"):
        count_waveforms(WaveformSource.from_path(path, column="event"))
    with _raises(path, "several columns of lists of numbers ('wf_a', 'wf_b')", "--column"):
        count_waveforms(WaveformSource.from_path(path))
    chunk = read_chunk(WaveformSource.from_path(path, column="wf_b"), 0, 2)
    _assert_rows(chunk.samples, [np.array([1]), np.array([2, 3])])


def test_parquet_nulls_become_empty_rows_and_nan(tmp_path: Path) -> None:
    path = tmp_path / "nulls.parquet"
    column = pa.array([[1, 2], None, [3, None], []], type=pa.list_(pa.int32()))
    pq.write_table(pa.table({"adc": column}), path, row_group_size=3)
    chunk = read_chunk(WaveformSource.from_path(path), 1, 4)
    assert chunk.samples.lengths.tolist() == [0, 2, 0]
    ok, reasons = validate_rows(chunk.samples)
    assert ok.tolist() == [False, False, False]
    assert [row for row, _ in reasons] == [0, 1, 2]
    assert "NaN or inf" in reasons[1][1]


def test_npz_wrong_names_types_and_ranks(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(
        path,
        a=np.zeros((2, 3)),
        b=np.ones((2, 3), dtype=np.int8),
        cube=np.zeros((2, 3, 4)),
        names=np.array([["x", "y"], ["z", "w"]]),
    )
    with _raises(path, "no array 'waveforms'", "'a' (2, 3) float64", "'names'"):
        count_waveforms(WaveformSource.from_path(path, array="waveforms"))
    with _raises(path, "several 2-D numeric arrays ('a', 'b')", "'waveforms'", "--array"):
        count_waveforms(WaveformSource.from_path(path))
    with _raises(path, "array 'cube' has shape (2, 3, 4) (3-D), expected 2-D"):
        count_waveforms(WaveformSource.from_path(path, array="cube"))
    with _raises(path, "array 'names' holds <U1, expected integers or floats"):
        count_waveforms(WaveformSource.from_path(path, array="names"))
    chunk = read_chunk(WaveformSource.from_path(path, array="b"), 0, 2)
    _assert_rows(chunk.samples, [np.ones(3), np.ones(3)])


def test_validate_rows_flags_empty_and_non_finite_rows() -> None:
    values = np.array([1.0, 2.0, 3.0, np.nan, 5.0, 6.0, -np.inf, 7.0, np.inf])
    samples = Ragged.from_lengths(values, [3, 0, 2, 1, 3])
    ok, reasons = validate_rows(samples)
    assert ok.dtype == np.bool_
    assert ok.tolist() == [True, False, False, True, False]
    assert reasons == [
        (1, "length 0"),
        (2, "NaN or inf samples: 1 of 2, first at sample 0"),
        (4, "NaN or inf samples: 2 of 3, first at sample 0"),
    ]


def test_validate_rows_of_a_good_chunk(tmp_path: Path) -> None:
    source, _ = _write_hdf5(tmp_path)
    ok, reasons = validate_rows(read_chunk(source, 0, N_WAVEFORMS).samples)
    assert ok.all()
    assert reasons == []
