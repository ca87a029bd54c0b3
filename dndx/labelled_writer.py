"""Writing simulated waveforms as labelled ROOT files, in either layout of
:mod:`dndx.labelled`: example data for users, and input for the ingest tests.

In the ``cepc`` layout every electron becomes one tagged peak: its pulse
maximum (arrival plus the pulse's peak delay) in samples of the waveform's
rate, tag 1 for the first electron of a primary cluster and 2 for the others,
its pulse height as ``height``. ``prepare`` merges peaks closer than the
resolving time, as it merges the simulator's electrons, so both layouts give
the same labels.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from dndx.labelled import DEFAULT_NAMES, PDG_CODES
from dndx.physics import pulse_peak_delay_ns
from dndx.ragged import Ragged
from dndx.simulation import WaveformSet
from dndx.storage import atomic_file

__all__ = ["write_labelled_root"]


def _jagged(values: np.ndarray, offsets: np.ndarray) -> ak.Array:
    return ak.unflatten(values, np.diff(offsets))


def write_labelled_root(data: WaveformSet, path: str | Path, layout: str) -> None:
    """Write ``data`` as a ROOT file in ``layout`` (``cepc`` or ``dndx``), atomically."""
    info = data.info
    names = DEFAULT_NAMES[layout]
    adc = data.adc
    times = data.electrons["time_ns"].to_numpy()
    offsets = data.electron_offsets
    if layout == "cepc":
        rate = info["sampling_rate_ghz"].to_numpy()
        delay = pulse_peak_delay_ns(info["rise_time_ns"], info["fall_time_ns"])
        rows = Ragged(times, offsets).row_index()
        peak_samples = (times + delay[rows]) * rate[rows]
        inside = peak_samples < adc.lengths[rows]
        kept = Ragged.from_lengths(
            peak_samples[inside], np.bincount(rows[inside], minlength=len(info))
        )
        tag = np.where(data.electrons["primary"].to_numpy(), 1, 2)[inside].astype(np.int32)
        height = data.electrons["amplitude_adc"].to_numpy()[inside]
        branches = {
            names["waveform"]: _jagged(adc.values.astype(np.float32), adc.offsets),
            names["sampling_rate"]: rate,
            names["n_clusters"]: info["n_clusters"].to_numpy().astype(np.int32),
            names["momentum"]: info["momentum_gev"].to_numpy(),
            names["time"]: _jagged(kept.values.astype(np.float32), kept.offsets),
            names["tag"]: _jagged(tag, kept.offsets),
            names["height"]: _jagged(height.astype(np.float32), kept.offsets),
        }
    elif layout == "dndx":
        scalars = {
            column: info[column].to_numpy()
            for column in info.columns
            if column != "particle" and info[column].dtype.kind in "biuf"
        }
        branches = {
            **scalars,
            names["particle"]: info["particle"].map(PDG_CODES).to_numpy(np.int32),
            names["waveform"]: _jagged(adc.values.astype(np.uint16), adc.offsets),
            names["time"]: _jagged(times, offsets),
            names["cluster"]: _jagged(data.electrons["cluster"].to_numpy(), offsets),
            names["primary"]: _jagged(data.electrons["primary"].to_numpy(), offsets),
            names["amplitude"]: _jagged(data.electrons["amplitude_adc"].to_numpy(), offsets),
        }
    else:
        raise ValueError(f"unknown layout {layout!r}")
    with atomic_file(path) as tmp, uproot.recreate(tmp) as file:
        # A TTree, as the CEPC productions hold (a plain dict would become an RNTuple).
        file.mktree(
            names["tree"],
            {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()},
        )
        file[names["tree"]].extend(branches)
