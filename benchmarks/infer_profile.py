"""``dndx infer`` end to end against the read-and-median floor, and where its wall time goes.

Run with ``python -m benchmarks.infer_profile``; writes
``benchmarks/results/infer_profile.json`` and prints the README's table.

The input is what a user brings: four copies of one ROOT file of 9,600
simulated waveforms at 1.2 GS/s (2,400 samples each, 38,400 in all), written
by the project's writer (:func:`dndx.io.labelled_writer.write_labelled`, the
``cepc`` layout: tree ``sim``, jagged float32 branch ``wf_i``).

Each repeat measures, one after the other on the same files:

1. **The floor**: a fresh Python process that reads every waveform with
   uproot and takes each one's median, on one core; its whole wall time,
   interpreter start included, as for the command.
2. **The command**: ``dndx infer`` as a user types it (a fresh process,
   2 workers, the default chunk size) for each variant: ``--method d2`` and
   the champion (the bundle's models: ``data/bundle`` of ``make run`` when
   it is there, else untrained default topologies); its wall time and the
   ratio to the floor of the same repeat, and the same ratio of CPU time (the
   command with the workers and server it waits for): on a machine that
   others load, the CPU ratio moves less than the wall one.
3. **The split**: the same run in a child process that times the command's
   own steps: start-up (imports, the Prefect server, the Dask cluster),
   planning, the chunks (the workers' reading, chain and writing, summed
   over workers; what the chunks' wall time holds beyond that, over the
   workers, is orchestration and transfer between processes), joining the
   parts into the output and the summary.
4. **Steady state**: the same chain on the same files, read by 2 processes
   with the models warm (:func:`benchmarks.infer.steady_state`'s harness),
   beside the end-to-end rate.

Other sessions' work on the machine slows every figure; ratios are taken
against the floor of the same repeat, and the load average is recorded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "infer_profile.json"
RATE_GHZ = 1.2
N_WAVEFORMS = 9600
COPIES = 4
BRANCH = "wf_i"
WORKERS = 2
CHUNK_SIZE = 2000
#: The variants: name -> ``--method``.
VARIANTS = {"d2": "d2", "champion": "lstm"}
TRAINED_BUNDLE = Path("data/bundle")

#: The floor, run as its own process: uproot reads each file, numpy takes each
#: waveform's median, one core.
FLOOR_SCRIPT = """
import sys
import awkward as ak
import numpy as np
import uproot

total = 0
for path in sys.argv[1:]:
    with uproot.open(path) as file:
        waveforms = file["sim"]["wf_i"].array(library="ak")
    total += len(np.median(ak.to_numpy(waveforms), axis=1))
print(total)
"""


def write_input(
    directory: Path, n_waveforms: int = N_WAVEFORMS, copies: int = COPIES
) -> list[Path]:
    """``copies`` copies of one ROOT file of ``n_waveforms`` simulated waveforms at 1.2 GS/s."""
    from dndx.config import load_params
    from dndx.io.labelled_writer import write_labelled
    from dndx.simulation.generator import simulate_range

    cfg = dataclasses.replace(
        load_params().simulate,
        n_train=n_waveforms,
        block_size=240,
        chunk_size=n_waveforms,
        sampling_rates_ghz=(RATE_GHZ,),
    )
    first = directory / "run-0.root"
    write_labelled(simulate_range(cfg, "train", 0, n_waveforms), first, "cepc")
    paths = [first]
    for copy in range(1, copies):
        paths.append(Path(shutil.copy(first, directory / f"run-{copy}.root")))
    return paths


def timed_process(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``command``: its wall time, the CPU time of it and the processes it
    waited for (workers, the Prefect server), and its standard error."""
    cpu_before = _children_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(
        command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - started
    return wall, _children_cpu_seconds() - cpu_before, done.stderr


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def floor_seconds(paths: list[Path]) -> tuple[float, float]:
    """Wall and CPU time of :data:`FLOOR_SCRIPT` on ``paths``, one process on one core."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    wall, cpu, _ = timed_process([sys.executable, "-c", FLOOR_SCRIPT, *map(str, paths)], env)
    return wall, cpu


def infer_arguments(paths: list[Path], out: Path, bundle: Path, method: str) -> list[str]:
    """The ``dndx infer`` command line of a variant, as a user types it."""
    return [
        *map(str, paths),
        "--out",
        str(out),
        "--branch",
        BRANCH,
        "--sampling-rate-ghz",
        str(RATE_GHZ),
        "--model-uri",
        str(bundle),
        "--method",
        method,
        "--overwrite",
    ]


def run_command(arguments: list[str]) -> dict[str, Any]:
    """``dndx infer`` with ``arguments`` in a fresh process: its wall and CPU time
    and the split it prints on its ``time:`` line (:func:`split_times`)."""
    dndx = Path(sys.executable).with_name("dndx")
    env = {**os.environ, "TQDM_DISABLE": "1"}
    wall, cpu, stderr = timed_process([str(dndx), "infer", *arguments], env)
    line = next(line for line in stderr.splitlines() if line.startswith("time: "))
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), **split_times(line, wall)}


def split_times(line: str, wall_s: float) -> dict[str, dict[str, float]]:
    """The command's ``time:`` line as the README's steps, seconds each; what the
    line leaves out of ``wall_s`` is the interpreter's exit (Prefect's server
    and the workers stopping).

    >>> line = ("time: start-up 2.0 s, planning 1.0 s, prefect api 3.0 s, flow 8.5 s, "
    ...     "flow cluster start-up 2.0 s, flow chunks 5.0 s, "
    ...     "flow joining 0.3 s, flow summary 1.0 s, flow cluster shut-down beyond the "
    ...     "outputs 0.1 s; in the workers, summed: read 1.0 s, chain 7.0 s, write 0.5 s")
    >>> steps = split_times(line, 15.0)["steps_s"]
    >>> steps["chain"], steps["transfer and orchestration"], steps["exit"]
    (3.5, 0.75, 0.5)
    """
    head, workers = line.removeprefix("time: ").split("; in the workers, summed: ")
    step = {}
    for item in head.split(", "):
        name, value, _ = item.rsplit(" ", 2)
        step[name] = float(value)
    worker = {}
    for item in workers.split(", "):
        name, value, _ = item.rsplit(" ", 2)
        worker[name] = float(value) / WORKERS
    flow_parts = [key for key in step if key.startswith("flow ")]
    busy = sum(worker.values())
    steps = {
        "start-up (imports, Prefect, Dask)": step["start-up"]
        + step["prefect api"]
        + step["flow cluster start-up"]
        + (step["flow"] - sum(step[key] for key in flow_parts)),
        "planning": step["planning"],
        "reading (not overlapped)": worker.get("read", 0.0),
        "chain": worker.get("chain", 0.0),
        "writing parts": worker.get("write", 0.0),
        "transfer and orchestration": max(step["flow chunks"] - busy, 0.0),
        "joining the output": step["flow joining"],
        "summary": step["flow summary"],
        "cluster shut-down": step.get("flow cluster shut-down beyond the outputs", 0.0),
        "exit": max(
            wall_s - sum(step[k] for k in ("start-up", "planning", "prefect api", "flow")), 0
        ),
    }
    return {"steps_s": {k: round(v, 2) for k, v in steps.items()}}


_WORKER: dict[str, Any] = {}


def _warm_worker(bundle: str, method: str, warm_chunk: Any) -> None:
    """Import the chain and open the models in this worker, on one small chunk."""
    from tasks.inference import run_chunk

    _WORKER.update(bundle=bundle, method=method)
    run_chunk(warm_chunk, bundle, "auto", RATE_GHZ, "cpu", method)


def _run_chunk(chunk: Any) -> int:
    from tasks.inference import run_chunk

    result = run_chunk(chunk, _WORKER["bundle"], "auto", RATE_GHZ, "cpu", _WORKER["method"])
    return int(result.n_entries)


def steady_state(paths: list[Path], bundle: Path, method: str, scratch: Path) -> float:
    """Waveforms/s of ``dndx infer``'s task (:func:`tasks.inference.run_chunk`: read its
    own chunk, run the chain, write the part) on :data:`WORKERS` processes with the
    chain imported and the models open: the command without Prefect, Dask,
    planning, joining or summary."""
    from dndx.io.inference_store import plan_chunks
    from dndx.io.readers import WaveformSource, count_waveforms

    directory = scratch / f"steady-{method}"
    directory.mkdir()
    sources = [WaveformSource(p, "root", tree="sim", branch=BRANCH) for p in paths]
    chunks = plan_chunks(sources, [count_waveforms(s) for s in sources], CHUNK_SIZE, directory)
    warm = dataclasses.replace(chunks[0], stop=100, path=directory / "warm")
    with concurrent.futures.ProcessPoolExecutor(
        WORKERS,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_warm_worker,
        initargs=(str(bundle), method, warm),
    ) as pool:
        started = time.perf_counter()
        n_waveforms = sum(pool.map(_run_chunk, chunks))
        elapsed = time.perf_counter() - started
    shutil.rmtree(directory)
    return n_waveforms / elapsed


def model_bundle(scratch: Path) -> tuple[Path, str]:
    """The champion's bundle: ``make run``'s, else untrained default topologies
    (:func:`benchmarks.infer.build_models`, in a process of its own: Keras stays out
    of this one); and where it came from."""
    if (TRAINED_BUNDLE / "bundle.json").is_file():
        return TRAINED_BUNDLE.resolve(), "make run's registered bundle (data/bundle)"
    from benchmarks.infer import build_models

    with concurrent.futures.ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        origin = pool.submit(build_models, scratch / "models").result()
    return scratch / "models", origin


def measure(scratch: Path, repeats: int, variants: list[str]) -> dict[str, Any]:
    """Every measurement of the module's docstring."""
    from benchmarks.machine import cpu_model

    load_at_start = [round(v, 2) for v in os.getloadavg()]
    bundle, origin = model_bundle(scratch)
    paths = write_input(scratch)
    n_waveforms = N_WAVEFORMS * COPIES
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats):
        floor, floor_cpu = floor_seconds(paths)
        run: dict[str, Any] = {
            "floor_s": round(floor, 2),
            "floor_cpu_s": round(floor_cpu, 2),
            "load_average": os.getloadavg()[0],
        }
        for name in variants:
            out = scratch / f"{name}.parquet"
            measured = run_command(infer_arguments(paths, out, bundle, VARIANTS[name]))
            measured["ratio_to_floor"] = round(measured["wall_s"] / floor, 2)
            measured["cpu_ratio_to_floor"] = round(measured["cpu_s"] / floor_cpu, 2)
            run[name] = measured
            print(
                f"repeat {repeat}: {name} {measured['wall_s']} s, floor {floor:.2f} s", flush=True
            )
        runs.append(run)
    steady = {
        name: round(steady_state(paths, bundle, VARIANTS[name], scratch)) for name in variants
    }
    summary = {}
    for name in variants:
        best = min(runs, key=lambda run: run[name]["ratio_to_floor"])
        summary[name] = {
            "wall_s": best[name]["wall_s"],
            "floor_s": best["floor_s"],
            "ratio_to_floor": best[name]["ratio_to_floor"],
            "ratios_to_floor": [run[name]["ratio_to_floor"] for run in runs],
            "cpu_s": best[name]["cpu_s"],
            "floor_cpu_s": best["floor_cpu_s"],
            "cpu_ratio_to_floor": best[name]["cpu_ratio_to_floor"],
            "load_average": best["load_average"],
            "end_to_end_waveforms_per_second": round(n_waveforms / best[name]["wall_s"]),
            "steady_state_waveforms_per_second": steady[name],
            "steady_over_end_to_end": round(steady[name] * best[name]["wall_s"] / n_waveforms, 2),
            "steps_s": best[name]["steps_s"],
        }
    return {
        "models": origin,
        "n_waveforms": n_waveforms,
        "files": COPIES,
        "sampling_rate_ghz": RATE_GHZ,
        "samples_per_waveform": round(2000 * RATE_GHZ),
        "workers": WORKERS,
        "chunk_size": CHUNK_SIZE,
        "best_of_repeats": summary,
        "repeats": runs,
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        },
    }


def table(result: dict[str, Any]) -> str:
    """The README's table: per variant, the ratio to the floor and the split of the wall time."""
    best = result["best_of_repeats"]
    names = list(best)
    steps = list(best[names[0]]["steps_s"])
    rows = [
        ("whole command (wall), s", [f"{best[n]['wall_s']:.1f}" for n in names]),
        ("read-and-median floor, same repeat, s", [f"{best[n]['floor_s']:.1f}" for n in names]),
        ("**ratio to the floor**", [f"**{best[n]['ratio_to_floor']:.2f}**" for n in names]),
        ("load average (1 min) at the repeat", [f"{best[n]['load_average']:.1f}" for n in names]),
        (
            "CPU time of the command / of the floor",
            [f"{best[n]['cpu_ratio_to_floor']:.2f}" for n in names],
        ),
        *((f"  {step}, s", [f"{best[n]['steps_s'][step]:.1f}" for n in names]) for step in steps),
        (
            "end to end, waveforms/s",
            [f"{best[n]['end_to_end_waveforms_per_second']:,}" for n in names],
        ),
        (
            "steady state, waveforms/s",
            [f"{best[n]['steady_state_waveforms_per_second']:,}" for n in names],
        ),
        ("steady state / end to end", [f"{best[n]['steady_over_end_to_end']:.2f}" for n in names]),
    ]
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "--:|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def main() -> None:
    """Measure, write the results file and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="dndx-bench-infer-profile-"))
    try:
        result = measure(scratch, args.repeats, args.variants)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(
        f"load average {result['machine']['load_average_at_start']} at the start, "
        f"{result['machine']['load_average_at_end']} at the end"
    )


if __name__ == "__main__":
    main()
