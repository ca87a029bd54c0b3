"""Tests of the reader interface (dndx.io.source) as each format module implements it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from dndx.errors import InputError
from dndx.io.hdf5 import Hdf5Reader, Hdf5Table
from dndx.io.parquet import ParquetTable
from dndx.io.readers import READERS
from dndx.io.root import RootTable
from dndx.io.source import LOCATION_KEYS, WAVEFORM_FORMATS, Table, WaveformReader, WaveformSource
from tests.labelled_files import cepc_branches, write_hdf5, write_parquet, write_tree

N_WAVEFORMS, N_SAMPLES = 7, 5
_BLOCK = np.arange(N_WAVEFORMS * N_SAMPLES, dtype=np.float32).reshape(N_WAVEFORMS, N_SAMPLES)
_TRACKS = np.arange(N_WAVEFORMS, dtype=np.int64) // 3


def _root(path: Path) -> None:
    with uproot.recreate(path) as file:
        file.mktree("sim", {"wf_i": "var * float32", "track": "int64"})
        file["sim"].extend({"wf_i": ak.Array(list(_BLOCK[:4])), "track": _TRACKS[:4]})
        file["sim"].extend({"wf_i": ak.Array(list(_BLOCK[4:])), "track": _TRACKS[4:]})


def _hdf5(path: Path) -> None:
    with h5py.File(path, "w") as file:
        file.create_dataset("run/adc", data=_BLOCK)
        file.create_dataset("run/track", data=_TRACKS)


def _parquet(path: Path) -> None:
    table = pa.table({"adc": pa.array(list(_BLOCK)), "track": _TRACKS})
    pq.write_table(table, path, row_group_size=3)


def _npz(path: Path) -> None:
    np.savez_compressed(path, waveforms=_BLOCK, track=_TRACKS)


FILES: list[tuple[str, Callable[[Path], None], str]] = [
    ("w.root", _root, "track"),
    ("w.h5", _hdf5, "run/track"),
    ("w.parquet", _parquet, "track"),
    ("w.npz", _npz, "track"),
]


def test_every_format_has_a_reader_behind_the_interface() -> None:
    assert set(READERS) == set(WAVEFORM_FORMATS)
    assert all(issubclass(reader, WaveformReader) for reader in READERS.values())


@pytest.mark.parametrize(("name", "write", "track"), FILES)
def test_every_format_counts_reads_and_iterates_the_same_rows(
    tmp_path: Path, name: str, write: Callable[[Path], None], track: str
) -> None:
    write(tmp_path / name)
    source = WaveformSource.from_path(tmp_path / name)
    reader = READERS[source.format]
    with reader(source) as opened:
        assert opened.n_events == N_WAVEFORMS
        rows = opened.read(2, 6)
        np.testing.assert_array_equal(rows.values.reshape(4, N_SAMPLES), _BLOCK[2:6])
        chunks = list(opened.iterate(3))
        assert [len(chunk) for chunk in chunks] == [3, 3, 1]
        whole = np.concatenate([chunk.values for chunk in chunks])
        np.testing.assert_array_equal(whole, _BLOCK.reshape(-1))
        np.testing.assert_array_equal(
            opened.per_waveform(track, "the track column")(1, 5), _TRACKS[1:5]
        )
        assert all(getattr(opened.source, key) for key in LOCATION_KEYS[source.format])


def test_a_reader_that_cannot_open_its_location_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    _hdf5(path)
    with pytest.raises(InputError, match="no dataset 'missing'"):
        Hdf5Reader(WaveformSource(path, "hdf5", dataset="missing"))
    # h5py refuses to truncate a file this process still holds open.
    with h5py.File(path, "w") as file:
        file.create_dataset("adc", data=_BLOCK)


def test_closing_a_reader_closes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    _hdf5(path)
    with Hdf5Reader(WaveformSource(path, "hdf5")) as opened:
        assert opened.source.dataset == "run/adc"
        with pytest.raises(OSError), h5py.File(path, "w"):
            pass
    with h5py.File(path, "w"):
        pass


def _tables(tmp_path: Path) -> list[Table]:
    branches = cepc_branches()
    return [
        RootTable(write_tree(tmp_path / "t.root", branches), "sim", "names.tree"),
        Hdf5Table(write_hdf5(tmp_path / "t.h5", branches), "sim", "wf_i"),
        ParquetTable(write_parquet(tmp_path / "t.parquet", branches)),
    ]


def test_every_labelled_format_reads_the_same_columns(tmp_path: Path) -> None:
    expected = cepc_branches()
    for table in _tables(tmp_path):
        with table:
            assert table.n_entries == len(expected["ncls"])
            assert set(expected) <= set(table.kinds)
            read = table.read_columns(["ncls", "tag", "wf_i"], 1, 4)
            for name, values in read.items():
                assert ak.to_list(values) == ak.to_list(expected[name][1:4]), (table, name)


def test_a_table_names_the_place_of_its_columns(tmp_path: Path) -> None:
    path = write_hdf5(tmp_path / "t.h5", cepc_branches(), group=None)
    with Hdf5Table(path, "sim", "wf_i") as table:
        assert table.place == " at the file root (no group 'sim', names.tree)"
        assert (table.noun, table.nouns) == ("dataset", "datasets")
    with pytest.raises(InputError, match=r"no tree 'sim' \(the setting\); objects in the file"):
        RootTable(write_tree(tmp_path / "t.root", cepc_branches(), "events"), "sim", "the setting")
