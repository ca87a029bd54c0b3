"""Where the π/K separation power goes: every counting method on many tracks.

The evaluation's test tracks (20 per particle and momentum) measure S / S_Poisson
to about ±0.07; this benchmark simulates ``--tracks`` tracks of each of the pair
at each of ``--momenta`` (the ``tracks`` section's cells; the test split's
streams, so the evaluation's tracks are the first of them), counts every cell
with every method of the evaluation (the registered pair through ONNX Runtime,
the baselines with the settings the last evaluation tuned) and splits each
counting method's share of the Poisson separation into two factors:

    S_m / S_Poisson = (difference kept) × (spread ratio)

the difference of the pair's mean dN/dx (clusters per cm, the truth's unit) over the
truth's, and the truth's mean spread σ over the method's. A counter that shrinks
its counts toward a mean keeps less of the difference; a noisy one has the larger
spread. (dE/dx has another unit: no factors.)

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
from typing import Any

import pandas as pd

from benchmarks.machine import cpu_model
from dndx.baselines import ClusterTuning, D2Tuning
from dndx.config import Params, load_params
from dndx.evaluation import BaselineTuning
from dndx.plots import LABELS
from dndx.track_evaluation import TRACK_METHODS, TRUTH, count_track_cells, evaluate_tracks
from dndx.tracks import TrackSet, simulate_tracks
from tasks.onnx_models import OnnxModels

RESULTS = Path(__file__).parent / "results" / "separation.json"
BUNDLE = Path("data/bundle")
EVALUATION_METRICS = Path("metrics/evaluate.json")
TRACKS_PER_TASK = 10


def tuning_from_metrics(metrics: dict[str, Any]) -> BaselineTuning:
    """The baselines' settings as the last evaluation chose them on validation
    (their scans are not kept in the metrics: empty here)."""

    def cluster(name: str) -> ClusterTuning:
        return ClusterTuning(
            float(metrics[f"tuning.{name}.window_ns"]),
            float(metrics[f"tuning.{name}.growth_ns_per_sqrt_ns"]),
            pd.DataFrame(),
        )

    return BaselineTuning(
        d2=D2Tuning(
            float(metrics["tuning.d2.t1_sigma"]), float(metrics["tuning.d2.t2"]), pd.DataFrame()
        ),
        lstm_clusterization=cluster("lstm_clusterization"),
        d2_clusterization=cluster("d2_clusterization"),
        truth_clusterization=cluster("truth_clusterization"),
    )


def count_tracks(
    params: Params, track_set: TrackSet, start: int, stop: int, tuning: BaselineTuning
) -> pd.DataFrame:
    """Simulate tracks ``start:stop`` of ``track_set`` and count their cells with
    every method: :func:`dndx.track_evaluation.count_track_cells`'s table."""
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


def decompose(tracks: pd.DataFrame, a: str, b: str, methods: list[str]) -> pd.DataFrame:
    """Per momentum and counting method (``methods``, the truth among them): the
    difference of the pair's mean dN/dx and their mean spread, each as a share of
    the truth's (see the module); their product is the method's S / S_Poisson."""
    rows = []
    for momentum, group in tracks.groupby("momentum_gev"):
        for method in methods:
            values = {p: group.loc[group["particle"] == p, method] for p in (a, b)}
            rows.append(
                {
                    "momentum_gev": float(momentum),
                    "method": method,
                    "difference": abs(float(values[a].mean() - values[b].mean())),
                    "spread": float(values[a].std(ddof=1) + values[b].std(ddof=1)) / 2,
                }
            )
    table = pd.DataFrame(rows)
    truth = table[table["method"] == TRUTH].set_index("momentum_gev")
    momentum = table["momentum_gev"]
    table["difference_kept"] = table["difference"] / momentum.map(truth["difference"])
    table["spread_ratio"] = momentum.map(truth["spread"]) / table["spread"]
    return table


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
    tuning = tuning_from_metrics(json.loads(EVALUATION_METRICS.read_text()))
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
    separation = evaluation.pair_table(a, b)
    factors = decompose(evaluation.tracks, a, b, list(TRACK_METHODS[:-1]))
    table = separation.merge(factors, on=["momentum_gev", "method"], how="left")
    for momentum, group in table.groupby("momentum_gev"):
        print(f"\n{a}/{b} at {momentum:g} GeV/c, {args.tracks} tracks each:")
        print(
            f"{'method':<40} {'S':>12} {'S/S_Poisson':>14} {'diff kept':>10} {'spread ratio':>12}"
        )
        for row in group.itertuples():
            print(
                f"{LABELS.get(str(row.method), str(row.method)):<40} "
                f"{row.separation:6.2f} ± {row.separation_error:4.2f} "
                f"{row.ratio:7.3f} ± {row.ratio_error:5.3f} "
                f"{row.difference_kept:10.3f} {row.spread_ratio:12.3f}"
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
