"""From raw samples to the model's view: baseline, polarity, resampling, noise units.

Real data differs from any simulation, so nothing here uses truth: baseline and
noise come from each waveform itself with robust statistics, the polarity is
read off the waveform, and any sampling rate is brought to the model's rate.
The same code prepares training data and runs at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

from dndx.ragged import Ragged

__all__ = [
    "POLARITIES",
    "Normalised",
    "Polarity",
    "estimate_baseline_noise",
    "normalise",
    "resample_linear",
]

Polarity = Literal["auto", "positive", "negative"]
#: The values of :data:`Polarity`, ``auto`` first.
POLARITIES: tuple[Polarity, ...] = get_args(Polarity)

_MAD_TO_SIGMA = 1.4826
_CLIP_SIGMA = 3.0


@dataclass(frozen=True, eq=False)
class Normalised:
    """Waveforms at the model's sampling rate in units of their own noise.

    Attributes:
        samples: ``(n_waveforms, n_samples)`` float32, baseline-subtracted,
            signal positive, divided by the noise sigma; rows shorter than the
            longest are padded with zeros after ``lengths``.
        lengths: ``(n_waveforms,)`` valid samples in each row.
        baseline: ``(n_waveforms,)`` the baseline in input units.
        noise_sigma: ``(n_waveforms,)`` the white-noise sigma in input units,
            at the input's own rate (so a pulse's height in sigma does not
            depend on the rate it was recorded at).
        polarity: ``(n_waveforms,)`` +1 or -1, the sign of the signal in the input,
            as given or read off the row.
        read_polarity: ``(n_waveforms,)`` +1 or -1, the sign read off each row (the
            side with the larger excursion), even where the polarity was given.
        sampling_rate_ghz: the rate of ``samples``.
    """

    samples: NDArray[np.float32]
    lengths: NDArray[np.int64]
    baseline: NDArray[np.float64]
    noise_sigma: NDArray[np.float64]
    polarity: NDArray[np.int8]
    read_polarity: NDArray[np.int8]
    sampling_rate_ghz: float


def estimate_baseline_noise(
    samples: NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Robust baseline and white-noise sigma of each row of ``(n_rows, n_samples)``.

    The baseline is the median of the samples within 3 sigma of a first
    median/MAD estimate, so that pulses (a minority of samples, on one side)
    do not pull it. The noise comes from sample-to-sample differences, which
    slow baseline wander and ion tails do not reach: the RMS of the differences
    within 3 sigma, over sqrt(2). An RMS rather than a MAD, because ADC samples
    are integers and a MAD of integers moves in steps of a whole count.

    >>> rng = np.random.default_rng(0)
    >>> w = 100 + 2 * rng.standard_normal((1, 4000))
    >>> w[0, 1000:1400] += 50  # pulses on one side
    >>> b, s = estimate_baseline_noise(w)
    >>> bool(abs(b[0] - 100) < 0.2 and abs(s[0] - 2) < 0.1)
    True
    """
    x = np.asarray(samples, dtype=np.float64)
    rows = np.arange(x.shape[0])
    # Medians are read off sorted rows: on ADC samples, full of ties, a row
    # sort is faster than np.median's selection, and it gives the same numbers.
    ordered, divisor = _sort_rows(x)
    first = _sorted_median(ordered, divisor)
    deviation = x - first[:, None]
    distance = np.abs(deviation)
    spread = _robust_sigma(distance, x)
    # The quiet samples are one contiguous run of the sorted row.
    quiet = distance <= _CLIP_SIGMA * spread[:, None]
    below = np.count_nonzero(~quiet & (deviation < 0), axis=1)
    n_quiet = np.count_nonzero(quiet, axis=1)
    baseline = 0.5 * (
        ordered[rows, below + (n_quiet - 1) // 2] / divisor
        + ordered[rows, below + n_quiet // 2] / divisor
    )

    step = np.diff(x, axis=1)
    step_size = np.abs(step)
    step_spread = _robust_sigma(step_size, step)
    quiet_step = step_size <= _CLIP_SIGMA * step_spread[:, None]
    mean_square = np.sum(np.where(quiet_step, step**2, 0.0), axis=1) / np.maximum(
        np.count_nonzero(quiet_step, axis=1), 1
    )
    # A Gaussian truncated at 3 sigma keeps 0.9866 of its RMS.
    sigma = np.sqrt(mean_square / 2) / 0.9866
    sigma = np.where(sigma > 0, sigma, 1.0)
    return baseline, sigma


def _sorted_median(ordered: NDArray[np.number], divisor: float) -> NDArray[np.float64]:
    """The median of each row of ``ordered / divisor``, ``(n_rows, n)`` sorted ascending."""
    n = ordered.shape[1]
    lower = ordered[:, (n - 1) // 2].astype(np.float64) / divisor
    return 0.5 * (lower + ordered[:, n // 2].astype(np.float64) / divisor)


def _sort_rows(values: NDArray[np.float64]) -> tuple[NDArray[np.number], float]:
    """Each row of ``(n_rows, n)`` sorted ascending, as ``ordered / divisor``.

    ADC samples are integers, their distances from a median integers or
    halves: twice them fits 16 bits, where numpy sorts by radix, ten times
    faster than a float sort, to the same numbers. Other values sort as floats.
    Only the few values read off the sorted rows are divided.

    >>> ordered, divisor = _sort_rows(np.array([[3.5, -1.0, 2.0], [0.25, 0.0, 1.0]]))
    >>> (ordered / divisor).tolist(), divisor
    ([[-1.0, 2.0, 3.5], [0.0, 0.25, 1.0]], 1.0)
    >>> ordered, divisor = _sort_rows(np.array([[3.5, -1.0, 2.0]]))
    >>> ordered.tolist(), divisor
    ([[-2, 4, 7]], 2.0)
    """
    doubled = 2 * values
    with np.errstate(invalid="ignore"):
        small = doubled.astype(np.int16)
    if not np.array_equal(small, doubled):
        return np.sort(values, axis=1), 1.0
    small.sort(axis=1, kind="stable")
    return small, 2.0


def _robust_sigma(
    absolute: NDArray[np.float64], values: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Gaussian sigma from the MAD of each row, ``absolute = |values - centre|``;
    the plain standard deviation of ``values`` where the MAD is 0."""
    sigma = _MAD_TO_SIGMA * _sorted_median(*_sort_rows(absolute))
    flat = sigma <= 0
    if flat.any():
        sigma[flat] = np.std(values[flat], axis=1)
    return sigma


def _gather_rows(samples: Ragged, rows: NDArray[np.int64], length: int) -> NDArray:
    """``(len(rows), length)`` the given rows, all ``length`` long; a view where
    they lie back to back, as in a file's block of fixed-length waveforms.

    >>> rows = Ragged.from_lengths(np.arange(8), [2, 2, 2, 2])
    >>> _gather_rows(rows, np.array([1, 2]), 2).tolist()  # back to back: a view
    [[2, 3], [4, 5]]
    >>> _gather_rows(rows, np.array([0, 2]), 2).tolist()
    [[0, 1], [4, 5]]
    """
    starts = samples.offsets[rows]
    if len(rows) and np.all(np.diff(starts) == length):
        first = int(starts[0])
        return samples.values[first : first + len(rows) * length].reshape(len(rows), length)
    return samples.values[starts[:, None] + np.arange(length)]


def resample_linear(
    samples: NDArray[np.floating], rate_in_ghz: float, rate_out_ghz: float
) -> NDArray[np.float32]:
    """Resample rows ``(n_rows, n_in)`` to ``(n_rows, round(n_in * rate_out / rate_in))``
    by linear interpolation over the same time span.

    >>> resample_linear(np.array([[0.0, 1.0, 2.0, 3.0]]), 1.0, 2.0).round(2).tolist()
    [[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]]
    """
    x = np.asarray(samples, dtype=np.float32)
    if rate_in_ghz == rate_out_ghz:
        return x
    n_in = x.shape[1]
    n_out = round(n_in * rate_out_ghz / rate_in_ghz)
    position = np.arange(n_out) * (rate_in_ghz / rate_out_ghz)
    left = np.minimum(np.floor(position).astype(np.int64), n_in - 1)
    right = np.minimum(left + 1, n_in - 1)
    frac = (position - left).astype(np.float32)
    return x[:, left] * (1 - frac) + x[:, right] * frac


def normalise(
    samples: Ragged,
    sampling_rate_ghz: NDArray[np.floating] | float,
    model_rate_ghz: float,
    polarity: Polarity = "auto",
) -> Normalised:
    """Bring raw waveforms to the model's view.

    Args:
        samples: ``n_waveforms`` rows of raw samples in any unit (ADC, mV...).
        sampling_rate_ghz: the rate of each row, ``(n_waveforms,)``, or one for all.
        model_rate_ghz: the rate the models expect.
        polarity: the sign of the signal, or ``"auto"`` to read it off each row
            (the side with the larger excursion from the baseline).
    """
    n = len(samples)
    rates = np.broadcast_to(np.asarray(sampling_rate_ghz, dtype=float), (n,))
    lengths_in = samples.lengths
    out_lengths = np.rint(lengths_in * model_rate_ghz / rates).astype(np.int64)
    width = int(out_lengths.max()) if n else 0
    out = np.zeros((n, width), dtype=np.float32)
    baseline = np.zeros(n)
    noise_sigma = np.ones(n)
    signs = np.ones(n, dtype=np.int8)
    read_signs = np.ones(n, dtype=np.int8)
    # Rows of one length and rate are processed together.
    keys = np.stack([lengths_in, rates]).T if n else np.zeros((0, 2))
    for length, rate in np.unique(keys, axis=0):
        rows = np.flatnonzero((lengths_in == length) & (rates == rate))
        raw = _gather_rows(samples, rows, int(length)).astype(np.float64)
        base, sigma = estimate_baseline_noise(raw)
        centred = raw - base[:, None]
        read_sign = np.where(centred.max(axis=1) >= -centred.min(axis=1), 1, -1)
        if polarity == "auto":
            sign = read_sign
        else:
            sign = np.full(len(rows), 1 if polarity == "positive" else -1)
        scaled = centred * (sign / sigma)[:, None]
        signal = resample_linear(scaled, float(rate), model_rate_ghz)
        out[rows, : signal.shape[1]] = signal
        baseline[rows], noise_sigma[rows], signs[rows] = base, sigma, sign
        read_signs[rows] = read_sign
    return Normalised(out, out_lengths, baseline, noise_sigma, signs, read_signs, model_rate_ghz)
