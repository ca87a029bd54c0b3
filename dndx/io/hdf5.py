"""HDF5 files (h5py): slices of datasets, one entry per waveform along the first axis.

:class:`Hdf5Reader` reads the waveforms of a 2-D dataset ``(n_waveforms,
n_samples)``; :class:`Hdf5Table` reads the datasets of one group as the
labelled layouts do: numbers per entry as 1-D datasets, lists per entry as
2-D datasets ``(n_waveforms, length)`` or 1-D variable-length ones
(``h5py.vlen_dtype``). Both open the file through :func:`open_hdf5`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import awkward as ak
import h5py
import numpy as np
from numpy.typing import NDArray

from dndx.errors import InputError
from dndx.io.source import (
    NUMERIC_KINDS,
    Table,
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

__all__ = ["Hdf5Reader", "Hdf5Table", "open_hdf5"]

_NOT_HDF5 = "is not a readable HDF5 file: wrong format, truncated or damaged"


def open_hdf5(path: Path, stack: contextlib.ExitStack) -> h5py.File:
    """The HDF5 file at ``path``, open for reading until ``stack`` closes.

    Raises:
        InputError: the file is no readable HDF5 file.
    """
    with library_errors(path, _NOT_HDF5):
        return stack.enter_context(h5py.File(path, "r"))


class Hdf5Reader(WaveformReader):
    """The waveforms of one 2-D numeric dataset, searched in all groups."""

    def open(self, source: WaveformSource) -> WaveformSource:
        path = source.path
        file = open_hdf5(path, self.stack)
        self.datasets: dict[str, h5py.Dataset] = {}
        with library_errors(path, _NOT_HDF5):
            file.visititems(self._collect)
        self.described = listing(
            f"{name!r} {ds.shape} {ds.dtype}" for name, ds in self.datasets.items()
        )
        self.name = _find_dataset(path, self.datasets, source.dataset, self.described)
        dataset = self.datasets[self.name]
        if dataset.dtype.kind not in NUMERIC_KINDS:
            raise InputError(
                f"{path}: dataset {self.name!r} holds {dataset.dtype}, expected integers or floats"
            )
        if dataset.ndim != 2:
            raise InputError(
                f"{path}: dataset {self.name!r} has shape {dataset.shape} ({dataset.ndim}-D), "
                "expected 2-D (n_waveforms, n_samples)"
            )
        self.dataset = dataset
        self.n_events = int(dataset.shape[0])
        return replace(source, dataset=self.name)

    def _collect(self, name: str, item: h5py.HLObject) -> None:
        if isinstance(item, h5py.Dataset):
            self.datasets[name] = item

    def read(self, start: int, stop: int) -> Ragged:
        what = f"{entries(start, stop)} of dataset {self.name!r}"
        with library_errors(self.source.path, unreadable(what)):
            block = self.dataset[start:stop]
        return ragged_from_block(block)

    def per_waveform(self, name: str, role: str) -> Callable[[int, int], NDArray]:
        path = self.source.path
        column = name.strip("/")
        if column not in self.datasets:
            raise InputError(
                f"{path}: no dataset {column!r} ({role}); datasets in the file: {self.described}"
            )
        numbers = self.datasets[column]
        what = f"dataset {column!r} ({role})"
        check_one_per_waveform(path, what, numbers.shape, numbers.dtype, self.n_events, self.name)

        def read_numbers(start: int, stop: int) -> NDArray:
            with library_errors(path, unreadable(f"{entries(start, stop)} of dataset {column!r}")):
                return np.asarray(numbers[start:stop])

        return read_numbers


def _find_dataset(
    path: Path, datasets: dict[str, h5py.Dataset], name: str | None, described: str
) -> str:
    """``name`` without its leading slash, checked, or the only 2-D numeric
    dataset when it is None."""
    if name is None:
        usable = [
            key for key, ds in datasets.items() if ds.ndim == 2 and ds.dtype.kind in NUMERIC_KINDS
        ]
        if len(usable) != 1:
            several = "several" if usable else "no"
            raise InputError(
                f"{path}: holds {several} 2-D numeric datasets (n_waveforms, n_samples) "
                f"({quoted(usable)}); choose one with --dataset. Datasets: {described}"
            )
        name = usable[0]
    name = name.strip("/")
    if name not in datasets:
        raise InputError(f"{path}: no dataset {name!r}; datasets in the file: {described}")
    return name


class Hdf5Table(Table):
    """The datasets of the group ``group`` of an HDF5 file, or of its root when
    it has no such group; the entries are those of the dataset ``entries_of``.

    Raises:
        InputError: the file is no readable HDF5 file.
    """

    noun, nouns = "dataset", "datasets"

    def __init__(self, path: Path, group: str, entries_of: str) -> None:
        super().__init__()
        self.path, self.entries_of = path, entries_of
        with self.stack:
            file = open_hdf5(path, self.stack)
            with library_errors(path, unreadable("the list of datasets")):
                found = file.get(group)
                if isinstance(found, h5py.Group):
                    self.place = f" in group {group!r}"
                else:
                    found, self.place = file, f" at the file root (no group {group!r}, names.tree)"
                self.datasets = {
                    name: item for name, item in found.items() if isinstance(item, h5py.Dataset)
                }
                self.kinds = {name: _kind(dataset) for name, dataset in self.datasets.items()}
            waveform = self.datasets.get(entries_of)
            self.n_entries = len(waveform) if waveform is not None and waveform.ndim else 0
            self.stack = self.stack.pop_all()

    def read_columns(self, names: list[str], start: int, stop: int) -> dict[str, Any]:
        arrays = {}
        for name in names:
            dataset = self.datasets[name]
            element = self._check(name)
            what = f"{entries(start, stop)} of dataset {name!r}"
            with library_errors(self.path, unreadable(what)):
                block = dataset[start:stop]
            arrays[name] = _lists(block, element) if block.dtype == object else ak.Array(block)
        return arrays

    def _check(self, name: str) -> np.dtype:
        """The element type of the dataset ``name``, checked to hold numbers or
        lists of numbers, one entry per waveform."""
        dataset = self.datasets[name]
        element = h5py.check_vlen_dtype(dataset.dtype) or dataset.dtype
        if element.kind not in "biuf" or dataset.ndim not in (1, 2):
            raise InputError(
                f"{self.path}: dataset {name!r}{self.place} holds {self.kinds[name]} of shape "
                f"{dataset.shape}, expected numbers (1-D), equal-length lists (2-D) "
                "or variable-length lists (1-D, h5py.vlen_dtype)"
            )
        if len(dataset) != self.n_entries:
            raise InputError(
                f"{self.path}: dataset {name!r}{self.place} holds {len(dataset)} entries, "
                f"{self.entries_of!r} {self.n_entries}; every dataset holds one entry "
                "per waveform"
            )
        return element


def _kind(dataset: h5py.Dataset) -> str:
    """A dataset's kind in awkward's notation: ``float64``, ``var * float32``, ``300 * int16``."""
    element = h5py.check_vlen_dtype(dataset.dtype)
    if element is not None:
        return f"var * {element}"
    return " * ".join([*(str(n) for n in dataset.shape[1:]), str(dataset.dtype)])


def _lists(rows: NDArray[np.object_], element: np.dtype) -> ak.Array:
    """A variable-length dataset's rows (one array each) as a jagged array."""
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    values = np.concatenate(list(rows)) if len(rows) else np.zeros(0, element)
    return ak.unflatten(values.astype(element, copy=False), lengths)
