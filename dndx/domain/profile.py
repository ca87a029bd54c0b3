"""Domain profiles: what characterises a front end and its noise, from waveforms alone.

Models trained on one front end are silently wrong on another, so every input
is compared with the training waveforms on quantities that need no truth and
that the simulator's own settings leave unchanged (times in ns, not samples;
heights and noise in units of each waveform's own noise):

- the mean single-pulse shape: isolated pulses (rising from near the baseline
  over ``isolation_before_ns`` before their top, falling without a new pulse
  over ``isolation_after_ns`` after it) aligned where their leading edge
  crosses half their top (interpolated between samples: the steepest part of a
  pulse, where that errs least), averaged on a grid in ns;
  from it the 10-90 % rise time, the fall time (from 80 % to 50 % of the top,
  over ln 1.6: the time constant of an exponential fall, measured early, where
  later pulses seldom reach even a slow pulse) and the tail (the mean
  level over the second half of the shape window);
- the noise on signal-free stretches (farther than the isolation times from
  any excursion beyond ``quiet_threshold_sigma``): its autocorrelation at fixed
  lags in ns, from the variogram ``g(k) = <(x[i + k] - x[i])^2> / 2`` as
  ``1 - g(k) / g(reference)``, which slow baseline wander barely reaches; the
  spectrum that autocorrelation implies (1 at every frequency for white noise);
  the excess of the noise's full RMS over the white-noise sigma the
  preprocessing measures; and the baseline wander left on top of it;
- the heights of the isolated pulses (quantiles, in noise units), candidates
  per waveform, the polarity and the sampling rates.

:func:`judge` compares a profile with the training domain's
(:class:`TrainingDomain`, stored in the model bundle as ``domain.json``) and
says ``in`` or ``outside``, with every compared quantity and by how much it
differs. This module reads no files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from dndx.chain.candidates import find_candidates
from dndx.chain.preprocessing import Polarity, normalise
from dndx.config import DomainConfig
from dndx.errors import InputError
from dndx.ragged import Ragged
from dndx.storage import atomic_file

__all__ = [
    "AMPLITUDE_QUANTILES",
    "DOMAIN_FILE",
    "Difference",
    "DomainProfile",
    "DomainVerdict",
    "TrainingDomain",
    "Verdict",
    "describe",
    "headline",
    "judge",
    "not_judged",
    "plot_domain",
    "profile_table",
    "profile_waveforms",
    "shape_times",
    "verdict_table",
]

#: The training domain's file in a model bundle directory.
DOMAIN_FILE = "domain.json"
#: The quantiles of the pulse heights a profile holds.
AMPLITUDE_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
#: What :func:`judge` says of an input.
Verdict = Literal["in", "outside", "unknown", "not judged"]

_SHAPE_BIN_NS = 0.25
# An isolated pulse starts from below this fraction of its top.
_ISOLATED_LEVEL = 0.1
# Up to the Nyquist frequency of 2 GS/s; each rate fills the frequencies below its own.
_SPECTRUM_FREQUENCIES_GHZ = tuple(round(0.05 * i, 2) for i in range(21))
_STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_STRICT)
class DomainProfile:
    """What characterises waveforms' front end and noise (module docstring).

    Attributes:
        n_waveforms: waveforms profiled.
        sampling_rates_ghz: their distinct sampling rates.
        positive_fraction: share of waveforms of positive polarity.
        candidates_per_waveform: mean peak candidates per waveform at the
            candidate threshold, at the waveforms' own rate.
        n_pulses: isolated pulses averaged into the shape.
        pulse_time_ns: ``(n_bins,)`` the shape's grid, from the leading edge's
            half-height crossing.
        pulse_shape: ``(n_bins,)`` the mean pulse, 1 at its top; None where no
            sample fell.
        rise_time_ns: 10-90 % rise time of the mean pulse.
        fall_time_ns: its fall from 80 % to 50 % of the top, over ln 1.6.
        tail_fraction: its mean level over the second half of the shape window.
        amplitude_quantiles_sigma: heights of the isolated pulses at
            :data:`AMPLITUDE_QUANTILES`, in noise units; empty without pulses.
        noise_sigma: median white-noise sigma of the waveforms, input units.
        noise_excess: full noise RMS (at the reference lag) over that sigma; 1
            for white noise.
        baseline_wander_sigma: RMS of the slow baseline wander, noise units.
        noise_lags_ns: the lags of ``noise_autocorrelation``.
        noise_autocorrelation: the noise's autocorrelation at those lags; None
            where a lag is shorter than a sample.
        noise_frequency_ghz: the frequencies of ``noise_spectrum``.
        noise_spectrum: the noise's power spectrum over white noise's; None
            above every rate's Nyquist frequency.
        All shape and noise figures are None where too few pulses or
        signal-free samples were found.
    """

    n_waveforms: int
    sampling_rates_ghz: tuple[float, ...]
    positive_fraction: float
    candidates_per_waveform: float
    n_pulses: int
    pulse_time_ns: tuple[float, ...]
    pulse_shape: tuple[float | None, ...]
    rise_time_ns: float | None
    fall_time_ns: float | None
    tail_fraction: float | None
    amplitude_quantiles_sigma: tuple[float, ...]
    noise_sigma: float
    noise_excess: float | None
    baseline_wander_sigma: float | None
    noise_lags_ns: tuple[float, ...]
    noise_autocorrelation: tuple[float | None, ...]
    noise_frequency_ghz: tuple[float, ...]
    noise_spectrum: tuple[float | None, ...]

    @property
    def median_amplitude_sigma(self) -> float | None:
        """The median isolated-pulse height in noise units."""
        if not self.amplitude_quantiles_sigma:
            return None
        return self.amplitude_quantiles_sigma[AMPLITUDE_QUANTILES.index(0.5)]

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, source: str | Path) -> DomainProfile:
        """A profile from :meth:`to_dict`'s values, read from ``source``.

        Raises:
            InputError: a missing, unknown or bad field, named with ``source``.
        """
        return _validated(cls, raw, source)


@dataclass(frozen=True, config=_STRICT)
class TrainingDomain:
    """The training waveforms' profile and the settings it was measured and is
    judged with; a model bundle holds it as :data:`DOMAIN_FILE`."""

    profile: DomainProfile
    config: DomainConfig

    def save(self, directory: str | Path) -> Path:
        """Write :data:`DOMAIN_FILE` into ``directory``, atomically."""
        path = Path(directory) / DOMAIN_FILE
        raw = {"profile": self.profile.to_dict(), "config": asdict(self.config)}
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TrainingDomain | None:
        """The training domain of a bundle directory; None for a bundle
        registered before domains were stored.

        Raises:
            InputError: the file is there but unreadable, not JSON, or not a
                training domain.
        """
        path = Path(directory) / DOMAIN_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
        except OSError as error:
            raise InputError(
                f"{path}: cannot read the training domain ({error.strerror})"
            ) from None
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not valid JSON ({error})") from None
        return _validated(cls, raw, path)


def _validated(cls: Any, raw: Any, source: str | Path) -> Any:
    try:
        return TypeAdapter(cls).validate_python(raw)
    except ValidationError as error:
        detail = error.errors(include_url=False)[0]
        where = ".".join(str(key) for key in detail["loc"]) or "top level"
        raise InputError(
            f"{source}: not a {cls.__name__}: {where}: {detail['msg']}"
            + (f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else "")
        ) from None


@dataclass(frozen=True, config=_STRICT)
class Difference:
    """One compared quantity of an input and the training domain.

    Attributes:
        quantity: its name, as in :class:`DomainProfile`.
        value: the input's; None where not measured.
        training: the training domain's; None where not measured.
        change: ``value / training`` (``kind`` ratio) or ``value - training``
            (``kind`` difference); None where either is missing.
        kind: ``ratio`` or ``difference``.
        limit: the largest factor either way, or the largest absolute difference.
        outside: whether ``change`` is beyond ``limit``.
    """

    quantity: str
    value: float | None
    training: float | None
    change: float | None
    kind: Literal["ratio", "difference"]
    limit: float
    outside: bool


@dataclass(frozen=True, config=_STRICT)
class DomainVerdict:
    """An input's place against the training domain.

    Attributes:
        verdict: ``in``, ``outside``; ``unknown`` where nothing could be
            compared or the models hold no training domain; ``not judged``
            for a run that does not use the models.
        reason: why, in words.
        differences: every compared quantity.
    """

    verdict: Verdict
    reason: str
    differences: tuple[Difference, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready values."""
        return asdict(self)


def profile_waveforms(
    samples: Ragged,
    sampling_rate_ghz: NDArray[np.floating] | float,
    cfg: DomainConfig,
    candidate_threshold_sigma: float,
    polarity: Polarity = "auto",
) -> DomainProfile:
    """The domain profile of ``samples``.

    Args:
        samples: ``n_waveforms`` rows of raw samples in any unit, at least one.
        sampling_rate_ghz: ``(n_waveforms,)`` the rate of each row, or one for all.
        cfg: how to measure.
        candidate_threshold_sigma: the candidate threshold of the models' chain.
        polarity: as :func:`dndx.chain.preprocessing.normalise`.

    Raises:
        ValueError: no waveforms.
    """
    if len(samples) == 0:
        raise ValueError("no waveforms to profile")
    rates = np.broadcast_to(np.asarray(sampling_rate_ghz, dtype=float), (len(samples),))
    sums = _Sums(cfg)
    for rate in np.unique(rates):
        rows = np.flatnonzero(rates == rate)
        view = normalise(samples.take(rows), float(rate), float(rate), polarity)
        sums.add_pulses(view.samples, view.lengths, float(rate), candidate_threshold_sigma)
        sums.add_noise(view.samples, view.lengths, float(rate))
        sums.noise_sigma.append(view.noise_sigma)
        sums.positive += int((view.polarity > 0).sum())
    return sums.profile(len(samples), tuple(float(r) for r in np.unique(rates)))


class _Sums:
    """What :func:`profile_waveforms` adds up over the groups of one rate."""

    def __init__(self, cfg: DomainConfig) -> None:
        self.cfg = cfg
        n_bins = round((cfg.shape_before_ns + cfg.shape_after_ns) / _SHAPE_BIN_NS)
        self.shape_sum = np.zeros(n_bins)
        self.shape_count = np.zeros(n_bins)
        self.heights: list[NDArray[np.float64]] = []
        self.n_candidates = 0
        self.n_pulses = 0
        self.noise_sigma: list[NDArray[np.float64]] = []
        self.positive = 0
        # Per noise lag, per spectrum frequency and for the whole: value x weight, weight.
        self.autocorrelation = np.zeros((len(cfg.noise_lags_ns), 2))
        self.spectrum = np.zeros((len(_SPECTRUM_FREQUENCIES_GHZ), 2))
        self.excess = np.zeros(2)
        self.wander = np.zeros(2)

    def add_pulses(
        self, x: NDArray[np.float32], lengths: NDArray[np.int64], rate: float, threshold: float
    ) -> None:
        """Add the isolated pulses of ``x``, ``(n_rows, n_samples)`` in noise units."""
        cfg = self.cfg
        candidates = find_candidates(x, lengths, threshold, 2, 2, 0.0)
        self.n_candidates += len(candidates.values)
        rows, columns = candidates.row_index(), candidates.values
        # The top: the largest sample within two of the candidate.
        near = np.clip(columns[:, None] + np.arange(-2, 3), 0, x.shape[1] - 1)
        top = near[np.arange(len(near)), np.argmax(x[rows[:, None], near], axis=1)]
        before = math.ceil(max(cfg.shape_before_ns, cfg.isolation_before_ns) * rate) + 1
        after = math.ceil(max(cfg.shape_after_ns, cfg.isolation_after_ns) * rate) + 1
        fits = (
            (top >= before)
            & (top < lengths[rows] - after)
            & (x[rows, top] > cfg.pulse_threshold_sigma)
        )
        pairs = np.unique(np.stack([rows[fits], top[fits]]), axis=1)
        rows, top = pairs[0], pairs[1]
        if not len(top):
            return
        # Isolated: from the isolation time before the top up to it the waveform
        # rises from near the baseline, and from the top to the isolation
        # time after it falls, never rising again by more than noise would.
        n_before = math.ceil(cfg.isolation_before_ns * rate)
        n_after = math.ceil(cfg.isolation_after_ns * rate)
        leading = x[rows[:, None], top[:, None] + np.arange(-n_before, 1)]
        trailing = x[rows[:, None], top[:, None] + np.arange(0, n_after + 1)]
        back_rise = leading - np.minimum.accumulate(leading[:, ::-1], axis=1)[:, ::-1]
        re_rise = trailing - np.minimum.accumulate(trailing, axis=1)
        keep = (
            (leading[:, :3].mean(axis=1) < _ISOLATED_LEVEL * x[rows, top])
            & (back_rise.max(axis=1) < cfg.quiet_threshold_sigma)
            & (re_rise.max(axis=1) < cfg.quiet_threshold_sigma)
        )
        rows, top = rows[keep], top[keep]
        if not len(top):
            return
        left, centre, right = x[rows, top - 1], x[rows, top], x[rows, top + 1]
        curvature = left - 2 * centre + right
        shift = np.where(curvature < 0, 0.5 * (left - right) / np.minimum(curvature, -1e-9), 0.0)
        height = centre - 0.25 * (left - right) * shift
        # Aligned where the leading edge crosses half the height: the steepest part of
        # the pulse, where interpolating between two samples errs least.
        below = leading[keep] < 0.5 * height[:, None]
        last = n_before - np.argmax(below[:, ::-1], axis=1)
        low, high = x[rows, top - n_before + last], x[rows, top - n_before + last + 1]
        shift = (last - n_before) + (0.5 * height - low) / np.maximum(high - low, 1e-9)
        offsets = np.arange(-before, after + 1)
        values = x[rows[:, None], top[:, None] + offsets] / height[:, None]
        time_ns = (offsets[None, :] - shift[:, None]) / rate
        index = np.floor((time_ns + cfg.shape_before_ns) / _SHAPE_BIN_NS).astype(np.int64)
        inside = (index >= 0) & (index < len(self.shape_sum))
        n_bins = len(self.shape_sum)
        self.shape_sum += np.bincount(index[inside], weights=values[inside], minlength=n_bins)
        self.shape_count += np.bincount(index[inside], minlength=n_bins)
        self.heights.append(height.astype(np.float64))
        self.n_pulses += len(top)

    def add_noise(self, x: NDArray[np.float32], lengths: NDArray[np.int64], rate: float) -> None:
        """Add the signal-free stretches of ``x``, ``(n_rows, n_samples)`` in noise units."""
        cfg = self.cfg
        n_rows, n_samples = x.shape
        valid = np.arange(n_samples)[None, :] < lengths[:, None]
        excursion = (np.abs(x) > cfg.quiet_threshold_sigma) & valid
        # An excursion at j taints the samples from j - before to j + after.
        before = math.ceil(cfg.isolation_before_ns * rate)
        after = math.ceil(cfg.isolation_after_ns * rate)
        total = np.zeros((n_rows, n_samples + 1), dtype=np.int32)
        np.cumsum(excursion, axis=1, out=total[:, 1:])
        index = np.arange(n_samples)
        high = np.minimum(index + before + 1, n_samples)
        low = np.maximum(index - after, 0)
        quiet = valid & (total[:, high] == total[:, low])
        n_lags = math.ceil(cfg.noise_reference_lag_ns * rate) + 1
        variogram = np.full(n_lags + 1, np.nan)
        weight = 0.0
        for k in range(1, n_lags + 1):
            both = quiet[:, k:] & quiet[:, :-k]
            n_pairs = int(both.sum())
            if n_pairs:
                step = np.where(both, x[:, k:] - x[:, :-k], 0.0)
                variogram[k] = float(np.sum(step.astype(np.float64) ** 2)) / (2 * n_pairs)
            weight = n_pairs
        reference = _interpolate(variogram, cfg.noise_reference_lag_ns * rate)
        if not weight or not np.isfinite(reference) or reference <= 0:
            return
        self.excess += [math.sqrt(reference) * weight, weight]
        level = x[quiet].astype(np.float64)
        self.wander += [math.sqrt(max(float(np.var(level)) - reference, 0.0)) * weight, weight]
        for i, lag_ns in enumerate(cfg.noise_lags_ns):
            if lag_ns * rate >= 1:
                rho = 1 - _interpolate(variogram, lag_ns * rate) / reference
                self.autocorrelation[i] += [rho * weight, weight]
        # The spectrum implied by the autocorrelation at whole lags, tapered (Bartlett).
        lags = np.arange(1, n_lags)
        whole_lags = 1 - variogram[1:n_lags] / reference
        taper = 1 - lags / n_lags
        for i, frequency in enumerate(_SPECTRUM_FREQUENCIES_GHZ):
            if frequency <= rate / 2:
                cosine = np.cos(2 * np.pi * frequency * lags / rate)
                power = 1 + 2 * np.sum(whole_lags * taper * cosine)
                self.spectrum[i] += [power * weight, weight]

    def profile(self, n_waveforms: int, rates: tuple[float, ...]) -> DomainProfile:
        cfg = self.cfg
        enough = self.n_pulses >= cfg.min_pulses
        with np.errstate(invalid="ignore", divide="ignore"):
            shape = self.shape_sum / self.shape_count
        time_ns = -cfg.shape_before_ns + _SHAPE_BIN_NS * (np.arange(len(shape)) + 0.5)
        rise, fall, tail = (
            shape_times(time_ns, shape, cfg.isolation_after_ns) if enough else (None, None, None)
        )
        heights = np.concatenate(self.heights) if self.heights else np.zeros(0)
        return DomainProfile(
            n_waveforms=n_waveforms,
            sampling_rates_ghz=rates,
            positive_fraction=self.positive / n_waveforms,
            candidates_per_waveform=self.n_candidates / n_waveforms,
            n_pulses=self.n_pulses,
            pulse_time_ns=tuple(float(t) for t in np.round(time_ns, 4)),
            pulse_shape=tuple(_number(v) for v in shape) if enough else (None,) * len(shape),
            rise_time_ns=rise,
            fall_time_ns=fall,
            tail_fraction=tail,
            amplitude_quantiles_sigma=tuple(
                float(q) for q in np.quantile(heights, AMPLITUDE_QUANTILES)
            )
            if enough
            else (),
            noise_sigma=float(np.median(np.concatenate(self.noise_sigma))),
            noise_excess=_mean(self.excess),
            baseline_wander_sigma=_mean(self.wander),
            noise_lags_ns=cfg.noise_lags_ns,
            noise_autocorrelation=tuple(_mean(row) for row in self.autocorrelation),
            noise_frequency_ghz=_SPECTRUM_FREQUENCIES_GHZ,
            noise_spectrum=tuple(_mean(row) for row in self.spectrum),
        )


def _interpolate(values: NDArray[np.float64], position: float) -> float:
    """``values`` at a fractional index, linearly between its neighbours."""
    low = math.floor(position)
    if low + 1 >= len(values):
        return float(values[low])
    fraction = position - low
    return float((1 - fraction) * values[low] + fraction * values[low + 1])


def _mean(pair: NDArray[np.float64]) -> float | None:
    return float(pair[0] / pair[1]) if pair[1] > 0 else None


def _number(value: float) -> float | None:
    return round(float(value), 5) if np.isfinite(value) else None


def shape_times(
    time_ns: NDArray[np.floating], shape: NDArray[np.floating], top_within_ns: float
) -> tuple[float | None, float | None, float | None]:
    """Rise, fall and tail of a pulse shape sampled at ``time_ns`` (both ``(n,)``;
    NaN where unknown): the 10-90 % rise time, the fall from 80 % to 50 % of
    the top over ln 1.6, and the mean level over the second half of the times
    after the top, all relative to the top. None where the shape does not cross
    a level. The top is the highest point up to ``top_within_ns``: later
    pulses may pile up higher further on.

    >>> t = np.arange(-5.0, 40.0, 0.01)
    >>> pulse = np.where(t > 0, np.exp(-t / 4.0) - np.exp(-t / 0.5), 0.0)
    >>> rise, fall, tail = shape_times(t, pulse, 15.0)
    >>> round(rise, 2), round(fall, 2), tail < 0.01
    (0.64, 4.09, True)
    """
    t = np.asarray(time_ns, dtype=float)
    y = np.asarray(shape, dtype=float)
    known = np.isfinite(y)
    t, y = t[known], y[known]
    if len(y) < 3:
        return None, None, None
    peak = int(np.argmax(np.where(t <= top_within_ns, y, -np.inf)))
    y = y / y[peak]

    def crossing(level: float, side: Literal["before", "after"]) -> float | None:
        if side == "before":
            below = np.flatnonzero(y[:peak] < level)
            if not len(below):
                return None
            i = int(below[-1])
        else:
            below = np.flatnonzero(y[peak:] < level)
            if not len(below):
                return None
            i = peak + int(below[0]) - 1
        fraction = (level - y[i]) / (y[i + 1] - y[i])
        return float(t[i] + fraction * (t[i + 1] - t[i]))

    low, high = crossing(0.1, "before"), crossing(0.9, "before")
    upper, lower = crossing(0.8, "after"), crossing(0.5, "after")
    rise = high - low if low is not None and high is not None else None
    fall = (lower - upper) / math.log(1.6) if upper is not None and lower is not None else None
    late = t >= t[peak] + 0.5 * (t[-1] - t[peak])
    tail = float(np.mean(y[late])) if late.any() else None
    return rise, fall, tail


def judge(profile: DomainProfile, training: TrainingDomain) -> DomainVerdict:
    """Whether ``profile`` lies within ``training``'s domain, with its limits.

    Compared: the rise and fall times and the median pulse height (as factors),
    the noise autocorrelation at each lag (as differences). A quantity that
    either profile could not measure is listed but decides nothing.

    >>> from dndx.config import load_params
    >>> cfg = load_params().domain
    >>> base = dict(n_waveforms=10, sampling_rates_ghz=(1.5,), positive_fraction=1.0,
    ...     candidates_per_waveform=30.0, n_pulses=100, pulse_time_ns=(0.0,),
    ...     pulse_shape=(1.0,), tail_fraction=0.0,
    ...     amplitude_quantiles_sigma=(5.0, 8.0, 12.0, 18.0, 25.0), noise_sigma=4.0,
    ...     noise_excess=1.0, baseline_wander_sigma=0.2, noise_lags_ns=(1.0, 2.0, 4.0),
    ...     noise_autocorrelation=(0.0, 0.0, 0.0), noise_frequency_ghz=(0.0,),
    ...     noise_spectrum=(1.0,))
    >>> training = TrainingDomain(DomainProfile(rise_time_ns=1.5, fall_time_ns=4.0, **base), cfg)
    >>> judge(DomainProfile(rise_time_ns=1.6, fall_time_ns=4.5, **base), training).verdict
    'in'
    >>> print(describe(judge(DomainProfile(rise_time_ns=1.6, fall_time_ns=12.0, **base), training)))
    outside: fall_time_ns 12 against 4 (3x, limit 1.8x)
    """
    cfg, reference = training.config, training.profile
    compared: list[tuple[str, float | None, float | None, Literal["ratio", "difference"], float]]
    compared = [
        ("rise_time_ns", profile.rise_time_ns, reference.rise_time_ns, "ratio", cfg.max_time_ratio),
        ("fall_time_ns", profile.fall_time_ns, reference.fall_time_ns, "ratio", cfg.max_time_ratio),
        (
            "median_amplitude_sigma",
            profile.median_amplitude_sigma,
            reference.median_amplitude_sigma,
            "ratio",
            cfg.max_amplitude_ratio,
        ),
    ]
    reference_rho = dict(zip(reference.noise_lags_ns, reference.noise_autocorrelation, strict=True))
    for lag_ns, rho in zip(profile.noise_lags_ns, profile.noise_autocorrelation, strict=True):
        compared.append(
            (
                f"noise_autocorrelation_{lag_ns:g}ns",
                rho,
                reference_rho.get(lag_ns),
                "difference",
                cfg.max_autocorrelation_difference,
            )
        )
    differences = []
    for quantity, value, trained, kind, limit in compared:
        change: float | None = None
        outside = False
        if value is not None and trained is not None:
            if kind == "difference":
                change = value - trained
                outside = abs(change) > limit
            elif value > 0 and trained > 0:
                change = value / trained
                outside = max(change, 1 / change) > limit
        differences.append(Difference(quantity, value, trained, change, kind, limit, outside))
    n_outside = sum(d.outside for d in differences)
    n_compared = sum(d.change is not None for d in differences)
    if n_outside:
        return DomainVerdict(
            "outside",
            f"{n_outside} of {n_compared} compared quantities beyond their limits",
            tuple(differences),
        )
    if not n_compared:
        return DomainVerdict(
            "unknown",
            "nothing could be compared: too few isolated pulses and signal-free samples",
            tuple(differences),
        )
    return DomainVerdict(
        "in", f"all {n_compared} compared quantities within their limits", tuple(differences)
    )


def headline(profile: DomainProfile) -> dict[str, float]:
    """The judged figures of ``profile`` that were measured, by name (for tags)."""
    figures = {
        "rise_time_ns": profile.rise_time_ns,
        "fall_time_ns": profile.fall_time_ns,
        "median_amplitude_sigma": profile.median_amplitude_sigma,
        "noise_excess": profile.noise_excess,
        **{
            f"noise_autocorrelation_{lag:g}ns": rho
            for lag, rho in zip(profile.noise_lags_ns, profile.noise_autocorrelation, strict=True)
        },
    }
    return {name: value for name, value in figures.items() if value is not None}


def not_judged(verdict: Verdict, reason: str) -> DomainVerdict:
    """A verdict without a comparison: ``unknown`` or ``not judged``, and why."""
    return DomainVerdict(verdict, reason)


def _change(difference: Difference) -> str:
    if difference.change is None:
        return "not measured"
    if difference.kind == "ratio":
        return f"{difference.change:.3g}x, limit {difference.limit:g}x"
    return f"{difference.change:+.3g}, limit ±{difference.limit:g}"


def describe(verdict: DomainVerdict) -> str:
    """The verdict in one line: what lies outside, and by how much."""
    if verdict.verdict != "outside":
        return f"{verdict.verdict}: {verdict.reason}"
    parts = [
        f"{d.quantity} {d.value:.3g} against {d.training:.3g} ({_change(d)})"
        for d in verdict.differences
        if d.outside and d.value is not None and d.training is not None
    ]
    return "outside: " + "; ".join(parts)


def verdict_table(verdicts: Sequence[tuple[str, DomainVerdict]]) -> list[str]:
    """Markdown lines: per input file its verdict and every compared quantity."""
    from dndx.reporting.tables import format_number, markdown_table

    rows = []
    for name, verdict in verdicts:
        if not verdict.differences:
            rows.append([name, verdict.verdict, "–", "–", "–", verdict.reason])
        for difference in verdict.differences:
            rows.append(
                [
                    name,
                    "**outside**" if difference.outside else verdict.verdict,
                    difference.quantity,
                    format_number(difference.value),
                    format_number(difference.training),
                    _change(difference),
                ]
            )
    header = ["file", "verdict", "quantity", "input", "training", "change"]
    return markdown_table(header, rows).splitlines()


def profile_table(profile: DomainProfile, training: DomainProfile | None) -> list[str]:
    """Markdown lines: the profile's figures, beside the training domain's where given."""
    from dndx.reporting.tables import format_number, markdown_table

    def figures(p: DomainProfile) -> list[tuple[str, str]]:
        rows = [
            ("waveforms profiled", str(p.n_waveforms)),
            ("sampling rates (GS/s)", ", ".join(f"{r:g}" for r in p.sampling_rates_ghz)),
            ("positive polarity (share)", format_number(p.positive_fraction)),
            ("candidates per waveform", format_number(p.candidates_per_waveform)),
            ("isolated pulses", str(p.n_pulses)),
            ("rise time 10-90 % (ns)", format_number(p.rise_time_ns)),
            ("fall time (ns)", format_number(p.fall_time_ns)),
            ("tail (share of the top)", format_number(p.tail_fraction)),
        ]
        heights = p.amplitude_quantiles_sigma or (None,) * len(AMPLITUDE_QUANTILES)
        rows += [
            (f"pulse height, {100 * q:g} % quantile (noise units)", format_number(h))
            for q, h in zip(AMPLITUDE_QUANTILES, heights, strict=True)
        ]
        rows += [
            ("noise sigma (input units)", format_number(p.noise_sigma)),
            ("noise RMS / white-noise sigma", format_number(p.noise_excess)),
            ("baseline wander (noise units)", format_number(p.baseline_wander_sigma)),
        ]
        rows += [
            (f"noise autocorrelation at {lag:g} ns", format_number(rho))
            for lag, rho in zip(p.noise_lags_ns, p.noise_autocorrelation, strict=True)
        ]
        return rows

    mine = figures(profile)
    if training is None:
        return markdown_table(["quantity", "input"], [list(row) for row in mine]).splitlines()
    theirs = dict(figures(training))
    rows = [[name, value, theirs.get(name, "–")] for name, value in mine]
    return markdown_table(["quantity", "input", "training"], rows).splitlines()


def plot_domain(profile: DomainProfile, training: DomainProfile | None, path: str | Path) -> Path:
    """Draw the mean single pulse and the noise spectrum of ``profile``, beside the
    training domain's where given, as a PNG at ``path``, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from dndx.reporting.plots import save_figure

    figure = Figure(figsize=(10, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    shape_axes, noise_axes = figure.subplots(1, 2)
    for which, label, style in (
        (training, "training", {"color": "0.5", "ls": "--"}),
        (profile, "input", {"color": "C0"}),
    ):
        if which is None:
            continue
        shape = np.array([np.nan if v is None else v for v in which.pulse_shape])
        shape_axes.plot(
            which.pulse_time_ns, shape, label=f"{label} ({which.n_pulses} pulses)", **style
        )
        spectrum = np.array([np.nan if v is None else v for v in which.noise_spectrum])
        noise_axes.plot(which.noise_frequency_ghz, spectrum, label=label, **style)
    shape_axes.set_xlabel("time from the leading edge's half height (ns)")
    shape_axes.set_ylabel("mean isolated pulse / its top")
    shape_axes.legend(fontsize=8)
    noise_axes.axhline(1.0, color="0.8", lw=0.8)
    noise_axes.set_xlabel("frequency (GHz)")
    noise_axes.set_ylabel("noise power / white noise's")
    noise_axes.legend(fontsize=8)
    return save_figure(figure, path)
