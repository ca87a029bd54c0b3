"""The production runtime of the models: ONNX Runtime sessions on a device.

:class:`OnnxModels` satisfies :class:`dndx.chain.inference.PeakModels`, so the pure
chain of :func:`dndx.chain.inference.infer_waveforms` runs on it unchanged; this
module is the only one of the chain that imports ONNX Runtime, which training and
serving both use (a runtime library, no engine). A session's outputs are checked:
a graph that returns NaN or inf is named as damaged instead of writing such counts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
from numpy.typing import NDArray

from dndx.chain.bundle import BUNDLE_FILE, COUNTER_FILE, PEAK_FINDER_FILE, ModelBundle
from dndx.chain.encoding import N_CHANNELS
from dndx.errors import DndxError, InputError

__all__ = [
    "COUNTER_BATCH",
    "DEVICES",
    "PEAK_FINDER_BATCH",
    "Device",
    "OnnxModels",
    "time_per_example_us",
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
            directory / PEAK_FINDER_FILE, providers, "window", (bundle.candidates.window_length, 1)
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

    def probe(self) -> None:
        """Run both graphs once on blank inputs, so that a graph returning NaN or
        inf is named as damaged before any work.

        Raises:
            InputError: a graph returned NaN or inf.
        """
        self.peak_probability(np.zeros((1, self.bundle.candidates.window_length), np.float32))
        self.count_clusters(np.zeros((1, self.bundle.n_bins, N_CHANNELS), np.float32))

    def peak_probability(self, windows: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(n_windows,)`` peak probabilities of ``(n_windows, window_length)`` windows."""
        out = np.empty(len(windows), dtype=np.float32)
        for start in range(0, len(windows), self.peak_finder_batch):
            batch = windows[start : start + self.peak_finder_batch, :, None]
            (probability,) = self.peak_finder.run(None, {"window": batch})
            out[start : start + len(batch)] = probability[:, 0]
        return _finite(out, self.directory / PEAK_FINDER_FILE)

    def count_clusters(self, peaks: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(n_waveforms,)`` counter outputs of ``(n_waveforms, n_bins, 4)`` encodings."""
        out = np.empty(len(peaks), dtype=np.float32)
        for start in range(0, len(peaks), self.counter_batch):
            batch = peaks[start : start + self.counter_batch]
            (n_clusters,) = self.cluster_counter.run(None, {"peaks": batch})
            out[start : start + len(batch)] = n_clusters[:, 0]
        return _finite(out, self.directory / COUNTER_FILE)


def _finite(values: NDArray[np.float32], path: Path) -> NDArray[np.float32]:
    """``values``, or an error naming the model that produced NaN or inf."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(
            f"{path}: damaged model: it returned NaN or inf for {int(bad.sum())} of "
            f"{len(values)} inputs; export or fetch the model again"
        )
    return values


def time_per_example_us(
    path: str | Path, input_name: str, inputs: NDArray[np.float32], batch: int, repeats: int
) -> float:
    """ONNX Runtime's time per example of the graph at ``path`` on one CPU thread, as
    :class:`OnnxModels` runs it: the median over ``repeats`` timed passes, after one
    untimed pass that lets the runtime allocate its buffers.

    Args:
        path: an ONNX graph with the single input ``input_name``.
        input_name: the graph's input.
        inputs: ``(n_examples, *input_shape)`` float32, fed ``batch`` at a time.
        batch: examples per call.
        repeats: timed passes over ``inputs``.

    Returns:
        Microseconds per example.

    Raises:
        InputError: the graph cannot be opened, or its input is not ``input_name``
            of the shape of ``inputs``.
    """
    session = _session(Path(path), ("CPUExecutionProvider",), input_name, inputs.shape[1:])
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        for start in range(0, len(inputs), batch):
            session.run(None, {input_name: inputs[start : start + batch]})
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:]) / len(inputs) * 1e6
