"""The on-disk form of prepared data: candidates with their windows, and waveforms.

Layout under the prepare stage's output directory::

    prepared/<split>/candidates/part-00000.parquet   one row per candidate + window
    prepared/<split>/waveforms/part-00000.parquet    one row per waveform

Apart from :mod:`dndx.io.dataset` so that the simulated data's storage does not
depend on the preparation of training windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dndx.errors import InputError
from dndx.io.dataset import part_name, part_paths
from dndx.storage import atomic_file
from dndx.truth.preparation import PreparedChunk

__all__ = ["read_candidates", "read_prepared_waveforms", "write_prepared"]


def write_prepared(chunk: PreparedChunk, split_dir: str | Path, index: int) -> None:
    """Write one chunk's candidates (with windows) and waveforms, each atomically."""
    split_dir = Path(split_dir)
    candidates = pa.Table.from_pandas(chunk.candidates, preserve_index=False)
    window_length = chunk.windows.shape[1]
    windows = pa.FixedSizeListArray.from_arrays(
        pa.array(chunk.windows.reshape(-1), pa.float32()), window_length
    )
    candidates = candidates.append_column("window", windows)
    with atomic_file(split_dir / "candidates" / part_name(index)) as tmp:
        pq.write_table(candidates, tmp, compression="zstd")
    with atomic_file(split_dir / "waveforms" / part_name(index)) as tmp:
        pq.write_table(
            pa.Table.from_pandas(chunk.waveforms, preserve_index=False), tmp, compression="zstd"
        )


def read_candidates(split_dir: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """All candidates of a prepared split: the table and the ``(n, window_length)`` windows."""
    paths = part_paths(Path(split_dir) / "candidates")
    if not paths:
        raise InputError(f"{split_dir}: no prepared candidates found")
    table = pa.concat_tables([pq.read_table(p) for p in paths])
    window = table["window"].combine_chunks()
    windows = window.values.to_numpy().reshape(len(window), window.type.list_size)
    return table.drop_columns(["window"]).to_pandas(), windows.astype(np.float32)


def read_prepared_waveforms(split_dir: str | Path) -> pd.DataFrame:
    """All per-waveform rows of a prepared split."""
    paths = part_paths(Path(split_dir) / "waveforms")
    if not paths:
        raise InputError(f"{split_dir}: no prepared waveforms found")
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
