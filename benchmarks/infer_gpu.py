"""Inference with ONNX Runtime's CUDA provider beside its CPU provider.

The registered bundle (``data/bundle`` after ``make run``) runs the inference
chain of :func:`dndx.chain.inference.infer_waveforms` on simulated waveforms at
1.2 GS/s in one process: the numpy stages (baseline, candidates, windows,
encoding) on one CPU core, the two models on the provider under test. The models
are also timed alone, over batch sizes, to show where the GPU stops paying off.

Needs only numpy, pandas, pyarrow and ``onnxruntime-gpu`` (no TensorFlow), so it
runs on a GPU machine that lacks the training stack:

    python -m benchmarks.infer_gpu [--bundle data/bundle] [--waveforms 20000]

Writes ``benchmarks/results/infer-gpu-<device>.json`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from benchmarks.machine import best_seconds, cpu_model
from dndx.chain.candidates import candidate_step
from dndx.chain.inference import infer_waveforms
from dndx.chain.onnx import DEVICES, OnnxModels
from dndx.config import load_params
from dndx.ragged import Ragged
from dndx.simulation.generator import simulate_range

RESULTS = Path(__file__).parent / "results"
RATE_GHZ = 1.2
PEAK_FINDER_BATCHES = (1024, 8192, 65536, 262144)
COUNTER_BATCHES = (16, 256, 2048)


def gpu_name() -> str:
    """The GPU's name from nvidia-smi, or ``none``."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "none"
    return out.stdout.strip().splitlines()[0]


def simulated(n_waveforms: int) -> Ragged:
    """``n_waveforms`` raw 12-bit waveforms at 1.2 GS/s."""
    cfg = dataclasses.replace(
        load_params().simulate,
        n_train=n_waveforms,
        block_size=250,
        chunk_size=2500,
        sampling_rates_ghz=(RATE_GHZ,),
    )
    return simulate_range(cfg, "train", 0, n_waveforms).adc


def measure(bundle_dir: Path, device: str, samples: Ragged) -> dict[str, Any]:
    """Models alone over batch sizes, then the whole chain, on ``device`` of
    :data:`dndx.chain.inference.DEVICES`."""
    chain = OnnxModels.on_device(bundle_dir, device)
    _, _, windows = candidate_step(samples, RATE_GHZ, "auto", chain.bundle.candidates)
    encodings = np.zeros((len(samples), chain.bundle.n_bins, 4), dtype=np.float32)
    encodings[:, ::7, 0] = 1.0

    peak_finder: dict[str, float] = {}
    for batch in PEAK_FINDER_BATCHES:
        # The same sessions, fed in batches of another size.
        timed = dataclasses.replace(chain, peak_finder_batch=batch)
        seconds = best_seconds(partial(timed.peak_probability, windows), warm_up=True)
        peak_finder[str(batch)] = round(len(windows) / seconds)
    counter: dict[str, float] = {}
    for batch in COUNTER_BATCHES:
        timed = dataclasses.replace(chain, counter_batch=batch)
        seconds = best_seconds(partial(timed.count_clusters, encodings), warm_up=True)
        counter[str(batch)] = round(len(encodings) / seconds)

    seconds = best_seconds(
        partial(infer_waveforms, samples, RATE_GHZ, "auto", chain), repeats=2, warm_up=True
    )
    return {
        "peak_finder_windows_per_second_by_batch": peak_finder,
        "cluster_counter_waveforms_per_second_by_batch": counter,
        "chain_batches": {
            "peak_finder": chain.peak_finder_batch,
            "cluster_counter": chain.counter_batch,
        },
        "chain_waveforms_per_second_one_process": round(len(samples) / seconds),
        "candidates_per_waveform": round(len(windows) / len(samples), 1),
    }


def main() -> None:
    """Measure every available provider and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=Path("data/bundle"))
    parser.add_argument("--waveforms", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    samples = simulated(args.waveforms)
    device = gpu_name()
    result: dict[str, Any] = {
        "bundle": str(args.bundle),
        "n_waveforms": args.waveforms,
        "sampling_rate_ghz": RATE_GHZ,
        "onnxruntime": onnxruntime.__version__,
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "gpu": device},
    }
    for device, spec in DEVICES.items():
        provider = spec.providers[0]
        if provider in onnxruntime.get_available_providers():
            result[provider] = measure(args.bundle, device, samples)
            print(provider, json.dumps(result[provider]), flush=True)
    name = re.sub(r"[^A-Za-z0-9]+", "_", device).strip("_")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"infer-gpu-{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
