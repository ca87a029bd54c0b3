"""ROOT files (uproot): a TTree or RNTuple branch read per entry range.

:class:`RootReader` reads the waveforms of one branch (a fixed-size or
variable-length array of numbers per entry); :class:`RootTable` reads the
named branches of one tree, as the labelled layouts do. Both open the file
through :func:`open_root`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot
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

__all__ = ["RootReader", "RootTable", "open_root"]

_TREE_CLASSES = ("TTree", "ROOT::RNTuple")
_NOT_ROOT = "is not a readable ROOT file: wrong format, truncated or damaged"
_NUMERIC_PRIMITIVES = frozenset(
    {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
    | {"float16", "float32", "float64"}
)


def open_root(path: Path, stack: contextlib.ExitStack) -> Any:
    """The ROOT file at ``path``, open until ``stack`` closes.

    Raises:
        InputError: the file is no readable ROOT file.
    """
    with library_errors(path, _NOT_ROOT):
        return stack.enter_context(uproot.open(path, array_cache=None))


class RootReader(WaveformReader):
    """The waveforms of one branch of one TTree or RNTuple; ``boundaries`` are
    the branch's baskets (an RNTuple field has none)."""

    def open(self, source: WaveformSource) -> WaveformSource:
        path = source.path
        file = open_root(path, self.stack)
        with library_errors(path, _NOT_ROOT):
            classes = file.classnames(recursive=True, cycle=False)
        tree_name = _find_tree(path, classes, source.tree)
        self.in_tree = f"tree {tree_name!r}"
        with library_errors(path, unreadable(self.in_tree)):
            self.tree = file[tree_name]
            self.n_events = int(self.tree.num_entries)
            branches = list(self.tree.keys())
            self.types = {name: str(self.tree[name].typename) for name in branches}
            usable = [name for name in branches if _is_waveform_form(_form(self.tree, name))]
        self.described = listing(f"{name!r} ({self.types[name]})" for name in branches)
        self.branch = self._find_branch(path, usable, source.branch)
        self.where = f"branch {self.branch!r} of {self.in_tree}"
        with library_errors(path, unreadable(self.where)):
            # A TTree branch's baskets; an RNTuple field has no such list.
            offsets = getattr(self.tree[self.branch], "entry_offsets", ())
            self.boundaries = tuple(int(e) for e in offsets)
        return replace(source, tree=tree_name, branch=self.branch)

    def _find_branch(self, path: Path, usable: list[str], branch: str | None) -> str:
        """``branch``, checked, or the only usable branch when it is None."""
        if branch is None:
            if len(usable) != 1:
                several = "several branches" if usable else "no branch"
                raise InputError(
                    f"{path}: {self.in_tree} has {several} holding an array of numbers per "
                    f"entry ({quoted(usable)}); choose one with --branch. "
                    f"Branches: {self.described}"
                )
            return usable[0]
        if branch not in self.types:
            raise InputError(
                f"{path}: {self.in_tree} has no branch {branch!r}; branches: {self.described}"
            )
        if branch not in usable:
            raise InputError(
                f"{path}: branch {branch!r} of {self.in_tree} has type {self.types[branch]}, "
                "expected an array of numbers per entry (fixed-size or variable-length)"
            )
        return branch

    def read(self, start: int, stop: int) -> Ragged:
        with library_errors(
            self.source.path, unreadable(f"{entries(start, stop)} of {self.where}")
        ):
            array = self.tree[self.branch].array(entry_start=start, entry_stop=stop, library="ak")
            lengths = np.asarray(ak.num(array, axis=1), dtype=np.int64)
            values = np.asarray(ak.flatten(array, axis=1), dtype=np.float64)
        return Ragged.from_lengths(values, lengths)

    def per_waveform(self, name: str, role: str) -> Callable[[int, int], NDArray]:
        path, tree, in_tree = self.source.path, self.tree, self.in_tree
        if name not in self.types:
            raise InputError(
                f"{path}: {in_tree} has no branch {name!r} ({role}); branches: {self.described}"
            )
        if not _is_number_form(_form(tree, name)):
            raise InputError(
                f"{path}: branch {name!r} of {in_tree} ({role}) has type {self.types[name]}, "
                "expected one number per entry"
            )

        def read_numbers(start: int, stop: int) -> NDArray:
            what = f"{entries(start, stop)} of branch {name!r} of {in_tree}"
            with library_errors(path, unreadable(what)):
                return np.asarray(
                    tree[name].array(entry_start=start, entry_stop=stop, library="np")
                )

        return read_numbers


def _find_tree(path: Path, classes: dict[str, str], tree_name: str | None) -> str:
    """``tree_name``, checked against the file's ``classes``, or the only tree
    when it is None."""
    trees = [name for name, cls in classes.items() if cls in _TREE_CLASSES]
    if tree_name is None:
        if not trees:
            objects = listing(f"{name!r} ({cls})" for name, cls in classes.items())
            raise InputError(f"{path}: holds no TTree or RNTuple; objects in the file: {objects}")
        if len(trees) > 1:
            raise InputError(
                f"{path}: holds several trees ({quoted(trees)}); choose one with --tree"
            )
        return trees[0]
    if tree_name not in classes:
        raise InputError(f"{path}: no tree {tree_name!r}; trees in the file: {quoted(trees)}")
    if classes[tree_name] not in _TREE_CLASSES:
        raise InputError(
            f"{path}: {tree_name!r} is a {classes[tree_name]}, not a TTree or RNTuple; "
            f"trees in the file: {quoted(trees)}"
        )
    return tree_name


def _form(tree: Any, name: str) -> Any:
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


class RootTable(Table):
    """The branches of the tree ``tree`` of a ROOT file.

    Raises:
        InputError: the file is no readable ROOT file or has no tree ``tree``
            (``setting`` says where that name was chosen, for the message).
    """

    def __init__(self, path: Path, tree: str, setting: str) -> None:
        super().__init__()
        self.path, self.tree_name = path, tree
        with self.stack:
            file = open_root(path, self.stack)
            if tree not in file:
                keys = ", ".join(repr(k) for k in file.keys(cycle=False)) or "none"
                raise InputError(
                    f"{path}: no tree {tree!r} ({setting}); objects in the file: {keys}"
                )
            with library_errors(path, unreadable(f"tree {tree!r}")):
                self.tree = file[tree]
                self.n_entries = int(self.tree.num_entries)
                self.kinds = {name: str(self.tree[name].typename) for name in self.tree.keys()}  # noqa: SIM118 (a TTree, not a dict)
            self.stack = self.stack.pop_all()

    def read_columns(self, names: list[str], start: int, stop: int) -> dict[str, Any]:
        where = f"{entries(start, stop)} of tree {self.tree_name!r}"
        with library_errors(self.path, unreadable(where)):
            arrays = self.tree.arrays(names, entry_start=start, entry_stop=stop, library="ak")
        return {name: arrays[name] for name in names}
