"""Baseline, noise and resampling: the fast paths give the numbers of the plain ones."""

from __future__ import annotations

import numpy as np

from dndx.chain.preprocessing import estimate_baseline_noise
from dndx.config import parse_params
from dndx.simulation.generator import simulate_range
from tests.conftest import tiny_params


def test_baseline_and_noise_of_adc_counts_are_those_of_the_float_path() -> None:
    # Dividing by 8 is exact and takes the samples off the half-integer grid,
    # so the second call sorts as floats while the first sorts ADC counts by radix.
    params = parse_params(tiny_params())
    data = simulate_range(params.simulate, "test", 0, params.simulate.n_test)
    rates = data.info["sampling_rate_ghz"].to_numpy()
    rows = np.flatnonzero(rates == rates[0])
    adc = np.stack([data.adc[int(row)] for row in rows]).astype(np.float64)
    assert np.array_equal(adc, np.rint(adc))
    baseline, sigma = estimate_baseline_noise(adc)
    float_baseline, float_sigma = estimate_baseline_noise(adc / 8)
    np.testing.assert_array_equal(baseline, 8 * float_baseline)
    np.testing.assert_array_equal(sigma, 8 * float_sigma)


def _by_definition(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The docstring of estimate_baseline_noise in plain numpy, one row at a time."""
    baselines, sigmas = [], []
    for row in rows.astype(np.float64):
        distance = np.abs(row - np.median(row))
        spread = 1.4826 * np.median(distance) or np.std(row)
        baselines.append(np.median(row[distance <= 3 * spread]))
        step = np.diff(row)
        step_spread = 1.4826 * np.median(np.abs(step)) or np.std(step)
        quiet = step[np.abs(step) <= 3 * step_spread]
        sigma = np.sqrt(np.mean(quiet**2) / 2) / 0.9866 if len(quiet) else 0.0
        sigmas.append(sigma if sigma > 0 else 1.0)
    return np.array(baselines), np.array(sigmas)


def test_baseline_and_noise_are_their_definition_on_ties_pulses_and_flat_rows() -> None:
    rng = np.random.default_rng(3)
    for n_samples in (2, 3, 8, 51, 400):
        noise = np.rint(rng.normal(0, 3, (6, n_samples))).astype(np.int64)
        pulses = np.where(rng.random((6, n_samples)) < 0.2, 40, 0)
        adc = 500 + noise + pulses
        adc[0] = 500  # flat: no spread at all
        adc[1, 1:] = 500  # one sample off an otherwise flat row: a MAD of 0
        for samples in (adc.astype(np.uint16), adc.astype(np.float32), adc / 4 + 0.125):
            baseline, sigma = estimate_baseline_noise(samples)
            expected_baseline, expected_sigma = _by_definition(samples)
            np.testing.assert_array_equal(baseline, expected_baseline)
            np.testing.assert_array_equal(sigma, expected_sigma)
