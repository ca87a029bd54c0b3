"""Inference on raw waveforms: peaks and cluster counts from a model bundle.

The chain is the one the models were trained on, with no truth anywhere:
:func:`~dndx.chain.preprocessing.normalise` (baseline, noise and polarity from each
waveform itself, resampling to the model's rate), peak candidates and their
windows (:func:`~dndx.chain.candidates.candidate_step`, as in training, with the
bundle's :class:`~dndx.config.CandidateConfig`), the peak finder on every
window, the working-point threshold, the peak encoding and the cluster counter.
Everything runs on whole arrays of waveforms; the models run in large batches.

The models enter through :class:`PeakModels`, so the same chain runs with ONNX
Runtime (:class:`dndx.chain.onnx.OnnxModels`, the production path) or with
anything else that maps windows to probabilities and encodings to counts (the
benchmark runs the Keras originals through it). This module imports no runtime.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from dndx.chain.baselines import d2_peaks, time_clusterize
from dndx.chain.bundle import ModelBundle
from dndx.chain.candidates import candidate_step
from dndx.chain.encoding import encode_scored_candidates
from dndx.chain.preprocessing import Normalised, Polarity, normalise, validate_rows
from dndx.errors import DndxError
from dndx.ragged import Ragged

__all__ = [
    "METHODS",
    "RESULT_COLUMNS",
    "RESULT_SCHEMA",
    "SATURATION_SAMPLES",
    "SKIPPED",
    "STATUSES",
    "TRACK_FIELDS",
    "PeakModels",
    "check_sampling_rate",
    "infer_rows",
    "infer_waveforms",
    "infer_waveforms_d2",
    "minimum_length",
    "result_schema",
    "results_table",
]

#: What :func:`infer_waveforms` says of each waveform, and what it means.
#: ``n_clusters`` is a number only for ``ok``.
STATUSES: dict[str, str] = {
    "ok": "counted",
    "no_signal": "nothing to count: a flat row (dead or pinned channel) or no peak found",
    "saturated": "the signal sits at its extreme for several samples: clipped by the ADC",
    "truncated": "longer than the counter's window: peaks found over the whole "
    "waveform, clusters not counted",
    "polarity_contradicted": "the given --polarity contradicts the row (its larger "
    "excursion from the baseline is on the other side): not counted",
}
#: The status of a row that was not processed (empty, too short, NaN or inf
#: samples): its ``reason`` column says which; every other column is null.
SKIPPED = "skipped"
#: What finds the peaks and counts the clusters: the bundle's two models, or
#: the classical chain (D2 peaks and time clusterization, with the bundle's
#: tuned settings) on the same normalised waveforms.
METHODS: tuple[str, ...] = ("lstm", "d2")

#: Consecutive samples at a row's extreme, on the signal's side, that mark it
#: saturated: a pulse's top is one or two samples wide at the trained rates.
SATURATION_SAMPLES = 4

#: Columns of :func:`infer_waveforms`, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "status",
    "n_peaks",
    "peak_time_ns",
    "n_clusters",
    "counter_output",
    "n_candidates",
    "baseline",
    "noise_sigma",
    "polarity",
    "read_polarity",
)

#: The inference output file: one row per input entry, the input's
#: ``source_file`` and ``event`` (entry index in that file) first; ``reason``
#: says why a :data:`SKIPPED` row was not processed, and its results are null.
RESULT_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("event", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=True),
        pa.field("n_peaks", pa.int32(), nullable=True),
        pa.field("peak_time_ns", pa.list_(pa.float32()), nullable=True),
        pa.field("n_clusters", pa.float32(), nullable=True),
        pa.field("n_candidates", pa.int32(), nullable=True),
        pa.field("baseline", pa.float64(), nullable=True),
        pa.field("noise_sigma", pa.float64(), nullable=True),
        pa.field("polarity", pa.int8(), nullable=True),
    ]
)
#: The columns a run on tracks adds to :data:`RESULT_SCHEMA`: each waveform's
#: track and, where the input gives it, the track's path length in the cell.
TRACK_FIELDS: dict[str, pa.Field] = {
    "track": pa.field("track", pa.int64(), nullable=False),
    "path_cm": pa.field("path_cm", pa.float64(), nullable=False),
}


def result_schema(columns: Sequence[str] = ()) -> pa.Schema:
    """:data:`RESULT_SCHEMA` with the fields of :data:`TRACK_FIELDS` named in ``columns``.

    >>> result_schema(["track", "n_peaks"]).names[-2:]
    ['polarity', 'track']
    """
    extra = [field for name, field in TRACK_FIELDS.items() if name in columns]
    return pa.schema([*RESULT_SCHEMA, *extra])


class PeakModels(Protocol):
    """The two models and their bundle, whatever runs them."""

    @property
    def bundle(self) -> ModelBundle:
        """Thresholds, windows and encoding the models were trained with."""
        ...

    def peak_probability(self, windows: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(n_windows,)`` peak probabilities of ``(n_windows, window_length)`` windows."""
        ...

    def count_clusters(self, peaks: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(n_waveforms,)`` cluster counts of ``(n_waveforms, n_bins, 4)`` encodings."""
        ...


def check_sampling_rate(sampling_rate_ghz: float, trained_ghz: Sequence[float]) -> None:
    """Refuse a rate outside the range the models were trained on.

    Rates between the trained ones are resampled linearly to the models' rate,
    like the trained ones themselves.

    >>> check_sampling_rate(1.7, (1.2, 1.5, 2.0))
    >>> check_sampling_rate(1e6, (1.2, 1.5, 2.0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dndx.errors.DndxError: sampling rate 1e+06 GS/s: outside 1.2 to 2 GS/s, the range ...
    """
    low, high = min(trained_ghz), max(trained_ghz)
    if not low <= sampling_rate_ghz <= high:
        raise DndxError(
            f"sampling rate {sampling_rate_ghz:g} GS/s: outside {low:g} to {high:g} GS/s, the "
            "range the models were trained on (rates in between are resampled to the "
            "models' rate)"
        )


def minimum_length(bundle: ModelBundle, sampling_rate_ghz: float) -> int:
    """The fewest samples at ``sampling_rate_ghz`` a waveform needs: one
    candidate window at the models' rate.

    >>> from dndx.config import CandidateConfig
    >>> candidates = CandidateConfig(1.5, 2.0, 0.0, 0.0, 5, 9)
    >>> bundle = ModelBundle(candidates, 0.5, 1024, 3000 / 1024, {}, None)
    >>> minimum_length(bundle, 1.5), minimum_length(bundle, 1.2)
    (15, 12)
    """
    scale = sampling_rate_ghz / bundle.candidates.model_sampling_rate_ghz
    return max(2, math.ceil(bundle.candidates.window_length * scale))


def _empty_results() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "status": pd.Series([], dtype=object),
            "n_peaks": np.zeros(0, np.int32),
            "peak_time_ns": pd.Series([], dtype=object),
            "n_clusters": np.zeros(0, np.float32),
            "counter_output": np.zeros(0, np.float32),
            "n_candidates": np.zeros(0, np.int32),
            "baseline": np.zeros(0),
            "noise_sigma": np.zeros(0),
            "polarity": np.zeros(0, np.int8),
            "read_polarity": np.zeros(0, np.int8),
        }
    )


def _saturated(samples: Ragged, polarity: NDArray[np.int8]) -> NDArray[np.bool_]:
    """``(n_rows,)`` True where a row holds its extreme on the signal's side for
    :data:`SATURATION_SAMPLES` consecutive samples.

    >>> rows = Ragged.from_lengths(np.array([0, 9, 9, 9, 9, 0, 0, 9, 9, 0.0]), [6, 4])
    >>> _saturated(rows, np.array([1, 1], np.int8)).tolist()
    [True, False]
    """
    starts = samples.offsets[:-1]
    signed = samples.values * np.repeat(polarity, samples.lengths)
    extreme = np.maximum.reduceat(signed, starts) if len(samples.values) else signed[:0]
    # Few samples sit at their row's extreme: a run is ``run`` of them in a row,
    # sorted positions ``run - 1`` apart within one row.
    at_extreme = np.flatnonzero(signed == np.repeat(extreme, samples.lengths))
    run = SATURATION_SAMPLES
    n_runs = max(len(at_extreme) - run + 1, 0)
    rows = np.searchsorted(samples.offsets, at_extreme, side="right") - 1
    first, last = at_extreme[:n_runs], at_extreme[run - 1 :]
    full = (last - first == run - 1) & (rows[:n_runs] == rows[run - 1 :])
    return np.bincount(rows[:n_runs][full], minlength=len(samples)) > 0


def _flat(samples: Ragged) -> NDArray[np.bool_]:
    """``(n_rows,)`` True where a row holds one value throughout.

    >>> _flat(Ragged.from_lengths(np.array([3.0, 3.0, 1.0, 2.0]), [2, 2])).tolist()
    [True, False]
    """
    starts = samples.offsets[:-1]
    return np.maximum.reduceat(samples.values, starts) == np.minimum.reduceat(
        samples.values, starts
    )


def _statuses(
    samples: Ragged,
    norm: Normalised,
    n_peaks: NDArray[np.int64],
    window_samples: float,
    flat: NDArray[np.bool_],
) -> NDArray[np.object_]:
    """``(n_rows,)`` the :data:`STATUSES` key of each row, the first that applies
    of flat (``no_signal``), polarity contradicted, ``saturated``, no peak
    (``no_signal``), ``truncated``."""
    status = np.full(len(samples), "ok", dtype=object)
    status[norm.lengths > window_samples] = "truncated"
    status[n_peaks == 0] = "no_signal"
    status[_saturated(samples, norm.polarity)] = "saturated"
    status[norm.polarity != norm.read_polarity] = "polarity_contradicted"
    status[flat] = "no_signal"
    return status


def infer_waveforms(
    samples: Ragged,
    sampling_rate_ghz: float,
    polarity: Polarity,
    models: PeakModels,
) -> pd.DataFrame:
    """Peaks and cluster counts of raw waveforms.

    Args:
        samples: ``n_waveforms`` rows of raw samples in any unit, every row
            finite and at least :func:`minimum_length` long (see
            :func:`dndx.chain.preprocessing.validate_rows`).
        sampling_rate_ghz: the rate the rows were recorded at.
        polarity: the sign of the signal, or ``"auto"`` to read it off each row.
        models: the peak finder and cluster counter with their bundle.

    Returns:
        ``(n_waveforms, ...)`` one row per waveform, in input order:
        ``status`` (a key of :data:`STATUSES`), ``n_peaks`` (int32),
        ``peak_time_ns`` (float32 array of the detected peak times, in ns from
        the row's first sample), ``n_clusters`` (float32 counter output, at
        least 0, NaN unless ``status`` is ``ok``), ``counter_output`` (the
        same for every row, for scoring against a simulation's truth, which
        the output file does not carry), ``n_candidates`` (int32),
        ``baseline`` and ``noise_sigma`` (in input units), ``polarity`` (int8,
        +1 or -1, as read or given) and ``read_polarity`` (as read off the row).
    """
    if len(samples) == 0:
        return _empty_results()
    bundle = models.bundle
    norm, candidates, windows = candidate_step(
        samples, sampling_rate_ghz, polarity, bundle.candidates
    )
    rows = candidates.row_index()
    counter = encode_scored_candidates(
        norm.samples,
        norm.lengths,
        candidates,
        models.peak_probability(windows),
        bundle.score_threshold,
        bundle.n_bins,
        bundle.samples_per_bin,
    )
    detected = counter.detected
    n_clusters = np.maximum(models.count_clusters(counter.encoded), 0.0).astype(np.float32)
    peaks = Ragged.from_lengths(
        candidates.values[detected], np.bincount(rows[detected], minlength=len(samples))
    )
    return _results(samples, norm, peaks, n_clusters, candidates.lengths, bundle)


def infer_waveforms_d2(
    samples: Ragged, sampling_rate_ghz: float, polarity: Polarity, bundle: ModelBundle
) -> pd.DataFrame:
    """:func:`infer_waveforms` by the classical chain: D2 peaks and time
    clusterization with ``bundle.d2``, on the waveforms normalised as for the models.

    The columns are those of :func:`infer_waveforms`; ``n_clusters`` is the
    number of time clusters, ``n_candidates`` the number of D2 peaks.

    Raises:
        DndxError: the bundle holds no D2 settings.
    """
    if bundle.d2 is None:
        raise DndxError(
            "the model bundle holds no D2 settings: it was registered without an "
            "evaluation (run the evaluate stage, then register)"
        )
    if len(samples) == 0:
        return _empty_results()
    rate = bundle.candidates.model_sampling_rate_ghz
    norm = normalise(samples, sampling_rate_ghz, rate, polarity)
    peaks = d2_peaks(norm.samples, norm.lengths, bundle.d2.t1_sigma, bundle.d2.t2)
    clusters = time_clusterize(
        Ragged(peaks.values / rate, peaks.offsets),
        bundle.d2.window_ns,
        bundle.d2.growth_ns_per_sqrt_ns,
    )
    n_clusters = clusters.lengths.astype(np.float32)
    return _results(samples, norm, peaks, n_clusters, peaks.lengths, bundle)


def _results(
    samples: Ragged,
    norm: Normalised,
    peaks: Ragged,
    n_clusters: NDArray[np.float32],
    n_candidates: NDArray[np.int64],
    bundle: ModelBundle,
) -> pd.DataFrame:
    """The :data:`RESULT_COLUMNS` of each waveform from its peaks' samples at the
    model rate and its cluster count (``(n_waveforms,)``, valid for ``ok`` rows)."""
    n_peaks = peaks.lengths
    peak_time_ns = (peaks.values / bundle.candidates.model_sampling_rate_ghz).astype(np.float32)
    flat = _flat(samples)
    status = _statuses(samples, norm, n_peaks, bundle.n_bins * bundle.samples_per_bin, flat)
    # A flat row has no noise and no sign: say so rather than report the
    # normalisation's stand-ins as if measured.
    return pd.DataFrame(
        {
            "status": status,
            "n_peaks": n_peaks.astype(np.int32),
            "peak_time_ns": np.split(peak_time_ns, np.cumsum(n_peaks)[:-1]),
            "n_clusters": np.where(status == "ok", n_clusters, np.float32(np.nan)),
            "counter_output": n_clusters,
            "n_candidates": n_candidates.astype(np.int32),
            "baseline": norm.baseline,
            "noise_sigma": np.where(flat, 0.0, norm.noise_sigma),
            "polarity": np.where(flat, 0, norm.polarity).astype(np.int8),
            "read_polarity": np.where(flat, 0, norm.read_polarity).astype(np.int8),
        }
    )


def infer_rows(
    samples: Ragged,
    sampling_rate_ghz: NDArray[np.float64],
    infer: Callable[[Ragged, float], pd.DataFrame],
    min_length: Callable[[float], int],
) -> pd.DataFrame:
    """:func:`infer_waveforms` (or its like, ``infer``) on every row at its own
    rate, with a row for every input row, in input order.

    Rows of one rate go to ``infer`` together. Rows that cannot be processed
    (:func:`dndx.chain.preprocessing.validate_rows`, with ``min_length`` of their rate)
    keep their place with status :data:`SKIPPED`, their ``reason``, and null
    results; the rows ``infer`` returns have no ``reason``.

    Args:
        samples: ``(n_rows, <row length>)`` raw samples.
        sampling_rate_ghz: ``(n_rows,)`` each row's rate.
        infer: the chain on rows of one rate.
        min_length: the fewest samples a usable row holds at a rate.

    Returns:
        ``(n_rows, ...)`` the columns of :func:`infer_waveforms` and ``reason``;
        ``n_peaks``, ``n_candidates``, ``polarity`` and ``read_polarity`` as
        pandas' nullable integers.
    """
    parts = []
    reasons: dict[int, str] = {}
    for rate in np.unique(sampling_rate_ghz):
        rows = np.flatnonzero(sampling_rate_ghz == rate)
        group = samples.take(rows) if len(rows) != len(samples) else samples
        ok, bad = validate_rows(group, min_length(float(rate)))
        reasons.update((int(rows[row]), reason) for row, reason in bad)
        good = np.flatnonzero(ok)
        part = infer(group.take(good) if len(good) != len(group) else group, float(rate))
        parts.append(part.set_axis(rows[good]))
    results = pd.concat(parts) if parts else _empty_results()
    skipped = pd.DataFrame(
        {"status": SKIPPED, "reason": list(reasons.values())},
        index=np.fromiter(reasons, np.int64, len(reasons)),
    )
    whole = pd.concat([results, skipped]) if len(skipped) else results.assign(reason=None)
    whole = whole.sort_index().reset_index(drop=True)
    nullable = {"n_peaks": "Int32", "n_candidates": "Int32", "polarity": "Int8"}
    return whole.astype({**nullable, "read_polarity": "Int8"})


def results_table(results: pd.DataFrame) -> pa.Table:
    """The rows of :func:`infer_waveforms` or :func:`infer_rows` with
    ``source_file`` and ``event`` as a table of :data:`RESULT_SCHEMA` (``reason``
    null where ``results`` has none), with the columns of :data:`TRACK_FIELDS`
    that ``results`` holds.

    >>> frame = pd.DataFrame({"source_file": ["a.h5"], "event": [3], "status": ["ok"],
    ...     "n_peaks": [1],
    ...     "peak_time_ns": [np.array([12.5])], "n_clusters": [0.8], "n_candidates": [4],
    ...     "baseline": [200.0], "noise_sigma": [3.0], "polarity": [-1]})
    >>> results_table(frame).column("peak_time_ns").to_pylist()
    [[12.5]]
    """
    schema = result_schema(list(results.columns))
    if "reason" not in results:
        results = results.assign(reason=None)
    return pa.Table.from_pandas(results.loc[:, schema.names], schema=schema, preserve_index=False)
