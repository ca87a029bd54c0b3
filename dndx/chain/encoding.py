"""The cluster counter's input: the peaks of a waveform as a fixed-length image.

Training, evaluation, the registry's parity check and inference all reach the
counter through :func:`encode_scored_candidates`: from the normalised
waveforms, their candidates and the peak finder's probabilities it decides
the peaks and computes every other quantity itself, so that the counter is
served exactly the inputs it learned from.

The time axis of the waveform (at the model rate) is cut into ``n_bins``
bins. Each bin holds four channels:

0. detected peaks in the bin (the peak finder's decisions);
1. their summed height, in units of the waveform's typical single-peak
   height (the median detected height), so that no amplitude unit, gain or
   noise level leaks in;
2. the summed peak-finder probability of every candidate in the bin (a soft
   count that keeps what the threshold throws away);
3. the mean waveform in the bin, in the same height unit.

Peak times alone make a CNN regress towards the mean (docs/physics.md); heights
tell a two-electron pile-up from one electron, and the waveform shows the
pile-ups that no candidate resolved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dndx.chain.candidates import smoothed_at
from dndx.ragged import Ragged
from dndx.waveforms import WaveformSet, peak_delay_ns

__all__ = [
    "COUNTER_INPUT_FILE",
    "N_CHANNELS",
    "VALIDATION_TRACKS_DIR",
    "CounterInput",
    "clusters_per_bin",
    "encode_scored_candidates",
    "samples_per_bin",
]

N_CHANNELS = 4
#: A split's encodings in ``data/counter_inputs/<split>``: arrays ``x``
#: ``(n_waveforms, n_bins, N_CHANNELS)``, ``waveform_id``, ``n_clusters`` and
#: ``clusters_per_bin`` ``(n_waveforms, n_bins)`` (:func:`clusters_per_bin`).
COUNTER_INPUT_FILE = "encoded.npz"
#: The validation tracks' cells the counter is chosen on, in
#: ``data/counter_inputs/<VALIDATION_TRACKS_DIR>/<COUNTER_INPUT_FILE>``: the arrays
#: of a split plus ``track_id``, ``particle``, ``momentum_gev`` and
#: ``path_length_cm``, all ``(n_cells,)``.
VALIDATION_TRACKS_DIR = "tracks_validation"


@dataclass(frozen=True, eq=False)
class CounterInput:
    """The cluster counter's input for a set of waveforms and the decisions behind it.

    Attributes:
        encoded: ``(n_waveforms, n_bins, N_CHANNELS)`` float32, the counter's input.
        detected: ``(n_candidates,)`` bool, the candidates called peaks.
    """

    encoded: NDArray[np.float32]
    detected: NDArray[np.bool_]


def samples_per_bin(window_ns: float, model_sampling_rate_ghz: float, n_bins: int) -> float:
    """Bin width of the encoding in samples: the model-rate window spread over ``n_bins``.

    >>> samples_per_bin(2000.0, 1.5, 1000)
    3.0
    """
    return window_ns * model_sampling_rate_ghz / n_bins


def encode_scored_candidates(
    samples: NDArray[np.float32],
    lengths: NDArray[np.int64],
    candidates: Ragged,
    probability: NDArray[np.floating],
    score_threshold: float,
    n_bins: int,
    samples_per_bin: float,
) -> CounterInput:
    """Decide the peaks among scored candidates and encode each waveform for the counter.

    Args:
        samples: ``(n_waveforms, n_samples)`` the normalised waveforms
            (:func:`dndx.chain.preprocessing.normalise`).
        lengths: ``(n_waveforms,)`` valid samples per row.
        candidates: ``n_waveforms`` rows of candidate sample indices, each at
            least one sample from either end of its row.
        probability: ``(n_candidates,)`` the peak finder's outputs, in the
            order of ``candidates.values``.
        score_threshold: the working point: a candidate scoring at least this is a peak.
        n_bins: bins of the encoding; samples past ``n_bins * samples_per_bin``
            are not encoded.
        samples_per_bin: width of a bin in samples (:func:`samples_per_bin`).

    >>> x = np.zeros((1, 12), np.float32)
    >>> x[0, [3, 9]] = [8.0, 24.0]  # smoothed heights 4 and 12, typical height 8
    >>> c = Ragged.from_lengths(np.array([3, 4, 9]), [3])
    >>> out = encode_scored_candidates(x, np.array([12]), c, np.array([0.9, 0.2, 0.8]),
    ...                                0.5, 4, 3.0)
    >>> out.detected.tolist()
    [True, False, True]
    >>> out.encoded[0, :, 0].tolist(), out.encoded[0, :, 1].tolist()
    ([0.0, 1.0, 0.0, 1.0], [0.0, 0.5, 0.0, 1.5])
    """
    n_waveforms = len(candidates)
    rows = candidates.row_index()
    probability = np.asarray(probability, dtype=np.float64)
    detected = probability >= score_threshold
    height = smoothed_at(samples, rows, candidates.values)
    unit = _typical_height(rows[detected], height[detected], n_waveforms)
    bins = (candidates.values / samples_per_bin).astype(np.int64)
    inside = bins < n_bins
    flat = rows * n_bins + bins
    keep = detected & inside
    flat_out = np.zeros((n_waveforms * n_bins, N_CHANNELS), dtype=np.float32)
    _sum_by_bin(flat[keep], np.ones(np.count_nonzero(keep)), flat_out[:, 0])
    _sum_by_bin(flat[keep], height[keep] / unit[rows[keep]], flat_out[:, 1])
    _sum_by_bin(flat[inside], probability[inside], flat_out[:, 2])
    out = flat_out.reshape(n_waveforms, n_bins, N_CHANNELS)
    out[:, :, 3] = _bin_means(samples, lengths, n_bins, samples_per_bin) / unit[:, None]
    return CounterInput(out, detected)


def _sum_by_bin(
    flat: NDArray[np.int64], weights: NDArray[np.floating], out: NDArray[np.float32]
) -> None:
    """``out[b]``: the sum of the ``weights`` at ``flat == b``, in their order, as
    :func:`numpy.bincount` adds them; other entries of ``out`` are left as they are.

    Candidates come sorted, so each bin's are one run: summing the runs touches
    the few filled bins only, where a bincount writes every bin of the chunk.

    >>> out = np.zeros(5, np.float32)
    >>> _sum_by_bin(np.array([1, 1, 3]), np.array([0.5, 0.25, 2.0]), out)
    >>> out.tolist()
    [0.0, 0.75, 0.0, 2.0, 0.0]
    """
    if not len(flat):
        return
    if (np.diff(flat) < 0).any():
        order = np.argsort(flat, kind="stable")
        flat, weights = flat[order], weights[order]
    first = np.flatnonzero(np.diff(flat, prepend=-1))
    out[flat[first]] = np.add.reduceat(weights, first)


def clusters_per_bin(
    data: WaveformSet, model_sampling_rate_ghz: float, n_bins: int, samples_per_bin: float
) -> NDArray[np.uint16]:
    """The true primary clusters of each waveform in the bins of its counter input.

    A cluster is placed where its primary electron's pulse peaks (arrival plus
    :func:`dndx.waveforms.peak_delay_ns`), binned like the candidates of
    :func:`encode_scored_candidates`; a cluster past the last bin counts in it,
    so that each row sums to the waveform's primary electrons, its ``n_clusters``.

    Returns:
        ``(n_waveforms, n_bins)`` cluster counts.

    >>> import dataclasses
    >>> from dndx.config import load_params
    >>> cfg = dataclasses.replace(load_params().simulate, n_train=4, block_size=4)
    >>> from dndx.simulation.generator import simulate_range
    >>> data = simulate_range(cfg, "train", 0, 4)
    >>> per_bin = clusters_per_bin(data, 1.5, 1024, samples_per_bin(2000.0, 1.5, 1024))
    >>> per_bin.shape, bool((per_bin.sum(axis=1) == data.info["n_clusters"]).all())
    ((4, 1024), True)
    """
    electrons = data.electrons
    primary = electrons["primary"].to_numpy()
    rows = electrons["waveform"].to_numpy()[primary]
    peak_ns = electrons["time_ns"].to_numpy()[primary] + peak_delay_ns(data.info)[rows]
    bins = np.clip(
        (peak_ns * model_sampling_rate_ghz / samples_per_bin).astype(np.int64), 0, n_bins - 1
    )
    counts = np.bincount(rows * n_bins + bins, minlength=len(data) * n_bins)
    return counts.reshape(len(data), n_bins).astype(np.uint16)


def _typical_height(
    rows: NDArray[np.int64], height: NDArray[np.float32], n_waveforms: int
) -> NDArray[np.float64]:
    """Median detected height per waveform; 1 where a waveform has no detection.

    >>> _typical_height(np.array([0, 0, 2]), np.array([3, -1, 5], np.float32), 3).tolist()
    [1.0, 1.0, 5.0]
    """
    unit = np.ones(n_waveforms)
    if len(rows):
        # A float32's bits, the sign bit flipped (all bits for a negative),
        # ascend with its value: row and height sort as one integer, at the
        # speed of one sort rather than a lexsort.
        bits = np.asarray(height, dtype=np.float32).view(np.uint32)
        key = np.where(bits >> 31 == 1, ~bits, bits | 0x80000000).astype(np.uint64)
        key = np.sort(key | (rows.astype(np.uint64) << np.uint64(32)))
        sorted_rows = (key >> np.uint64(32)).astype(np.int64)
        low = key.astype(np.uint32)
        sorted_bits = np.where(low >> 31 == 1, low & 0x7FFFFFFF, ~low)
        sorted_height = sorted_bits.view(np.float32).astype(np.float64)
        starts = np.searchsorted(sorted_rows, np.arange(n_waveforms), side="left")
        stops = np.searchsorted(sorted_rows, np.arange(n_waveforms), side="right")
        has = stops > starts
        lower = sorted_height[(starts + (stops - starts - 1) // 2)[has]]
        upper = sorted_height[(starts + (stops - starts) // 2)[has]]
        unit[has] = 0.5 * (lower + upper)
    return np.maximum(unit, 1e-6)


def _bin_means(
    samples: NDArray[np.float32], lengths: NDArray[np.int64], n_bins: int, samples_per_bin: float
) -> NDArray[np.float64]:
    """``(n_waveforms, n_bins)`` mean of the valid samples in each bin (0 where none).

    Rows are zero after their length (:class:`dndx.chain.preprocessing.Normalised`), so
    each bin is summed whole, as one run of columns, and divided by its valid samples.

    >>> x = np.array([[1, 2, 3, 4, 5, 0], [1, 1, 1, 1, 1, 1]], np.float32)
    >>> _bin_means(x, np.array([5, 6]), 3, 2.0).tolist()
    [[1.5, 3.5, 5.0], [1.0, 1.0, 1.0]]
    """
    n_waveforms, n_samples = samples.shape
    bins = (np.arange(n_samples) / samples_per_bin).astype(np.int64)
    n_columns = int(np.searchsorted(bins, n_bins))
    starts = np.searchsorted(bins[:n_columns], np.arange(n_bins + 1))
    width = np.diff(starts)
    total = np.zeros((n_waveforms, n_bins))
    # The k-th sample of every bin at once, k = 0, 1, ...: each bin's sum in
    # sample order, as a running sum gives it.
    for k in range(int(width.max(initial=0))):
        column = samples.take(np.minimum(starts[:-1] + k, n_columns - 1), axis=1)
        total += column if (k < width).all() else np.where(k < width, column, 0)
    if (lengths >= n_columns).all():
        return total / np.maximum(width, 1)
    return total / np.maximum(np.clip(lengths[:, None] - starts[None, :-1], 0, width), 1)
