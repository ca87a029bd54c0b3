"""Front ends the domain tests make: simulated waveforms, their profile, a shifted
front end and the training domain; shared by tests/unit/domain and tests/engines."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
from scipy.signal import lfilter

from dndx.config import load_params
from dndx.domain.profile import (
    DomainProfile,
    TrainingDomain,
    profile_waveforms,
)
from dndx.ragged import Ragged
from dndx.simulation.generator import simulate_range
from dndx.waveforms import WaveformSet

PARAMS = load_params()
CFG = PARAMS.domain
THRESHOLD = PARAMS.prepare.candidates.candidate_threshold_sigma


def simulate_waveforms(n: int, seed: int, **settings: Any) -> WaveformSet:
    """``n`` training waveforms of the simulate section with ``settings`` replaced."""
    # Ranges given as (low, high) are validated into Range as in params.yaml.
    cfg = dataclasses.replace(
        PARAMS.simulate, seed=seed, n_train=n, block_size=100, chunk_size=100, **settings
    )
    return simulate_range(cfg, "train", 0, n)


def profile_of(data: WaveformSet | Ragged, rates: np.ndarray | None = None) -> DomainProfile:
    """The domain profile of simulated waveforms, or of rows at ``rates`` (GS/s)."""
    if isinstance(data, WaveformSet):
        return profile_waveforms(
            data.adc, data.info["sampling_rate_ghz"].to_numpy(), CFG, THRESHOLD
        )
    assert rates is not None
    return profile_waveforms(data, rates, CFG, THRESHOLD)


def shifted(data: WaveformSet, rng: np.random.Generator, shaping_ns: float) -> Ragged:
    """``data`` through an extra exponential shaping stage of ``shaping_ns`` (its
    gain chosen to keep pulse heights alike), plus band-limited noise: white noise
    through a one-pole low-pass of 2 ns, of 8 % of the single-electron amplitude."""
    rows = []
    for i, row in enumerate(data.adc):
        rate = float(data.info["sampling_rate_ghz"][i])
        baseline = float(data.info["baseline_adc"][i])
        signal = row.astype(np.float64) - baseline
        kernel = np.exp(-np.arange(int(8 * shaping_ns * rate)) / (shaping_ns * rate))
        signal = np.convolve(signal, kernel / kernel.sum())[: len(signal)] * shaping_ns / 2
        decay = np.exp(-1 / (2.0 * rate))
        noise = lfilter([np.sqrt(1 - decay**2)], [1, -decay], rng.standard_normal(len(row)))
        sigma = 0.08 * float(data.info["single_electron_amplitude_adc"][i])
        rows.append(baseline + signal + sigma * noise)
    return Ragged.from_rows(rows, np.float64)


@functools.cache
def training_domain() -> TrainingDomain:
    """The profile of waveforms drawn over every setting of the simulate section."""
    return TrainingDomain(profile_of(simulate_waveforms(1000, seed=1)), CFG)
