"""Inference throughput and memory: file in, Parquet out, on 2 worker processes.

Run with ``python -m benchmarks.infer``; writes ``benchmarks/results/infer.json``.

Four measurements, all on the same simulated HDF5 file at 1.2 GS/s (2,400
samples a waveform, resampled to the models' 1.5 GS/s):

1. **The inference flow** (``flows.infer.infer``: planning, Prefect, a
   Dask LocalCluster of 2 single-threaded workers, ONNX Runtime), timed from
   the call to the written Parquet file and summary, cluster start-up
   included: every variant of item 2 (the float pair, int8, pre-selected,
   ``fast``) and the D2 baseline, each beside its steady state
   (``end_to_end_beside_steady_state``: the two rates and their ratio).
2. **Steady state, four ways, same harness**: 2 worker processes, one thread
   each, each reading its own chunks from the file, running the chain and
   writing a Parquet file per chunk; models loaded and warmed up before the
   clock starts. The chain runs with the ONNX models (:class:`OnnxModels`);
   with the same models in Keras, ``model.predict`` at batches of 4096
   windows and 64 waveforms, and at its default batch of 32; and as the D2
   baseline (``dndx infer --method d2``'s chain,
   :func:`dndx.chain.inference.infer_waveforms_d2`, with the bundle's tuned
   settings). The ONNX chain also runs as its variants: the int8 pair
   (:func:`tasks.quantization.quantize_bundle`), the float pair behind the
   recall-safe candidate pre-selection (the window-spread threshold chosen on
   simulated validation waveforms with
   :func:`dndx.chain.preselection.recall_safe_threshold`), and both together, the
   ``fast`` pair a default ``make run`` registers when it passes its gate.
   Ratios are reported, each variant's test figures
   (:func:`dndx.scoring.bundle_scores.score_bundle` on simulated test waveforms) beside
   its speed.
3. **Peak memory** of the whole process tree (flow process, Dask workers,
   Prefect server), sampled every 50 ms, for N and 10 x N waveforms.
4. **Where one core's time goes**: each stage of the ONNX chain per 1000
   waveforms, for the float and the ``fast`` pair, and each model alone in ONNX
   Runtime and in Keras on the same windows and encodings.

Other sessions' work on the same machine slows every figure: the load
average at the start and the end is recorded beside them.

The models are those ``make run`` selected and registered (``data/bundle``
with the Keras originals in ``data/models``), so the figures are the ones a
user gets; without them (a fresh clone), the default topologies of
``dndx.config`` with seeded, untrained weights (the work per waveform does not
depend on the weight values; it does depend on the topology the scan picks).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

_THREADS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
os.environ.update(_THREADS)

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from benchmarks.machine import best_seconds, cpu_model  # noqa: E402
from dndx.chain.bundle import D2Settings, ModelBundle  # noqa: E402
from dndx.chain.encoding import N_CHANNELS  # noqa: E402
from dndx.chain.inference import PeakModels, infer_waveforms, infer_waveforms_d2, results_table  # noqa: E402
from dndx.chain.onnx import OnnxModels  # noqa: E402
from dndx.chain.preprocessing import normalise, validate_rows  # noqa: E402
from dndx.chain.preselection import recall_safe_threshold, window_spread  # noqa: E402
from dndx.config import CandidateConfig, load_params, with_candidates  # noqa: E402
from dndx.io.readers import WaveformSource, read_chunk  # noqa: E402
from dndx.scoring.bundle_scores import score_bundle  # noqa: E402
from dndx.simulation.generator import simulate_range  # noqa: E402
from dndx.truth.preparation import prepare_waveforms  # noqa: E402
from tasks.quantization import quantize_bundle  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "infer.json"
#: ``model.predict``'s default batch size: the Keras path as usually written.
KERAS_DEFAULT_BATCH = 32
RATE_GHZ = 1.2
WORKERS = 2
CHUNK_SIZE = 2000
#: D2 settings of the order the validation tuning picks, for a bundle registered
#: without an evaluation; the work does not depend on them.
UNTUNED_D2 = D2Settings(t1_sigma=3.0, t2=1.0, window_ns=1.5, growth_ns_per_sqrt_ns=0.2)
#: Simulated waveforms that choose the pre-selection and score every variant.
QUALITY_WAVEFORMS = 2000
#: Below the least window spread of an accepted validation candidate, for unseen ones.
PRESELECTION_MARGIN = 0.1
#: The variants of the float pair (:func:`make_variants`), each run end to end too.
VARIANT_NAMES = ("int8", "preselected", "fast")


#: What ``make run`` leaves: the registered bundle and the selected Keras models.
TRAINED_BUNDLE = Path("data/bundle")
TRAINED_KERAS = {
    "peak_finder.keras": Path("data/models/peak_finder/model.keras"),
    "cluster_counter.keras": Path("data/models/cluster_counter/model.keras"),
}


def build_models(directory: Path) -> str:
    """The models to measure in ``directory``: a bundle plus the Keras originals.

    Returns:
        Where they came from, for the results file.
    """
    from models import build_cluster_counter, build_peak_finder
    from models.export import export_onnx

    directory.mkdir(parents=True, exist_ok=True)
    if TRAINED_BUNDLE.is_dir() and all(p.exists() for p in TRAINED_KERAS.values()):
        for path in TRAINED_BUNDLE.iterdir():
            # The int8 pair kept inside the bundle is made afresh as a variant.
            if path.is_file():
                shutil.copy(path, directory / path.name)
        for name, path in TRAINED_KERAS.items():
            shutil.copy(path, directory / name)
        chosen = TRAINED_KERAS["peak_finder.keras"].parent / "selection.json"
        selection = json.loads(chosen.read_text())
        bundle = ModelBundle.load(directory)
        tuned = "tuned D2" if bundle.d2 else "untuned D2 (bundle without an evaluation)"
        if bundle.d2 is None:
            dataclasses.replace(bundle, d2=UNTUNED_D2).save(directory)
        return f"make run's registered bundle (peak finder {selection['hyperparameters']}), {tuned}"
    params = load_params()
    peak_finder = build_peak_finder(params.peak_finder, window_length=15, seed=1)
    counter = build_cluster_counter(
        params.cluster_counter, params.counter_input.n_bins, N_CHANNELS, seed=2
    )
    export_onnx(peak_finder, directory / "peak_finder.onnx", params.register.opset)
    export_onnx(counter, directory / "cluster_counter.onnx", params.register.opset)
    peak_finder.save(directory / "peak_finder.keras")
    counter.save(directory / "cluster_counter.keras")
    candidates = CandidateConfig(1.5, 2.0, 0.0, 0.0, 5, 9)
    origin = {"origin": "benchmarks/infer.py"}
    ModelBundle(candidates, 0.5, 1024, 3000 / 1024, origin, UNTUNED_D2).save(directory)
    return "untrained default topologies (no data/bundle: run make run first)"


def write_waveforms(path: Path, n_waveforms: int) -> None:
    """``n_waveforms`` simulated 12-bit waveforms at 1.2 GS/s as HDF5, block by block."""
    block = 2500
    cfg = dataclasses.replace(
        load_params().simulate,
        n_train=n_waveforms,
        block_size=250,
        chunk_size=block,
        sampling_rates_ghz=(RATE_GHZ,),
    )
    n_samples = round(cfg.window_ns * RATE_GHZ)
    with h5py.File(path, "w") as file:
        dataset = file.create_dataset(
            "waveforms", (n_waveforms, n_samples), dtype=np.uint16, chunks=(250, n_samples)
        )
        for start in range(0, n_waveforms, block):
            stop = min(start + block, n_waveforms)
            adc = simulate_range(cfg, "train", start, stop).adc
            dataset[start:stop] = adc.values.reshape(stop - start, n_samples)


class KerasModels:
    """The Keras originals behind the :class:`~dndx.chain.inference.PeakModels` protocol."""

    def __init__(self, directory: Path, window_batch: int = 4096, counter_batch: int = 64) -> None:
        from models.saving import load_model

        self.bundle = ModelBundle.load(directory)
        self.peak_finder = load_model(directory / "peak_finder.keras")
        self.counter = load_model(directory / "cluster_counter.keras")
        self.window_batch, self.counter_batch = window_batch, counter_batch

    def peak_probability(self, windows: np.ndarray) -> np.ndarray:
        out = self.peak_finder.predict(windows[:, :, None], batch_size=self.window_batch, verbose=0)
        return np.asarray(out[:, 0], dtype=np.float32)

    def count_clusters(self, peaks: np.ndarray) -> np.ndarray:
        out = self.counter.predict(peaks, batch_size=self.counter_batch, verbose=0)
        return np.asarray(out[:, 0], dtype=np.float32)


_WORKER: dict[str, Any] = {}


def _init_worker(kind: str, model_dir: str) -> None:
    if kind == "onnx":
        _WORKER["models"] = OnnxModels.load(model_dir)
    elif kind == "keras":
        _WORKER["models"] = KerasModels(Path(model_dir))
    elif kind == "keras-batch-32":
        _WORKER["models"] = KerasModels(Path(model_dir), KERAS_DEFAULT_BATCH, KERAS_DEFAULT_BATCH)
    _WORKER["kind"] = kind
    _WORKER["bundle"] = ModelBundle.load(model_dir)


def _run_chunk(path: str, start: int, stop: int, out_path: str) -> int:
    """Read, check, infer and write one chunk, as the flow's task does."""
    source = WaveformSource(Path(path), "hdf5", dataset="waveforms")
    chunk = read_chunk(source, start, stop)
    ok, _ = validate_rows(chunk.samples)
    good = np.flatnonzero(ok)
    samples = chunk.samples.take(good)
    if _WORKER["kind"] == "d2":
        results = infer_waveforms_d2(samples, RATE_GHZ, "auto", _WORKER["bundle"])
    else:
        models: PeakModels = _WORKER["models"]
        results = infer_waveforms(samples, RATE_GHZ, "auto", models)
    results.insert(0, "event", start + good)
    results.insert(0, "source_file", path)
    pq.write_table(results_table(results), out_path)
    return len(results)


class _TimedModels:
    """Models that add up the seconds spent in each of them."""

    def __init__(self, models: PeakModels) -> None:
        self.models = models
        self.bundle = models.bundle
        self.seconds = {"peak_finder": 0.0, "cluster_counter": 0.0}
        self.inputs: dict[str, np.ndarray] = {}

    def peak_probability(self, windows: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        out = self.models.peak_probability(windows)
        self.seconds["peak_finder"] += time.perf_counter() - started
        self.inputs["windows"] = windows
        return out

    def count_clusters(self, peaks: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        out = self.models.count_clusters(peaks)
        self.seconds["cluster_counter"] += time.perf_counter() - started
        self.inputs["peaks"] = peaks
        return out


def stage_breakdown(
    path: Path, model_dir: Path, with_keras: bool, n_waveforms: int = 2000
) -> dict[str, Any]:
    """Milliseconds per 1000 waveforms of each stage on one core, and (``with_keras``)
    the models alone in ONNX Runtime against Keras on the same inputs."""
    onnx_models = OnnxModels.load(model_dir)
    source = WaveformSource(path, "hdf5", dataset="waveforms")
    samples = read_chunk(source, 0, n_waveforms).samples
    timed = _TimedModels(onnx_models)
    infer_waveforms(samples, RATE_GHZ, "auto", timed)
    timed.seconds = dict.fromkeys(timed.seconds, 0.0)
    started = time.perf_counter()
    infer_waveforms(samples, RATE_GHZ, "auto", timed)
    total = time.perf_counter() - started
    rate = onnx_models.bundle.candidates.model_sampling_rate_ghz
    normalising = best_seconds(lambda: normalise(samples, RATE_GHZ, rate, "auto"))
    windows, peaks = timed.inputs["windows"], timed.inputs["peaks"]
    per_1000 = 1000 / n_waveforms * 1000
    rest = total - normalising - sum(timed.seconds.values())
    breakdown: dict[str, Any] = {
        "candidates_per_waveform": round(len(windows) / n_waveforms, 1),
        "onnx_chain_ms_per_1000_waveforms": {
            "total": round(total * per_1000),
            "normalise": round(normalising * per_1000),
            "peak_finder": round(timed.seconds["peak_finder"] * per_1000),
            "cluster_counter": round(timed.seconds["cluster_counter"] * per_1000),
            "candidates_windows_encoding": round(rest * per_1000),
        },
    }
    if not with_keras:
        return breakdown
    keras_models = KerasModels(model_dir)
    keras_default = KerasModels(model_dir, KERAS_DEFAULT_BATCH, KERAS_DEFAULT_BATCH)
    keras_models.peak_probability(windows[:4096])
    keras_models.count_clusters(peaks[:64])
    models = {
        "peak_finder": {
            "onnx": best_seconds(lambda: onnx_models.peak_probability(windows)),
            "keras": best_seconds(lambda: keras_models.peak_probability(windows)),
            "keras_batch_32": best_seconds(lambda: keras_default.peak_probability(windows), 1),
        },
        "cluster_counter": {
            "onnx": best_seconds(lambda: onnx_models.count_clusters(peaks)),
            "keras": best_seconds(lambda: keras_models.count_clusters(peaks)),
            "keras_batch_32": best_seconds(lambda: keras_default.count_clusters(peaks), 1),
        },
    }
    return {
        **breakdown,
        "models_alone": {
            name: {
                "onnx_ms_per_1000_waveforms": round(t["onnx"] * per_1000),
                "keras_ms_per_1000_waveforms": round(t["keras"] * per_1000),
                "keras_batch_32_ms_per_1000_waveforms": round(t["keras_batch_32"] * per_1000),
                "keras_over_onnx": round(t["keras"] / t["onnx"], 2),
                "keras_batch_32_over_onnx": round(t["keras_batch_32"] / t["onnx"], 2),
            }
            for name, t in models.items()
        },
    }


def steady_state(kind: str, path: Path, n_waveforms: int, model_dir: Path, scratch: Path) -> float:
    """Waveforms/s of the chain ``kind`` on ``WORKERS`` processes, models warm."""
    context = multiprocessing.get_context("spawn")
    out_dir = scratch / f"chunks-{kind}-{model_dir.name}"
    out_dir.mkdir()
    with concurrent.futures.ProcessPoolExecutor(
        WORKERS, mp_context=context, initializer=_init_worker, initargs=(kind, str(model_dir))
    ) as pool:
        warm = [
            pool.submit(_run_chunk, str(path), 0, 200, str(out_dir / f"warm{i}.parquet"))
            for i in range(WORKERS)
        ]
        for future in warm:
            future.result()
        time.sleep(0.5)
        started = time.perf_counter()
        jobs = [
            pool.submit(
                _run_chunk,
                str(path),
                start,
                min(start + CHUNK_SIZE, n_waveforms),
                str(out_dir / f"{start:09d}.parquet"),
            )
            for start in range(0, n_waveforms, CHUNK_SIZE)
        ]
        done = sum(job.result() for job in jobs)
        elapsed = time.perf_counter() - started
    shutil.rmtree(out_dir)
    return done / elapsed


def _simulated(split: str) -> tuple[Any, pd.DataFrame, Any]:
    """:data:`QUALITY_WAVEFORMS` simulated waveforms of ``split``, their prepared
    truth per waveform and their prepared candidates (without pre-selection)."""
    params = load_params()
    sim = dataclasses.replace(
        params.simulate,
        n_validation=QUALITY_WAVEFORMS,
        n_test=QUALITY_WAVEFORMS,
        block_size=250,
        chunk_size=QUALITY_WAVEFORMS,
    )
    data = simulate_range(sim, split, 0, QUALITY_WAVEFORMS)
    every = with_candidates(params.prepare, min_curvature_sigma=0.0, min_window_std_sigma=0.0)
    prepared = prepare_waveforms(data, every)
    return data, prepared.waveforms, prepared


def make_variants(model_dir: Path, scratch: Path) -> dict[str, Any]:
    """The float bundle without pre-selection, its int8 pair, the float pair behind
    the recall-safe pre-selection chosen on simulated validation waveforms, and
    the int8 pair behind it (``fast``); where each lives."""
    every = with_candidates(
        ModelBundle.load(model_dir), min_curvature_sigma=0.0, min_window_std_sigma=0.0
    )
    every.save(model_dir)
    models = OnnxModels.load(model_dir)
    _, _, prepared = _simulated("validation")
    accepted = models.peak_probability(prepared.windows) >= models.bundle.score_threshold
    spread = window_spread(prepared.windows)
    threshold = recall_safe_threshold(spread, accepted, PRESELECTION_MARGIN)
    int8 = quantize_bundle(model_dir, scratch / "int8", prepared.windows)
    dirs = {"float": model_dir, "int8": int8}
    for name, source in (("preselected", model_dir), ("fast", int8)):
        dirs[name] = Path(shutil.copytree(source, scratch / name))
        bundle = ModelBundle.load(source)
        with_candidates(bundle, min_window_std_sigma=threshold).save(dirs[name])
    return {
        "dirs": dirs,
        "min_window_std_sigma": threshold,
        "validation_windows_kept": float((spread >= threshold).mean()),
        "validation_accepted_dropped": int((accepted & (spread < threshold)).sum()),
    }


def variant_quality(dirs: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Each variant's test figures (:func:`dndx.scoring.bundle_scores.score_bundle`) on the
    same simulated test waveforms."""
    data, truth, _ = _simulated("test")
    params = load_params()
    return {
        name: {k: round(v, 4) for k, v in score_bundle(path, data, truth, params).items()}
        for name, path in dirs.items()
    }


def tree_rss() -> int:
    """The summed RSS of this process and all its descendants, bytes."""
    me = psutil.Process()
    total = 0
    for process in [me, *me.children(recursive=True)]:
        with suppress(psutil.Error):
            total += process.memory_info().rss
    return total


@contextmanager
def peak_tree_rss(interval_s: float = 0.05) -> Iterator[dict[str, float]]:
    """The peak of :func:`tree_rss` while inside."""
    peak = {"bytes": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["bytes"] = max(peak["bytes"], tree_rss())
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def run_flow(path: Path, out: Path, model_dir: Path, method: str = "lstm") -> dict[str, float]:
    """The inference flow on ``path`` by ``method``: wall time, throughput and peak
    tree memory."""
    from flows.infer import infer

    before = tree_rss()
    with peak_tree_rss() as peak:
        started = time.perf_counter()
        report = infer(
            [str(path)],
            str(out),
            sampling_rate_ghz=RATE_GHZ,
            model_uris=[str(model_dir)],
            workers=WORKERS,
            chunk_size=CHUNK_SIZE,
            method=method,
        )
        wall = time.perf_counter() - started
    n = report.n_waveforms + report.n_skipped
    return {
        "n_waveforms": n,
        "wall_s": round(wall, 2),
        "waveforms_per_second": round(n / wall),
        "tree_rss_before_mib": round(before / 2**20),
        "peak_tree_rss_mib": round(peak["bytes"] / 2**20),
    }


T = TypeVar("T")


def _timed(label: str, function: Callable[[], T]) -> T:
    started = time.perf_counter()
    value = function()
    print(f"{label}: {time.perf_counter() - started:.1f} s", flush=True)
    return value


def measure(n_waveforms: int, scratch: Path, quick: bool) -> dict[str, Any]:
    """Every measurement of the module docstring for a file of ``n_waveforms``;
    ``quick`` leaves out Keras and the 10 x N file."""
    from flows.runtime import ensure_prefect_api

    load_at_start = [round(v, 2) for v in os.getloadavg()]
    model_dir = scratch / "models"
    # Keras and TensorFlow stay out of this process, whose memory is measured.
    with concurrent.futures.ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        origin = _timed("models", pool.submit(build_models, model_dir).result)
    variants = _timed("variants", lambda: make_variants(model_dir, scratch))
    quality = _timed("variant quality", lambda: variant_quality(variants["dirs"]))
    small, large = scratch / "small.h5", scratch / "large.h5"
    _timed("simulate N", lambda: write_waveforms(small, n_waveforms))
    fast_dir = variants["dirs"]["fast"]
    with concurrent.futures.ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        stages = _timed("stages", pool.submit(stage_breakdown, small, model_dir, not quick).result)
        fast_stages = _timed(
            "stages fast", pool.submit(stage_breakdown, small, fast_dir, False).result
        )
    runs = {"onnx": ("onnx", model_dir), "d2": ("d2", model_dir)}
    runs |= {f"onnx-{name}": ("onnx", variants["dirs"][name]) for name in VARIANT_NAMES}
    if not quick:
        runs |= {kind: (kind, model_dir) for kind in ("keras", "keras-batch-32")}
    rates = {}
    for label, (kind, directory) in runs.items():
        rate = _timed(label, partial(steady_state, kind, small, n_waveforms, directory, scratch))
        rates[label] = round(rate)
    ensure_prefect_api()
    # Every variant end to end beside its steady state: name -> (method, bundle, steady rate).
    ends = {
        "float": ("lstm", model_dir, "onnx"),
        **{name: ("lstm", variants["dirs"][name], f"onnx-{name}") for name in VARIANT_NAMES},
        "d2": ("d2", model_dir, "d2"),
    }
    flows = {
        label: _timed(
            f"flow N {label}",
            partial(run_flow, small, scratch / "out" / f"{label}.parquet", directory, method),
        )
        for label, (method, directory, _) in ends.items()
    }
    end_to_end = {
        label: {
            "steady_state_waveforms_per_second": rates[steady],
            "end_to_end_waveforms_per_second": flows[label]["waveforms_per_second"],
            "steady_over_end_to_end": round(
                rates[steady] / flows[label]["waveforms_per_second"], 2
            ),
        }
        for label, (_, _, steady) in ends.items()
    }
    result: dict[str, Any] = {
        "models": origin,
        "n_waveforms": n_waveforms,
        "sampling_rate_ghz": RATE_GHZ,
        "samples_per_waveform": round(2000 * RATE_GHZ),
        "workers": WORKERS,
        "chunk_size": CHUNK_SIZE,
        "one_core_stages": stages,
        "one_core_stages_fast": fast_stages,
        "steady_state_waveforms_per_second": rates,
        "ratio_onnx_over_d2": round(rates["onnx"] / rates["d2"], 3),
        "ratio_d2_time_over_onnx_time": round(rates["d2"] / rates["onnx"], 2),
        "variants": {
            name: {
                "waveforms_per_second": rates["onnx" if name == "float" else f"onnx-{name}"],
                "test_figures": quality[name],
            }
            for name in variants["dirs"]
        },
        "preselection": {
            "min_window_std_sigma": variants["min_window_std_sigma"],
            "validation_windows_kept": round(variants["validation_windows_kept"], 3),
            "validation_accepted_dropped": variants["validation_accepted_dropped"],
            "margin": PRESELECTION_MARGIN,
        },
        "flow_end_to_end": {
            "N": flows["float"],
            **{f"N_{label}": flow for label, flow in flows.items() if label != "float"},
        },
        "end_to_end_beside_steady_state": end_to_end,
        "flow_time_lstm_over_d2": round(flows["float"]["wall_s"] / flows["d2"]["wall_s"], 2),
        "flow_time_fast_over_d2": round(flows["fast"]["wall_s"] / flows["d2"]["wall_s"], 2),
    }
    if not quick:
        _timed("simulate 10 N", lambda: write_waveforms(large, 10 * n_waveforms))
        flow_large = _timed(
            "flow 10 N", lambda: run_flow(large, scratch / "out" / "large.parquet", model_dir)
        )
        result["flow_end_to_end"]["10N"] = flow_large
        result["memory_ratio_10N_over_N"] = round(
            flow_large["peak_tree_rss_mib"] / flows["float"]["peak_tree_rss_mib"], 2
        )
        result["ratio_onnx_over_keras"] = round(rates["onnx"] / rates["keras"], 2)
        result["ratio_onnx_over_keras_batch_32"] = round(rates["onnx"] / rates["keras-batch-32"], 2)
    result["machine"] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
    }
    return result


def main() -> None:
    """Measure and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-waveforms", type=int, default=20000)
    parser.add_argument(
        "--quick", action="store_true", help="leave out Keras and the 10 x N memory run"
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="dndx-bench-infer-"))
    try:
        result = measure(args.n_waveforms, scratch, args.quick)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
