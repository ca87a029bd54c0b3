"""Ingest throughput per labelled format: the time to check and convert
``cepc``-layout files of simulated waveforms (1.5 GS/s, 3,000 samples) as the
``ingest`` stage's task does, chunk by chunk (``read_labelled``, then
``write_waveform_set``), on one core and on two worker processes. Prefect and
Dask are left out: their overhead per chunk is the same for every format.

The formats: ROOT (``dndx data write``), HDF5 with 2-D waveforms (the same),
HDF5 with variable-length waveforms (rewritten with h5py) and Parquet (written
with awkward, in row groups of one chunk). Chunks are independent and of
fixed size, so the time grows linearly with the number of waveforms: the
figures per 100k are the measured ones scaled, and say so. On a machine that
other jobs share, wall times carry their load; each process's CPU seconds do
not, and the busiest worker's is what two idle cores would take (I/O waits
aside).

Run with ``python -m benchmarks.ingest [--waveforms N]``; writes
``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import uproot

from benchmarks.machine import cpu_model
from dndx.config import load_params
from dndx.io.dataset import part_name, write_waveform_set
from dndx.io.labelled import DEFAULT_NAMES, LabelledLayout, read_labelled
from dndx.io.labelled_writer import write_labelled
from dndx.simulation.generator import simulate_range

RESULTS = Path(__file__).parent / "results" / "ingest.json"
SAMPLING_RATE_GHZ = 1.5
PER_100K = 100_000
LAYOUT = LabelledLayout("cepc")
NAMES = DEFAULT_NAMES["cepc"]


def _write_inputs(n_waveforms: int, chunk_size: int, directory: Path) -> dict[str, Path]:
    """The same simulated waveforms in every format; format name -> file."""
    cfg = dataclasses.replace(
        load_params().simulate,
        n_train=n_waveforms,
        sampling_rates_ghz=(SAMPLING_RATE_GHZ,),
        chunk_size=chunk_size,
    )
    data = simulate_range(cfg, "train", 0, n_waveforms)
    files = {"root": directory / "cepc.root", "hdf5 (2-D)": directory / "cepc.h5"}
    write_labelled(data, files["root"], "cepc")
    write_labelled(data, files["hdf5 (2-D)"], "cepc")
    files["hdf5 (variable-length)"] = directory / "cepc-vlen.h5"
    with (
        h5py.File(files["hdf5 (2-D)"]) as fixed,
        h5py.File(files["hdf5 (variable-length)"], "w") as vlen,
    ):
        group = vlen.create_group(NAMES["tree"])
        for name, dataset in fixed[NAMES["tree"]].items():
            if name == NAMES["waveform"]:
                rows = np.empty(len(dataset), dtype=object)
                rows[:] = list(dataset[:])
                group.create_dataset(name, data=rows, dtype=h5py.vlen_dtype(dataset.dtype))
            else:
                fixed.copy(dataset, group, name)
    files["parquet"] = directory / "cepc.parquet"
    with uproot.open(files["root"]) as root:
        arrays = root[NAMES["tree"]].arrays(library="ak")
    ak.to_parquet(arrays, files["parquet"], row_group_size=chunk_size)
    return files


def _ingest_chunks(
    path: Path, ranges: list[tuple[int, int]], min_samples: int, out_dir: Path
) -> dict[str, float]:
    """Check and convert entries ``ranges`` of ``path``: seconds reading (and
    checking) and writing, and this process's CPU seconds for both."""
    read_s = write_s = 0.0
    cpu_started = time.process_time()
    for start, stop in ranges:
        started = time.perf_counter()
        chunk = read_labelled(path, LAYOUT, start, stop, min_samples)
        read_s += time.perf_counter() - started
        started = time.perf_counter()
        write_waveform_set(chunk.data, out_dir / part_name(start))
        write_s += time.perf_counter() - started
    return {
        "read_and_check_seconds": read_s,
        "write_seconds": write_s,
        "cpu_seconds": time.process_time() - cpu_started,
    }


def _one_core(
    path: Path, ranges: list[tuple[int, int]], min_samples: int, out: Path
) -> dict[str, float]:
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    try:
        started = time.perf_counter()
        times = _ingest_chunks(path, ranges, min_samples, out)
        return {"seconds": time.perf_counter() - started, **times}
    finally:
        os.sched_setaffinity(0, affinity)


def _two_workers(
    pool: ProcessPoolExecutor,
    path: Path,
    ranges: list[tuple[int, int]],
    min_samples: int,
    out: Path,
) -> dict[str, float]:
    started = time.perf_counter()
    halves = [pool.submit(_ingest_chunks, path, ranges[k::2], min_samples, out) for k in (0, 1)]
    busiest = max(half.result()["cpu_seconds"] for half in halves)
    return {"seconds": time.perf_counter() - started, "cpu_seconds_busiest_worker": busiest}


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    """The least of every figure over repeated runs: other jobs only ever add time."""
    return {key: min(run[key] for run in runs) for key in runs[0]}


def measure(n_waveforms: int, repeats: int) -> dict[str, object]:
    """Best-of-``repeats`` ingest times of ``n_waveforms`` per format."""
    params = load_params()
    chunk_size = params.data.chunk_size
    min_samples = params.prepare.candidates.window_length
    ranges = [
        (start, min(start + chunk_size, n_waveforms)) for start in range(0, n_waveforms, chunk_size)
    ]
    results: dict[str, object] = {}
    load_before = os.getloadavg()
    scale = PER_100K / n_waveforms
    with tempfile.TemporaryDirectory(prefix="dndx-ingest-") as scratch:
        files = _write_inputs(n_waveforms, chunk_size, Path(scratch))
        out = Path(scratch) / "out"
        with ProcessPoolExecutor(max_workers=2) as pool:
            pool.submit(os.getpid).result()  # the workers start before the clock does
            for fmt, path in files.items():
                one = _best([_one_core(path, ranges, min_samples, out) for _ in range(repeats)])
                two = _best(
                    [_two_workers(pool, path, ranges, min_samples, out) for _ in range(repeats)]
                )
                results[fmt] = {
                    "file_mib": round(path.stat().st_size / 2**20, 1),
                    **{f"one_core_{key}": round(value, 2) for key, value in one.items()},
                    **{f"two_workers_{key}": round(value, 2) for key, value in two.items()},
                    "waveforms_per_second_one_core": round(n_waveforms / one["seconds"]),
                    "waveforms_per_second_two_workers": round(n_waveforms / two["seconds"]),
                    # Wall times on a shared machine carry the other jobs' load; CPU
                    # seconds do not: the busiest worker's is the wall time on two idle cores.
                    "per_100k_extrapolated": {
                        "one_core_seconds": round(one["seconds"] * scale, 1),
                        "one_core_cpu_seconds": round(one["cpu_seconds"] * scale, 1),
                        "two_workers_seconds": round(two["seconds"] * scale, 1),
                        "two_idle_cores_seconds": round(
                            two["cpu_seconds_busiest_worker"] * scale, 1
                        ),
                    },
                }
                print(fmt, json.dumps(results[fmt]), flush=True)
    return {
        "formats": results,
        "n_waveforms_measured": n_waveforms,
        "samples_per_waveform": round(params.simulate.window_ns * SAMPLING_RATE_GHZ),
        "chunk_size": chunk_size,
        "repeats": repeats,
        # Other jobs on the machine slow the two workers first: the load says how busy it was.
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }


def main() -> None:
    """Measure and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waveforms", type=int, default=PER_100K, help="default: %(default)s")
    parser.add_argument("--repeats", type=int, default=2, help="default: %(default)s")
    args = parser.parse_args()
    result = measure(args.waveforms, args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
