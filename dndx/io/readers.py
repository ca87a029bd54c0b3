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
Parquet lists). Nothing reads a whole file into memory:

- ROOT (uproot): a TTree or RNTuple branch read per entry range.
- HDF5 (h5py): slices of a 2-D dataset ``(n_waveforms, n_samples)``.
- Parquet (pyarrow): ``iter_batches`` for iteration, row groups for ranges.
- NPZ: ``np.load`` opens the archive and lists its arrays; since it loads a
  member only whole, an array is read as a stream of its rows from the
  archive numpy opened: iteration reads it once from start to end;
  :func:`read_chunk` reads and discards the rows before ``start``, which costs
  time but no memory. An array in Fortran order has no contiguous rows and is
  read whole, then sliced.

Every problem with a file (missing, unreadable, truncated, wrong location name,
wrong type or rank) raises :class:`~dndx.errors.InputError` naming the file,
the location, the entries where relevant, and the problem. Problems with single
waveforms do not raise: :func:`validate_rows` says which rows are usable and
why the others are not, so one bad waveform does not stop a good file.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, cast

import awkward as ak
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import uproot
from numpy.typing import NDArray

from dndx.errors import DndxError, InputError
from dndx.ragged import Ragged

__all__ = [
    "LOCATION_KEYS",
    "PER_WAVEFORM_KEYS",
    "RATE_COLUMN_NAMES",
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

#: The file formats :func:`iter_chunks` reads.
WAVEFORM_FORMATS: tuple[str, ...] = ("root", "hdf5", "parquet", "npz")

_SUFFIX_FORMATS: dict[str, str] = {
    ".root": "root",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npz": "npz",
}

#: The location keys of each format, as :class:`WaveformSource` takes them.
LOCATION_KEYS: dict[str, tuple[str, ...]] = {
    "root": ("tree", "branch"),
    "hdf5": ("dataset",),
    "parquet": ("column",),
    "npz": ("array",),
}

#: The per-waveform columns a :class:`WaveformSource` may name besides its
#: waveforms: track ids and path lengths in the cell (cm).
PER_WAVEFORM_KEYS: tuple[str, ...] = ("track_column", "path_column", "rate_column")
#: Names of a stored per-waveform sampling rate in GS/s, as the labelled
#: layouts write it (:mod:`dndx.io.labelled`: ``dndx``, then ``cepc``).
RATE_COLUMN_NAMES: tuple[str, ...] = ("sampling_rate_ghz", "sampling_rate")

_ROOT_TREE_CLASSES = ("TTree", "ROOT::RNTuple")
_NUMERIC_PRIMITIVES = frozenset(
    {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
    | {"float16", "float32", "float64"}
)
_NUMERIC_KINDS = "iuf"
_NPZ_DEFAULT_KEY = "waveforms"
_LISTED_NAMES = 20
_SKIP_BYTES = 1 << 20


def missing_file(path: str | Path) -> InputError:
    """The error of a path that names no file; a glob pattern that matched
    nothing (the shell passes it on unexpanded) is called one.

    >>> str(missing_file("runs/*.h5"))
    'runs/*.h5: no file matches this pattern'
    """
    if any(char in str(path) for char in "*?["):
        return InputError(f"{path}: no file matches this pattern")
    return InputError(f"{path}: no such file")


def detect_format(path: str | Path) -> str:
    """The format of a waveform file, from its suffix (case ignored).

    Raises:
        InputError: the suffix is none of ``.root``, ``.h5``, ``.hdf5``,
            ``.hdf``, ``.parquet``, ``.pq``, ``.npz``.

    >>> detect_format("run42/waveforms.H5")
    'hdf5'
    >>> detect_format("events.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dndx.errors.InputError: events.csv: unknown waveform file type '.csv'; expected one of ...
    """
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIX_FORMATS[suffix]
    except KeyError:
        expected = ", ".join(_SUFFIX_FORMATS)
        raise InputError(
            f"{path}: unknown waveform file type {suffix!r}; expected one of {expected}"
        ) from None


@dataclass(frozen=True)
class WaveformSource:
    """Where the waveforms are: a file, its format and a location inside it.

    Location keys left as ``None`` are found when the file is opened (see
    :func:`resolve_source`). Only the keys of the file's format may be set.

    Attributes:
        path: the file (a ``str`` is turned into a ``Path``).
        format: one of :data:`WAVEFORM_FORMATS`.
        tree: ROOT TTree or RNTuple name, with its directory (``"dir/sim"``).
            Default: the only tree in the file.
        branch: ROOT branch (RNTuple field) holding one array of numbers per
            entry, fixed-size or variable-length. Default: the only such branch.
        dataset: HDF5 dataset ``(n_waveforms, n_samples)``, with its groups.
            Default: the only 2-D numeric dataset, searched in all groups.
        column: Parquet column of lists of numbers. Default: the only one.
        array: NPZ key of a 2-D numeric array ``(n_waveforms, n_samples)``.
            Default: ``"waveforms"`` if present, else the only 2-D numeric array.
        track_column: a number per waveform, in the same tree (branch), file
            (1-D dataset or array) or table (column) as the waveforms: the
            track the waveform's cell belongs to. Integers, or floats that
            are whole numbers. Default: none, no tracks.
        path_column: likewise, the track's path length in the cell, in cm.
        rate_column: likewise, the waveform's sampling rate in GS/s.

    >>> WaveformSource("wf.h5", "hdf5", tree="sim")
    Traceback (most recent call last):
    ...
    dndx.errors.InputError: wf.h5: 'tree' applies to root files only, this source is hdf5
    """

    path: Path
    format: str
    tree: str | None = None
    branch: str | None = None
    dataset: str | None = None
    column: str | None = None
    array: str | None = None
    track_column: str | None = None
    path_column: str | None = None
    rate_column: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.format not in WAVEFORM_FORMATS:
            raise InputError(
                f"{self.path}: unknown format {self.format!r}; expected one of "
                + ", ".join(WAVEFORM_FORMATS)
            )
        for fmt, keys in LOCATION_KEYS.items():
            for key in keys:
                if fmt != self.format and getattr(self, key) is not None:
                    raise InputError(
                        f"{self.path}: {key!r} applies to {fmt} files only, "
                        f"this source is {self.format}"
                    )
        if self.path_column is not None and self.track_column is None:
            raise InputError(
                f"{self.path}: a path column ({self.path_column!r}) is only read with a "
                "track column: name the column of track ids too"
            )

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        tree: str | None = None,
        branch: str | None = None,
        dataset: str | None = None,
        column: str | None = None,
        array: str | None = None,
    ) -> WaveformSource:
        """A source whose format is detected from the suffix of ``path``."""
        return cls(Path(path), detect_format(path), tree, branch, dataset, column, array)


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


@dataclass(frozen=True)
class _OpenSource:
    """An open file: its resolved location, entry count and readers.

    ``per_waveform(key)``, ``key`` one of :data:`PER_WAVEFORM_KEYS`, checks
    that the source's column of that key holds one number per entry beside the
    waveforms and returns the reader of its entries ``[start, stop)``; it
    raises :class:`~dndx.errors.InputError` naming the file and the column
    otherwise. ``boundaries`` are the entries where the file's units of
    storage start (ROOT baskets), each decompressed whole however few of its
    entries are read; empty where a read costs only its own entries.
    """

    source: WaveformSource
    n_events: int
    read: Callable[[int, int], Ragged]
    iterate: Callable[[int], Iterator[Ragged]]
    per_waveform: Callable[[str], Callable[[int, int], NDArray]]
    boundaries: tuple[int, ...] = ()


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
            ids = opened.per_waveform("track_column")(0, opened.n_events)
            _track_ids(ids, source.path, source.track_column)
        if source.path_column is not None:
            lengths = opened.per_waveform("path_column")(0, opened.n_events)
            _path_lengths(lengths, source.path, source.path_column)
        if source.rate_column is not None:
            rates = opened.per_waveform("rate_column")(0, opened.n_events)
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
    for name in RATE_COLUMN_NAMES:
        candidate = f"{prefix}/{name}" if prefix else name
        with _open(replace(source, rate_column=candidate)) as opened:
            try:
                opened.per_waveform("rate_column")
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
        rates = opened.per_waveform("rate_column")(0, opened.n_events)
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


def _check_range(opened: _OpenSource, start: int, stop: int) -> None:
    if not 0 <= start <= stop <= opened.n_events:
        raise InputError(
            f"{opened.source.path}: entries [{start}, {stop}) requested, "
            f"the file holds {opened.n_events} entries"
        )


def _read_range(opened: _OpenSource, start: int, stop: int) -> WaveformChunk:
    """Entries ``[start, stop)`` of an open file, with their track and path columns."""
    source = opened.source
    track_id = path_cm = None
    if source.track_column is not None:
        ids = opened.per_waveform("track_column")(start, stop)
        track_id = _track_ids(ids, source.path, source.track_column)
    if source.path_column is not None:
        lengths = opened.per_waveform("path_column")(start, stop)
        path_cm = _path_lengths(lengths, source.path, source.path_column)
    rates = None
    if source.rate_column is not None:
        stored = opened.per_waveform("rate_column")(start, stop)
        column = f"sampling-rate column {source.rate_column!r}"
        rates = _positive(stored, source.path, column, "rates in GS/s")
    return WaveformChunk(start, opened.read(start, stop), track_id, path_cm, rates)


@contextlib.contextmanager
def _open(source: WaveformSource) -> Iterator[_OpenSource]:
    path = source.path
    if not path.exists():
        raise missing_file(path)
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    with contextlib.ExitStack() as stack:
        yield _OPENERS[source.format](source, stack)


@contextlib.contextmanager
def _library_errors(path: Path, problem: str) -> Iterator[None]:
    """Turn an exception of a reading library into an InputError naming ``path``."""
    try:
        yield
    except (DndxError, MemoryError):
        raise
    # The libraries raise many types for a damaged file (OSError, ValueError,
    # zlib.error, struct.error, their own); all mean "this file cannot be read".
    except Exception as err:
        detail = " ".join(str(err).split())
        raise InputError(f"{path}: {problem} ({type(err).__name__}: {detail})") from err


def _listing(items: Iterable[str]) -> str:
    """``items`` comma-separated, at most ``_LISTED_NAMES`` of them, or ``none``."""
    items = list(items)
    if not items:
        return "none"
    listed = ", ".join(items[:_LISTED_NAMES])
    if len(items) > _LISTED_NAMES:
        listed += f" and {len(items) - _LISTED_NAMES} more"
    return listed


def _names(names: Iterable[str]) -> str:
    """``names`` quoted and comma-separated, at most ``_LISTED_NAMES`` of them."""
    return _listing(repr(name) for name in names)


def _unreadable(what: str) -> str:
    return f"{what} cannot be read; the file may be truncated or damaged"


def _entries(start: int, stop: int) -> str:
    return f"entry {start}" if stop == start + 1 else f"entries {start} to {stop - 1}"


def _per_waveform_name(source: WaveformSource, key: str) -> tuple[str, str]:
    """The column ``source`` names for ``key`` and its role in words."""
    name = getattr(source, key)
    if name is None:
        raise ValueError(f"{source.path}: no {key} named")
    return name, f"the {key.replace('_', ' ')}"


def _numbers(values: NDArray, path: Path, what: str) -> NDArray:
    if values.dtype.kind not in _NUMERIC_KINDS:
        raise InputError(f"{path}: {what} holds {values.dtype}, expected integers or floats")
    return values


def _check_one_per_waveform(
    path: Path, what: str, shape: tuple[int, ...], dtype: np.dtype, n_events: int, of: str
) -> None:
    """A per-waveform column (``what``) holds one number for each of the ``n_events``
    waveforms of ``of``."""
    if shape != (n_events,):
        raise InputError(
            f"{path}: {what} has shape {shape}, expected ({n_events},): "
            f"one number per waveform of {of!r}"
        )
    _numbers(np.zeros(0, dtype), path, what)


def _iterate_ranges(
    read: Callable[[int, int], Ragged], n_events: int, chunk_size: int
) -> Iterator[Ragged]:
    for start in range(0, n_events, chunk_size):
        yield read(start, min(start + chunk_size, n_events))


def _ragged_from_block(block: NDArray) -> Ragged:
    """``(n_rows, n_samples)`` array as a float64 Ragged of equal rows."""
    n_rows, n_samples = block.shape
    values = np.asarray(block, dtype=np.float64).reshape(-1)
    return Ragged.from_lengths(values, np.full(n_rows, n_samples, dtype=np.int64))


def _open_root(source: WaveformSource, stack: contextlib.ExitStack) -> _OpenSource:
    path = source.path
    with _library_errors(path, "is not a readable ROOT file: wrong format, truncated or damaged"):
        file = stack.enter_context(uproot.open(path, array_cache=None))
        classes = file.classnames(recursive=True, cycle=False)
    trees = [name for name, cls in classes.items() if cls in _ROOT_TREE_CLASSES]
    tree_name = source.tree
    if tree_name is None:
        if not trees:
            objects = _listing(f"{name!r} ({cls})" for name, cls in classes.items())
            raise InputError(f"{path}: holds no TTree or RNTuple; objects in the file: {objects}")
        if len(trees) > 1:
            raise InputError(
                f"{path}: holds several trees ({_names(trees)}); choose one with --tree"
            )
        tree_name = trees[0]
    elif tree_name not in classes:
        raise InputError(f"{path}: no tree {tree_name!r}; trees in the file: {_names(trees)}")
    elif classes[tree_name] not in _ROOT_TREE_CLASSES:
        raise InputError(
            f"{path}: {tree_name!r} is a {classes[tree_name]}, not a TTree or RNTuple; "
            f"trees in the file: {_names(trees)}"
        )
    where = f"tree {tree_name!r}"
    with _library_errors(path, _unreadable(where)):
        tree = file[tree_name]
        n_events = int(tree.num_entries)
        branches = list(tree.keys())
        types = {name: str(tree[name].typename) for name in branches}
        usable = [name for name in branches if _is_waveform_form(_root_form(tree, name))]
    described = _listing(f"{name!r} ({types[name]})" for name in branches)
    in_tree = where
    branch = source.branch
    if branch is None:
        if len(usable) != 1:
            several = "several branches" if usable else "no branch"
            raise InputError(
                f"{path}: {where} has {several} holding an array of numbers per entry "
                f"({_names(usable)}); choose one with --branch. Branches: {described}"
            )
        branch = usable[0]
    elif branch not in types:
        raise InputError(f"{path}: {where} has no branch {branch!r}; branches: {described}")
    elif branch not in usable:
        raise InputError(
            f"{path}: branch {branch!r} of {where} has type {types[branch]}, "
            "expected an array of numbers per entry (fixed-size or variable-length)"
        )
    where = f"branch {branch!r} of {where}"

    def read(start: int, stop: int) -> Ragged:
        with _library_errors(path, _unreadable(f"{_entries(start, stop)} of {where}")):
            array = tree[branch].array(entry_start=start, entry_stop=stop, library="ak")
            lengths = np.asarray(ak.num(array, axis=1), dtype=np.int64)
            values = np.asarray(ak.flatten(array, axis=1), dtype=np.float64)
        return Ragged.from_lengths(values, lengths)

    def per_waveform(key: str) -> Callable[[int, int], NDArray]:
        name, role = _per_waveform_name(source, key)
        if name not in types:
            raise InputError(
                f"{path}: {in_tree} has no branch {name!r} ({role}); branches: {described}"
            )
        if not _is_number_form(_root_form(tree, name)):
            raise InputError(
                f"{path}: branch {name!r} of {in_tree} ({role}) has type {types[name]}, "
                "expected one number per entry"
            )

        def read_numbers(start: int, stop: int) -> NDArray:
            what = f"{_entries(start, stop)} of branch {name!r} of {in_tree}"
            with _library_errors(path, _unreadable(what)):
                return np.asarray(
                    tree[name].array(entry_start=start, entry_stop=stop, library="np")
                )

        return read_numbers

    with _library_errors(path, _unreadable(where)):
        # A TTree branch's baskets; an RNTuple field has no such list.
        baskets = tuple(int(e) for e in getattr(tree[branch], "entry_offsets", ()))
    return _OpenSource(
        replace(source, tree=tree_name, branch=branch),
        n_events,
        read,
        functools.partial(_iterate_ranges, read, n_events),
        per_waveform,
        baskets,
    )


def _root_form(tree: Any, name: str) -> Any:
    """The awkward form of one entry of a TTree branch or RNTuple field, or None."""
    field = tree[name]
    try:
        if hasattr(field, "interpretation"):
            return field.interpretation.awkward_form(tree.file)
        return field.to_akform()[0].contents[0]
    # uproot raises for types it cannot describe; those cannot hold numbers.
    except Exception:
        return None


def _is_number_form(form: Any) -> bool:
    """True for a form of one number per entry."""
    return (
        isinstance(form, ak.forms.NumpyForm)
        and form.inner_shape == ()
        and form.primitive in _NUMERIC_PRIMITIVES
    )


def _is_waveform_form(form: Any) -> bool:
    """True for a form of a 1-D array of numbers, fixed-size or variable-length."""
    if isinstance(form, ak.forms.NumpyForm):
        return len(form.inner_shape) == 1 and form.primitive in _NUMERIC_PRIMITIVES
    if isinstance(form, ak.forms.ListOffsetForm | ak.forms.ListForm | ak.forms.RegularForm):
        content = form.content
        return (
            "__array__" not in form.parameters
            and isinstance(content, ak.forms.NumpyForm)
            and "__array__" not in content.parameters
            and content.inner_shape == ()
            and content.primitive in _NUMERIC_PRIMITIVES
        )
    return False


def _open_hdf5(source: WaveformSource, stack: contextlib.ExitStack) -> _OpenSource:
    path = source.path
    with _library_errors(path, "is not a readable HDF5 file: wrong format, truncated or damaged"):
        file = stack.enter_context(h5py.File(path, "r"))
        datasets: dict[str, h5py.Dataset] = {}

        def collect(name: str, item: h5py.HLObject) -> None:
            if isinstance(item, h5py.Dataset):
                datasets[name] = item

        file.visititems(collect)
    described = _listing(f"{name!r} {ds.shape} {ds.dtype}" for name, ds in datasets.items())
    name = source.dataset
    if name is None:
        usable = [
            key for key, ds in datasets.items() if ds.ndim == 2 and ds.dtype.kind in _NUMERIC_KINDS
        ]
        if len(usable) != 1:
            several = "several" if usable else "no"
            raise InputError(
                f"{path}: holds {several} 2-D numeric datasets (n_waveforms, n_samples) "
                f"({_names(usable)}); choose one with --dataset. Datasets: {described}"
            )
        name = usable[0]
    name = name.strip("/")
    if name not in datasets:
        raise InputError(f"{path}: no dataset {name!r}; datasets in the file: {described}")
    dataset = datasets[name]
    if dataset.dtype.kind not in _NUMERIC_KINDS:
        raise InputError(
            f"{path}: dataset {name!r} holds {dataset.dtype}, expected integers or floats"
        )
    if dataset.ndim != 2:
        raise InputError(
            f"{path}: dataset {name!r} has shape {dataset.shape} ({dataset.ndim}-D), "
            "expected 2-D (n_waveforms, n_samples)"
        )
    n_events = int(dataset.shape[0])

    def read(start: int, stop: int) -> Ragged:
        with _library_errors(path, _unreadable(f"{_entries(start, stop)} of dataset {name!r}")):
            block = dataset[start:stop]
        return _ragged_from_block(block)

    def per_waveform(key: str) -> Callable[[int, int], NDArray]:
        column, role = _per_waveform_name(source, key)
        column = column.strip("/")
        if column not in datasets:
            raise InputError(
                f"{path}: no dataset {column!r} ({role}); datasets in the file: {described}"
            )
        numbers = datasets[column]
        _check_one_per_waveform(
            path, f"dataset {column!r} ({role})", numbers.shape, numbers.dtype, n_events, name
        )

        def read_numbers(start: int, stop: int) -> NDArray:
            what = f"{_entries(start, stop)} of dataset {column!r}"
            with _library_errors(path, _unreadable(what)):
                return np.asarray(numbers[start:stop])

        return read_numbers

    return _OpenSource(
        replace(source, dataset=name),
        n_events,
        read,
        functools.partial(_iterate_ranges, read, n_events),
        per_waveform,
    )


def _open_parquet(source: WaveformSource, stack: contextlib.ExitStack) -> _OpenSource:
    path = source.path
    with _library_errors(
        path, "is not a readable Parquet file: wrong format, truncated or damaged"
    ):
        file = stack.enter_context(pq.ParquetFile(path))
        schema = file.schema_arrow
        n_events = int(file.metadata.num_rows)
        group_rows = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
    types = {field.name: field.type for field in schema}
    described = _listing(f"{name!r} ({kind})" for name, kind in types.items())
    column = source.column
    if column is None:
        usable = [name for name, kind in types.items() if _is_numeric_list(kind)]
        if len(usable) != 1:
            several = "several" if usable else "no"
            raise InputError(
                f"{path}: holds {several} columns of lists of numbers ({_names(usable)}); "
                f"choose one with --column. Columns: {described}"
            )
        column = usable[0]
    elif column not in types:
        raise InputError(f"{path}: no column {column!r}; columns: {described}")
    elif not _is_numeric_list(types[column]):
        raise InputError(
            f"{path}: column {column!r} has type {types[column]}, "
            "expected a list of integers or floats per row"
        )
    group_starts = np.concatenate([[0], np.cumsum(group_rows, dtype=np.int64)])

    def read_rows(name: str, start: int, stop: int) -> pa.Array:
        first = int(np.searchsorted(group_starts, start, side="right")) - 1
        last = int(np.searchsorted(group_starts, stop, side="left"))
        with _library_errors(path, _unreadable(f"{_entries(start, stop)} of column {name!r}")):
            table = file.read_row_groups(list(range(first, last)), columns=[name])
            rows = table.column(0).slice(start - int(group_starts[first]), stop - start)
            return rows.combine_chunks()

    def read(start: int, stop: int) -> Ragged:
        if start == stop:
            return Ragged(np.zeros(0), np.zeros(1, dtype=np.int64))
        return _ragged_from_arrow(read_rows(column, start, stop))

    def per_waveform(key: str) -> Callable[[int, int], NDArray]:
        name, role = _per_waveform_name(source, key)
        if name not in types:
            raise InputError(f"{path}: no column {name!r} ({role}); columns: {described}")
        if not (pa.types.is_integer(types[name]) or pa.types.is_floating(types[name])):
            raise InputError(
                f"{path}: column {name!r} ({role}) has type {types[name]}, "
                "expected one integer or float per row"
            )

        def read_numbers(start: int, stop: int) -> NDArray:
            if start == stop:
                return np.zeros(0, types[name].to_pandas_dtype())
            # A missing value reads as NaN, which the checks of the values name.
            rows = read_rows(name, start, stop)
            return np.asarray(rows.to_numpy(zero_copy_only=False))

        return read_numbers

    def iterate(chunk_size: int) -> Iterator[Ragged]:
        batches = file.iter_batches(batch_size=chunk_size, columns=[column])
        pending = pa.array([], type=types[column])
        position = 0
        while True:
            with _library_errors(
                path, _unreadable(f"entries from {position + len(pending)} of column {column!r}")
            ):
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

    return _OpenSource(replace(source, column=column), n_events, read, iterate, per_waveform)


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


def _open_npz(source: WaveformSource, stack: contextlib.ExitStack) -> _OpenSource:
    path = source.path
    with _library_errors(path, "is not a readable NPZ file: wrong format, truncated or damaged"):
        archive = stack.enter_context(np.load(path, allow_pickle=False))
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: holds a single .npy array, expected an NPZ archive")
        # Open until the stack closes it, so its zip is never None here.
        members = cast(zipfile.ZipFile, archive.zip)
        headers = {key: _npy_header(members, key) for key in archive.files}
    described = _listing(
        f"{name!r} {shape} {dtype}" for name, (shape, _, dtype, _) in headers.items()
    )
    key = source.array
    if key is None:
        usable = [
            name
            for name, (shape, _, dtype, _) in headers.items()
            if len(shape) == 2 and dtype.kind in _NUMERIC_KINDS
        ]
        if _NPZ_DEFAULT_KEY in headers:
            key = _NPZ_DEFAULT_KEY
        elif len(usable) == 1:
            key = usable[0]
        else:
            several = "several" if usable else "no"
            raise InputError(
                f"{path}: holds {several} 2-D numeric arrays ({_names(usable)}) and no "
                f"{_NPZ_DEFAULT_KEY!r}; choose one with --array. Arrays: {described}"
            )
    elif key not in headers:
        raise InputError(f"{path}: no array {key!r}; arrays in the file: {described}")
    shape, fortran_order, dtype, header_size = headers[key]
    if dtype.kind not in _NUMERIC_KINDS:
        raise InputError(f"{path}: array {key!r} holds {dtype}, expected integers or floats")
    if len(shape) != 2:
        raise InputError(
            f"{path}: array {key!r} has shape {shape} ({len(shape)}-D), "
            "expected 2-D (n_waveforms, n_samples)"
        )
    n_events, n_samples = shape
    row_bytes = n_samples * dtype.itemsize
    where = f"array {key!r}"

    def read_rows(member: IO[bytes], start: int, stop: int) -> Ragged:
        data = member.read((stop - start) * row_bytes)
        if len(data) != (stop - start) * row_bytes:
            raise InputError(f"{path}: {_entries(start, stop)} of {where} are cut off")
        return _ragged_from_block(np.frombuffer(data, dtype=dtype).reshape(stop - start, n_samples))

    # The member stays open at the row after the last one read, so that
    # consecutive ranges (read_ahead's blocks) decompress the file once.
    stream: dict[str, Any] = {"member": None, "row": 0}

    def read_stream(start: int, stop: int) -> Ragged:
        with _library_errors(path, _unreadable(f"{_entries(start, stop)} of {where}")):
            if stream["member"] is None or start < stream["row"]:
                stream["member"] = stack.enter_context(members.open(f"{key}.npy"))
                stream["row"] = 0
                _skip(stream["member"], header_size)
            _skip(stream["member"], (start - stream["row"]) * row_bytes)
            rows = read_rows(stream["member"], start, stop)
            stream["row"] = stop
            return rows

    def iterate_stream(chunk_size: int) -> Iterator[Ragged]:
        with _library_errors(path, _unreadable(where)):
            member = stack.enter_context(members.open(f"{key}.npy"))
            _skip(member, header_size)
        for start in range(0, n_events, chunk_size):
            stop = min(start + chunk_size, n_events)
            with _library_errors(path, _unreadable(f"{_entries(start, stop)} of {where}")):
                rows = read_rows(member, start, stop)
            yield rows

    def per_waveform(role_key: str) -> Callable[[int, int], NDArray]:
        name, role = _per_waveform_name(source, role_key)
        if name not in headers:
            raise InputError(f"{path}: no array {name!r} ({role}); arrays in the file: {described}")
        numbers_shape, _, numbers_dtype, _ = headers[name]
        _check_one_per_waveform(
            path, f"array {name!r} ({role})", numbers_shape, numbers_dtype, n_events, key
        )

        def read_numbers(start: int, stop: int) -> NDArray:
            # One number per waveform: small enough to load whole.
            with _library_errors(path, _unreadable(f"array {name!r}")):
                return np.asarray(archive[name][start:stop])

        return read_numbers

    if not fortran_order:
        return _OpenSource(
            replace(source, array=key), n_events, read_stream, iterate_stream, per_waveform
        )
    with _library_errors(path, _unreadable(where)):
        array = archive[key]

    def read_array(start: int, stop: int) -> Ragged:
        return _ragged_from_block(array[start:stop])

    return _OpenSource(
        replace(source, array=key),
        n_events,
        read_array,
        functools.partial(_iterate_ranges, read_array, n_events),
        per_waveform,
    )


def _npy_header(members: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, header_size)`` of the NPZ array ``key``."""
    with members.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        # Headers of versions 2.0 and 3.0 have the same layout; 3.0 only allows
        # non-ASCII field names of structured dtypes, which hold no waveforms.
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
        return shape, fortran_order, dtype, member.tell()


def _skip(member: IO[bytes], n_bytes: int) -> None:
    """Read past ``n_bytes`` of an archive member in small pieces.

    ``ZipExtFile.seek`` decompresses up to 16 MiB at a time and holds about
    three times that; reading 1 MiB pieces keeps the memory small.
    """
    while n_bytes > 0:
        piece = member.read(min(n_bytes, _SKIP_BYTES))
        if not piece:
            return
        n_bytes -= len(piece)


_OPENERS: dict[str, Callable[[WaveformSource, contextlib.ExitStack], _OpenSource]] = {
    "root": _open_root,
    "hdf5": _open_hdf5,
    "parquet": _open_parquet,
    "npz": _open_npz,
}
