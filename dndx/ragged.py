"""Ragged arrays: rows of different lengths stored as flat values plus offsets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["Ragged"]


@dataclass(frozen=True, eq=False)
class Ragged:
    """Rows of different lengths: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.

    Attributes:
        values: ``(total,)`` the rows one after another.
        offsets: ``(n_rows + 1,)`` int64, starting at 0 and non-decreasing.

    >>> r = Ragged.from_lengths(np.arange(5), [2, 0, 3])
    >>> [row.tolist() for row in r]
    [[0, 1], [], [2, 3, 4]]
    >>> r.row_index().tolist()
    [0, 0, 2, 2, 2]
    """

    values: NDArray
    offsets: NDArray[np.int64]

    @classmethod
    def from_lengths(cls, values: NDArray, lengths: Sequence[int] | NDArray) -> Ragged:
        """Build from flat values and the length of each row."""
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] != len(values):
            raise ValueError(f"row lengths sum to {offsets[-1]} but there are {len(values)} values")
        return cls(values, offsets)

    @classmethod
    def from_rows(cls, rows: Iterable[ArrayLike], dtype: DTypeLike) -> Ragged:
        """Build from one array per row (e.g. a list column of a table).

        >>> Ragged.from_rows([[1, 2], [], [3]], np.int64).offsets.tolist()
        [0, 2, 2, 3]
        """
        arrays = [np.asarray(row, dtype=dtype) for row in rows]
        values = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
        return cls.from_lengths(values, [len(a) for a in arrays])

    @classmethod
    def concatenate(cls, parts: Sequence[Ragged]) -> Ragged:
        """Rows of all ``parts``, in order."""
        if not parts:
            raise ValueError("nothing to concatenate")
        lengths = np.concatenate([p.lengths for p in parts])
        return cls.from_lengths(np.concatenate([p.values for p in parts]), lengths)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> NDArray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> NDArray[np.int64]:
        """``(n_rows,)`` the length of every row."""
        return np.diff(self.offsets)

    def row_index(self) -> NDArray[np.int64]:
        """``(total,)`` the row each value belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def take(self, rows: NDArray[np.int64]) -> Ragged:
        """The rows ``rows``, in that order."""
        lengths = self.lengths[rows]
        starts = self.offsets[rows]
        index = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        index = index + np.arange(int(lengths.sum()), dtype=np.int64)
        return Ragged.from_lengths(self.values[index], lengths)
