"""The charge a cell collects, the input of the dE/dx comparison.

In electrons where the simulation's truth calibrates it, else the integral of the
normalised waveform (:func:`cell_charge`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dndx.chain.preprocessing import normalise
from dndx.physics import pulse_peak_norm, shaped_pulse_peak
from dndx.simulation.tracks import CALIBRATION_COLUMNS
from dndx.waveforms import WaveformSet

__all__ = ["cell_charge", "waveform_charge_electrons"]


def waveform_charge_electrons(data: WaveformSet) -> NDArray[np.float64]:
    """The charge of every waveform, in electrons at the mean gain: ``(n_waveforms,)``.

    The baseline-subtracted samples are summed over the whole window and divided
    by a single electron's pulse sum, as a detector calibrated channel by
    channel (pedestal, gain, pulse shape) would: the pulse
    ``A (e^{-t/fall} - e^{-t/rise}) + c (e^{-t/ion} - e^{-t/rise})`` of peak 1 has
    the area ``A (fall - rise) + c (ion - rise)`` ns; the shaping stage has unit
    area, so a shaped pulse has that area times the gain ``A_shaped / A`` that
    brings its maximum back to 1. The baseline wander's Fourier modes sum to zero
    over the window; the noise averages out.
    """
    info = data.info
    rise_ns = info["rise_time_ns"].to_numpy()
    fall_ns = info["fall_time_ns"].to_numpy()
    _, norm = shaped_pulse_peak(rise_ns, fall_ns, info["shaping_time_ns"].to_numpy())
    ion_fraction = info["ion_tail_fraction"].to_numpy() * (norm / pulse_peak_norm(rise_ns, fall_ns))
    area_ns = norm * (fall_ns - rise_ns) + ion_fraction * (
        info["ion_tail_time_ns"].to_numpy() - rise_ns
    )
    samples = data.adc
    summed = np.bincount(
        samples.row_index(), weights=samples.values.astype(np.float64), minlength=len(samples)
    )
    signal = info["polarity"].to_numpy() * (summed - samples.lengths * info["baseline_adc"])
    per_electron = (
        info["single_electron_amplitude_adc"].to_numpy()
        * info["sampling_rate_ghz"].to_numpy()
        * area_ns
    )
    return np.asarray(signal / per_electron, dtype=np.float64)


def cell_charge(data: WaveformSet, model_rate_ghz: float) -> NDArray[np.float64]:
    """The charge of every cell, ``(n_waveforms,)``, for the dE/dx reference.

    In electrons (:func:`waveform_charge_electrons`) where the truth calibrates
    every cell (:data:`CALIBRATION_COLUMNS`); otherwise, for imported files,
    uncalibrated: the baseline-subtracted, polarity-corrected sum of the
    samples over the window times the sample spacing, in the input's unit
    times ns (waveforms resampled to ``model_rate_ghz`` first, as counted).
    dE/dx separation does not depend on the unit, only on the cells sharing one.
    """
    info = data.info
    if all(
        c in info and np.isfinite(info[c].to_numpy(np.float64)).all() for c in CALIBRATION_COLUMNS
    ):
        return waveform_charge_electrons(data)
    norm = normalise(data.adc, info["sampling_rate_ghz"].to_numpy(), model_rate_ghz)
    summed = norm.samples.sum(axis=1, dtype=np.float64)
    return np.asarray(summed * norm.noise_sigma / model_rate_ghz, dtype=np.float64)
