"""Simulator throughput on one core: waveforms per second at 1.5 GS/s (3,000 samples).

Run with ``make benchmark``; writes ``benchmarks/results/simulate.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

from benchmarks.machine import cpu_model
from dndx.config import load_params
from dndx.simulation.generator import simulate_range

RESULTS = Path(__file__).parent / "results" / "simulate.json"


def measure(n_waveforms: int = 20000, repeats: int = 3) -> dict[str, object]:
    """Best-of-``repeats`` throughput of simulating ``n_waveforms`` in one process."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    results = {}
    for rates in [(1.5,), (1.2, 1.5, 2.0)]:
        cfg = dataclasses.replace(
            load_params().simulate, n_train=n_waveforms, sampling_rates_ghz=rates, chunk_size=2500
        )
        simulate_range(cfg, "train", 0, cfg.block_size)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            simulate_range(cfg, "train", 0, n_waveforms)
            best = min(best, time.perf_counter() - started)
        results["rates " + "/".join(map(str, rates)) + " GS/s"] = round(n_waveforms / best)
    return {
        "waveforms_per_second_one_core": results,
        "n_waveforms": n_waveforms,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }


def main() -> None:
    """Measure and write the results file."""
    result = measure()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
