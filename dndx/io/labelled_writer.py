"""Writing simulated waveforms as labelled ROOT or HDF5 files, in either layout
of :mod:`dndx.io.labelled`: example data for users, and input for the ingest tests.

In the ``cepc`` layout every electron becomes one tagged peak: its pulse
maximum (arrival plus the pulse's peak delay) in samples of the waveform's
rate, tag 1 for the first electron of a primary cluster and 2 for the others,
its pulse height as ``height``. ``prepare`` merges peaks closer than the
resolving time, as it merges the simulator's electrons, so both layouts give
the same labels.

The HDF5 form follows :mod:`dndx.io.labelled`'s convention: one dataset per
branch name in a group named like the tree; waveforms as a 2-D dataset when
they all have one length (one sampling rate), variable-length otherwise; the
per-peak and per-electron lists variable-length.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import uproot

from dndx.errors import InputError
from dndx.io.labelled import DEFAULT_NAMES, PDG_CODES
from dndx.io.source import detect_format
from dndx.physics import shaped_pulse_peak
from dndx.ragged import Ragged
from dndx.storage import atomic_file
from dndx.waveforms import WaveformSet

__all__ = ["LABELLED_WRITE_FORMATS", "labelled_format", "write_labelled"]

#: The formats :func:`write_labelled` writes, chosen by the file's suffix.
LABELLED_WRITE_FORMATS: tuple[str, ...] = ("root", "hdf5")
_BASKET_ENTRIES = 1000


def _branches(data: WaveformSet, layout: str) -> dict[str, Ragged | np.ndarray]:
    """Branch name -> one number per waveform ``(n_waveforms,)`` or one list per waveform."""
    info = data.info
    names = DEFAULT_NAMES[layout]
    adc = data.adc
    times = data.electrons["time_ns"].to_numpy()
    offsets = data.electron_offsets
    if layout == "cepc":
        rate = info["sampling_rate_ghz"].to_numpy()
        delay, _ = shaped_pulse_peak(
            info["rise_time_ns"], info["fall_time_ns"], info["shaping_time_ns"]
        )
        rows = Ragged(times, offsets).row_index()
        peak_samples = (times + delay[rows]) * rate[rows]
        inside = peak_samples < adc.lengths[rows]
        lengths = np.bincount(rows[inside], minlength=len(info))
        tag = np.where(data.electrons["primary"].to_numpy(), 1, 2)[inside].astype(np.int32)
        height = data.electrons["amplitude_adc"].to_numpy()[inside]
        return {
            names["waveform"]: Ragged(adc.values.astype(np.float32), adc.offsets),
            names["sampling_rate"]: rate,
            names["n_clusters"]: info["n_clusters"].to_numpy().astype(np.int32),
            names["momentum"]: info["momentum_gev"].to_numpy(),
            names["time"]: Ragged.from_lengths(peak_samples[inside].astype(np.float32), lengths),
            names["tag"]: Ragged.from_lengths(tag, lengths),
            names["height"]: Ragged.from_lengths(height.astype(np.float32), lengths),
        }
    if layout == "dndx":
        scalars = {
            column: info[column].to_numpy()
            for column in info.columns
            if column != "particle" and info[column].dtype.kind in "biuf"
        }
        return {
            **scalars,
            names["particle"]: info["particle"].map(PDG_CODES).to_numpy(np.int32),
            names["waveform"]: Ragged(adc.values.astype(np.uint16), adc.offsets),
            names["time"]: Ragged(times, offsets),
            names["cluster"]: Ragged(data.electrons["cluster"].to_numpy(), offsets),
            names["primary"]: Ragged(data.electrons["primary"].to_numpy(), offsets),
            names["amplitude"]: Ragged(data.electrons["amplitude_adc"].to_numpy(), offsets),
        }
    raise ValueError(f"unknown layout {layout!r}")


def _write_root(path: Path, tree: str, branches: dict[str, Ragged | np.ndarray]) -> None:
    arrays = {
        name: ak.unflatten(v.values, v.lengths) if isinstance(v, Ragged) else v
        for name, v in branches.items()
    }
    with uproot.recreate(path) as file:
        # A TTree, as the CEPC productions hold (a plain dict would become an RNTuple).
        file.mktree(
            tree, {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in arrays.items()}
        )
        # uproot writes one basket per call; readers decompress whole baskets, so
        # a chunk of entries must not cost the whole file.
        n_entries = len(next(iter(arrays.values())))
        for start in range(0, n_entries, _BASKET_ENTRIES):
            file[tree].extend({k: v[start : start + _BASKET_ENTRIES] for k, v in arrays.items()})


def _write_hdf5(path: Path, tree: str, branches: dict[str, Ragged | np.ndarray]) -> None:
    with h5py.File(path, "w") as file:
        group = file.create_group(tree)
        for name, values in branches.items():
            if not isinstance(values, Ragged):
                group.create_dataset(name, data=values)
            elif len(values) and (values.lengths == values.lengths[0]).all():
                group.create_dataset(name, data=values.values.reshape(len(values), -1))
            else:
                rows = np.empty(len(values), dtype=object)
                rows[:] = np.split(values.values, values.offsets[1:-1])
                group.create_dataset(name, data=rows, dtype=h5py.vlen_dtype(values.values.dtype))


def labelled_format(path: str | Path) -> str:
    """The format :func:`write_labelled` writes ``path`` in, by its suffix.

    Raises:
        InputError: the suffix names a format not in :data:`LABELLED_WRITE_FORMATS`.

    >>> labelled_format("example.h5")
    'hdf5'
    """
    fmt = detect_format(path)
    if fmt not in LABELLED_WRITE_FORMATS:
        raise InputError(
            f"{path}: labelled files are written as ROOT (.root) or HDF5 (.h5, .hdf5), not {fmt}"
        )
    return fmt


def write_labelled(data: WaveformSet, path: str | Path, layout: str) -> None:
    """Write ``data`` in ``layout`` (``cepc`` or ``dndx``) as a ROOT or HDF5 file,
    by the suffix of ``path``, atomically.

    Raises:
        InputError: as :func:`labelled_format`.
    """
    fmt = labelled_format(path)
    branches = _branches(data, layout)
    tree = DEFAULT_NAMES[layout]["tree"]
    with atomic_file(path) as tmp:
        (_write_root if fmt == "root" else _write_hdf5)(tmp, tree, branches)
