"""How far can more data, more capacity or perfect peak finding take the models?

Two studies on freshly simulated data (the default ranges of ``params.yaml``),
each answering whether a target of the evaluation is a matter of training budget:

``peak-finder``
    The LSTM as ``make run`` trains it (``[32, 32]``, 300k candidate windows,
    batch 512), then on every window of the training waveforms (about 10x
    more), then twice as wide (``[64, 64]``). Candidate-level precision and
    recall on the test split at the working point chosen on validation.

``counting``
    The cluster counter (default topology, one input channel) trained on the
    binned times of the *expected peaks* of the truth (perfect peak finding,
    with electrons closer than the resolving time merged, as the labels define
    peaks), and on the arrival times of *every electron* (no pile-up at all),
    with 20k and with all training waveforms. The test-set RMS / sqrt(N) and
    slope are the floor that better peak finding cannot go below.

Meant for a GPU (any Keras 3 backend; the results in ``benchmarks/results``
ran on JAX on an H100), runnable on CPU with patience:

    KERAS_BACKEND=jax python -m benchmarks.limits peak-finder [--train-waveforms 30000]
    KERAS_BACKEND=jax python -m benchmarks.limits counting [--train-waveforms 100000]

Writes ``benchmarks/results/limits-<study>-<device>.json`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.infer_gpu import gpu_name
from benchmarks.machine import cpu_model
from dndx.config import (
    Params,
    SimulationConfig,
    load_params,
)
from dndx.scoring.metrics import best_threshold, binary_scores, counting_metrics, roc_auc
from dndx.simulation.generator import simulate_range
from dndx.truth.preparation import PreparedChunk, prepare_waveforms
from dndx.waveforms import SPLITS, WaveformSet

RESULTS = Path(__file__).parent / "results"
CHUNK = 2500
N_BINS = 1024
#: (name, LSTM units, training windows or None for all, batch, learning rate, epochs)
PEAK_FINDER_RUNS: tuple[tuple[str, tuple[int, ...], int | None, int, float, int], ...] = (
    ("current: [32,32] 300k windows b512", (32, 32), 300_000, 512, 0.004, 25),
    ("[32,32] all windows b2048", (32, 32), None, 2048, 0.004, 20),
    ("[64,64] all windows b2048", (64, 64), None, 2048, 0.002, 20),
)


def _chunk(
    sim: SimulationConfig,
    params: Params,
    extract: Callable[[WaveformSet, PreparedChunk], tuple[NDArray[Any], ...]],
    job: tuple[str, int, int],
) -> tuple[NDArray[Any], ...]:
    split, start, stop = job
    waveforms = simulate_range(sim, split, start, stop)
    return extract(waveforms, prepare_waveforms(waveforms, params.prepare))


def prepared(
    sim: SimulationConfig,
    params: Params,
    split: str,
    extract: Callable[[WaveformSet, PreparedChunk], tuple[NDArray[Any], ...]],
) -> list[NDArray[Any]]:
    """``extract`` of every chunk of ``split``, simulated and prepared on all cores,
    concatenated field by field."""
    n = sim.n_waveforms(split)
    jobs = [(split, start, min(start + CHUNK, n)) for start in range(0, n, CHUNK)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        parts = list(pool.map(partial(_chunk, sim, params, extract), jobs))
    return [np.concatenate(field) for field in zip(*parts, strict=True)]


def _windows(_: WaveformSet, chunk: PreparedChunk) -> tuple[NDArray[Any], ...]:
    return chunk.windows, chunk.candidates["label"].to_numpy()


def _binned(times_ns: Sequence[NDArray[np.floating]], window_ns: float) -> NDArray[np.float32]:
    """``(n_waveforms, N_BINS)`` counts of the given times per time bin."""
    out = np.zeros((len(times_ns), N_BINS), dtype=np.float32)
    for row, times in enumerate(times_ns):
        bins = (np.asarray(times) * N_BINS / window_ns).astype(np.int64)
        np.add.at(out[row], bins[bins < N_BINS], 1.0)
    return out


def _perfect_peaks(
    window_ns: float, waveforms: WaveformSet, chunk: PreparedChunk
) -> tuple[NDArray[Any], ...]:
    electrons = np.split(
        waveforms.electrons["time_ns"].to_numpy(), waveforms.electron_offsets[1:-1]
    )
    return (
        _binned(chunk.waveforms["expected_time_ns"], window_ns),
        _binned(electrons, window_ns),
        chunk.waveforms["n_clusters"].to_numpy(),
    )


def peak_finder_study(sim: SimulationConfig, params: Params) -> dict[str, Any]:
    """Candidate-level scores of the LSTM with more windows and more units."""
    import keras

    from models import build_peak_finder

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
        prepared(sim, params, split, _windows) for split in SPLITS
    )
    runs: dict[str, Any] = {}
    for name, units, n_windows, batch, learning_rate, epochs in PEAK_FINDER_RUNS:
        start = time.perf_counter()
        chosen = np.random.default_rng(1).permutation(len(y_train))[: n_windows or len(y_train)]
        cfg = dataclasses.replace(params.peak_finder, lstm_units=units, learning_rate=learning_rate)
        model = build_peak_finder(cfg, seed=1)
        history = model.fit(
            x_train[chosen, :, None],
            y_train[chosen].astype("float32"),
            batch_size=batch,
            epochs=epochs,
            validation_data=(x_val[:, :, None], y_val.astype("float32")),
            callbacks=[keras.callbacks.EarlyStopping(patience=4, restore_best_weights=True)],
            validation_batch_size=8192,
            verbose=0,
        )
        threshold = best_threshold(y_val, model.predict(x_val[:, :, None], 8192, verbose=0)[:, 0])
        scores = model.predict(x_test[:, :, None], 8192, verbose=0)[:, 0]
        test = binary_scores(y_test, scores, threshold)
        runs[name] = {
            "n_train": len(chosen),
            "epochs_run": len(history.history["loss"]),
            "val_loss": [round(v, 4) for v in history.history["val_loss"]],
            "threshold": threshold,
            "precision": test["precision"],
            "recall": test["recall"],
            "pxr": test["precision"] * test["recall"],
            "auc": roc_auc(y_test, scores),
            "seconds": time.perf_counter() - start,
        }
        print(name, json.dumps(runs[name]), flush=True)
    return runs


def counting_study(sim: SimulationConfig, params: Params) -> dict[str, Any]:
    """The counter's test scores when peak finding is perfect."""
    import keras

    from models import build_cluster_counter

    data = {
        split: prepared(sim, params, split, partial(_perfect_peaks, sim.window_ns))
        for split in SPLITS
    }
    inputs = {"expected peaks (perfect peak finding)": 0, "every electron (no pile-up)": 1}
    runs: dict[str, Any] = {}
    for name, column in inputs.items():
        for n_train in sorted({min(20000, sim.n_train), sim.n_train}):
            start = time.perf_counter()
            keras.utils.set_random_seed(1)
            model = build_cluster_counter(
                params.cluster_counter, n_bins=N_BINS, n_channels=1, seed=1
            )
            history = model.fit(
                data["train"][column][:n_train, :, None],
                data["train"][2][:n_train].astype("float32"),
                batch_size=128,
                epochs=40,
                validation_data=(
                    data["validation"][column][:, :, None],
                    data["validation"][2].astype("float32"),
                ),
                callbacks=[keras.callbacks.EarlyStopping(patience=6, restore_best_weights=True)],
                validation_batch_size=2048,
                verbose=0,
            )
            predicted = model.predict(data["test"][column][:, :, None], 2048, verbose=0)[:, 0]
            scores = counting_metrics(predicted, data["test"][2])
            result: dict[str, Any] = {
                key: round(float(scores[key]), 4)
                for key in ("relative_bias", "rms_over_sqrt_n", "linearity_slope", "mean_true")
            }
            result.update(
                n_train=n_train,
                epochs_run=len(history.history["loss"]),
                seconds=round(time.perf_counter() - start),
            )
            runs[f"{name}, {n_train} waveforms"] = result
            print(name, json.dumps(result), flush=True)
    return runs


STUDIES = {
    "peak-finder": (peak_finder_study, 30000, 5000),
    "counting": (counting_study, 100000, 10000),
}


def main() -> None:
    """Run one study and write its results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--train-waveforms", type=int)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    study, default_train, n_eval = STUDIES[args.study]
    params = load_params()
    sim = dataclasses.replace(
        params.simulate,
        n_train=args.train_waveforms or default_train,
        n_validation=n_eval,
        n_test=n_eval,
    )
    import keras

    runs = study(sim, params)
    device = gpu_name()
    result = {
        "study": args.study,
        "keras_backend": keras.backend.backend(),
        "n_waveforms": {"train": sim.n_train, "validation": n_eval, "test": n_eval},
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "gpu": device},
        "runs": runs,
    }
    name = re.sub(r"[^A-Za-z0-9]+", "_", device if device != "none" else cpu_model())
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"limits-{args.study}-{name.strip('_')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
