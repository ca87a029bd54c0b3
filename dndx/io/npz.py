"""NPZ archives (numpy): a 2-D numeric array read as a stream of its rows.

``np.load`` opens the archive and lists its arrays; since it loads a member
only whole, :class:`NpzReader` reads the waveforms' array as a stream of its
rows from the archive numpy opened: iteration reads it once from start to
end; a range reads and discards the rows before its start, which costs time
but no memory. An array in Fortran order has no contiguous rows and is read
whole, then sliced.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, cast

import numpy as np
from numpy.typing import NDArray

from dndx.errors import InputError
from dndx.io.source import (
    NUMERIC_KINDS,
    WaveformReader,
    WaveformSource,
    check_one_per_waveform,
    entries,
    library_errors,
    listing,
    quoted,
    ragged_from_block,
    unreadable,
)
from dndx.ragged import Ragged

__all__ = ["NpzReader"]

_DEFAULT_KEY = "waveforms"
_SKIP_BYTES = 1 << 20

#: ``(shape, fortran_order, dtype, header_size)`` of an archive member.
_Header = tuple[tuple[int, ...], bool, np.dtype, int]


class NpzReader(WaveformReader):
    """The waveforms of one 2-D numeric array of an NPZ archive."""

    def open(self, source: WaveformSource) -> WaveformSource:
        path = source.path
        with library_errors(path, "is not a readable NPZ file: wrong format, truncated or damaged"):
            archive = self.stack.enter_context(np.load(path, allow_pickle=False))
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise InputError(f"{path}: holds a single .npy array, expected an NPZ archive")
            # Open until the stack closes it, so its zip is never None here.
            self.members = cast(zipfile.ZipFile, archive.zip)
            self.headers = {key: _npy_header(self.members, key) for key in archive.files}
        self.archive = archive
        self.described = listing(
            f"{name!r} {shape} {dtype}" for name, (shape, _, dtype, _) in self.headers.items()
        )
        self.key = _find_array(path, self.headers, source.array, self.described)
        shape, fortran_order, self.dtype, self.header_size = self.headers[self.key]
        self.n_events, self.n_samples = shape
        self.row_bytes = self.n_samples * self.dtype.itemsize
        self.where = f"array {self.key!r}"
        # The member stays open at the row after the last one read, so that
        # consecutive ranges (read_ahead's blocks) decompress the file once.
        self.member: IO[bytes] | None = None
        self.next_row = 0
        self.whole: NDArray | None = None
        if fortran_order:
            with library_errors(path, unreadable(self.where)):
                self.whole = archive[self.key]
        return replace(source, array=self.key)

    def read(self, start: int, stop: int) -> Ragged:
        if self.whole is not None:
            return ragged_from_block(self.whole[start:stop])
        with library_errors(
            self.source.path, unreadable(f"{entries(start, stop)} of {self.where}")
        ):
            if self.member is None or start < self.next_row:
                self.member = self._open_member()
                self.next_row = 0
            _skip(self.member, (start - self.next_row) * self.row_bytes)
            rows = self._read_rows(self.member, start, stop)
            self.next_row = stop
            return rows

    def iterate(self, chunk_size: int) -> Iterator[Ragged]:
        if self.whole is not None:
            yield from super().iterate(chunk_size)
            return
        with library_errors(self.source.path, unreadable(self.where)):
            member = self._open_member()
        for start in range(0, self.n_events, chunk_size):
            stop = min(start + chunk_size, self.n_events)
            what = f"{entries(start, stop)} of {self.where}"
            with library_errors(self.source.path, unreadable(what)):
                rows = self._read_rows(member, start, stop)
            yield rows

    def per_waveform(self, name: str, role: str) -> Callable[[int, int], NDArray]:
        path = self.source.path
        if name not in self.headers:
            raise InputError(
                f"{path}: no array {name!r} ({role}); arrays in the file: {self.described}"
            )
        shape, _, dtype, _ = self.headers[name]
        what = f"array {name!r} ({role})"
        check_one_per_waveform(path, what, shape, dtype, self.n_events, self.key)

        def read_numbers(start: int, stop: int) -> NDArray:
            # One number per waveform: small enough to load whole.
            with library_errors(path, unreadable(f"array {name!r}")):
                return np.asarray(self.archive[name][start:stop])

        return read_numbers

    def _open_member(self) -> IO[bytes]:
        """The waveforms' member, open at its first row."""
        member = self.stack.enter_context(self.members.open(f"{self.key}.npy"))
        _skip(member, self.header_size)
        return member

    def _read_rows(self, member: IO[bytes], start: int, stop: int) -> Ragged:
        """Rows ``[start, stop)`` from ``member``, open at row ``start``."""
        data = member.read((stop - start) * self.row_bytes)
        if len(data) != (stop - start) * self.row_bytes:
            raise InputError(
                f"{self.source.path}: {entries(start, stop)} of {self.where} are cut off"
            )
        block = np.frombuffer(data, dtype=self.dtype).reshape(stop - start, self.n_samples)
        return ragged_from_block(block)


def _find_array(path: Path, headers: dict[str, _Header], key: str | None, described: str) -> str:
    """``key``, checked to name a 2-D numeric array, or the default array when it is None."""
    if key is None:
        usable = [
            name
            for name, (shape, _, dtype, _) in headers.items()
            if len(shape) == 2 and dtype.kind in NUMERIC_KINDS
        ]
        if _DEFAULT_KEY in headers:
            key = _DEFAULT_KEY
        elif len(usable) == 1:
            key = usable[0]
        else:
            several = "several" if usable else "no"
            raise InputError(
                f"{path}: holds {several} 2-D numeric arrays ({quoted(usable)}) and no "
                f"{_DEFAULT_KEY!r}; choose one with --array. Arrays: {described}"
            )
    elif key not in headers:
        raise InputError(f"{path}: no array {key!r}; arrays in the file: {described}")
    shape, _, dtype, _ = headers[key]
    if dtype.kind not in NUMERIC_KINDS:
        raise InputError(f"{path}: array {key!r} holds {dtype}, expected integers or floats")
    if len(shape) != 2:
        raise InputError(
            f"{path}: array {key!r} has shape {shape} ({len(shape)}-D), "
            "expected 2-D (n_waveforms, n_samples)"
        )
    return key


def _npy_header(members: zipfile.ZipFile, key: str) -> _Header:
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
