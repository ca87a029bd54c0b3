"""The ``ingest`` stage's plan: which labelled files go to which split, in which
chunks, and what each chunk tells the split's metrics.

Splits are made *by file*, so one file's waveforms never straddle two splits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np

from dndx.config import DataConfig
from dndx.errors import InputError
from dndx.io.labelled import LabelledChunk, LabelledLayout
from dndx.waveforms import SPLITS

__all__ = ["IngestJob", "labelled_layout", "plan_jobs", "split_files", "summarise_chunk"]

_SUFFIXES = (".root", ".h5", ".hdf5", ".hdf", ".parquet", ".pq")


def labelled_layout(cfg: DataConfig, relative_path: Path | None = None) -> LabelledLayout:
    """The layout settings of the ``data`` section, for the file at
    ``relative_path`` (relative to ``data.root``) where given: its particle is
    that of the first glob of ``data.particles`` it matches, else ``data.particle``.

    >>> import dataclasses
    >>> from dndx.config import load_params
    >>> cfg = dataclasses.replace(load_params().data, particles={"test/*_K_*": "K"})
    >>> labelled_layout(cfg, Path("test/cepc_K_10GeV.root")).particle
    'K'
    >>> labelled_layout(cfg, Path("test/cepc_pi_10GeV.root")).particle
    ''
    """
    particle = cfg.particle
    if relative_path is not None:
        matching = (
            p for glob, p in cfg.particles.items() if fnmatch(relative_path.as_posix(), glob)
        )
        particle = next(matching, particle)
    return LabelledLayout(
        cfg.layout, dict(cfg.names), cfg.time_unit, cfg.sampling_rate_unit, particle
    )


def _expand(root: Path, patterns: tuple[str, ...], where: str) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        for match in root.glob(pattern):
            if match.is_dir():
                found.update(p for p in match.rglob("*") if p.suffix.lower() in _SUFFIXES)
            elif match.suffix.lower() in _SUFFIXES:
                found.add(match)
    if not found:
        raise InputError(
            f"{root}: {where} {list(patterns)} match no ROOT, HDF5 or Parquet file; "
            "check data.root and the globs in params.yaml"
        )
    return sorted(found)


def split_files(cfg: DataConfig, root: Path) -> dict[str, list[Path]]:
    """The files of each split: ``splits`` globs, or ``files`` split by file.

    Raises:
        InputError: ``root`` is missing, a split's globs match no file, or
            there are fewer files than splits.
    """
    if not root.is_dir():
        raise InputError(f"{root}: data.root is not a directory")
    named: dict[str, tuple[str, ...]] = {s: globs for s, globs in cfg.splits.items() if globs}
    if named:
        return {s: _expand(root, named[s], f"data.splits.{s}") for s in SPLITS}
    files = _expand(root, cfg.files, "data.files")
    if len(files) < len(SPLITS):
        raise InputError(
            f"{root}: data.files match {len(files)} file(s); splitting by file needs at "
            f"least {len(SPLITS)} (one per split), or name the files per split in data.splits"
        )
    order = np.random.default_rng(cfg.seed).permutation(len(files))
    n_validation = max(1, round(cfg.fractions[1] * len(files)))
    n_test = max(1, round(cfg.fractions[2] * len(files)))
    n_train = len(files) - n_validation - n_test
    if n_train < 1:
        n_train, n_validation = 1, len(files) - 1 - n_test
    bounds = np.cumsum([0, n_train, n_validation, n_test])
    return {
        split: sorted(files[i] for i in order[bounds[k] : bounds[k + 1]])
        for k, split in enumerate(SPLITS)
    }


@dataclass(frozen=True)
class IngestJob:
    """Entries ``[start, stop)`` of one file, written as part ``index`` of ``split``
    with waveform ids from ``first_id``."""

    split: str
    index: int
    path: Path
    start: int
    stop: int
    first_id: int


def plan_jobs(
    files: dict[str, list[Path]], entries: dict[Path, int], chunk_size: int
) -> list[IngestJob]:
    """Chunks of at most ``chunk_size`` entries, never across files; ids count
    through each split.

    >>> jobs = plan_jobs({"train": [Path("a"), Path("b")]}, {Path("a"): 5, Path("b"): 2}, 3)
    >>> [(j.path.name, j.start, j.stop, j.first_id, j.index) for j in jobs]
    [('a', 0, 3, 0, 0), ('a', 3, 5, 3, 1), ('b', 0, 2, 5, 2)]
    """
    jobs = []
    for split, paths in files.items():
        first_id = 0
        index = 0
        for path in paths:
            for start in range(0, entries[path], chunk_size):
                stop = min(start + chunk_size, entries[path])
                jobs.append(IngestJob(split, index, path, start, stop, first_id + start))
                index += 1
            first_id += entries[path]
    return jobs


def summarise_chunk(chunk: LabelledChunk) -> dict[str, Any]:
    """The small, JSON-ready facts of one chunk that the split's metrics add up."""
    info = chunk.data.info
    reasons = Counter(reason.split(":")[0].split(" at ")[0] for _, reason in chunk.skipped)
    return {
        "n_waveforms": len(info),
        "n_skipped": len(chunk.skipped),
        "skipped": dict(reasons),
        "first_skipped": [f"entry {entry}: {reason}" for entry, reason in chunk.skipped[:3]],
        "sampling_rates_ghz": sorted(info["sampling_rate_ghz"].unique().tolist()),
        "particles": sorted(p for p in info["particle"].unique().tolist() if p),
        "momenta_gev": sorted(info["momentum_gev"].dropna().round(3).unique().tolist()),
        "sum_n_clusters": int(info["n_clusters"].sum()),
        "tag_counts": chunk.tag_counts.tolist(),
    }
