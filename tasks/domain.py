"""The training domain: the profile of the training waveforms, stored with the models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from dndx.config import DomainConfig
from dndx.domain.profile import TrainingDomain, profile_waveforms
from dndx.errors import InputError
from dndx.io.dataset import part_paths, read_waveform_samples
from dndx.ragged import Ragged

__all__ = ["profile_training"]


@task(task_run_name="profile the training waveforms", cache_policy=NO_CACHE)
def profile_training(
    train_dir: Path, cfg: DomainConfig, candidate_threshold_sigma: float
) -> TrainingDomain:
    """The profile of ``cfg.max_waveforms`` training waveforms, spread evenly over
    the parts of ``train_dir`` (simulated or ingested)."""
    parts = part_paths(train_dir)
    if not parts:
        raise InputError(f"{train_dir}: no training waveforms to profile")
    share = max(1, cfg.max_waveforms // len(parts))
    samples, rates = [], []
    for path in parts:
        adc, rate = read_waveform_samples(path)
        rows = np.unique(
            np.linspace(0, len(adc) - 1, min(share, len(adc))).round().astype(np.int64)
        )
        samples.append(adc.take(rows))
        rates.append(rate[rows])
    profile = profile_waveforms(
        Ragged.concatenate(samples), np.concatenate(rates), cfg, candidate_threshold_sigma
    )
    return TrainingDomain(profile, cfg)
