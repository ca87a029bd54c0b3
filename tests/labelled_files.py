"""Labelled files as a third party writes them: ROOT with uproot, HDF5 with h5py,
Parquet with pyarrow, never with dndx's own writer (the readers' tests must not share
code with it). Shared by the labelled-file, ingest and pipeline tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import uproot
import yaml

N_SAMPLES = 300
RATE_GHZ = 1.5
# Per waveform: (peak sample, tag); tag 0 is a background entry on a pulse too.
PEAKS: list[list[tuple[int, int]]] = [
    [(40, 1), (80, 2), (150, 1), (220, 0)],
    [(60, 1), (61, 2), (200, 1), (260, 1)],
    [(30, 1)],
    [(100, 1), (130, 2), (170, 2), (250, 1)],
]


def pulse_train(rng: np.random.Generator, peaks: list[tuple[int, int]]) -> np.ndarray:
    t = np.arange(N_SAMPLES, dtype=float)
    wave = 500.0 + rng.normal(0.0, 2.0, N_SAMPLES)
    for at, _ in peaks:
        wave -= 80.0 * np.exp(-0.5 * ((t - at) / 1.5) ** 2)
    return wave.astype(np.float32)


def cepc_branches(peaks: list[list[tuple[int, int]]] = PEAKS, **changes: Any) -> dict:
    rng = np.random.default_rng(3)
    branches: dict[str, Any] = {
        "wf_i": ak.Array([pulse_train(rng, p) for p in peaks]),
        "sampling_rate": np.full(len(peaks), RATE_GHZ),
        "ncls": np.array([sum(tag == 1 for _, tag in p) for p in peaks], dtype=np.int32),
        "mom": np.full(len(peaks), 12.5),
        "time": ak.Array([[float(at) for at, _ in p] for p in peaks]),
        "tag": ak.Array([[tag for _, tag in p] for p in peaks]),
    }
    branches.update(changes)
    return branches


def write_tree(path: Path, branches: dict, tree: str = "sim") -> Path:
    types = {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()}
    with uproot.recreate(path) as file:
        file.mktree(tree, types)
        file[tree].extend(branches)
    return path


def write_hdf5(path: Path, branches: dict, group: str | None = "sim") -> Path:
    """One dataset per branch: numbers 1-D, lists 2-D when of one length, else
    variable-length; in ``group``, or at the file root when ``None``."""
    with h5py.File(path, "w") as file:
        where = file.create_group(group) if group else file
        for name, values in branches.items():
            if not isinstance(values, ak.Array):
                where.create_dataset(name, data=values)
                continue
            rows = [np.asarray(row) for row in ak.to_list(values)]
            dtype = np.asarray(ak.flatten(values)).dtype
            if len({len(row) for row in rows}) == 1:
                where.create_dataset(name, data=np.stack(rows).astype(dtype))
            else:
                column = np.empty(len(rows), dtype=object)
                column[:] = [row.astype(dtype) for row in rows]
                where.create_dataset(name, data=column, dtype=h5py.vlen_dtype(dtype))
    return path


def write_parquet(path: Path, branches: dict) -> Path:
    """One column per branch, in row groups of 3 entries, so a chunk spans two."""
    columns = {
        name: pa.array(ak.to_list(v) if isinstance(v, ak.Array) else v)
        for name, v in branches.items()
    }
    pq.write_table(pa.table(columns), path, row_group_size=3)
    return path


def random_cepc_branches(rng: np.random.Generator, n: int) -> dict:
    """``n`` waveforms of 600 samples at 1.5 GHz: Poisson clusters of 1 to 3 peaks
    (the first tagged 1, the others 2), each a negative pulse over white noise."""
    waves, times, tags, n_clusters = [], [], [], []
    t = np.arange(600, dtype=float)
    for _ in range(n):
        starts = np.sort(rng.uniform(40, 520, rng.poisson(8) + 1))
        peaks = [(s + 5 * k, 1 if k == 0 else 2) for s in starts for k in range(rng.integers(1, 4))]
        wave = 400.0 + rng.normal(0.0, 2.0, len(t))
        for at, _ in peaks:
            wave -= rng.uniform(40, 120) * np.exp(-0.5 * ((t - at) / 1.5) ** 2)
        waves.append(wave.astype(np.float32))
        times.append([float(at) for at, _ in peaks])
        tags.append([tag for _, tag in peaks])
        n_clusters.append(len(starts))
    return {
        "wf_i": ak.Array(waves),
        "sampling_rate": np.full(n, 1.5),
        "ncls": np.array(n_clusters, dtype=np.int32),
        "mom": np.full(n, 12.5),
        "time": ak.Array(times),
        "tag": ak.Array(tags),
    }


def use_files(project: Path, **data: Any) -> dict:
    """Point the project's ``data`` section at the ROOT files in ``data/labelled``
    (and ``data``'s other keys), as a user edits ``params.yaml``."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"].update(
        {"source": "files", "root": "data/labelled", "files": ["*.root"], "chunk_size": 3, **data}
    )
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


#: Waveforms shorter than one candidate window (15 samples) are skipped.
MIN_SAMPLES = 15


def without_branch(branches: dict, name: str) -> dict:
    """``branches`` less the branch ``name``."""
    return {k: v for k, v in branches.items() if k != name}
