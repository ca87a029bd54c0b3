"""The reader interface every file format implements, and what the formats share.

One module per format (:mod:`dndx.io.root`, :mod:`dndx.io.hdf5`,
:mod:`dndx.io.parquet`, :mod:`dndx.io.npz`) opens its files in one place and
offers them through the two views of :class:`OpenFile` defined here:

- :class:`WaveformReader`: a file's waveforms at a :class:`WaveformSource`'s
  location, counted from the metadata and read as ranges of rows; what
  :mod:`dndx.io.readers` reads users' files through.
- :class:`Table`: a file's named columns of one entry per waveform, as the
  labelled layouts (:mod:`dndx.io.labelled`) read them.

Both are opened by constructing them and closed by :meth:`OpenFile.close` or a
``with`` block. The helpers below word the errors every format raises alike
(:func:`library_errors`, :func:`unreadable`, :func:`entries`, :func:`listing`).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from dndx.errors import DndxError, InputError
from dndx.ragged import Ragged

__all__ = [
    "LOCATION_KEYS",
    "NUMERIC_KINDS",
    "PER_WAVEFORM_KEYS",
    "WAVEFORM_FORMATS",
    "OpenFile",
    "Table",
    "WaveformReader",
    "WaveformSource",
    "check_one_per_waveform",
    "detect_format",
    "entries",
    "library_errors",
    "listing",
    "missing_file",
    "quoted",
    "ragged_from_block",
    "unreadable",
]

#: The file formats :class:`WaveformReader` has a module for.
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

#: numpy dtype kinds that hold waveform samples: integers and floats.
NUMERIC_KINDS = "iuf"
_LISTED_NAMES = 20


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
    :func:`dndx.io.readers.resolve_source`). Only the keys of the file's
    format may be set.

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


class OpenFile:
    """A file held open until :meth:`close` (or the end of a ``with`` block).

    What a format opens (the library's file, archive members) enters
    ``self.stack``, which :meth:`close` unwinds; a constructor that raises
    closes what it had opened.
    """

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()

    def close(self) -> None:
        """Close the file and everything opened from it."""
        self.stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class WaveformReader(OpenFile, ABC):
    """An open waveform file of one format, its location resolved.

    Constructed from a :class:`WaveformSource` whose path is a regular file;
    raises :class:`~dndx.errors.InputError` naming the file and the location
    when the file cannot be read or the location holds no usable waveforms.

    Attributes:
        source: the source with every location key of its format filled in.
        n_events: the number of waveforms (entries), from the metadata.
        boundaries: the entries where the file's units of storage start (ROOT
            baskets), each decompressed whole however few of its entries are
            read; empty where a read costs only its own entries.
    """

    source: WaveformSource
    n_events: int
    boundaries: tuple[int, ...] = ()

    def __init__(self, source: WaveformSource) -> None:
        super().__init__()
        try:
            self.source = self.open(source)
        except BaseException:
            self.close()
            raise

    @abstractmethod
    def open(self, source: WaveformSource) -> WaveformSource:
        """Open ``source``'s file, set ``n_events`` (and ``boundaries``), and
        return ``source`` with its location resolved."""

    @abstractmethod
    def read(self, start: int, stop: int) -> Ragged:
        """Entries ``[start, stop)`` as float64 rows, one per waveform."""

    @abstractmethod
    def per_waveform(self, name: str, role: str) -> Callable[[int, int], NDArray]:
        """The reader of entries ``[start, stop)`` of the column ``name`` (the
        branch, dataset, column or array; ``role`` in words, for messages), once
        checked to hold one number per entry beside the waveforms.

        Raises:
            InputError: the column is missing or holds no number per entry.
        """

    def iterate(self, chunk_size: int) -> Iterator[Ragged]:
        """Every entry, in consecutive chunks of ``chunk_size`` (the last may be shorter)."""
        for start in range(0, self.n_events, chunk_size):
            yield self.read(start, min(start + chunk_size, self.n_events))


class Table(OpenFile, ABC):
    """An open file read as named columns of one entry per waveform.

    Attributes:
        n_entries: the number of entries (waveforms).
        kinds: name -> kind of every column, in awkward's notation
            (``float64``, ``var * float32``) or the library's.
        noun, nouns: what the format calls a column (``branch``, ``branches``).
        place: where the columns are, for messages (`` in group 'sim'``);
            empty where the file has one place.
    """

    n_entries: int
    kinds: dict[str, str]
    noun: str = "branch"
    nouns: str = "branches"
    place: str = ""

    @abstractmethod
    def read_columns(self, names: list[str], start: int, stop: int) -> dict[str, Any]:
        """Entries ``[start, stop)`` of the columns ``names``, as awkward arrays."""


@contextlib.contextmanager
def library_errors(path: Path, problem: str) -> Iterator[None]:
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


def listing(items: Iterable[str]) -> str:
    """``items`` comma-separated, at most 20 of them, or ``none``.

    >>> listing([])
    'none'
    """
    items = list(items)
    if not items:
        return "none"
    listed = ", ".join(items[:_LISTED_NAMES])
    if len(items) > _LISTED_NAMES:
        listed += f" and {len(items) - _LISTED_NAMES} more"
    return listed


def quoted(names: Iterable[str]) -> str:
    """``names`` quoted and comma-separated, as :func:`listing`.

    >>> quoted(["adc", "wf_i"])
    "'adc', 'wf_i'"
    """
    return listing(repr(name) for name in names)


def unreadable(what: str) -> str:
    """The problem of a part of a file that cannot be read."""
    return f"{what} cannot be read; the file may be truncated or damaged"


def entries(start: int, stop: int) -> str:
    """Entries ``[start, stop)`` in words.

    >>> entries(4, 5), entries(0, 3)
    ('entry 4', 'entries 0 to 2')
    """
    return f"entry {start}" if stop == start + 1 else f"entries {start} to {stop - 1}"


def check_one_per_waveform(
    path: Path, what: str, shape: tuple[int, ...], dtype: np.dtype, n_events: int, of: str
) -> None:
    """A per-waveform column (``what``) holds one number for each of the ``n_events``
    waveforms of ``of``."""
    if shape != (n_events,):
        raise InputError(
            f"{path}: {what} has shape {shape}, expected ({n_events},): "
            f"one number per waveform of {of!r}"
        )
    if dtype.kind not in NUMERIC_KINDS:
        raise InputError(f"{path}: {what} holds {dtype}, expected integers or floats")


def ragged_from_block(block: NDArray) -> Ragged:
    """``(n_rows, n_samples)`` array as a float64 Ragged of equal rows."""
    n_rows, n_samples = block.shape
    values = np.asarray(block, dtype=np.float64).reshape(-1)
    return Ragged.from_lengths(values, np.full(n_rows, n_samples, dtype=np.int64))
