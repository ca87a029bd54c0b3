"""Domain profiles: of the training waveforms (stored with the models), of the target
files, and of the simulation at a candidate front end (the target fit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from dndx.chain.inference import infer_waveforms, infer_waveforms_d2
from dndx.chain.onnx import OnnxModels
from dndx.config import DomainConfig, SimulationConfig, TargetFitConfig
from dndx.domain.checks import target_checks
from dndx.domain.files import profile_files, read_sample
from dndx.domain.fit import Setting, TargetFit, apply_fit, simulate_profile
from dndx.domain.profile import DomainProfile, TrainingDomain, profile_waveforms
from dndx.errors import InputError
from dndx.io.dataset import part_paths, read_waveform_samples
from dndx.io.readers import WaveformSource
from dndx.ragged import Ragged

__all__ = ["check_target", "profile_setting", "profile_target", "profile_training"]


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


@task(task_run_name="profile the target files", cache_policy=NO_CACHE)
def profile_target(
    sources: list[WaveformSource],
    sampling_rate_ghz: float,
    cfg: DomainConfig,
    candidate_threshold_sigma: float,
) -> DomainProfile:
    """The domain profile of the target files (:func:`dndx.domain.files.profile_files`)."""
    return profile_files(sources, sampling_rate_ghz, cfg, candidate_threshold_sigma)


@task(task_run_name="simulate and profile a candidate front end", cache_policy=NO_CACHE)
def profile_setting(
    simulate: SimulationConfig,
    setting: Setting,
    fit: TargetFitConfig,
    cfg: DomainConfig,
    candidate_threshold_sigma: float,
) -> DomainProfile:
    """The profile of ``fit.n_waveforms`` waveforms simulated with ``setting`` from
    ``fit.seed``."""
    return simulate_profile(
        apply_fit(simulate, setting),
        np.random.default_rng(fit.seed),
        fit.n_waveforms,
        cfg,
        candidate_threshold_sigma,
    )


@task(task_run_name="label-free checks on the target files", cache_policy=NO_CACHE)
def check_target(
    bundle_dir: Path, sources: list[WaveformSource], target: TargetFit, max_waveforms: int
) -> dict[str, Any]:
    """:func:`dndx.domain.checks.target_checks` of the pair in ``bundle_dir`` on about
    ``max_waveforms`` waveforms spread over the target files, read at their rates."""
    models = OnnxModels.load(bundle_dir)
    training = TrainingDomain.load(bundle_dir)
    rate = target.sampling_rate_ghz
    if training is None or target.target is None or rate is None:
        raise InputError(f"{bundle_dir}: no training domain or no target profile to check")
    share = max(1, max_waveforms // len(sources))
    results: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    for source in sources:
        samples, rates = read_sample(source, share, rate)
        for each in np.unique(rates):
            rows = samples.take(np.flatnonzero(rates == each))
            results.append(
                (
                    infer_waveforms(rows, float(each), "auto", models),
                    infer_waveforms_d2(rows, float(each), "auto", models.bundle),
                )
            )
    return target_checks(
        pd.concat([m for m, _ in results], ignore_index=True),
        pd.concat([d for _, d in results], ignore_index=True),
        target.target,
        training,
    )
