"""Inference on raw waveforms: peaks and cluster counts from a model bundle.

The chain is the one the models were trained on, with no truth anywhere:
:func:`~dndx.preprocessing.normalise` (baseline, noise and polarity from each
waveform itself, resampling to the model's rate), peak candidates and their
windows, the peak finder on every window, the working-point threshold, the
peak encoding and the cluster counter. Everything runs on whole arrays of
waveforms; the models run in large batches.

The models enter through :class:`PeakModels`, so the same chain runs with ONNX
Runtime (:class:`tasks.onnx_models.OnnxModels`, the production path) or with
anything else that maps windows to probabilities and encodings to counts (the
benchmark runs the Keras originals through it). This module imports no runtime.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from dndx.bundle import ModelBundle
from dndx.candidates import extract_windows, find_candidates
from dndx.encoding import encode_peaks
from dndx.preprocessing import Normalised, Polarity, normalise
from dndx.ragged import Ragged

__all__ = [
    "RESULT_COLUMNS",
    "RESULT_SCHEMA",
    "PeakModels",
    "candidate_windows",
    "infer_waveforms",
    "results_table",
]

#: Columns of :func:`infer_waveforms`, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "n_peaks",
    "peak_time_ns",
    "n_clusters",
    "n_candidates",
    "baseline",
    "noise_sigma",
    "polarity",
)

#: The inference output file: one row per waveform, the input's ``source_file``
#: and ``event`` (entry index in that file) first.
RESULT_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("event", pa.int64(), nullable=False),
        pa.field("n_peaks", pa.int32(), nullable=False),
        pa.field("peak_time_ns", pa.list_(pa.float32()), nullable=False),
        pa.field("n_clusters", pa.float32(), nullable=False),
        pa.field("n_candidates", pa.int32(), nullable=False),
        pa.field("baseline", pa.float64(), nullable=False),
        pa.field("noise_sigma", pa.float64(), nullable=False),
        pa.field("polarity", pa.int8(), nullable=False),
    ]
)


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


def _empty_results() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "n_peaks": np.zeros(0, np.int32),
            "peak_time_ns": pd.Series([], dtype=object),
            "n_clusters": np.zeros(0, np.float32),
            "n_candidates": np.zeros(0, np.int32),
            "baseline": np.zeros(0),
            "noise_sigma": np.zeros(0),
            "polarity": np.zeros(0, np.int8),
        }
    )


def _smoothed_at(
    samples: NDArray[np.float32], rows: NDArray[np.int64], columns: NDArray[np.int64]
) -> NDArray[np.float32]:
    """:func:`~dndx.candidates.smooth` of ``samples`` at interior points only.

    >>> from dndx.candidates import smooth
    >>> x = np.array([[0, 0, 4, 0, 0]], dtype=np.float32)
    >>> _smoothed_at(x, np.array([0, 0]), np.array([1, 2])).tolist() == smooth(x)[0, 1:3].tolist()
    True
    """
    return (
        0.25 * samples[rows, columns - 1]
        + 0.5 * samples[rows, columns]
        + 0.25 * samples[rows, columns + 1]
    )


def candidate_windows(
    samples: Ragged, sampling_rate_ghz: float, polarity: Polarity, bundle: ModelBundle
) -> tuple[Normalised, Ragged, NDArray[np.float32]]:
    """The first steps of :func:`infer_waveforms`: the waveforms at the model rate,
    their peak candidates, and the candidates' windows,
    ``(n_candidates, window_length)`` float32, C-contiguous."""
    norm = normalise(samples, sampling_rate_ghz, bundle.model_sampling_rate_ghz, polarity)
    candidates = find_candidates(
        norm.samples,
        norm.lengths,
        bundle.candidate_threshold_sigma,
        bundle.window_before,
        bundle.window_after,
    )
    windows = extract_windows(norm.samples, candidates, bundle.window_before, bundle.window_after)
    return norm, candidates, np.ascontiguousarray(windows, dtype=np.float32)


def infer_waveforms(
    samples: Ragged,
    sampling_rate_ghz: float,
    polarity: Polarity,
    models: PeakModels,
) -> pd.DataFrame:
    """Peaks and cluster counts of raw waveforms.

    Args:
        samples: ``n_waveforms`` rows of raw samples in any unit, every row
            non-empty and finite (see :func:`dndx.readers.validate_rows`).
        sampling_rate_ghz: the rate the rows were recorded at.
        polarity: the sign of the signal, or ``"auto"`` to read it off each row.
        models: the peak finder and cluster counter with their bundle.

    Returns:
        ``(n_waveforms, ...)`` one row per waveform, in input order:
        ``n_peaks`` (int32), ``peak_time_ns`` (float32 array of the detected
        peak times, in ns from the row's first sample), ``n_clusters``
        (float32 counter output, at least 0), ``n_candidates`` (int32),
        ``baseline`` and ``noise_sigma`` (in input units) and ``polarity``
        (int8, +1 or -1, as detected or given).
    """
    if len(samples) == 0:
        return _empty_results()
    bundle = models.bundle
    rate = bundle.model_sampling_rate_ghz
    norm, candidates, windows = candidate_windows(samples, sampling_rate_ghz, polarity, bundle)
    rows = candidates.row_index()
    probability = models.peak_probability(windows)
    detected = probability >= bundle.score_threshold
    height = _smoothed_at(norm.samples, rows, candidates.values)
    encoded = encode_peaks(
        candidates,
        height,
        probability,
        detected,
        norm.samples,
        norm.lengths,
        bundle.n_bins,
        bundle.samples_per_bin,
    )
    n_clusters = np.maximum(models.count_clusters(encoded), 0.0).astype(np.float32)
    n_peaks = np.bincount(rows[detected], minlength=len(samples))
    peak_time_ns = (candidates.values[detected] / rate).astype(np.float32)
    return pd.DataFrame(
        {
            "n_peaks": n_peaks.astype(np.int32),
            "peak_time_ns": np.split(peak_time_ns, np.cumsum(n_peaks)[:-1]),
            "n_clusters": n_clusters,
            "n_candidates": candidates.lengths.astype(np.int32),
            "baseline": norm.baseline,
            "noise_sigma": norm.noise_sigma,
            "polarity": norm.polarity,
        }
    )


def results_table(results: pd.DataFrame) -> pa.Table:
    """The rows of :func:`infer_waveforms` with ``source_file`` and ``event`` as
    a table of :data:`RESULT_SCHEMA`.

    >>> frame = pd.DataFrame({"source_file": ["a.h5"], "event": [3], "n_peaks": [1],
    ...     "peak_time_ns": [np.array([12.5])], "n_clusters": [0.8], "n_candidates": [4],
    ...     "baseline": [200.0], "noise_sigma": [3.0], "polarity": [-1]})
    >>> results_table(frame).column("peak_time_ns").to_pylist()
    [[12.5]]
    """
    return pa.Table.from_pandas(
        results.loc[:, RESULT_SCHEMA.names], schema=RESULT_SCHEMA, preserve_index=False
    )
