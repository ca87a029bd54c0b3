"""Parquet files (pyarrow): ``iter_batches`` for iteration, row groups for ranges.

:class:`ParquetReader` reads the waveforms of a column of lists of numbers;
:class:`ParquetTable` reads named columns as the labelled layouts do. Both
open the file through :func:`open_parquet` and read a range of entries from
only the row groups that hold it, so a chunk costs its own size, not the file's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from dndx.errors import InputError
from dndx.io.source import (
    Table,
    WaveformReader,
    WaveformSource,
    entries,
    library_errors,
    listing,
    quoted,
    unreadable,
)
from dndx.ragged import Ragged

__all__ = ["ParquetReader", "ParquetTable", "open_parquet"]


def open_parquet(path: Path, stack: contextlib.ExitStack) -> tuple[pq.ParquetFile, NDArray]:
    """The Parquet file at ``path``, open until ``stack`` closes, and
    ``(n_row_groups + 1,)`` the first row of each row group, then the row count.

    Raises:
        InputError: the file is no readable Parquet file.
    """
    with library_errors(path, "is not a readable Parquet file: wrong format, truncated or damaged"):
        file = stack.enter_context(pq.ParquetFile(path))
        rows = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
    return file, np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])


class ParquetReader(WaveformReader):
    """The waveforms of one column of lists of numbers."""

    def open(self, source: WaveformSource) -> WaveformSource:
        path = source.path
        self.file, self.group_starts = open_parquet(path, self.stack)
        self.n_events = int(self.file.metadata.num_rows)
        self.types = {field.name: field.type for field in self.file.schema_arrow}
        self.described = listing(f"{name!r} ({kind})" for name, kind in self.types.items())
        column = source.column
        if column is None:
            usable = [name for name, kind in self.types.items() if _is_numeric_list(kind)]
            if len(usable) != 1:
                several = "several" if usable else "no"
                raise InputError(
                    f"{path}: holds {several} columns of lists of numbers ({quoted(usable)}); "
                    f"choose one with --column. Columns: {self.described}"
                )
            column = usable[0]
        elif column not in self.types:
            raise InputError(f"{path}: no column {column!r}; columns: {self.described}")
        elif not _is_numeric_list(self.types[column]):
            raise InputError(
                f"{path}: column {column!r} has type {self.types[column]}, "
                "expected a list of integers or floats per row"
            )
        self.column = column
        return replace(source, column=column)

    def read(self, start: int, stop: int) -> Ragged:
        if start == stop:
            return Ragged(np.zeros(0), np.zeros(1, dtype=np.int64))
        rows = _read_rows(self.source.path, self.file, self.group_starts, self.column, start, stop)
        return _ragged_from_arrow(rows)

    def per_waveform(self, name: str, role: str) -> Callable[[int, int], NDArray]:
        path = self.source.path
        if name not in self.types:
            raise InputError(f"{path}: no column {name!r} ({role}); columns: {self.described}")
        kind = self.types[name]
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise InputError(
                f"{path}: column {name!r} ({role}) has type {kind}, "
                "expected one integer or float per row"
            )

        def read_numbers(start: int, stop: int) -> NDArray:
            if start == stop:
                return np.zeros(0, kind.to_pandas_dtype())
            # A missing value reads as NaN, which the checks of the values name.
            rows = _read_rows(self.source.path, self.file, self.group_starts, name, start, stop)
            return np.asarray(rows.to_numpy(zero_copy_only=False))

        return read_numbers

    def iterate(self, chunk_size: int) -> Iterator[Ragged]:
        batches = self.file.iter_batches(batch_size=chunk_size, columns=[self.column])
        pending = pa.array([], type=self.types[self.column])
        position = 0
        while True:
            what = f"entries from {position + len(pending)} of column {self.column!r}"
            with library_errors(self.source.path, unreadable(what)):
                batch = next(batches, None)
            if batch is not None:
                pending = pa.concat_arrays([pending, batch.column(0)])
            while len(pending) >= chunk_size or (batch is None and len(pending) > 0):
                rows = pending.slice(0, chunk_size)
                pending = pending.slice(len(rows))
                position += len(rows)
                yield _ragged_from_arrow(rows)
            if batch is None:
                return


def _read_rows(
    path: Path, file: pq.ParquetFile, group_starts: NDArray, name: str, start: int, stop: int
) -> pa.Array:
    """Rows ``[start, stop)`` (``start < stop``) of column ``name``, from the row
    groups that hold them."""
    first = int(np.searchsorted(group_starts, start, side="right")) - 1
    last = int(np.searchsorted(group_starts, stop, side="left"))
    with library_errors(path, unreadable(f"{entries(start, stop)} of column {name!r}")):
        table = file.read_row_groups(list(range(first, last)), columns=[name])
        rows = table.column(0).slice(start - int(group_starts[first]), stop - start)
        return rows.combine_chunks()


def _is_numeric_list(kind: pa.DataType) -> bool:
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if not (is_list or pa.types.is_fixed_size_list(kind)):
        return False
    value_type = kind.value_type
    return bool(pa.types.is_integer(value_type) or pa.types.is_floating(value_type))


def _ragged_from_arrow(rows: pa.Array) -> Ragged:
    """A list array as a float64 Ragged; a null row is empty, a null sample NaN."""
    lengths = pc.list_value_length(rows).fill_null(0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(rows).to_numpy(zero_copy_only=False)
    return Ragged.from_lengths(np.asarray(flat, dtype=np.float64), lengths.astype(np.int64))


class ParquetTable(Table):
    """The columns of a Parquet file.

    Raises:
        InputError: the file is no readable Parquet file.
    """

    noun, nouns = "column", "columns"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        with self.stack:
            self.file, self.group_starts = open_parquet(path, self.stack)
            self.stack = self.stack.pop_all()
        self.n_entries = int(self.file.metadata.num_rows)
        self.kinds = {field.name: str(field.type) for field in self.file.schema_arrow}

    def read_columns(self, names: list[str], start: int, stop: int) -> dict[str, Any]:
        starts = self.group_starts
        # Only the row groups that hold the entries: a chunk costs its own size,
        # not the file's.
        groups = np.flatnonzero((starts[:-1] < stop) & (starts[1:] > start))
        where = f"{entries(start, stop)} of columns {names}"
        with library_errors(self.path, unreadable(where)):
            if len(groups):
                table = self.file.read_row_groups(groups.tolist(), columns=names)
                table = table.slice(start - starts[groups[0]], stop - start)
            else:
                table = self.file.schema_arrow.empty_table().select(names)
        return {name: ak.from_arrow(table[name]) for name in names}
