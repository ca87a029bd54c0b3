"""Reading users' waveform files (ROOT, HDF5, Parquet, NPZ) chunk by chunk.

A :class:`WaveformSource` names a file, its format and where in the file the
waveforms are (a ROOT tree and branch, an HDF5 dataset, a Parquet column or an
NPZ array). Locations left out are found when the file is opened: the only
tree, the only branch / dataset / column / array that holds one array of
numbers per waveform. :func:`resolve_source` fills them in, so a flow can
report what it reads and hand a fixed location to its workers.

Waveforms come out as :class:`WaveformChunk`: the entry index of the chunk's
first waveform in the file and a :class:`~dndx.ragged.Ragged` of float64
samples, one row per waveform. Rows may differ in length (ROOT jagged branches,
Parquet lists). Nothing reads a whole file into memory: each format has its
module behind the reader interface of :mod:`dndx.io.source`
(:class:`~dndx.io.source.WaveformReader`):

- ROOT (:mod:`dndx.io.root`, uproot): a TTree or RNTuple branch read per entry range.
- HDF5 (:mod:`dndx.io.hdf5`, h5py): slices of a 2-D dataset ``(n_waveforms, n_samples)``.
- Parquet (:mod:`dndx.io.parquet`, pyarrow): ``iter_batches`` for iteration,
  row groups for ranges.
- NPZ (:mod:`dndx.io.npz`): an array read as a stream of its rows;
  :func:`read_chunk` reads and discards the rows before ``start``, which costs
  time but no memory.

Every problem with a file (missing, unreadable, truncated, wrong location name,
wrong type or rank) raises :class:`~dndx.errors.InputError` naming the file,
the location, the entries where relevant, and the problem. Problems with single
waveforms do not raise: :func:`validate_rows` says which rows are usable and
why the others are not, so one bad waveform does not stop a good file.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dndx.errors import InputError
from dndx.io.hdf5 import Hdf5Reader
from dndx.io.npz import NpzReader
from dndx.io.parquet import ParquetReader
from dndx.io.root import RootReader
from dndx.io.source import (
    LOCATION_KEYS,
    PER_WAVEFORM_KEYS,
    WAVEFORM_FORMATS,
    WaveformReader,
    WaveformSource,
    detect_format,
    missing_file,
)
from dndx.ragged import Ragged

__all__ = [
    "LOCATION_KEYS",
    "PER_WAVEFORM_KEYS",
    "RATE_COLUMN_NAMES",
    "READERS",
    "WAVEFORM_FORMATS",
    "WaveformChunk",
    "WaveformSource",
    "count_waveforms",
    "detect_format",
    "find_rate_column",
    "iter_chunks",
    "missing_file",
    "read_ahead",
    "read_chunk",
    "resolve_source",
    "stored_rates",
]

#: Names of a stored per-waveform sampling rate in GS/s, as the labelled
#: layouts write it (:mod:`dndx.io.labelled`: ``dndx``, then ``cepc``).
RATE_COLUMN_NAMES: tuple[str, ...] = ("sampling_rate_ghz", "sampling_rate")

#: The reader of each format in :data:`WAVEFORM_FORMATS`.
READERS: dict[str, type[WaveformReader]] = {
    "root": RootReader,
    "hdf5": Hdf5Reader,
    "parquet": ParquetReader,
    "npz": NpzReader,
}


@dataclass(frozen=True, eq=False)
class WaveformChunk:
    """Consecutive waveforms of one file.

    Attributes:
        first_event: entry index in the file of the first row of ``samples``.
        samples: ``(n_rows, <row length>)`` float64 samples, one row per
            waveform; row ``i`` is entry ``first_event + i`` of the file.
        track_id: ``(n_rows,)`` int64 track of each row, where the source
            names a track column.
        path_cm: ``(n_rows,)`` float64 path length of each row, where the
            source names a path column.
        sampling_rate_ghz: ``(n_rows,)`` float64 sampling rate of each row,
            where the source names a rate column.
    """

    first_event: int
    samples: Ragged
    track_id: NDArray[np.int64] | None = None
    path_cm: NDArray[np.float64] | None = None
    sampling_rate_ghz: NDArray[np.float64] | None = None


def resolve_source(source: WaveformSource) -> WaveformSource:
    """``source`` with every location key of its format filled in from the file,
    and its track and path columns checked.

    Raises:
        InputError: the file is missing or unreadable, a named location does
            not exist or holds no usable waveforms, or a default is ambiguous;
            a named track or path column is missing, holds no number per
            waveform, or a track id that is not whole or a path length that
            is not positive and finite.
    """
    with _open(source) as opened:
        if source.track_column is not None:
            ids = _column(opened, "track_column")(0, opened.n_events)
            _track_ids(ids, source.path, source.track_column)
        if source.path_column is not None:
            lengths = _column(opened, "path_column")(0, opened.n_events)
            _path_lengths(lengths, source.path, source.path_column)
        if source.rate_column is not None:
            rates = _column(opened, "rate_column")(0, opened.n_events)
            _positive(
                rates, source.path, f"sampling-rate column {source.rate_column!r}", "rates in GS/s"
            )
        return opened.source


def find_rate_column(source: WaveformSource) -> str | None:
    """The name of the first of :data:`RATE_COLUMN_NAMES` that holds one number
    per waveform beside the waveforms of ``source`` (a resolved source; in an
    HDF5 file, in the waveforms' group), or None.

    Raises:
        InputError: as :func:`resolve_source`.
    """
    prefix = (source.dataset or "").rpartition("/")[0]
    with _open(source) as opened:
        for name in RATE_COLUMN_NAMES:
            candidate = f"{prefix}/{name}" if prefix else name
            try:
                opened.per_waveform(candidate, "the rate column")
            except InputError:
                continue
            return candidate
    return None


def stored_rates(source: WaveformSource) -> NDArray[np.float64]:
    """``(n_waveforms,)`` the sampling rate of every waveform of ``source``, in
    GS/s, from its rate column.

    Raises:
        InputError: as :func:`resolve_source`; the source names no rate column.
    """
    if source.rate_column is None:
        raise InputError(f"{source.path}: no sampling-rate column named")
    with _open(source) as opened:
        rates = _column(opened, "rate_column")(0, opened.n_events)
        return _positive(
            rates, source.path, f"sampling-rate column {source.rate_column!r}", "rates in GS/s"
        )


def _positive(values: NDArray, path: Path, column: str, expected: str) -> NDArray[np.float64]:
    """``values`` as float64, each positive and finite.

    Raises:
        InputError: a value that is not positive and finite, named with its entry.
    """
    numbers = values.astype(np.float64)
    bad = ~(np.isfinite(numbers) & (numbers > 0))
    if bad.any():
        entry = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{path}: {column} holds {numbers[entry].item()!r} at entry {entry}; "
            f"expected positive {expected}"
        )
    return numbers


def _path_lengths(values: NDArray, path: Path, name: str) -> NDArray[np.float64]:
    """``values`` as float64 path lengths (see :func:`_positive`)."""
    return _positive(values, path, f"path column {name!r}", "path lengths in cm")


def _track_ids(values: NDArray, path: Path, name: str) -> NDArray[np.int64]:
    """``values`` as int64 track ids.

    Raises:
        InputError: a value that is not a whole number, named with its entry.
    """
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    whole = np.isfinite(values) & (values == np.round(values))
    if not whole.all():
        entry = int(np.flatnonzero(~whole)[0])
        raise InputError(
            f"{path}: track column {name!r} holds {values[entry].item()!r} at entry {entry}; "
            "expected whole numbers (integer track ids)"
        )
    return values.astype(np.int64)


def count_waveforms(source: WaveformSource) -> int:
    """The number of waveforms (entries) in the file, from its metadata.

    Raises:
        InputError: as :func:`resolve_source`.
    """
    with _open(source) as opened:
        return opened.n_events


def iter_chunks(source: WaveformSource, chunk_size: int) -> Iterator[WaveformChunk]:
    """The waveforms of ``source`` in chunks of ``chunk_size`` (the last may be shorter).

    Chunk ``k`` holds entries ``[k * chunk_size, min((k + 1) * chunk_size,
    n_waveforms))``, the same as ``read_chunk(source, k * chunk_size, ...)``.
    The file stays open while iterating; one chunk at a time is in memory
    (except for a Fortran-ordered compressed NPZ member, see the module).

    Raises:
        ValueError: ``chunk_size`` < 1 (raised at the call).
        InputError: as :func:`resolve_source`, or when a chunk cannot be read
            (the message names its entries); raised while iterating.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return _iter_chunks(source, chunk_size)


def _iter_chunks(source: WaveformSource, chunk_size: int) -> Iterator[WaveformChunk]:
    with _open(source) as opened:
        first_event = 0
        for samples in opened.iterate(chunk_size):
            yield WaveformChunk(first_event, samples)
            first_event += len(samples)


def read_chunk(source: WaveformSource, start: int, stop: int) -> WaveformChunk:
    """Entries ``[start, stop)`` of ``source``; opens and closes the file itself.

    Meant for workers that each read their own entry range of one file.

    Raises:
        InputError: as :func:`resolve_source`; the range is not within
            ``[0, n_waveforms]``; or the entries cannot be read.
    """
    with _open(source) as opened:
        _check_range(opened, start, stop)
        return _read_range(opened, start, stop)


def read_ahead(
    source: WaveformSource, start: int, stop: int, block_size: int
) -> Generator[WaveformChunk, None, None]:
    """Entries ``[start, stop)`` of ``source`` as consecutive blocks of about
    ``block_size``, each read in a thread while the caller works on the one before.

    A block ends where one of the file's units of storage (a ROOT basket) does,
    the first at or after ``block_size`` entries (or at ``stop``), so that no
    unit is decompressed twice (see :func:`_blocks`).

    Reading overlaps compute, and memory holds two blocks at most: the
    caller's and the next. The file is opened once, in the thread, and closed
    when the last block is read or the caller closes the generator.

    Raises:
        ValueError: ``block_size`` < 1 (raised at the call).
        InputError: as :func:`read_chunk`, raised where the caller takes the
            block that could not be read.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    return _read_ahead(source, start, stop, block_size)


_DONE = object()


def _read_ahead(
    source: WaveformSource, start: int, stop: int, block_size: int
) -> Generator[WaveformChunk, None, None]:
    blocks: queue.SimpleQueue[Any] = queue.SimpleQueue()
    # The reader may start a block once the caller has taken the one before.
    may_read = threading.Semaphore(1)
    closed = threading.Event()

    def read() -> None:
        try:
            with _open(source) as opened:
                _check_range(opened, start, stop)
                for first, last in _blocks(start, stop, block_size, opened.boundaries):
                    may_read.acquire()
                    if closed.is_set():
                        return
                    blocks.put(_read_range(opened, first, last))
            blocks.put(_DONE)
        except BaseException as error:
            # Raised in the caller, where it takes the block that failed.
            blocks.put(error)

    reader = threading.Thread(target=read, name=f"read {source.path.name}", daemon=True)
    reader.start()
    try:
        while (block := blocks.get()) is not _DONE:
            if isinstance(block, BaseException):
                raise block
            may_read.release()
            yield block
    finally:
        closed.set()
        may_read.release()
        reader.join()


def _blocks(
    start: int, stop: int, block_size: int, boundaries: Sequence[int]
) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` as consecutive ranges of at least ``block_size`` entries
    (the last may be shorter), each ending on the first of ``boundaries`` at or
    after ``block_size`` entries, or at ``stop``.

    >>> list(_blocks(0, 2000, 512, [0, 1000, 2000]))
    [(0, 1000), (1000, 2000)]
    >>> list(_blocks(150, 1000, 300, [0, 100, 200, 300, 400, 500, 600, 700, 800, 900]))
    [(150, 500), (500, 800), (800, 1000)]
    >>> list(_blocks(0, 5, 2, []))
    [(0, 2), (2, 4), (4, 5)]
    """
    ends = np.asarray(boundaries, dtype=np.int64)
    first = start
    while first < stop:
        last = first + block_size
        after = ends[ends >= last]
        last = min(int(after[0]) if len(after) else last, stop)
        yield first, last
        first = last


def _check_range(opened: WaveformReader, start: int, stop: int) -> None:
    if not 0 <= start <= stop <= opened.n_events:
        raise InputError(
            f"{opened.source.path}: entries [{start}, {stop}) requested, "
            f"the file holds {opened.n_events} entries"
        )


def _read_range(opened: WaveformReader, start: int, stop: int) -> WaveformChunk:
    """Entries ``[start, stop)`` of an open file, with their track and path columns."""
    source = opened.source
    track_id = path_cm = None
    if source.track_column is not None:
        ids = _column(opened, "track_column")(start, stop)
        track_id = _track_ids(ids, source.path, source.track_column)
    if source.path_column is not None:
        lengths = _column(opened, "path_column")(start, stop)
        path_cm = _path_lengths(lengths, source.path, source.path_column)
    rates = None
    if source.rate_column is not None:
        stored = _column(opened, "rate_column")(start, stop)
        column = f"sampling-rate column {source.rate_column!r}"
        rates = _positive(stored, source.path, column, "rates in GS/s")
    return WaveformChunk(start, opened.read(start, stop), track_id, path_cm, rates)


def _column(opened: WaveformReader, key: str) -> Callable[[int, int], NDArray]:
    """The reader of the column the source names for ``key``, one of
    :data:`PER_WAVEFORM_KEYS` (see :meth:`WaveformReader.per_waveform`)."""
    name = getattr(opened.source, key)
    if name is None:
        raise ValueError(f"{opened.source.path}: no {key} named")
    return opened.per_waveform(name, f"the {key.replace('_', ' ')}")


@contextlib.contextmanager
def _open(source: WaveformSource) -> Iterator[WaveformReader]:
    path = source.path
    if not path.exists():
        raise missing_file(path)
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    with READERS[source.format](source) as opened:
        yield opened
