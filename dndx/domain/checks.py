"""Label-free checks of models on a target: what can be said of unlabelled waveforms.

With no truth, a registered pair is checked on a target's waveforms by what
needs none:

- the profile match: the target's profile judged against the registered
  training domain (:func:`dndx.domain.profile.judge`, ``in`` after a good fit)
  and its distance (:func:`dndx.domain.fit.profile_distance`);
- the models' counts against the classical chain's (D2 peaks and time
  clusterization with the bundle's settings) on the same waveforms: their
  ratio and quantiles, which a shifted front end pulls apart (the models
  counted +75 % on the issue's shifted generator, D2 within its usual bias);
- the peak finder's acceptance: detected peaks over candidates, the share of the
  score distribution above the working point, which noise the models were not
  trained on inflates.

This module reads no files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dndx.domain.fit import TargetFit, profile_distance
from dndx.domain.profile import DomainProfile, TrainingDomain, headline, judge

__all__ = ["COUNT_QUANTILES", "checks_table", "target_checks", "target_tags"]

#: The quantiles of the per-waveform counts the checks report.
COUNT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
# The checks a registered version carries as tags; the longest file list a tag holds.
_TAGGED_CHECKS = ("verdict", "count_ratio_to_d2", "peak_acceptance", "profile_distance")
_MAX_TAG = 4000


def target_checks(
    models: pd.DataFrame, d2: pd.DataFrame, target: DomainProfile, training: TrainingDomain
) -> dict[str, Any]:
    """The label-free checks (module docstring) as JSON-ready values.

    Args:
        models: ``(n_waveforms, ...)`` :func:`dndx.chain.inference.infer_waveforms`
            of target waveforms.
        d2: :func:`dndx.chain.inference.infer_waveforms_d2` of the same waveforms.
        target: the target's profile.
        training: the registered pair's training domain.

    >>> ok = ["ok", "ok", "ok", "too_short"]
    >>> models = pd.DataFrame({"status": ok, "n_clusters": [12.0, 20.0, 16.0, np.nan],
    ...     "n_peaks": [15, 25, 20, 0], "n_candidates": [30, 50, 40, 0]})
    >>> d2 = pd.DataFrame({"status": ok, "n_clusters": [10.0, 20.0, 10.0, np.nan]})
    >>> checks = target_checks(models, d2, *_example_profiles())
    >>> checks["n_counted"], checks["count_ratio_to_d2"], checks["peak_acceptance"]
    (3, 1.2, 0.5)
    >>> checks["verdict"]
    'in'
    """
    counted = (models["status"] == "ok").to_numpy() & (d2["status"] == "ok").to_numpy()
    mine = models["n_clusters"].to_numpy(dtype=np.float64)[counted]
    theirs = d2["n_clusters"].to_numpy(dtype=np.float64)[counted]
    candidates = int(models["n_candidates"].to_numpy()[counted].sum())
    verdict = judge(target, training)
    quantiles = {
        f"{name}_count_q{round(100 * q)}": float(np.quantile(values, q)) if len(values) else None
        for name, values in (("models", mine), ("d2", theirs))
        for q in COUNT_QUANTILES
    }
    return {
        "n_waveforms": len(models),
        "n_counted": int(counted.sum()),
        "models_mean_count": float(mine.mean()) if len(mine) else None,
        "d2_mean_count": float(theirs.mean()) if len(theirs) else None,
        "count_ratio_to_d2": round(float(mine.sum() / theirs.sum()), 6)
        if theirs.sum() > 0
        else None,
        **quantiles,
        "peak_acceptance": round(float(models["n_peaks"].to_numpy()[counted].sum() / candidates), 6)
        if candidates
        else None,
        "verdict": verdict.verdict,
        "verdict_reason": verdict.reason,
        "profile_distance": profile_distance(training.profile, target, training.config),
    }


def _example_profiles() -> tuple[DomainProfile, TrainingDomain]:
    """A target profile and a training domain alike, for the doctest."""
    from dndx.config import load_params

    profile = DomainProfile(
        n_waveforms=10,
        sampling_rates_ghz=(1.5,),
        positive_fraction=1.0,
        candidates_per_waveform=30.0,
        n_pulses=100,
        pulse_time_ns=(0.0,),
        pulse_shape=(1.0,),
        rise_time_ns=1.5,
        fall_time_ns=4.0,
        tail_fraction=0.0,
        amplitude_quantiles_sigma=(5.0, 8.0, 12.0, 18.0, 25.0),
        noise_sigma=4.0,
        noise_excess=1.0,
        baseline_wander_sigma=0.2,
        noise_lags_ns=(1.0, 2.0, 4.0),
        noise_autocorrelation=(0.0, 0.0, 0.0),
        noise_frequency_ghz=(0.0,),
        noise_spectrum=(1.0,),
    )
    return profile, TrainingDomain(profile, load_params().domain)


def target_tags(fit: TargetFit, checks: dict[str, Any]) -> dict[str, str]:
    """The target's lineage as MLflow tags of the registered versions: its files, the
    fitted ``simulate`` ranges, its profile's judged figures and the checks' verdict.

    >>> fit = TargetFit(("beam/run1.root",), "", 1.5, _example_profiles()[0],
    ...     {"fall_time_ns": (7.5, 15.0)}, 4.0, 0.2, None, ())
    >>> tags = target_tags(fit, {"verdict": "in", "count_ratio_to_d2": 1.1})
    >>> tags["target.files"], tags["target.fit.fall_time_ns"], tags["target.verdict"]
    ('beam/run1.root', '[7.5, 15]', 'in')
    """
    files = ", ".join(fit.files)
    tags = {
        "target.files": files if len(files) <= _MAX_TAG else files[: _MAX_TAG - 4] + " ...",
        "target.n_files": str(len(fit.files)),
        **{
            f"target.fit.{name}": f"[{low:g}, {high:g}]"
            for name, (low, high) in fit.setting.items()
        },
        "target.fit_distance": f"{fit.distance:.4g}" if fit.distance is not None else "",
        **{f"target.{key}": str(checks[key]) for key in _TAGGED_CHECKS if key in checks},
    }
    if fit.target is not None:
        tags |= {f"target.profile.{k}": f"{v:.4g}" for k, v in headline(fit.target).items()}
    return tags


def checks_table(checks: dict[str, Any]) -> list[str]:
    """Markdown lines: every check and its value.

    >>> print("\\n".join(checks_table({"verdict": "in", "count_ratio_to_d2": 1.25})))
    | check | value |
    |:--|:--|
    | verdict | in |
    | count_ratio_to_d2 | 1.250 |
    """
    from dndx.reporting.tables import format_number, markdown_table

    rows = [
        [key, str(value) if isinstance(value, str | int) else format_number(value)]
        for key, value in checks.items()
    ]
    return markdown_table(["check", "value"], rows).splitlines()
