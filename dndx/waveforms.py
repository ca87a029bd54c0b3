"""Waveforms with their truth: the container every stage passes on, and the splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.physics import shaped_pulse_peak
from dndx.ragged import Ragged

__all__ = ["SPLITS", "WaveformSet", "peak_delay_ns"]


#: Data splits, in the order their random streams are numbered.
SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True, eq=False)
class WaveformSet:
    """Simulated (or read) waveforms with their truth.

    Attributes:
        info: ``(n_waveforms, ...)`` one row per waveform: particle, momentum,
            cell, digitiser settings, noise, and ``n_clusters`` (the target).
        adc: ``n_waveforms`` rows of uint16 ADC samples; the row length is
            ``window_ns * sampling_rate_ghz`` and differs between rates.
        electrons: ``(n_electrons, 5)`` every electron, grouped by waveform and
            sorted by arrival: ``waveform`` (row in ``info``), ``time_ns``
            (arrival at the wire, from the window start), ``cluster`` (index
            within its waveform), ``primary`` and ``amplitude_adc`` (the height
            of its own pulse).
        electron_offsets: ``(n_waveforms + 1,)`` the electrons of waveform
            ``i`` are rows ``electron_offsets[i]:electron_offsets[i + 1]``.
    """

    info: pd.DataFrame
    adc: Ragged
    electrons: pd.DataFrame
    electron_offsets: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.info)

    def take(self, rows: NDArray[np.int64]) -> WaveformSet:
        """The waveforms ``rows`` (``(n_taken,)`` indices into ``info``), in that order.

        >>> import dataclasses
        >>> from dndx.config import load_params
        >>> from dndx.simulation.generator import simulate_range
        >>> cfg = dataclasses.replace(load_params().simulate, n_train=4, block_size=4)
        >>> data = simulate_range(cfg, "train", 0, 4)
        >>> taken = data.take(np.array([2, 0]))
        >>> bool(np.array_equal(taken.adc[1], data.adc[0]))
        True
        >>> bool(taken.electrons["time_ns"].equals(pd.concat(
        ...     [data.electrons["time_ns"][data.electron_offsets[i]:data.electron_offsets[i + 1]]
        ...      for i in (2, 0)], ignore_index=True)))
        True
        """
        by_waveform = Ragged(np.arange(len(self.electrons)), self.electron_offsets).take(rows)
        electrons = self.electrons.iloc[by_waveform.values].reset_index(drop=True)
        electrons["waveform"] = by_waveform.row_index()
        return WaveformSet(
            info=self.info.iloc[rows].reset_index(drop=True),
            adc=self.adc.take(rows),
            electrons=electrons,
            electron_offsets=by_waveform.offsets,
        )

    @classmethod
    def concatenate(cls, parts: list[WaveformSet]) -> WaveformSet:
        """The waveforms of all ``parts``, in order."""
        shifts = np.cumsum([0] + [len(p) for p in parts[:-1]])
        electrons = pd.concat(
            [
                p.electrons.assign(waveform=p.electrons["waveform"] + s)
                for p, s in zip(parts, shifts, strict=True)
            ],
            ignore_index=True,
        )
        counts = np.concatenate([np.diff(p.electron_offsets) for p in parts])
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(
            info=pd.concat([p.info for p in parts], ignore_index=True),
            adc=Ragged.concatenate([p.adc for p in parts]),
            electrons=electrons,
            electron_offsets=offsets,
        )


def peak_delay_ns(info: pd.DataFrame) -> NDArray[np.float64]:
    """``(n_waveforms,)`` time from an electron's arrival to its pulse's maximum.

    Labelled files give peak times, not arrivals: their ``info`` says the delay is 0.
    Waveforms simulated before the shaping stage existed have no
    ``shaping_time_ns``: they were not shaped.
    """
    if "peak_delay_ns" in info:
        return info["peak_delay_ns"].to_numpy(dtype=np.float64)
    shaping_ns = info["shaping_time_ns"].to_numpy() if "shaping_time_ns" in info else 0.0
    delay_ns, _ = shaped_pulse_peak(
        info["rise_time_ns"].to_numpy(), info["fall_time_ns"].to_numpy(), shaping_ns
    )
    return delay_ns
