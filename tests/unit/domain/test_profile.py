"""Domain profiles: what they recover of a known simulated front end, which files they
call in or outside the training domain, and the training domain's file.

A shifted front end is made here from simulated waveforms: an extra exponential
shaping stage (slower pulses) and band-limited noise (white noise through a
one-pole low-pass filter), drawn from a seeded generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dndx.domain.profile import (
    DOMAIN_FILE,
    TrainingDomain,
    judge,
    shape_times,
)
from dndx.errors import InputError
from dndx.physics import pulse_peak_norm
from tests.front_ends import (
    CFG,
    profile_of,
    shifted,
    simulate_waveforms,
    training_domain,
)


@pytest.fixture
def training() -> TrainingDomain:
    return training_domain()


def test_the_profile_recovers_a_known_front_end() -> None:
    # Sparse waveforms (short chords, no diffusion) of one front end at one rate.
    rise_ns, fall_ns = 0.8, 4.0
    data = simulate_waveforms(
        600,
        seed=2,
        cell_half_width_cm=(0.05, 0.1),
        diffusion_sigma_at_5mm_ns=(0.0, 0.0),
        rise_time_ns=(rise_ns, rise_ns),
        fall_time_ns=(fall_ns, fall_ns),
        ion_tail_fraction=(0.0, 0.0),
        noise_fraction=(0.06, 0.06),
        sampling_rates_ghz=(1.5,),
        polarities=(-1,),
    )
    profile = profile_of(data)
    # The single-electron response of the simulator, finely sampled.
    t = np.arange(0.0, 60.0, 0.01)
    response = pulse_peak_norm(rise_ns, fall_ns) * (np.exp(-t / fall_ns) - np.exp(-t / rise_ns))
    true_rise, true_fall, _ = shape_times(t, response, 60.0)
    assert true_rise is not None and true_fall is not None
    assert profile.n_pulses >= CFG.min_pulses
    # The fall within 20 %; the rise, spanning two samples at 1.5 GS/s, within one sample.
    assert profile.fall_time_ns == pytest.approx(true_fall, rel=0.2)
    assert profile.rise_time_ns == pytest.approx(true_rise, abs=1 / 1.5)
    assert profile.noise_sigma == pytest.approx(
        float(np.median(data.info["noise_sigma_adc"])), rel=0.05
    )
    assert profile.noise_excess == pytest.approx(1.0, abs=0.05)
    assert all(abs(rho) < 0.05 for rho in profile.noise_autocorrelation if rho is not None)
    assert all(v is not None and 0.8 < v < 1.2 for v in profile.noise_spectrum[1:16])
    # Polarity is read off each row: a few sparse rows, one small pulse on a
    # wandering baseline, read the wander's side.
    assert profile.positive_fraction < 0.15
    assert profile.sampling_rates_ghz == (1.5,)


@pytest.mark.parametrize(
    "settings",
    [
        {"sampling_rates_ghz": (1.2,)},
        {"sampling_rates_ghz": (2.0,)},
        {"rise_time_ns": (0.6, 0.6), "fall_time_ns": (2.5, 2.5), "sampling_rates_ghz": (2.0,)},
        {"rise_time_ns": (1.1, 1.1), "fall_time_ns": (5.0, 5.0), "sampling_rates_ghz": (1.2,)},
        {"noise_fraction": (0.03, 0.03), "baseline_wander_fraction": (0.05, 0.05)},
        {"noise_fraction": (0.1, 0.1), "single_electron_amplitude_adc": (40.0, 40.0)},
        {"ion_tail_fraction": (0.05, 0.05), "ion_tail_time_ns": (200.0, 200.0)},
        {"polarities": (1,)},
    ],
    ids=["1.2GS", "2GS", "fast", "slow", "quiet+wander", "noisy+low-gain", "ion-tail", "positive"],
)
def test_files_of_the_training_simulator_at_any_setting_are_in(
    training: TrainingDomain, settings: dict[str, object]
) -> None:
    verdict = judge(profile_of(simulate_waveforms(500, seed=3, **settings)), training)
    assert verdict.verdict == "in", verdict


def test_slower_shaping_or_band_limited_noise_is_outside(training: TrainingDomain) -> None:
    data = simulate_waveforms(500, seed=4)
    rates = data.info["sampling_rate_ghz"].to_numpy()
    verdict = judge(profile_of(shifted(data, np.random.default_rng(5), 6.0), rates), training)
    assert verdict.verdict == "outside"
    outside = {d.quantity for d in verdict.differences if d.outside}
    assert "noise_autocorrelation_1ns" in outside
    # Three times the simulator's slowest fall, white noise: the pulse shape alone.
    slow = judge(profile_of(simulate_waveforms(500, seed=4, fall_time_ns=(15.0, 15.0))), training)
    assert slow.verdict == "outside"
    assert {d.quantity for d in slow.differences if d.outside} >= {"fall_time_ns"}
    fall = next(d for d in slow.differences if d.quantity == "fall_time_ns")
    assert fall.change is not None and fall.change > 2.0
    # The simulator's own band-limited noise (benchmarks/domain.py's `noise` domain).
    noisy = judge(
        profile_of(simulate_waveforms(500, seed=4, noise_correlation_time_ns=(1.0, 3.0))), training
    )
    assert "noise_autocorrelation_1ns" in {d.quantity for d in noisy.differences if d.outside}


def test_the_training_domain_round_trips_and_a_damaged_one_is_named(
    training: TrainingDomain, tmp_path: Path
) -> None:
    path = training.save(tmp_path)
    assert path.name == DOMAIN_FILE
    assert TrainingDomain.load(tmp_path) == training
    assert TrainingDomain.load(tmp_path / "none") is None
    raw = json.loads(path.read_text())
    del raw["profile"]["fall_time_ns"]
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=rf"{DOMAIN_FILE}: not a TrainingDomain: profile"):
        TrainingDomain.load(tmp_path)
    path.write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        TrainingDomain.load(tmp_path)
