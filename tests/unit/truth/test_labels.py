"""Candidates, preprocessing and truth labels on small simulated sets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dndx.chain.preprocessing import estimate_baseline_noise, normalise, resample_linear
from dndx.config import Range, load_params
from dndx.physics import pulse_peak_delay_ns
from dndx.ragged import Ragged
from dndx.simulation.generator import simulate_range
from dndx.truth.labels import match_peaks
from dndx.truth.preparation import prepare_waveforms

PARAMS = load_params()
SIM = dataclasses.replace(PARAMS.simulate, n_train=60, block_size=30, chunk_size=60)
PREP = PARAMS.prepare


@pytest.fixture(scope="module")
def prepared():
    data = simulate_range(SIM, "train", 0, 60)
    return data, prepare_waveforms(data, PREP)


def test_signal_labels_lie_near_true_electrons(prepared) -> None:
    data, chunk = prepared
    rate = PREP.candidates.model_sampling_rate_ghz
    electrons = data.electrons
    delay = pulse_peak_delay_ns(data.info["rise_time_ns"], data.info["fall_time_ns"])
    signal = chunk.candidates[chunk.candidates["label"] == 1]
    assert len(signal) > 0
    for wf, sample in zip(signal["waveform_id"], signal["sample"], strict=True):
        mine = electrons[electrons["waveform"] == wf]
        electron_samples = (mine["time_ns"].to_numpy() + delay[wf]) * rate
        assert np.min(np.abs(electron_samples - sample)) <= PREP.match_tolerance_samples


def test_no_expected_peak_is_matched_twice(prepared) -> None:
    _, chunk = prepared
    per_waveform = chunk.candidates.groupby("waveform_id")["label"].sum()
    expected = chunk.waveforms.set_index("waveform_id")["n_expected_peaks"]
    assert np.all(per_waveform <= expected.loc[per_waveform.index])
    assert chunk.windows.shape == (len(chunk.candidates), PREP.candidates.window_length)


def _greedy_reference(det: list[float], exp: list[float], tol: float) -> list[int]:
    pairs = sorted(
        (abs(d - e), i, j)
        for i, d in enumerate(det)
        for j, e in enumerate(exp)
        if abs(d - e) <= tol
    )
    match, used = [-1] * len(det), set()
    for _, i, j in pairs:
        if match[i] < 0 and j not in used:
            match[i] = j
            used.add(j)
    return match


def test_matching_equals_brute_force_greedy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        det = np.sort(rng.integers(0, 60, rng.integers(0, 12))).astype(float)
        exp = np.sort(rng.uniform(0, 60, rng.integers(0, 12)))
        m = match_peaks(
            Ragged.from_lengths(det, [len(det)]), Ragged.from_lengths(exp, [len(exp)]), 2
        )
        assert m.detection_match.tolist() == _greedy_reference(det.tolist(), exp.tolist(), 2)
        matched = m.expected_match[m.expected_match >= 0]
        assert len(set(matched.tolist())) == len(matched)


def test_preprocessing_recovers_baseline_noise_and_polarity(prepared) -> None:
    data, _ = prepared
    norm = normalise(data.adc, data.info["sampling_rate_ghz"].to_numpy(), 1.5)
    assert np.array_equal(norm.polarity, data.info["polarity"].to_numpy())
    # The baseline wanders by up to 5 % of a single electron: judge on that scale.
    error = np.abs(norm.baseline - data.info["baseline_adc"])
    assert np.all(error < 0.15 * data.info["single_electron_amplitude_adc"])
    native = data.info["sampling_rate_ghz"].to_numpy() == 1.5
    truth = np.sqrt(data.info["noise_sigma_adc"] ** 2 + 1 / 12)[native]
    np.testing.assert_allclose(norm.noise_sigma[native], truth, rtol=0.15)
    assert norm.samples.shape == (60, 3000) and np.all(norm.lengths == 3000)


def test_resampling_keeps_the_time_span() -> None:
    x = np.sin(np.linspace(0, 3, 2400))[None, :]
    up = resample_linear(x, 1.2, 2.0)
    assert up.shape == (1, 4000)
    np.testing.assert_allclose(up[0, ::5], x[0, ::3], atol=1e-6)


def test_baseline_noise_ignores_pulses() -> None:
    rng = np.random.default_rng(1)
    w = 500 + 5 * rng.standard_normal((20, 3000))
    t = np.arange(3000)
    for start in rng.integers(300, 900, 25):  # 25 pulses of 10 sigma with 4-sample decay
        w += 50 * np.where(t >= start, np.exp(-(t - start) / 4.0), 0.0)[None, :]
    baseline, sigma = estimate_baseline_noise(w)
    np.testing.assert_allclose(baseline, 500, atol=0.6)
    assert np.mean(sigma) == pytest.approx(5, rel=0.05)
    np.testing.assert_allclose(sigma, 5, rtol=0.1)


@pytest.mark.parametrize("n_samples", [7, 8, 2400])
def test_baseline_is_the_median_of_the_quiet_samples(n_samples: int) -> None:
    # Integer ADC rows full of ties, pulses on one side, and a flat row (MAD 0).
    rng = np.random.default_rng(n_samples)
    w = np.rint(300 + 4 * rng.standard_normal((50, n_samples)))
    w[:, : n_samples // 4] += rng.integers(0, 200, (50, n_samples // 4))
    w[0] = 300.0
    baseline, sigma = estimate_baseline_noise(w)
    for row, base, noise in zip(w[1:], baseline[1:], sigma[1:], strict=True):
        first = np.median(row)
        spread = 1.4826 * np.median(np.abs(row - first)) or np.std(row)
        quiet = row[np.abs(row - first) <= 3 * spread]
        assert base == np.median(quiet)
        # The noise: the RMS of the steps within 3 sigma (from their MAD) of 0, over
        # sqrt(2), and over the 0.9866 of a Gaussian's RMS that the cut keeps.
        steps = np.diff(row)
        step_spread = 1.4826 * np.median(np.abs(steps)) or np.std(steps)
        quiet_steps = steps[np.abs(steps) <= 3 * step_spread]
        assert noise == pytest.approx(np.sqrt(np.mean(quiet_steps**2) / 2) / 0.9866, rel=1e-12)
    assert baseline[0] == 300.0
    assert sigma[0] == 1.0  # a flat row has no measurable noise


def test_expected_peaks_sit_on_the_maxima_of_shaped_pulses() -> None:
    slow = dataclasses.replace(
        SIM,
        fall_time_ns=Range(7.5, 15.0),
        shaping_time_ns=Range(2.0, 6.0),
        noise_fraction=Range(0.0, 0.0),
        baseline_wander_fraction=Range(0.0, 0.0),
        sampling_rates_ghz=(1.5,),
        cell_half_width_cm=Range(0.05, 0.1),  # one or two clusters: isolated pulses
    )
    data = simulate_range(slow, "train", 0, 60)
    chunk = prepare_waveforms(data, PREP)
    norm = normalise(data.adc, data.info["sampling_rate_ghz"].to_numpy(), 1.5)
    isolated_peaks = 0
    for row, times in enumerate(chunk.waveforms["expected_time_ns"]):
        times = np.asarray(times)
        if not len(times):
            continue
        gaps = np.diff(times)
        alone = np.concatenate([[np.inf], gaps]) > 100.0
        alone &= np.concatenate([gaps, [np.inf]]) > 100.0
        for sample in np.rint(times[alone] * 1.5).astype(int):
            around = norm.samples[row, sample - 4 : sample + 5]
            # The maximum (a plateau where the slow top rounds to one ADC count)
            # falls within a sample of the expected peak.
            assert np.min(np.abs(np.flatnonzero(around == around.max()) - 4)) <= 1
            isolated_peaks += 1
    assert isolated_peaks >= 10
