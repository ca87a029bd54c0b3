"""Training throughput against batch size, on whatever backend and device Keras has.

The same model builders train on TensorFlow (the default, and the ONNX export
path) or on JAX (``KERAS_BACKEND=jax``, e.g. on a GPU machine without a
TensorFlow build). Writes ``benchmarks/results/training-<backend>-<device>.json``.

    python -m benchmarks.training              # CPU, TensorFlow
    KERAS_BACKEND=jax python -m benchmarks.training
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from benchmarks.machine import cpu_model
from dndx.chain.encoding import N_CHANNELS
from dndx.config import load_params
from models import build_cluster_counter, build_peak_finder

RESULTS = Path(__file__).parent / "results"
PEAK_FINDER_BATCHES = (32, 128, 512, 2048, 8192)
COUNTER_BATCHES = (16, 64, 256)


def _device() -> str:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return str(getattr(device, "device_kind", device.platform))
    if backend == "tensorflow":
        import tensorflow as tf

        return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    return "CPU"


def _throughput(model: keras.Model, x: np.ndarray, y: np.ndarray, batch: int) -> float:
    """Examples per second of one epoch of ``fit``, after a warm-up epoch on a slice."""
    warm = min(len(x), 8 * batch)
    model.fit(x[:warm], y[:warm], batch_size=batch, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return len(x) / (time.perf_counter() - started)


def measure(n_windows: int = 262_144, n_waveforms: int = 4096) -> dict[str, object]:
    """Peak-finder windows/s and counter waveforms/s for each batch size."""
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(n_windows, 15, 1)).astype(np.float32)
    labels = (windows[:, 5, 0] > 0.5).astype(np.float32)
    peaks = rng.random((n_waveforms, 1024, 4)).astype(np.float32)
    counts = peaks[:, :, 0].sum(axis=1)
    params = load_params()
    finder = {}
    for batch in PEAK_FINDER_BATCHES:
        model = build_peak_finder(params.peak_finder, window_length=15, seed=1)
        finder[str(batch)] = round(_throughput(model, windows, labels, batch))
    counter = {}
    for batch in COUNTER_BATCHES:
        model = build_cluster_counter(
            params.cluster_counter, params.counter_input.n_bins, N_CHANNELS, seed=1
        )
        counter[str(batch)] = round(_throughput(model, peaks, counts, batch))
    return {
        "backend": keras.backend.backend(),
        "device": _device(),
        "cpu": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "keras": keras.__version__,
        "peak_finder_windows_per_second": finder,
        "cluster_counter_waveforms_per_second": counter,
    }


def main() -> None:
    """Measure and write the results file (to $OUT too when that is set)."""
    result = measure()
    name = f"training-{result['backend']}-{str(result['device']).replace(' ', '_')}.json"
    text = json.dumps(result, indent=2) + "\n"
    directories = [RESULTS]
    if out := os.environ.get("OUT"):
        directories.append(Path(out))
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
