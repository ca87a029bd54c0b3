"""Where the π/K separation power goes: every counting method on many tracks.

The evaluation's test tracks (20 per particle and momentum) measure S / S_Poisson
to about ±0.07; this benchmark simulates ``--tracks`` tracks of each of the pair
at each of ``--momenta`` (the ``tracks`` section's cells; the test split's
streams, so the evaluation's tracks are the first of them), counts every cell
with every method of the evaluation (the registered pair through ONNX Runtime,
the baselines with the settings the last evaluation tuned) and splits each
counting method's share of the Poisson separation into two factors
(:meth:`dndx.scoring.track_evaluation.TrackEvaluation.pair_factors`):

    S_m / S_Poisson = contrast / spread

the difference of the pair's mean dN/dx over the truth's, and the pair's summed σ
over the truth's. A counter that shrinks its counts toward a mean loses contrast;
a noisy one has the larger spread. (dE/dx has another unit: no factors.)

Needs a finished ``make run`` (``data/bundle``, ``metrics/evaluate.json``) in the
working directory; writes ``benchmarks/results/separation.json``.

    python -m benchmarks.separation [--tracks 200] [--momenta 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from benchmarks.machine import cpu_model
from dndx.chain.onnx import OnnxModels
from dndx.config import Params, load_params
from dndx.reporting.plots import LABELS
from dndx.scoring.evaluation import BaselineTuning
from dndx.scoring.track_evaluation import count_track_cells, evaluate_tracks
from dndx.simulation.tracks import TrackSet, simulate_tracks

RESULTS = Path(__file__).parent / "results" / "separation.json"
BUNDLE = Path("data/bundle")
EVALUATION_METRICS = Path("metrics/evaluate.json")
TRACKS_PER_TASK = 10


def count_tracks(
    params: Params, track_set: TrackSet, start: int, stop: int, tuning: BaselineTuning
) -> pd.DataFrame:
    """Simulate tracks ``start:stop`` of ``track_set`` and count their cells with
    every method: :func:`dndx.scoring.track_evaluation.count_track_cells`'s table."""
    models = OnnxModels.load(BUNDLE)
    cells = simulate_tracks(params.simulate, params.tracks, "test", track_set, start, stop)
    return count_track_cells(
        cells,
        params.prepare,
        params.counter_input.n_bins,
        params.simulate.window_ns,
        models.peak_probability,
        models.count_clusters,
        models.bundle.score_threshold,
        tuning,
    )


def main() -> None:
    """Count the tracks, then print and write the separation and its factors."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracks", type=int, default=200, help="tracks per particle and momentum")
    parser.add_argument("--momenta", type=float, nargs="+", default=[10.0])
    parser.add_argument("--pair", nargs=2, default=["pi", "K"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    params = load_params()
    tracks_cfg = dataclasses.replace(
        params.tracks,
        particles=tuple(args.pair),
        momenta_gev=tuple(args.momenta),
        n_test=args.tracks,
    )
    params = dataclasses.replace(params, tracks=tracks_cfg)
    tuning = BaselineTuning.from_metrics(json.loads(EVALUATION_METRICS.read_text()))
    sets = [
        TrackSet(index, particle, momentum, args.tracks)
        for index, (particle, momentum) in enumerate(
            (p, m) for p in args.pair for m in args.momenta
        )
    ]
    jobs = [
        (track_set, start, min(start + TRACKS_PER_TASK, args.tracks))
        for track_set in sets
        for start in range(0, args.tracks, TRACKS_PER_TASK)
    ]
    began = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(count_tracks, params, s, a, b, tuning) for s, a, b in jobs]
        cells = []
        for done, future in enumerate(futures, 1):
            cells.append(future.result())
            print(f"\r{done}/{len(futures)} chunks of {TRACKS_PER_TASK} tracks", end="", flush=True)
    print()
    evaluation = evaluate_tracks(
        pd.concat(cells, ignore_index=True), params.evaluate.dedx_keep_fraction
    )
    a, b = args.pair
    table = evaluation.pair_table(a, b).merge(
        evaluation.pair_factors(a, b)[["momentum_gev", "method", "contrast", "spread"]],
        on=["momentum_gev", "method"],
        how="left",
    )
    for momentum, group in table.groupby("momentum_gev"):
        print(f"\n{a}/{b} at {momentum:g} GeV/c, {args.tracks} tracks each:")
        print(f"{'method':<40} {'S':>12} {'S/S_Poisson':>14} {'contrast':>10} {'spread':>8}")
        for row in group.itertuples():
            print(
                f"{LABELS.get(str(row.method), str(row.method)):<40} "
                f"{row.separation:6.2f} ± {row.separation_error:4.2f} "
                f"{row.ratio:7.3f} ± {row.ratio_error:5.3f} "
                f"{row.contrast:10.3f} {row.spread:8.3f}"
            )
    result = {
        "bundle": str(BUNDLE),
        "pair": [a, b],
        "tracks_per_particle_and_momentum": args.tracks,
        "n_cells": params.tracks.n_cells,
        "wall_s": round(time.perf_counter() - began, 1),
        "cpu": cpu_model(),
        "rows": json.loads(table.to_json(orient="records")),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
