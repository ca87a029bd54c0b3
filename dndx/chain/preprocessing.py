"""From raw samples to the model's view: baseline, polarity, resampling, noise units.

Real data differs from any simulation, so nothing here uses truth: baseline and
noise come from each waveform itself with robust statistics, the polarity is
read off the waveform, and any sampling rate is brought to the model's rate.
The same code prepares training data and runs at inference.
"""

from __future__ import annotations

from collections.abc import Callable
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
    "validate_rows",
]

Polarity = Literal["auto", "positive", "negative"]
#: The values of :data:`Polarity`, ``auto`` first.
POLARITIES: tuple[Polarity, ...] = get_args(Polarity)

_MAD_TO_SIGMA = 1.4826
_CLIP_SIGMA = 3.0
_BLOCK_ROWS = 256


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
    samples: NDArray[np.number],
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
    x = np.asarray(samples)
    levels = [_robust_levels(x[block])[:2] for block in _row_blocks(len(x))]
    return np.concatenate([b for b, _ in levels]), np.concatenate([s for _, s in levels])


def _row_blocks(n_rows: int) -> list[slice]:
    """Consecutive blocks of at most :data:`_BLOCK_ROWS` of ``n_rows`` rows, at least one.

    Whole chunks of waveforms make temporaries of tens of megabytes, which
    every step writes to memory and reads back; a block's temporaries stay in the cache.

    >>> _row_blocks(600), _row_blocks(0)
    ([slice(0, 256, None), slice(256, 512, None), slice(512, 600, None)], [slice(0, 0, None)])
    """
    return [
        slice(start, min(start + _BLOCK_ROWS, n_rows))
        for start in range(0, max(n_rows, 1), _BLOCK_ROWS)
    ]


def _robust_levels(
    x: NDArray[np.number],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """:func:`estimate_baseline_noise` of ``(n_rows, n_samples)`` with each row's
    lowest and highest sample, all ``(n_rows,)`` float64.

    Each row and its step sizes are sorted once; every median, MAD and clipped
    count is then read off the sorted rows by binary searches, where sorting
    the distances from the median would take a second sort of every row. ADC
    samples (integers) are sorted doubled, as int16, which numpy sorts by
    radix, ten times faster than floats, to the same numbers.
    """
    doubled = _doubled(x)
    if doubled is None:
        values = x.astype(np.float64)
        ordered, divisor = np.sort(values, axis=1), 1.0
        step = np.diff(values, axis=1)
        step_size = np.abs(step)
        ordered_steps = np.sort(step_size, axis=1)
    else:
        ordered, divisor = np.sort(doubled, axis=1, kind="stable"), 2.0
        span = int(ordered[:, -1].max(initial=0)) - int(ordered[:, 0].min(initial=0))
        step = np.subtract(
            doubled[:, 1:], doubled[:, :-1], dtype=np.int16 if span < 2**15 else np.int32
        )
        step_size = np.abs(step)
        ordered_steps = np.sort(step_size, axis=1, kind="stable")
    baseline = _clipped_median(ordered, divisor, x)
    sigma = _quiet_step_rms(step, step_size, ordered_steps, divisor, x)
    return baseline, sigma, ordered[:, 0] / divisor, ordered[:, -1] / divisor


def _doubled(values: NDArray[np.number]) -> NDArray[np.int16] | None:
    """``2 * values`` as int16 where that is exact: samples on the half-integer
    grid within +-16383; None for any other values.

    >>> _doubled(np.array([[3.5, -1.0, 2.0]])).tolist()
    [[7, -2, 4]]
    >>> _doubled(np.array([[0.25, 0.0]])) is None, _doubled(np.array([[20000]])) is None
    (True, True)
    """
    if values.dtype.kind in "iu":
        if values.size and (values.min() < -(2**14) or values.max() >= 2**14):
            return None
        return np.multiply(values, 2, dtype=np.int16, casting="unsafe")
    doubled = 2 * values
    with np.errstate(invalid="ignore"):
        small = doubled.astype(np.int16)
    return small if np.array_equal(small, doubled) else None


def _sorted_median(ordered: NDArray[np.number], divisor: float) -> NDArray[np.float64]:
    """The median of each row of ``ordered / divisor``, ``(n_rows, n)`` sorted ascending."""
    n = ordered.shape[1]
    lower = ordered[:, (n - 1) // 2].astype(np.float64) / divisor
    return 0.5 * (lower + ordered[:, n // 2].astype(np.float64) / divisor)


def _reader(
    ordered: NDArray[np.number], divisor: float
) -> Callable[[NDArray[np.int64]], NDArray[np.float64]]:
    """``at(index)``: ``(n_rows,)`` element ``index[i]`` of row ``i`` of
    ``ordered / divisor``, ``(n_rows, n)``. An index past either end of its row
    reads some other element: where the searches ask for one, they ignore it."""
    n_rows, n = ordered.shape
    flat = np.ascontiguousarray(ordered).reshape(-1)
    starts = np.arange(n_rows) * n

    def at(index: NDArray[np.int64]) -> NDArray[np.float64]:
        return flat.take(starts + index, mode="clip") / divisor

    return at


def _search(
    holds: Callable[[NDArray[np.int64]], NDArray[np.bool_]],
    low: NDArray[np.int64],
    high: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Per row, the first index in ``[low, high)`` where ``holds``, ``high`` where
    it never does; ``holds(index)`` is ``(n_rows,)`` and, along each row, False
    then True. One binary search for all rows at once.

    >>> rows = np.array([[1, 3, 5, 7], [2, 2, 2, 9]])
    >>> _search(lambda i: rows[[0, 1], np.minimum(i, 3)] > 4, np.zeros(2, int), np.full(2, 4))
    array([2, 3])
    """
    low, high = np.array(low, dtype=np.int64), np.array(high, dtype=np.int64)
    open_ = low < high
    while open_.any():
        middle = (low + high) // 2
        true = holds(middle)
        high = np.where(open_ & true, middle, high)
        low = np.where(open_ & ~true, middle + 1, low)
        open_ = low < high
    return low


def _merged_median(
    left: Callable[[NDArray[np.int64]], NDArray[np.float64]],
    n_left: NDArray[np.int64],
    right: Callable[[NDArray[np.int64]], NDArray[np.float64]],
    n: int,
) -> NDArray[np.float64]:
    """The median of each row's ``n`` values, given as two ascending runs:
    ``left(i)``, ``i < n_left``, and ``right(j)``, ``j < n - n_left``, all ``(n_rows,)``.

    The ``k + 1`` smallest values are the first ``t`` of ``left`` and the first
    ``k + 1 - t`` of ``right`` for the first ``t`` at which ``left(t) >= right(k - t)``:
    a binary search, where a merge or a sort would touch every value.
    """
    n_right = n - n_left
    k = (n - 1) // 2
    taken = _search(
        lambda t: left(t) >= right(k - t),
        np.maximum(k + 1 - n_right, 0),
        np.minimum(k + 1, n_left),
    )
    lower = np.maximum(
        np.where(taken > 0, left(taken - 1), -np.inf),
        np.where(taken <= k, right(k - taken), -np.inf),
    )
    if n % 2:
        return lower
    upper = np.minimum(
        np.where(taken < n_left, left(taken), np.inf),
        np.where(k + 1 - taken < n_right, right(k + 1 - taken), np.inf),
    )
    return 0.5 * (lower + upper)


def _clipped_median(
    ordered: NDArray[np.number], divisor: float, x: NDArray[np.number]
) -> NDArray[np.float64]:
    """The median of each row's samples within 3 sigma of its median, sigma
    from their MAD (the standard deviation where the MAD is 0).

    Args:
        ordered: ``(n_rows, n)`` the rows of ``x`` sorted, times ``divisor``.
        divisor: the scale of ``ordered``.
        x: ``(n_rows, n)`` the rows.
    """
    n_rows, n = ordered.shape
    at = _reader(ordered, divisor)
    first = _sorted_median(ordered, divisor)
    n_below = _search(lambda i: at(i) >= first, np.zeros(n_rows, np.int64), np.full(n_rows, n))

    # Distances from the first median ascend away from it on either side.
    def below(i: NDArray[np.int64]) -> NDArray[np.float64]:
        return first - at(n_below - 1 - i)

    def above(i: NDArray[np.int64]) -> NDArray[np.float64]:
        return at(n_below + i) - first

    spread = _MAD_TO_SIGMA * _merged_median(below, n_below, above, n)
    _std_where_flat(spread, x)
    clip = _CLIP_SIGMA * spread
    quiet_below = _search(lambda i: below(i) > clip, np.zeros(n_rows, np.int64), n_below)
    quiet_above = _search(lambda i: above(i) > clip, np.zeros(n_rows, np.int64), n - n_below)
    # The quiet samples are one contiguous run of the sorted row.
    start = n_below - quiet_below
    n_quiet = quiet_below + quiet_above
    return 0.5 * (at(start + (n_quiet - 1) // 2) + at(start + n_quiet // 2))


def _quiet_step_rms(
    step: NDArray[np.number],
    step_size: NDArray[np.number],
    ordered: NDArray[np.number],
    divisor: float,
    x: NDArray[np.number],
) -> NDArray[np.float64]:
    """The white-noise sigma of each row from its steps: their RMS within 3
    sigma of 0, sigma from their MAD, over sqrt(2).

    Args:
        step: ``(n_rows, n - 1)`` the differences of the rows of ``x``, times ``divisor``.
        step_size: ``abs(step)``.
        ordered: ``step_size`` sorted along each row.
        divisor: the scale of ``step``.
        x: ``(n_rows, n)`` the rows.
    """
    n_rows, n = ordered.shape
    spread = _MAD_TO_SIGMA * _sorted_median(ordered, divisor)
    _std_where_flat(spread, x, of_steps=True)
    at = _reader(ordered, divisor)
    clip = _CLIP_SIGMA * spread
    n_quiet = _search(lambda i: at(i) > clip, np.zeros(n_rows, np.int64), np.full(n_rows, n))
    largest = np.where(n_quiet > 0, ordered[np.arange(n_rows), n_quiet - 1], -1)
    quiet = np.where(step_size <= largest[:, None], step, 0).astype(np.float64)
    # On ADC counts the squares are integers, whose float64 sums are exact in any order.
    mean_square = np.sum(quiet**2, axis=1) / divisor**2 / np.maximum(n_quiet, 1)
    # A Gaussian truncated at 3 sigma keeps 0.9866 of its RMS.
    sigma = np.sqrt(mean_square / 2) / 0.9866
    return np.where(sigma > 0, sigma, 1.0)


def _std_where_flat(
    spread: NDArray[np.float64], x: NDArray[np.number], of_steps: bool = False
) -> None:
    """Replace, in place, a spread of 0 (a MAD of 0: mostly equal values) by the
    standard deviation of the row of ``x``, or of its steps."""
    flat = spread <= 0
    if flat.any():
        rows = x[flat].astype(np.float64)
        spread[flat] = np.std(np.diff(rows, axis=1) if of_steps else rows, axis=1)


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
    x = np.asarray(samples)
    if rate_in_ghz == rate_out_ghz:
        return x.astype(np.float32, copy=False)
    n_rows, n_in = x.shape
    n_out = round(n_in * rate_out_ghz / rate_in_ghz)
    position = np.arange(n_out) * (rate_in_ghz / rate_out_ghz)
    left = np.minimum(np.floor(position).astype(np.int64), n_in - 1)
    right = np.minimum(left + 1, n_in - 1)
    frac = (position - left).astype(np.float32)
    out = np.empty((n_rows, n_out), dtype=np.float32)
    for block in _row_blocks(n_rows):
        rows = x[block].astype(np.float32, copy=False)
        part = np.take(rows, left, axis=1)
        part *= 1 - frac
        later = np.take(rows, right, axis=1)
        later *= frac
        part += later
        out[block] = part
    return out


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
        group = np.flatnonzero((lengths_in == length) & (rates == rate))
        for block in _row_blocks(len(group)):
            rows = group[block]
            raw = _gather_rows(samples, rows, int(length))
            base, sigma, lowest, highest = _robust_levels(raw)
            read_sign = np.where(highest - base >= -(lowest - base), 1, -1)
            if polarity == "auto":
                sign = read_sign
            else:
                sign = np.full(len(rows), 1 if polarity == "positive" else -1)
            scaled = np.subtract(raw, base[:, None], dtype=np.float64)
            scaled *= (sign / sigma)[:, None]
            signal = resample_linear(scaled, float(rate), model_rate_ghz)
            out[rows, : signal.shape[1]] = signal
            baseline[rows], noise_sigma[rows], signs[rows] = base, sigma, sign
            read_signs[rows] = read_sign
    return Normalised(out, out_lengths, baseline, noise_sigma, signs, read_signs, model_rate_ghz)


def validate_rows(
    samples: Ragged, min_length: int = 1
) -> tuple[NDArray[np.bool_], list[tuple[int, str]]]:
    """Which waveforms can be used, and why the others cannot.

    Args:
        samples: ``(n_rows, <row length>)`` waveforms, e.g. ``chunk.samples``.
        min_length: the fewest samples a usable row holds.

    Returns:
        ``ok``: ``(n_rows,)`` True for a usable row; and ``reasons``: one
        ``(row, reason)`` per unusable row, in row order. Rows count from the
        start of ``samples``: add ``chunk.first_event`` for the file entry.

    >>> rows = Ragged.from_lengths(np.array([1.0, 2.0, np.nan, 4.0, np.inf, 6.0]), [2, 0, 3, 1])
    >>> ok, reasons = validate_rows(rows, min_length=2)
    >>> ok.tolist()
    [True, False, False, False]
    >>> reasons  # doctest: +NORMALIZE_WHITESPACE
    [(1, 'length 0'), (2, 'NaN or inf samples: 2 of 3, first at sample 0'),
     (3, 'too short: 1 samples, the models need at least 2')]
    """
    lengths = samples.lengths
    n_rows = len(samples)
    not_finite = ~np.isfinite(samples.values)
    bad_index = np.flatnonzero(not_finite)
    bad_rows = samples.row_index()[bad_index]
    n_bad = np.bincount(bad_rows, minlength=n_rows)
    ok = (lengths >= max(min_length, 1)) & (n_bad == 0)
    reasons: list[tuple[int, str]] = []
    for row in np.flatnonzero(~ok).tolist():
        if lengths[row] == 0:
            reasons.append((row, "length 0"))
        elif n_bad[row]:
            first = int(bad_index[np.searchsorted(bad_rows, row)] - samples.offsets[row])
            reason = f"NaN or inf samples: {n_bad[row]} of {lengths[row]}, first at sample {first}"
            reasons.append((row, reason))
        else:
            reason = f"too short: {lengths[row]} samples, the models need at least {min_length}"
            reasons.append((row, reason))
    return ok, reasons
