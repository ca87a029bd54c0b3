"""Files of six cells with track and path-length columns beside the waveforms, in
every format `dndx infer` reads; shared by the track-column tests of tests/unit and
tests/engines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import uproot

from dndx.io.readers import WaveformSource

N_WAVEFORMS = 6
N_SAMPLES = 20
TRACKS = np.array([4, 4, 4, 9, 9, 9])
PATHS_CM = np.array([0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
SAMPLES = np.arange(N_WAVEFORMS * N_SAMPLES, dtype=np.float32).reshape(N_WAVEFORMS, N_SAMPLES)


Writer = Callable[[Path, np.ndarray], WaveformSource]


def cells_root(directory: Path, track: np.ndarray) -> WaveformSource:
    path = directory / "cells.root"
    with uproot.recreate(path) as file:
        file["sim"] = {"wf_i": SAMPLES, "trk": track, "len_cm": PATHS_CM}
    return WaveformSource(path, "root", tree="sim", branch="wf_i")


def cells_hdf5(directory: Path, track: np.ndarray) -> WaveformSource:
    path = directory / "cells.h5"
    with h5py.File(path, "w") as file:
        file["adc"] = SAMPLES
        file["trk"] = track
        file["len_cm"] = PATHS_CM
    return WaveformSource(path, "hdf5", dataset="adc")


def cells_parquet(directory: Path, track: np.ndarray) -> WaveformSource:
    path = directory / "cells.parquet"
    table = pa.table({"adc": list(SAMPLES), "trk": track, "len_cm": PATHS_CM})
    pq.write_table(table, path, row_group_size=4)
    return WaveformSource(path, "parquet", column="adc")


def cells_npz(directory: Path, track: np.ndarray) -> WaveformSource:
    path = directory / "cells.npz"
    np.savez(path, waveforms=SAMPLES, trk=track, len_cm=PATHS_CM)
    return WaveformSource(path, "npz", array="waveforms")


WRITERS: dict[str, Writer] = {
    "root": cells_root,
    "hdf5": cells_hdf5,
    "parquet": cells_parquet,
    "npz": cells_npz,
}


def with_columns(
    source: WaveformSource, track: str = "trk", path: str | None = "len_cm"
) -> WaveformSource:
    return WaveformSource(
        source.path,
        source.format,
        **{key: getattr(source, key) for key in ("tree", "branch", "dataset", "column", "array")},
        track_column=track,
        path_column=path,
    )
