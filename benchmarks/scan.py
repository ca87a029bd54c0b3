"""Scan scaling: the same peak-finder scan with 1 and with 2 Dask workers.

Reports the wall-time ratio and where the time goes besides training: the
cluster's start, the per-trial overhead (Prefect task, data loading, the
TensorFlow import of a fresh worker). Writes ``benchmarks/results/scan.json``.

    python -m benchmarks.scan
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dndx.config import PARAMS_PATH, Params, load_params, parse_params
from dndx.io.dataset import part_name, write_waveform_set
from dndx.io.prepared import write_prepared
from dndx.simulation.generator import simulate_range
from dndx.truth.preparation import prepare_waveforms
from dndx.waveforms import SPLITS
from flows.runtime import dask_task_runner, ensure_prefect_api
from flows.scan import ScanOutputs
from flows.train_peak_finder import train_peak_finder

RESULTS = Path(__file__).parent / "results" / "scan.json"

SCAN = {
    "simulate": {"n_train": 1000, "n_validation": 500, "n_test": 250, "chunk_size": 250},
    "train_peak_finder": {
        "epochs": 3,
        "patience": 3,
        "batch_size": 512,
        "max_train_examples": 40000,
        "max_validation_examples": 20000,
        "scan": {
            "strategy": "grid",
            "n_trials": 4,
            "seed": 7,
            "space": {"lstm_units": [[16], [32]], "learning_rate": [0.002, 0.004]},
        },
    },
}


def _prepare(root: Path, params: Params) -> None:
    sim = params.simulate
    for split in SPLITS:
        for index, start in enumerate(range(0, sim.n_waveforms(split), sim.chunk_size)):
            data = simulate_range(
                sim, split, start, min(start + sim.chunk_size, sim.n_waveforms(split))
            )
            write_waveform_set(data, root / "data/simulated" / split / part_name(index))
            write_prepared(
                prepare_waveforms(data, params.prepare), root / "data/prepared" / split, index
            )


def _run(root: Path, params: Params, n_workers: int) -> dict[str, Any]:
    runner = dask_task_runner(
        dataclasses.replace(load_params().dask, mode="local", n_workers=n_workers)
    )
    started = time.perf_counter()
    train_peak_finder.with_options(task_runner=runner)(params, root)
    wall = time.perf_counter() - started
    table = pd.read_csv(ScanOutputs.of("peak_finder", root).table_csv)
    trial_wall = float(table["wall_time_s"].sum())
    return {
        "workers": n_workers,
        "wall_s": round(wall, 1),
        "sum_of_trial_wall_s": round(trial_wall, 1),
        "trials": len(table),
        "overhead_per_trial_s": round((wall * n_workers - trial_wall) / len(table), 1),
    }


def _import_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import keras, tensorflow"], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})  # fmt: skip
    return round(time.perf_counter() - started, 1)


def main() -> None:
    """Run the scan twice and write the comparison."""
    ensure_prefect_api()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        mapping = yaml.safe_load(PARAMS_PATH.read_text())
        for section, values in {
            **SCAN,
            "mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"},
        }.items():
            mapping[section].update(values)
        params = parse_params(mapping)
        os.chdir(root)
        _prepare(root, params)
        runs = [_run(root, params, n) for n in (1, 2)]
    result = {
        "runs": runs,
        "speed_up_2_over_1": round(runs[0]["wall_s"] / runs[1]["wall_s"], 2),
        "tensorflow_import_s": _import_seconds(),
        "cpu_cores": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
