"""Determinism and the on-disk form of simulated data."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from dndx.config import Range, load_params
from dndx.io.dataset import read_waveform_set, write_waveform_set
from dndx.physics import pulse_peak_delay_ns, pulse_peak_norm, shaped_pulse_peak
from dndx.simulation.generator import simulate_range
from dndx.waveforms import WaveformSet

CFG = dataclasses.replace(
    load_params().simulate, n_train=90, n_validation=30, block_size=15, chunk_size=30
)


def _assert_same(a: WaveformSet, b: WaveformSet) -> None:
    pd.testing.assert_frame_equal(a.info, b.info)
    pd.testing.assert_frame_equal(a.electrons, b.electrons)
    assert np.array_equal(a.adc.values, b.adc.values)
    assert np.array_equal(a.adc.offsets, b.adc.offsets)
    assert np.array_equal(a.electron_offsets, b.electron_offsets)


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_waveform_set(simulate_range(CFG, "train", 0, 90), tmp_path / f"{name}.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_chunked_generation_equals_whole() -> None:
    whole = simulate_range(CFG, "train", 0, 90)
    chunks = [simulate_range(CFG, "train", start, start + 30) for start in (0, 30, 60)]
    _assert_same(whole, WaveformSet.concatenate(chunks))


def test_seed_and_split_change_the_data() -> None:
    base = simulate_range(CFG, "train", 0, 30)
    other_seed = simulate_range(dataclasses.replace(CFG, seed=7), "train", 0, 30)
    other_split = simulate_range(CFG, "validation", 0, 30)
    assert not base.info["momentum_gev"].equals(other_seed.info["momentum_gev"])
    assert not base.info["momentum_gev"].equals(other_split.info["momentum_gev"])


def test_ranges_must_fall_on_blocks() -> None:
    with pytest.raises(ValueError, match="blocks of 15"):
        simulate_range(CFG, "train", 5, 30)


def test_parquet_round_trip(tmp_path: Path) -> None:
    data = simulate_range(CFG, "train", 0, 30)
    write_waveform_set(data, tmp_path / "part.parquet")
    back = read_waveform_set(tmp_path / "part.parquet")
    pd.testing.assert_frame_equal(back.info, data.info)
    assert np.array_equal(back.adc.values, data.adc.values)
    assert np.array_equal(back.electron_offsets, data.electron_offsets)
    np.testing.assert_allclose(back.electrons["time_ns"], data.electrons["time_ns"], rtol=1e-6)
    assert list(tmp_path.iterdir()) == [tmp_path / "part.parquet"]  # no temporary left


#: SHA-256 of the ADC samples, their row offsets and the electrons' arrival times of
#: ``simulate_range(CFG, "train", 0, 90)``, made by the simulator of commit 940b387,
#: before the shaping stage and the correlated noise: the defaults must keep them.
RELEASE_DIGEST = "12d5871d942b53c904b19351fab327ea560d6d3061662a963f31dcb0442b1e91"

SHIFTED = dataclasses.replace(
    CFG,
    fall_time_ns=Range(7.5, 15.0),
    shaping_time_ns=Range(2.0, 8.0),
    noise_correlation_time_ns=Range(0.5, 3.0),
)


def test_defaults_reproduce_the_data_of_earlier_releases() -> None:
    data = simulate_range(CFG, "train", 0, 90)
    digest = hashlib.sha256()
    for array in (data.adc.values, data.adc.offsets, data.electrons["time_ns"].to_numpy()):
        digest.update(array.tobytes())
    assert digest.hexdigest() == RELEASE_DIGEST
    assert (data.info["shaping_time_ns"] == 0).all()
    assert (data.info["noise_correlation_time_ns"] == 0).all()


def test_front_end_draws_leave_the_rest_of_the_data_alone() -> None:
    nominal = simulate_range(CFG, "train", 0, 30)
    shifted = simulate_range(SHIFTED, "train", 0, 30)
    pd.testing.assert_frame_equal(nominal.electrons, shifted.electrons)
    assert shifted.info["shaping_time_ns"].between(2.0, 8.0).all()
    assert shifted.info["noise_correlation_time_ns"].between(0.5, 3.0).all()
    assert not np.array_equal(nominal.adc.values, shifted.adc.values)


def test_chunked_generation_equals_whole_with_a_shifted_front_end() -> None:
    whole = simulate_range(SHIFTED, "train", 0, 90)
    chunks = [simulate_range(SHIFTED, "train", start, start + 30) for start in (0, 30, 60)]
    _assert_same(whole, WaveformSet.concatenate(chunks))


def _reference_pulse(
    rise_ns: float,
    fall_ns: float,
    ion_fraction: float,
    ion_ns: float,
    shaping_ns: float,
    length_ns: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The single-electron pulse on a fine grid, by numerical convolution: the
    unshaped pulse of peak 1 (plus its ion tail) convolved with the RC integrator,
    scaled so that the shaped main pulse peaks at 1."""
    t_ns = np.arange(0.0, length_ns, _FINE_NS)
    main = np.exp(-t_ns / fall_ns) - np.exp(-t_ns / rise_ns)
    main /= main.max()
    ion = ion_fraction * (np.exp(-t_ns / ion_ns) - np.exp(-t_ns / rise_ns))
    kernel = np.exp(-t_ns / shaping_ns) / shaping_ns * _FINE_NS
    # Trapezoidal weights: the kernel jumps at 0, where a plain sum errs by dt / 2.
    kernel[0] /= 2

    def shaped(signal: NDArray[np.float64]) -> NDArray[np.float64]:
        n = 2 * len(t_ns)
        return np.fft.irfft(np.fft.rfft(signal, n) * np.fft.rfft(kernel, n), n)[: len(t_ns)]

    main_shaped = shaped(main)
    return t_ns, (main_shaped + shaped(ion)) / main_shaped.max()


_FINE_NS = 0.002


def test_shaped_pulses_follow_the_convolution_of_pulse_and_shaper() -> None:
    cfg = dataclasses.replace(
        SHIFTED,
        noise_fraction=Range(0.0, 0.0),
        noise_correlation_time_ns=Range(0.0, 0.0),
        baseline_wander_fraction=Range(0.0, 0.0),
        adc_bits=16,
        single_electron_amplitude_adc=Range(1000.0, 1000.0),
    )
    data = simulate_range(cfg, "train", 0, 15)
    worst = 0.0
    for row in range(4):
        info = data.info.iloc[row]
        t_ns, pulse = _reference_pulse(
            info["rise_time_ns"],
            info["fall_time_ns"],
            info["ion_tail_fraction"],
            info["ion_tail_time_ns"],
            info["shaping_time_ns"],
            cfg.window_ns,
        )
        electrons = data.electrons.iloc[data.electron_offsets[row] : data.electron_offsets[row + 1]]
        samples_ns = np.arange(len(data.adc[row])) / info["sampling_rate_ghz"]
        since_ns = samples_ns[None, :] - electrons["time_ns"].to_numpy()[:, None]
        expected = electrons["amplitude_adc"].to_numpy() @ np.where(
            since_ns >= 0, np.interp(since_ns, t_ns, pulse), 0.0
        )
        measured = info["polarity"] * (data.adc[row].astype(float) - info["baseline_adc"])
        worst = max(worst, float(np.abs(measured - expected).max()))
    # Rounding to ADC counts: 0.5; the reference's trapezoidal convolution and linear
    # interpolation err by ~dt^2 / rise^2 = 1e-5 of a pulse, 1000 ADC counts high and
    # piled up a few deep: well below 0.1 count.
    assert worst < 0.6


def test_shaped_pulse_peak_is_the_maximum_of_the_shaped_pulse() -> None:
    rise_ns, fall_ns = np.array([0.8, 1.0, 3.0, 1.0]), np.array([3.0, 4.0, 9.0, 4.0])
    shaping_ns = np.array([0.5, 4.0, 25.0, 0.0])
    delay_ns, norm = shaped_pulse_peak(rise_ns, fall_ns, shaping_ns)
    for i in range(3):
        t_ns, pulse = _reference_pulse(rise_ns[i], fall_ns[i], 0.0, 100.0, shaping_ns[i], 300.0)
        # The fine grid's step; where the shaping time equals the fall time (row 1) it is
        # moved by 0.2 %, which moves the maximum by as much.
        assert delay_ns[i] == pytest.approx(t_ns[pulse.argmax()], abs=_FINE_NS + 2e-3 * 5)
    assert delay_ns[3] == pulse_peak_delay_ns(1.0, 4.0)
    assert norm[3] == pulse_peak_norm(1.0, 4.0)


def _autocorrelation(noise: NDArray[np.float64], lag: int) -> float:
    return float((noise[:, lag:] * noise[:, :-lag]).sum() / (noise**2).sum())


@pytest.mark.parametrize("correlation_ns", [1.0, 4.0])
def test_correlated_noise_has_the_autocorrelation_of_its_spectrum(correlation_ns: float) -> None:
    quiet = dataclasses.replace(
        CFG,
        sampling_rates_ghz=(1.5,),
        noise_fraction=Range(0.0, 0.0),
        adc_bits=16,
        single_electron_amplitude_adc=Range(1000.0, 1000.0),
        noise_correlation_time_ns=Range(correlation_ns, correlation_ns),
    )
    noisy = dataclasses.replace(quiet, noise_fraction=Range(0.1, 0.1))
    # The same seed draws the same signal: the difference is the noise alone (its
    # rounding to counts adds white noise of variance 1/6 to 100^2: negligible).
    signal, both = (simulate_range(c, "train", 0, 30) for c in (quiet, noisy))
    noise = (both.adc.values.astype(float) - signal.adc.values).reshape(30, -1)
    noise *= both.info["polarity"].to_numpy()[:, None]
    n_values = noise.size
    assert noise.std() == pytest.approx(
        100.0, rel=5 * np.sqrt(2 * correlation_ns * 1.5 / n_values) + 0.01
    )
    rho = np.exp(-1.0 / (1.5 * correlation_ns))
    for lag in (1, 2, 4, 8):
        # Bartlett's variance of an AR(1)'s sample autocorrelation at this lag.
        variance = (
            (1 + rho**2) * (1 - rho ** (2 * lag)) / (1 - rho**2) - 2 * lag * rho ** (2 * lag)
        ) / n_values
        assert _autocorrelation(noise, lag) == pytest.approx(rho**lag, abs=4 * np.sqrt(variance))
