"""Inference on raw waveforms: peaks and cluster counts from a model bundle.

The chain is the one the models were trained on, with no truth anywhere:
:func:`~dndx.preprocessing.normalise` (baseline, noise and polarity from each
waveform itself, resampling to the model's rate), peak candidates and their
windows, the peak finder on every window, the working-point threshold, the
peak encoding and the cluster counter. Everything runs on whole arrays of
waveforms; the models run in large batches.

The models enter through :class:`PeakModels`, so the same chain runs with ONNX
Runtime (:class:`OnnxModels`, the production path) or with anything else that
maps windows to probabilities and encodings to counts (the benchmark runs the
Keras originals through it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from dndx.bundle import BUNDLE_FILE, COUNTER_FILE, PEAK_FINDER_FILE, ModelBundle
from dndx.candidates import extract_windows, find_candidates
from dndx.encoding import N_CHANNELS, encode_scored_candidates
from dndx.errors import DndxError, InputError
from dndx.preprocessing import Normalised, Polarity, normalise
from dndx.ragged import Ragged

__all__ = [
    "COUNTER_BATCH",
    "DEVICES",
    "PEAK_FINDER_BATCH",
    "RESULT_COLUMNS",
    "RESULT_SCHEMA",
    "OnnxModels",
    "PeakModels",
    "candidate_windows",
    "infer_waveforms",
    "results_table",
]

#: Candidate windows per peak-finder call. Small batches keep the LSTM's state
#: in the CPU cache: on one core, 1024 windows a call run about 1.5x faster
#: than 4096 and 7x faster than 65536.
PEAK_FINDER_BATCH = 1024
#: Waveforms per cluster-counter call (16 runs about 1.5x faster than 256).
COUNTER_BATCH = 16


@dataclass(frozen=True)
class Device:
    """Where ONNX Runtime runs the models, and the batch sizes that suit it."""

    providers: tuple[str, ...]
    peak_finder_batch: int
    counter_batch: int


#: The devices ``dndx infer --device`` offers. On an H100, the peak finder runs
#: about 150x faster at batches of 64k windows than one CPU core at 1k
#: (``benchmarks/results/infer-gpu-*.json``).
DEVICES: dict[str, Device] = {
    "cpu": Device(("CPUExecutionProvider",), PEAK_FINDER_BATCH, COUNTER_BATCH),
    "cuda": Device(("CUDAExecutionProvider", "CPUExecutionProvider"), 65536, 2048),
}

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


def _session(
    path: Path, providers: Sequence[str], input_name: str, shape: tuple[int, ...]
) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    # Parallelism comes from running many worker processes, one thread each.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=list(providers))
    except Exception as error:  # ORT raises its own types for a damaged or foreign graph.
        detail = " ".join(str(error).split())
        raise InputError(f"{path}: not a usable ONNX model ({detail})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != input_name:
        names = [i.name for i in inputs]
        raise InputError(f"{path}: expected one input {input_name!r}, the graph has {names}")
    found = tuple(inputs[0].shape[1:])
    if found != shape:
        raise InputError(
            f"{path}: input {input_name!r} has shape (batch, {', '.join(map(str, found))}), "
            f"expected (batch, {', '.join(map(str, shape))}) from {BUNDLE_FILE}"
        )
    return session


@dataclass(frozen=True, eq=False)
class OnnxModels:
    """A model bundle with an ONNX Runtime session for each model.

    Attributes:
        bundle: the bundle's ``bundle.json``.
        directory: the bundle directory.
        peak_finder: session of ``peak_finder.onnx``.
        cluster_counter: session of ``cluster_counter.onnx``.
        peak_finder_batch: candidate windows per peak-finder call.
        counter_batch: waveforms per cluster-counter call.
    """

    bundle: ModelBundle
    directory: Path
    peak_finder: onnxruntime.InferenceSession
    cluster_counter: onnxruntime.InferenceSession
    peak_finder_batch: int = PEAK_FINDER_BATCH
    counter_batch: int = COUNTER_BATCH

    @classmethod
    def load(
        cls,
        bundle_dir: str | Path,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        peak_finder_batch: int = PEAK_FINDER_BATCH,
        counter_batch: int = COUNTER_BATCH,
    ) -> OnnxModels:
        """Open a bundle directory, checking that the graphs fit ``bundle.json``.

        Each session runs on one thread: parallelism comes from the worker
        processes. The default batch sizes suit one CPU core; a GPU provider
        (``CUDAExecutionProvider``) wants batches a hundred times larger.

        Raises:
            InputError: a file of the bundle is missing, damaged, or its input
                does not have the shape ``bundle.json`` implies.
        """
        directory = Path(bundle_dir)
        bundle = ModelBundle.load(directory)
        peak_finder = _session(
            directory / PEAK_FINDER_FILE, providers, "window", (bundle.window_length, 1)
        )
        counter = _session(
            directory / COUNTER_FILE, providers, "peaks", (bundle.n_bins, N_CHANNELS)
        )
        return cls(bundle, directory, peak_finder, counter, peak_finder_batch, counter_batch)

    @classmethod
    def on_device(cls, bundle_dir: str | Path, device: str) -> OnnxModels:
        """Open a bundle on a device of :data:`DEVICES`, with its batch sizes.

        Raises:
            DndxError: an unknown device, or ``cuda`` where ONNX Runtime cannot
                use CUDA (the CPU-only ``onnxruntime`` package, or no GPU or
                CUDA libraries; ONNX Runtime itself would quietly use the CPU).
            InputError: as :meth:`load`.
        """
        if device not in DEVICES:
            raise DndxError(f"device {device!r}: expected one of {', '.join(DEVICES)}")
        chosen = DEVICES[device]
        wanted = chosen.providers[0]
        if wanted not in onnxruntime.get_available_providers():
            raise DndxError(
                f"device {device!r}: this ONNX Runtime ({onnxruntime.__version__}) has no "
                f"{wanted}; install onnxruntime-gpu in place of onnxruntime to use a GPU"
            )
        if device == "cuda":
            # CUDA and cuDNN from the nvidia-* wheels that onnxruntime-gpu pulls in.
            onnxruntime.preload_dlls()
        models = cls.load(
            bundle_dir, chosen.providers, chosen.peak_finder_batch, chosen.counter_batch
        )
        used = models.peak_finder.get_providers()[0]
        if used != wanted:
            raise DndxError(
                f"device {device!r}: ONNX Runtime could not start {wanted} and fell back to "
                f"{used}; check the GPU driver and the CUDA libraries (its log says why)"
            )
        return models

    def peak_probability(self, windows: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(n_windows,)`` peak probabilities of ``(n_windows, window_length)`` windows."""
        out = np.empty(len(windows), dtype=np.float32)
        for start in range(0, len(windows), self.peak_finder_batch):
            batch = windows[start : start + self.peak_finder_batch, :, None]
            (probability,) = self.peak_finder.run(None, {"window": batch})
            out[start : start + len(batch)] = probability[:, 0]
        return out

    def count_clusters(self, peaks: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(n_waveforms,)`` counter outputs of ``(n_waveforms, n_bins, 4)`` encodings."""
        out = np.empty(len(peaks), dtype=np.float32)
        for start in range(0, len(peaks), self.counter_batch):
            batch = peaks[start : start + self.counter_batch]
            (n_clusters,) = self.cluster_counter.run(None, {"peaks": batch})
            out[start : start + len(batch)] = n_clusters[:, 0]
        return out


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
