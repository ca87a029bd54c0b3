"""The on-disk form of simulated data: Parquet, one file per chunk.

Layout under a stage's output directory::

    simulated/<split>/part-00000.parquet       one row per waveform, list columns

Every directory of parts is a Parquet dataset that pyarrow or Dask read
lazily (the prepared data: :mod:`dndx.io.prepared`). Files are written to a
temporary name and renamed when complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dndx.errors import InputError
from dndx.ragged import Ragged
from dndx.storage import atomic_file
from dndx.waveforms import WaveformSet

__all__ = [
    "part_name",
    "part_paths",
    "read_waveform_samples",
    "read_waveform_set",
    "write_root_waveforms",
    "write_waveform_set",
]

_ELECTRON_COLUMNS = {
    "time_ns": pa.float32(),
    "cluster": pa.int32(),
    "primary": pa.bool_(),
    "amplitude_adc": pa.float32(),
}


def part_name(index: int) -> str:
    """File name of chunk ``index``.

    >>> part_name(3)
    'part-00003.parquet'
    """
    return f"part-{index:05d}.parquet"


def part_paths(directory: str | Path) -> list[Path]:
    """The part files of a dataset directory, in chunk order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: no such data directory; run the stage that makes it first")
    return sorted(directory.glob("part-*.parquet"))


def _list_array(values: np.ndarray, offsets: np.ndarray, value_type: pa.DataType) -> pa.Array:
    return pa.LargeListArray.from_arrays(
        pa.array(offsets, pa.int64()), pa.array(values, value_type)
    )


def write_waveform_set(data: WaveformSet, path: str | Path) -> None:
    """Write waveforms and truth to one Parquet file, atomically."""
    table = pa.Table.from_pandas(data.info, preserve_index=False)
    # Simulated ADC counts are uint16; ingested waveforms may be any real numbers.
    adc_type = pa.uint16() if data.adc.values.dtype == np.uint16 else pa.float32()
    table = table.append_column("adc", _list_array(data.adc.values, data.adc.offsets, adc_type))
    for column, value_type in _ELECTRON_COLUMNS.items():
        table = table.append_column(
            f"electron_{column}",
            _list_array(data.electrons[column].to_numpy(), data.electron_offsets, value_type),
        )
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _flat(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    array = column.combine_chunks()
    offsets = np.asarray(array.offsets, dtype=np.int64)
    values = array.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
    return values, offsets - offsets[0]


def read_waveform_samples(path: str | Path) -> tuple[Ragged, np.ndarray]:
    """The samples and ``(n_waveforms,)`` sampling rates (GS/s) of a file written by
    :func:`write_waveform_set`, without the truth."""
    try:
        table = pq.read_table(path, columns=["adc", "sampling_rate_ghz"])
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"{path}: cannot read simulated waveforms ({error})") from None
    values, offsets = _flat(table["adc"])
    return Ragged(values, offsets), table["sampling_rate_ghz"].to_numpy()


def read_waveform_set(path: str | Path) -> WaveformSet:
    """Read a file written by :func:`write_waveform_set`."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"{path}: cannot read simulated waveforms ({error})") from None
    adc_values, adc_offsets = _flat(table["adc"])
    electrons = {}
    electron_offsets = np.zeros(1, dtype=np.int64)
    for column in _ELECTRON_COLUMNS:
        electrons[column], electron_offsets = _flat(table[f"electron_{column}"])
    electron_frame = pd.DataFrame(electrons)
    electron_frame.insert(
        0, "waveform", np.repeat(np.arange(table.num_rows), np.diff(electron_offsets))
    )
    scalar = [c for c in table.column_names if c != "adc" and not c.startswith("electron_")]
    return WaveformSet(
        info=table.select(scalar).to_pandas(),
        adc=Ragged(adc_values, adc_offsets),
        electrons=electron_frame,
        electron_offsets=electron_offsets,
    )


def write_root_waveforms(
    rows: Ragged, path: str | Path, tree: str = "sim", branch: str = "wf_i"
) -> None:
    """Write waveforms as a ROOT TTree, one entry per waveform (the CEPC simulation
    layout by default: tree ``sim``, branch ``wf_i``), atomically."""
    import awkward as ak
    import uproot

    jagged = ak.unflatten(rows.values.astype(np.int16), rows.lengths)
    with atomic_file(path) as tmp, uproot.recreate(tmp) as file:
        file.mktree(tree, {branch: "var * int16"})
        file[tree].extend({branch: jagged})
