"""How much of a chunk's reading ``dndx infer`` hides behind its compute.

One chunk of simulated waveforms at 1.2 GS/s in a gzip HDF5 file and in a
ROOT file (the CEPC layout), run through the inference task
(:func:`tasks.inference.run_chunk`) in blocks of
:data:`tasks.inference.READ_BLOCK`, two ways on the same blocks: one block
after the other, each read then computed (a task per block), and as the task
runs them, the next block read while one is computed. The difference is the
read time hidden; the time to read the blocks alone is beside it, and the time
the compute waited for its blocks through :func:`dndx.io.readers.read_ahead`
(which the load of other processes disturbs less than the difference). Best
of ``--repeats`` wall times, in turn.

    python -m benchmarks.read_ahead [--bundle data/bundle] [--waveforms 2000]

Writes ``benchmarks/results/read_ahead.json``. The gain is at most the read
time, a few percent of a CPU chunk with today's models: on a busy machine it
is below the spread of the figures (given beside them).
"""

from __future__ import annotations

import os

os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import uproot

from benchmarks.machine import cpu_model
from dndx.chain.inference import infer_waveforms
from dndx.config import load_params
from dndx.io.inference_store import Chunk
from dndx.io.readers import WaveformSource, read_ahead, read_chunk
from dndx.simulation.generator import simulate_range
from tasks.inference import READ_BLOCK, load_models, run_chunk

RESULTS = Path(__file__).parent / "results" / "read_ahead.json"
RATE_GHZ = 1.2


def write_files(directory: Path, n_waveforms: int) -> dict[str, Path]:
    """The same simulated waveforms, ``(n_waveforms, 2400)`` ADC counts, as gzip HDF5 and ROOT."""
    sim = dataclasses.replace(
        load_params().simulate,
        n_train=n_waveforms,
        block_size=n_waveforms,
        chunk_size=n_waveforms,
        sampling_rates_ghz=(RATE_GHZ,),
    )
    adc = simulate_range(sim, "train", 0, n_waveforms).adc
    counts = adc.values.reshape(n_waveforms, -1).astype(np.int16)
    paths = {"hdf5 (gzip)": directory / "waves.h5", "root (zlib)": directory / "waves.root"}
    with h5py.File(paths["hdf5 (gzip)"], "w") as file:
        file.create_dataset(
            "adc", data=counts, chunks=(10, counts.shape[1]), compression="gzip", shuffle=True
        )
    with uproot.recreate(paths["root (zlib)"]) as file:
        file.mktree("sim", {"wf_i": "var * int16"})
        for start in range(0, n_waveforms, 250):
            file["sim"].extend({"wf_i": ak.Array(list(counts[start : start + 250]))})
    return paths


def measure(
    source: WaveformSource, n_waveforms: int, bundle: str, scratch: Path, repeats: int
) -> dict[str, object]:
    """Seconds to read the blocks, to read and compute them one after the other,
    and to run the task with read-ahead; best and all of ``repeats``."""
    starts = range(0, n_waveforms, READ_BLOCK)

    def run(chunk: Chunk) -> None:
        run_chunk(chunk, bundle, "auto", RATE_GHZ, "cpu", "lstm")

    def read_only() -> None:
        for start in starts:
            read_chunk(source, start, min(start + READ_BLOCK, n_waveforms))

    def one_after_the_other() -> None:
        for k, start in enumerate(starts):
            stop = min(start + READ_BLOCK, n_waveforms)
            run(Chunk(source, start, stop, scratch / f"block-{k}.parquet"))

    def reading_ahead() -> None:
        run(Chunk(source, 0, n_waveforms, scratch / "chunk.parquet"))

    def waited() -> float:
        models = load_models(bundle)
        blocks = read_ahead(source, 0, n_waveforms, READ_BLOCK)
        seconds = 0.0
        while True:
            started = time.perf_counter()
            block = next(blocks, None)
            seconds += time.perf_counter() - started
            if block is None:
                return seconds
            infer_waveforms(block.samples, RATE_GHZ, "auto", models)

    ways: dict[str, Callable[[], None]] = {
        "read only": read_only,
        "read, then compute, block by block": one_after_the_other,
        "next block read during compute": reading_ahead,
    }
    reading_ahead()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            seconds[name].append(round(time.perf_counter() - started, 3))
    seconds["waited for blocks, reading ahead"] = [round(waited(), 3) for _ in range(repeats)]
    best = {name: min(times) for name, times in seconds.items()}
    hidden = best["read, then compute, block by block"] - best["next block read during compute"]
    return {"best_s": best, "hidden_s": round(hidden, 3), "all_s": seconds}


def main() -> None:
    """Measure both formats and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", default="data/bundle")
    parser.add_argument("--waveforms", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_files(Path(scratch), args.waveforms)
        result: dict[str, object] = {
            "cpu": cpu_model(),
            "waveforms": args.waveforms,
            "read_block": READ_BLOCK,
        }
        for name, path in paths.items():
            source = WaveformSource.from_path(path)
            result[name] = measure(source, args.waveforms, args.bundle, Path(scratch), args.repeats)
    result["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
