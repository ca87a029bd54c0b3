"""The numpy stages of inference, one by one, on one core: waveforms per second.

Baseline and noise, resampling, candidates, windows and encoding, each timed
alone (best of ``--repeats``) on the same simulated waveforms at 1.2 GS/s (2,400
samples a waveform, resampled to the models' 1.5 GS/s), as ``dndx infer`` runs
them in one chunk: float64 samples, as the readers give them. The peak
finder's outputs are stand-ins (the encoding's work does not depend on them).
The target is 20,000 waveforms/s per stage.

    python -m benchmarks.numpy_chain [--waveforms 2000]

Writes ``benchmarks/results/numpy_chain.json``. The figures are per CPU second
of this process (``time.process_time``, one thread), so other sessions' load
changes them little; the load average beside them says how busy the machine was.
"""

from __future__ import annotations

import os

os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import best_seconds, cpu_model
from dndx.chain.candidates import extract_windows, find_candidates
from dndx.chain.encoding import encode_scored_candidates, samples_per_bin
from dndx.chain.preprocessing import estimate_baseline_noise, normalise, resample_linear
from dndx.config import load_params
from dndx.simulation.generator import simulate_range

RESULTS = Path(__file__).parent / "results" / "numpy_chain.json"
RATE_GHZ = 1.2
TARGET_PER_S = 20_000


def main() -> None:
    """Time each stage and write waveforms per second per core."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waveforms", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = load_params()
    prep = params.prepare.candidates
    n = args.waveforms
    sim = dataclasses.replace(
        params.simulate, n_train=n, block_size=n, chunk_size=n, sampling_rates_ghz=(RATE_GHZ,)
    )
    adc = simulate_range(sim, "train", 0, n).adc
    raw = adc.values.reshape(n, -1).astype(np.float64)
    model_rate = prep.model_sampling_rate_ghz
    norm = normalise(adc, RATE_GHZ, model_rate)
    candidates = find_candidates(
        norm.samples,
        norm.lengths,
        prep.candidate_threshold_sigma,
        prep.window_before,
        prep.window_after,
        prep.min_curvature_sigma,
    )
    probability = np.random.default_rng(0).random(len(candidates.values))
    n_bins = params.counter_input.n_bins
    bin_samples = samples_per_bin(params.simulate.window_ns, model_rate, n_bins)
    stages = {
        "baseline_noise": lambda: estimate_baseline_noise(raw),
        "resampling": lambda: resample_linear(raw, RATE_GHZ, model_rate),
        "normalise (baseline, noise, polarity, resampling)": lambda: normalise(
            adc, RATE_GHZ, model_rate
        ),
        "candidates": lambda: find_candidates(
            norm.samples,
            norm.lengths,
            prep.candidate_threshold_sigma,
            prep.window_before,
            prep.window_after,
            prep.min_curvature_sigma,
        ),
        "windows": lambda: extract_windows(
            norm.samples, candidates, prep.window_before, prep.window_after
        ),
        "encoding": lambda: encode_scored_candidates(
            norm.samples, norm.lengths, candidates, probability, 0.5, n_bins, bin_samples
        ),
    }
    load_before = os.getloadavg()
    per_s = {}
    for name, run in stages.items():
        seconds = best_seconds(run, repeats=args.repeats, warm_up=True, clock=time.process_time)
        per_s[name] = round(n / seconds)
        print(f"{name}: {per_s[name]:,} waveforms/s", flush=True)
    chain = (
        "normalise (baseline, noise, polarity, resampling)",
        "candidates",
        "windows",
        "encoding",
    )
    result = {
        "cpu": cpu_model(),
        "waveforms": n,
        "samples_per_waveform": int(adc.lengths[0]),
        "candidates_per_waveform": round(len(candidates.values) / n, 1),
        "min_curvature_sigma": prep.min_curvature_sigma,
        "target_waveforms_per_s_per_stage": TARGET_PER_S,
        "clock": "process CPU time, one thread",
        "waveforms_per_s": per_s,
        "chain_waveforms_per_s": round(1 / sum(1 / per_s[name] for name in chain)),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
