"""Baseline, noise and resampling: the fast paths give the numbers of the plain ones."""

from __future__ import annotations

import numpy as np

from dndx.config import parse_params
from dndx.preprocessing import estimate_baseline_noise
from dndx.simulation import simulate_range
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
