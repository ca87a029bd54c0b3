"""The D2 derivative peak finder and time clusterization, and their tuning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dndx.chain.baselines import d2_peaks, time_clusterize
from dndx.chain.preprocessing import Normalised, normalise
from dndx.config import PrepareConfig, load_params
from dndx.physics import pulse_peak_delay_ns, pulse_peak_norm
from dndx.ragged import Ragged
from dndx.scoring.metrics import count_matches
from dndx.scoring.tuning import tune_d2, tune_time_clusterization
from dndx.simulation.generator import simulate_range
from dndx.truth.labels import match_peaks
from dndx.truth.preparation import prepare_waveforms

RATE_GHZ = 1.5
N_SAMPLES = 3000
RISE_NS, FALL_NS = 0.8, 3.5


def _pulses(onset_ns: np.ndarray, height_sigma: np.ndarray) -> np.ndarray:
    """``(N_SAMPLES,)`` bi-exponential pulses of the given heights, noise-free."""
    t = np.arange(N_SAMPLES) / RATE_GHZ
    dt = np.clip(t[None, :] - onset_ns[:, None], 0.0, None)
    shape = np.exp(-dt / FALL_NS) - np.exp(-dt / RISE_NS)
    return (height_sigma[:, None] * pulse_peak_norm(RISE_NS, FALL_NS) * shape).sum(axis=0)


def _maxima_samples(onset_ns: np.ndarray) -> np.ndarray:
    return (onset_ns + pulse_peak_delay_ns(RISE_NS, FALL_NS)) * RATE_GHZ


@pytest.mark.parametrize("seed", range(5))
def test_d2_finds_separated_pulses_and_nothing_else(seed: int) -> None:
    onset_ns = np.array([70.0, 210.3, 350.7, 560.2, 800.9, 1300.4, 1700.0, 1709.0])
    height = np.array([15.0, 25.0, 10.0, 30.0, 20.0, 12.0, 20.0, 15.0])
    noise = np.random.default_rng(seed).standard_normal(N_SAMPLES)
    samples = (_pulses(onset_ns, height) + noise)[None, :].astype(np.float32)
    found = d2_peaks(samples, np.array([N_SAMPLES]), t1_sigma=3.0, t2=1.0)
    expected = _maxima_samples(onset_ns)
    assert len(found[0]) == len(expected)
    assert np.all(np.abs(found[0] - expected) <= 1.5)


def test_d2_on_pure_noise_finds_almost_nothing() -> None:
    samples = np.random.default_rng(1).standard_normal((50, N_SAMPLES)).astype(np.float32)
    found = d2_peaks(samples, np.full(50, N_SAMPLES), t1_sigma=3.0, t2=1.0)
    assert found.lengths.sum() <= 1


def test_d2_ignores_samples_past_each_row_length() -> None:
    onset_ns = np.array([100.0, 1500.0])
    row = _pulses(onset_ns, np.array([20.0, 20.0])).astype(np.float32)
    samples = np.stack([row, row])
    found = d2_peaks(samples, np.array([N_SAMPLES, 1500]), t1_sigma=3.0, t2=1.0)
    assert found.lengths.tolist() == [2, 1]
    assert np.all(np.diff(found.values[:2]) > 0)


def test_time_clusterize_merges_close_peaks_and_keeps_far_ones() -> None:
    times = Ragged.from_lengths(np.array([10.0, 11.0, 11.8, 30.0, 60.0, 60.5, 0.0, 5.0]), [6, 0, 2])
    clusters = time_clusterize(times, window_ns=1.5, growth_ns_per_sqrt_ns=0.0)
    assert [row.tolist() for row in clusters] == [[10.0, 30.0, 60.0], [], [0.0, 5.0]]
    assert clusters.lengths.dtype == np.int64


def test_time_clusterize_window_grows_with_time_since_the_first_peak() -> None:
    # The same 3 ns gap early and 100 ns after the first peak: the window is
    # about 1.5 ns at first and 1 + 0.3 * sqrt(103) = 4.0 ns later.
    times = Ragged.from_lengths(np.array([0.0, 3.0, 100.0, 103.0]), [4])
    assert time_clusterize(times, 1.0, 0.3)[0].tolist() == [0.0, 3.0, 100.0]
    assert time_clusterize(times, 1.0, 0.0).lengths.tolist() == [4]


def test_tune_time_clusterization_recovers_the_true_count() -> None:
    rng = np.random.default_rng(3)
    n_clusters = rng.integers(5, 30, size=50)
    rows = []
    for n in n_clusters:
        starts = np.cumsum(rng.uniform(10.0, 30.0, n))
        size = rng.integers(1, 4, n)
        peaks = np.repeat(starts, size) + np.concatenate([np.arange(k) * 0.8 for k in size])
        rows.append(peaks)
    times = Ragged.from_lengths(np.concatenate(rows), [len(r) for r in rows])
    tuning = tune_time_clusterization(times, n_clusters, (0.0, 0.5, 1.0, 2.0, 12.0), (0.0, 0.1))
    assert (tuning.window_ns, tuning.growth_ns_per_sqrt_ns) == (1.0, 0.0)
    assert len(tuning.scan) == 10
    chosen = tuning.scan.iloc[int(np.argmin(tuning.scan["rms_residual"]))]
    assert chosen["rms_residual"] == 0.0
    assert np.array_equal(time_clusterize(times, 1.0, 0.0).lengths, n_clusters)


ValidationSet = tuple[Normalised, Ragged, PrepareConfig]


@pytest.fixture(scope="module")
def validation_set() -> ValidationSet:
    params = load_params()
    sim = dataclasses.replace(params.simulate, n_validation=40, block_size=20, chunk_size=40)
    prep = params.prepare
    data = simulate_range(sim, "validation", 0, 40)
    waveforms = prepare_waveforms(data, prep).waveforms
    rate = prep.candidates.model_sampling_rate_ghz
    norm = normalise(data.adc, data.info["sampling_rate_ghz"].to_numpy(), rate)
    expected = Ragged.from_lengths(
        np.concatenate(waveforms["expected_time_ns"].to_list()).astype(np.float64) * rate,
        waveforms["n_expected_peaks"].to_numpy(),
    )
    return norm, expected, prep


def test_tune_d2_picks_the_best_grid_point(validation_set: ValidationSet) -> None:
    norm, expected, prep = validation_set
    t1_grid, t2_grid = (2.0, 3.0, 4.0), (0.5, 1.0, 1.25, 1.5, 2.0, 4.0)
    tuning = tune_d2(
        norm.samples, norm.lengths, expected, prep.match_tolerance_samples, t1_grid, t2_grid
    )
    scan = tuning.scan
    assert len(scan) == len(t1_grid) * len(t2_grid)
    best = scan.iloc[int(np.argmax(scan["efficiency_x_purity"]))]
    assert (tuning.t1_sigma, tuning.t2) == (best["t1_sigma"], best["t2"])
    assert tuning.best["efficiency_x_purity"] == best["efficiency_x_purity"] > 0.5
    assert np.all((scan["efficiency"] <= 1) & (scan["purity"] <= 1))
    # The scan scores what d2_peaks itself finds with the chosen thresholds.
    found = d2_peaks(norm.samples, norm.lengths, tuning.t1_sigma, tuning.t2)
    matching = match_peaks(found, expected, prep.match_tolerance_samples)
    scores = count_matches(found, expected, matching).scores()
    assert scores["efficiency_x_purity"] == pytest.approx(best["efficiency_x_purity"])
