"""Fitting the simulator's front end to a target's domain profile, without labels.

A beam test's waveforms differ from the simulation in their front end (shaping,
fall time, noise spectrum and level), which their domain profile
(:mod:`dndx.domain.profile`) measures from the waveforms alone. The fit chooses,
for each ``simulate`` range named in ``target.fit.candidates``, one of the
candidate ranges, so that waveforms simulated with them have the profile
closest to the target's:

- the distance between two profiles is the sum of squares of every quantity
  :func:`dndx.domain.profile.judge` compares, each in units of its limit there
  (``ln(ratio) / ln(limit)`` for rise and fall times and the median pulse
  height, ``difference / limit`` for the noise autocorrelation at each lag), so
  a distance below 1 is well ``in``; a quantity the target shows and the
  simulation does not counts :data:`MISSING_PENALTY`;
- the search is coordinate descent: from the ``simulate`` section's own ranges,
  each field in turn is set to its best candidate with the others held, for
  ``rounds`` passes or until a pass changes nothing;
- every candidate setting is ``n_waveforms`` waveforms drawn from a generator
  seeded with ``seed``: the same tracks and electrons for every setting, so
  that two settings differ by their front end alone.

This module reads no files; :class:`TargetFit` is written and read atomically
as JSON by its callers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from dndx.config import DomainConfig, Params, Range, SimulationConfig, TargetFitConfig
from dndx.domain.profile import AMPLITUDE_QUANTILES, DomainProfile, profile_waveforms
from dndx.errors import InputError
from dndx.simulation.generator import simulate_block
from dndx.storage import atomic_file

__all__ = [
    "MISSING_PENALTY",
    "SHAPE_TOLERANCE",
    "TARGET_FILE",
    "Setting",
    "TargetFit",
    "Trial",
    "adapted_params",
    "apply_fit",
    "fit_front_end",
    "fit_report",
    "profile_distance",
    "simulate_profile",
]

#: A quantity the target's profile measures and a simulated one does not
#: (too few isolated pulses): ten limits away.
MISSING_PENALTY = 100.0

#: The target fit's file in a model bundle directory: the registered pair's target lineage.
TARGET_FILE = "target.json"
#: An RMS difference of the mean pulse shapes (1 at the top) worth one limit.
SHAPE_TOLERANCE = 0.1

#: ``simulate`` ranges by field name.
Setting = dict[str, Range]
_STRICT = ConfigDict(extra="forbid")


def profile_distance(profile: DomainProfile, target: DomainProfile, cfg: DomainConfig) -> float:
    """How far ``profile`` lies from ``target``: the sum of squares of the compared
    quantities in units of their limits (module docstring).

    >>> from dndx.config import load_params
    >>> cfg = load_params().domain
    >>> base = dict(n_waveforms=10, sampling_rates_ghz=(1.5,), positive_fraction=1.0,
    ...     candidates_per_waveform=30.0, n_pulses=100, pulse_time_ns=(0.0,),
    ...     pulse_shape=(1.0,), tail_fraction=0.0, rise_time_ns=1.5,
    ...     amplitude_quantiles_sigma=(5.0, 8.0, 12.0, 18.0, 25.0), noise_sigma=4.0,
    ...     noise_excess=1.0, baseline_wander_sigma=0.2, noise_lags_ns=(1.0, 2.0, 4.0),
    ...     noise_autocorrelation=(0.0, 0.0, 0.0), noise_frequency_ghz=(0.0,),
    ...     noise_spectrum=(1.0,))
    >>> target = DomainProfile(fall_time_ns=4.0 * 1.8, **base)
    >>> profile_distance(DomainProfile(fall_time_ns=4.0, **base), target, cfg)
    1.0
    """
    terms: list[float | None] = []
    for value, wanted, limit in [
        (profile.rise_time_ns, target.rise_time_ns, cfg.max_time_ratio),
        (profile.fall_time_ns, target.fall_time_ns, cfg.max_time_ratio),
        *(
            (mine, theirs, cfg.max_amplitude_ratio)
            for mine, theirs in zip(
                profile.amplitude_quantiles_sigma or (None,) * len(AMPLITUDE_QUANTILES),
                target.amplitude_quantiles_sigma or (None,) * len(AMPLITUDE_QUANTILES),
                strict=True,
            )
        ),
    ]:
        if wanted is not None:
            terms.append(None if value is None else math.log(value / wanted) / math.log(limit))
    for value, wanted in zip(
        profile.noise_autocorrelation, target.noise_autocorrelation, strict=True
    ):
        if wanted is not None:
            terms.append(
                None if value is None else (value - wanted) / cfg.max_autocorrelation_difference
            )
    mine_shape = np.array([np.nan if v is None else v for v in profile.pulse_shape])
    their_shape = np.array([np.nan if v is None else v for v in target.pulse_shape])
    if np.isfinite(their_shape).any():
        # Up to the isolation time after the edge: beyond it later pulses pile up.
        early = np.asarray(target.pulse_time_ns) <= cfg.isolation_after_ns
        both = np.isfinite(mine_shape) & np.isfinite(their_shape) & early
        terms.append(
            math.sqrt(float(np.mean((mine_shape[both] - their_shape[both]) ** 2))) / SHAPE_TOLERANCE
            if both.any()
            else None
        )
    total = sum(MISSING_PENALTY if t is None else t**2 for t in terms)
    return round(total, 12)


def simulate_profile(
    cfg: SimulationConfig,
    rng: np.random.Generator,
    n_waveforms: int,
    domain: DomainConfig,
    candidate_threshold_sigma: float,
) -> DomainProfile:
    """The domain profile of ``n_waveforms`` waveforms simulated with ``cfg``,
    every random number drawn from ``rng``."""
    data = simulate_block(cfg, rng, n_waveforms)
    rates = data.info["sampling_rate_ghz"].to_numpy(dtype=np.float64)
    return profile_waveforms(data.adc, rates, domain, candidate_threshold_sigma)


def apply_fit(cfg: SimulationConfig, setting: Mapping[str, Range]) -> SimulationConfig:
    """``cfg`` with the fitted ranges of ``setting`` in place of its own."""
    changes: dict[str, Any] = dict(setting)
    return dataclasses.replace(cfg, **changes)


@dataclass(frozen=True, config=_STRICT)
class Trial:
    """One simulated candidate setting and its distance to the target."""

    setting: dict[str, tuple[float, float]]
    distance: float


@dataclass(frozen=True, config=_STRICT)
class TargetFit:
    """What the ``profile`` stage found: the target's files and profile, the fitted
    ``simulate`` ranges, and the profile of the simulation they give.

    Attributes:
        files: the target files, relative to the project; empty: no target.
        reason: without a target, why; else "".
        sampling_rate_ghz: the files' rate where they store none.
        target: the target's profile; None without a target.
        setting: the fitted ranges, ``[low, high]`` by ``simulate`` field;
            empty without a target (the ``simulate`` section unchanged).
        start_distance: the ``simulate`` section's own distance to the target.
        distance: the fitted setting's.
        matched: the fitted simulation's profile.
        trials: every setting simulated, in order.
    """

    files: tuple[str, ...]
    reason: str
    sampling_rate_ghz: float | None
    target: DomainProfile | None
    setting: dict[str, tuple[float, float]]
    start_distance: float | None
    distance: float | None
    matched: DomainProfile | None
    trials: tuple[Trial, ...]

    @classmethod
    def none(cls, reason: str) -> TargetFit:
        """The result without a target: the simulation stays the ``simulate`` section's."""
        return cls((), reason, None, None, {}, None, None, None, ())

    @classmethod
    def found(
        cls,
        files: tuple[str, ...],
        sampling_rate_ghz: float,
        target: DomainProfile,
        setting: Setting,
        matched: DomainProfile,
        trials: Sequence[Trial],
    ) -> TargetFit:
        """The result of :func:`fit_front_end` on the target ``files``."""
        pairs = {name: (r.low, r.high) for name, r in setting.items()}
        distances = [trial.distance for trial in trials]
        return cls(
            files, "", sampling_rate_ghz, target, pairs, distances[0], min(distances), matched,
            tuple(trials),
        )  # fmt: skip

    @property
    def ranges(self) -> Setting:
        """:attr:`setting` as :class:`Range` values, for :func:`apply_fit`."""
        return {name: Range(low, high) for name, (low, high) in self.setting.items()}

    def save(self, path: str | Path) -> Path:
        """Write the fit to ``path`` as JSON, atomically."""
        path = Path(path)
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TargetFit:
        """The fit written by :meth:`save`.

        Raises:
            InputError: the file is missing, not JSON, or not a fit.
        """
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except OSError as error:
            raise InputError(f"{path}: cannot read the target fit ({error.strerror})") from None
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not valid JSON ({error})") from None
        try:
            return TypeAdapter(cls).validate_python(raw)
        except ValidationError as error:
            detail = error.errors(include_url=False)[0]
            where = ".".join(str(key) for key in detail["loc"]) or "top level"
            raise InputError(f"{path}: not a target fit: {where}: {detail['msg']}") from None


def _key(setting: Mapping[str, Range]) -> tuple[tuple[str, float, float], ...]:
    return tuple(sorted((name, r.low, r.high) for name, r in setting.items()))


def fit_front_end(
    target: DomainProfile,
    cfg: SimulationConfig,
    fit: TargetFitConfig,
    domain: DomainConfig,
    profile_settings: Callable[[Sequence[Setting]], Sequence[DomainProfile]],
) -> tuple[Setting, DomainProfile, list[Trial]]:
    """The candidate ranges of ``fit`` whose simulation's profile lies closest to
    ``target`` (module docstring), that profile, and every trial in order.

    ``profile_settings`` gives the profile of the simulation of each setting of a
    batch (:func:`simulate_profile` of :func:`apply_fit`, with a generator seeded
    with ``fit.seed`` for each): the batch's settings are independent, so it may
    run them in parallel.
    """
    current: Setting = {name: getattr(cfg, name) for name in fit.candidates}
    seen: dict[tuple[tuple[str, float, float], ...], tuple[float, DomainProfile]] = {}
    trials: list[Trial] = []

    def score(settings: list[Setting]) -> None:
        new = [s for s in settings if _key(s) not in seen]
        new = [s for i, s in enumerate(new) if _key(s) not in {_key(t) for t in new[:i]}]
        for setting, profile in zip(new, profile_settings(new), strict=True):
            distance = profile_distance(profile, target, domain)
            seen[_key(setting)] = (distance, profile)
            pairs = {name: (r.low, r.high) for name, r in setting.items()}
            trials.append(Trial(pairs, distance))

    # Coordinate descent alone stops where one field compensates another (correlated
    # noise for slow pulses): it starts from the best of random points of the grid.
    rng = np.random.default_rng(fit.seed)
    points = [
        {name: c[int(rng.integers(len(c)))] for name, c in fit.candidates.items()}
        for _ in range(fit.random_starts)
    ]
    score([current, *points])
    current = min([current, *points], key=lambda s: seen[_key(s)][0])
    for _ in range(fit.rounds):
        changed = False
        for name, candidates in fit.candidates.items():
            settings = [{**current, name: candidate} for candidate in candidates]
            score(settings)
            best = min(settings, key=lambda s: seen[_key(s)][0])
            if seen[_key(best)][0] < seen[_key(current)][0]:
                current, changed = best, True
        if not changed:
            break
    return current, seen[_key(current)][1], trials


def fit_report(fit: TargetFit, simulate: SimulationConfig) -> list[str]:
    """Markdown lines: the target's files, the fitted ranges beside the ``simulate``
    section's, the distances, and the target's profile beside the fitted simulation's."""
    from dndx.domain.profile import profile_table
    from dndx.reporting.tables import markdown_table

    if fit.target is None or fit.matched is None:
        return ["# Target", "", f"No target: {fit.reason}.", ""]
    rows = [
        [f"`{name}`", str(getattr(simulate, name)), f"[{low:g}, {high:g}]"]
        for name, (low, high) in fit.setting.items()
    ]
    return [
        "# Target: profile and front-end fit",
        "",
        f"Files ({len(fit.files)}): " + ", ".join(f"`{name}`" for name in fit.files),
        "",
        markdown_table(["simulate range", "section", "fitted"], rows),
        "",
        f"Distance to the target's profile (sum of squares in units of the domain limits; "
        f"below 1: well in): {fit.start_distance:.3g} with the simulate section, "
        f"{fit.distance:.3g} fitted, after {len(fit.trials)} simulated settings.",
        "",
        "Below, *input* is the target and *training* the fitted simulation.",
        "",
        *profile_table(fit.target, fit.matched),
        "",
        "![pulse shape and noise spectrum](fit.png)",
        "",
    ]


def adapted_params(params: Params, fit_path: Path) -> Params:
    """``params`` with the ``simulate`` ranges of the target fit at ``fit_path`` (written
    by the ``profile`` stage); ``params`` itself without target files, the fit unread.

    Raises:
        InputError: as :meth:`TargetFit.load`; a fit of other files than the target's.
    """
    if not params.target.files:
        return params
    fit = TargetFit.load(fit_path)
    if not fit.files:
        raise InputError(
            f"{fit_path}: a fit without a target, but target.files names some; "
            "run the profile stage (dvc repro profile) first"
        )
    return dataclasses.replace(params, simulate=apply_fit(params.simulate, fit.ranges))
