"""Cluster-counter variants against the shrinkage toward the training mean, compared
on a finished ``make run``'s data.

Every variant trains like the ``train_cluster_counter`` stage's trial 0 (its
params, seed and data), with the same capped number of epochs, and differs
only in ``cluster_counter.output`` and ``train_cluster_counter.target_weighting``;
each is also reported calibrated (``train_cluster_counter.calibrate``, the map
fitted on validation). Per variant: the per-waveform figures on the test split
(bias, RMS / √N, linearity slope) and, for π / K at every momentum, the
track-level S / S_Poisson on the test tracks and on the validation tracks
(:mod:`dndx.scoring.track_evaluation`). The peak finder, and so the peak
efficiency×purity, is the run's own for every variant.

The track cells are counted once (candidates, peak finder, counter inputs, the
classical counts) and kept under ``<root>/data/counter_variants/``, as is each
variant's output once trained: a rerun trains only what is missing.

    python -m benchmarks.counter_variants --root /tmp/variants --epochs 12
    python -m benchmarks.counter_variants --root /tmp/variants --report-only
    # the run's own 24-epoch counter against per_bin at the same budget:
    python -m benchmarks.counter_variants --root /tmp/variants24 --epochs 24 \
        --baseline-from-run --variants per_bin --results counter_variants-24-epochs

Writes ``benchmarks/results/<results>.json`` and ``<results>.md`` (``--results``,
default ``counter_variants``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.chain.encoding import COUNTER_INPUT_FILE, clusters_per_bin, samples_per_bin
from dndx.config import Params, load_params
from dndx.io.dataset import part_paths, read_waveform_set
from dndx.ragged import Ragged
from dndx.scoring.evaluation import BaselineTuning
from dndx.scoring.metrics import counting_metrics
from dndx.scoring.separation import separation_table, track_table
from dndx.scoring.track_evaluation import TRUTH, count_track_cells, evaluate_tracks
from dndx.training.counter_training import fit_calibration
from dndx.truth.labels import expected_peaks
from dndx.waveforms import peak_delay_ns

RESULTS = Path(__file__).parent / "results"
#: The variants: ``cluster_counter.output`` and ``train_cluster_counter.target_weighting``.
VARIANTS: dict[str, tuple[Literal["total", "per_bin"], Literal["none", "flat"]]] = {
    "baseline": ("total", "none"),
    "flat": ("total", "flat"),
    "per_bin": ("per_bin", "none"),
    "per_bin_flat": ("per_bin", "flat"),
}
PAIR = ("pi", "K")
#: Counts of the track cells shown beside the variants: what the information left
#: after each step of the chain separates. The expected peaks are the pulses a
#: perfect peak finder would see (electrons within the resolving time merged);
#: those holding a primary electron are what it would count with a perfect
#: primary/secondary decision; all of them add the secondaries' fluctuation.
REFERENCES = (
    "expected_primary_peaks",
    "expected_peaks",
    "truth_clusterization",
    "lstm_clusterization",
    "d2_clusterization",
)
TRACK_SPLITS = ("test", "validation")
WORK_DIR = Path("data/counter_variants")

logger = logging.getLogger("counter_variants")


def count_cells(params: Params, root: Path, split: str, work: Path) -> None:
    """Count the π and K cells of a track split with the run's peak finder and the
    classical methods, keeping the counter inputs: ``work/tracks-<split>.{parquet,npz}``."""
    from models.saving import load_model

    peak_finder = load_model(root / "data/models/peak_finder/model.keras")
    selection = json.loads((root / "data/models/peak_finder/selection.json").read_text())
    tuning = BaselineTuning.from_metrics(json.loads((root / "metrics/evaluate.json").read_text()))
    tables, inputs = [], []

    def probability(windows: NDArray[np.float32]) -> NDArray[np.float32]:
        return peak_finder.predict(windows[:, :, None], batch_size=8192, verbose=0)[:, 0]

    def keep_inputs(encoded: NDArray[np.float32]) -> NDArray[np.float32]:
        inputs.append(encoded)
        return np.zeros(len(encoded), dtype=np.float32)

    paths = part_paths(root / "data/tracks" / split)
    for i, path in enumerate(paths, 1):
        data = read_waveform_set(path)
        data = data.take(np.flatnonzero(data.info["particle"].isin(PAIR).to_numpy()))
        if len(data):
            tables.append(
                count_track_cells(
                    data, params.prepare, params.counter_input.n_bins,
                    params.simulate.window_ns, probability, keep_inputs,
                    float(selection["score_threshold"]), tuning,
                ).drop(columns="cnn")
            )  # fmt: skip
        logger.info("%s tracks: %d/%d files counted", split, i, len(paths))
    pd.concat(tables, ignore_index=True).to_parquet(work / f"tracks-{split}.parquet")
    np.save(work / f"tracks-{split}.npy", np.concatenate(inputs))


def add_expected_peaks(params: Params, root: Path, split: str, work: Path) -> None:
    """Add the expected-peak counts of :data:`REFERENCES` to ``work/tracks-<split>.parquet``."""
    path = work / f"tracks-{split}.parquet"
    cells = pd.read_parquet(path)
    counts = pd.concat(
        [
            _expected_peak_counts(read_waveform_set(part), params)
            for part in part_paths(root / "data/tracks" / split)
        ]
    ).loc[cells["waveform_id"]]
    cells.assign(**{k: counts[k].to_numpy() for k in counts}).to_parquet(path)


def _expected_peak_counts(data: Any, params: Params) -> pd.DataFrame:
    """Per cell, indexed by ``waveform_id``: ``expected_peaks`` and
    ``expected_primary_peaks`` (see :data:`REFERENCES`), as the prepare stage
    finds them."""
    electrons = data.electrons
    peaks = expected_peaks(
        Ragged(electrons["time_ns"].to_numpy(), data.electron_offsets),
        electrons["amplitude_adc"].to_numpy(),
        electrons["primary"].to_numpy(),
        peak_delay_ns(data.info),
        params.prepare.resolving_time_ns,
        window_ns=params.simulate.window_ns,
    )
    rows = peaks.time_ns.row_index()
    return pd.DataFrame(
        {
            "expected_peaks": peaks.time_ns.lengths,
            "expected_primary_peaks": np.bincount(
                rows, weights=peaks.n_primary > 0, minlength=len(data)
            ),
        },
        index=data.info["waveform_id"].to_numpy(),
    )


def _split_inputs(params: Params, root: Path, split: str, per_bin: bool) -> Any:
    """The run's counter inputs of ``split``; the clusters per bin, when the run's
    encode stage predates them, from its simulated waveforms."""
    from dndx.training.counter_training import CounterData

    with np.load(root / "data/counter_inputs" / split / COUNTER_INPUT_FILE) as data:
        arrays = dict(data)
    if per_bin and "clusters_per_bin" not in arrays:
        rate = params.prepare.candidates.model_sampling_rate_ghz
        n_bins = params.counter_input.n_bins
        width = samples_per_bin(params.simulate.window_ns, rate, n_bins)
        parts, ids = [], []
        for path in part_paths(root / "data/simulated" / split):
            waveforms = read_waveform_set(path)
            parts.append(clusters_per_bin(waveforms, rate, n_bins, width))
            ids.append(waveforms.info["waveform_id"].to_numpy())
        order = np.argsort(np.concatenate(ids))
        all_ids = np.concatenate(ids)[order]
        rows = order[np.searchsorted(all_ids, arrays["waveform_id"])]
        arrays["clusters_per_bin"] = np.concatenate(parts)[rows]
    return CounterData(
        arrays["x"],
        arrays["n_clusters"].astype(np.float32),
        arrays.get("clusters_per_bin") if per_bin else None,
    )


def train_variant(params: Params, root: Path, name: str, epochs: int, work: Path) -> None:
    """Train one variant and keep its outputs on validation, test and the track
    cells: ``work/<name>.npz`` and ``work/<name>.json``."""
    from models.fitting import predict, train_counter

    output, weighting = VARIANTS[name]
    model_cfg = dataclasses.replace(params.cluster_counter, output=output)
    training = dataclasses.replace(
        params.train_cluster_counter, epochs=epochs, target_weighting=weighting, calibrate=False
    )
    per_bin = model_cfg.output == "per_bin"
    train = _split_inputs(params, root, "train", per_bin)
    validation = _split_inputs(params, root, "validation", per_bin)
    started = time.perf_counter()
    model, history = train_counter(
        model_cfg, training, training.seed * 1000, train, validation, name, logger
    )
    train_s = time.perf_counter() - started
    del train
    np.savez(
        work / f"{name}.npz",
        validation=predict(model, validation.x),
        test=predict(model, _split_inputs(params, root, "test", False).x),
        tracks_test=predict(model, np.load(work / "tracks-test.npy")),
        tracks_validation=predict(model, np.load(work / "tracks-validation.npy")),
    )
    summary = {"train_s": train_s, "epochs_trained": len(history), "history": history}
    (work / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")


def keep_run_counter(root: Path, work: Path) -> None:
    """The run's own counter (``data/models/cluster_counter``, trained with the run's
    full settings) as the baseline: its outputs as :func:`train_variant` keeps them,
    its history from ``reports/cluster_counter_history.csv``."""
    from models.fitting import predict
    from models.saving import load_model

    model = load_model(root / "data/models/cluster_counter/model.keras")

    def inputs(split: str) -> NDArray[np.float32]:
        with np.load(root / "data/counter_inputs" / split / COUNTER_INPUT_FILE) as data:
            return np.asarray(data["x"])

    np.savez(
        work / "baseline.npz",
        validation=predict(model, inputs("validation")),
        test=predict(model, inputs("test")),
        tracks_test=predict(model, np.load(work / "tracks-test.npy")),
        tracks_validation=predict(model, np.load(work / "tracks-validation.npy")),
    )
    history = pd.read_csv(root / "reports/cluster_counter_history.csv").to_dict("records")
    summary = {
        "train_s": float(sum(epoch["epoch_time_s"] for epoch in history)),
        "epochs_trained": len(history),
        "history": history,
    }
    (work / "baseline.json").write_text(json.dumps(summary, indent=2) + "\n")


def _waveform_figures(predicted: NDArray[np.floating], truth: NDArray[np.floating]) -> dict:
    scores = counting_metrics(predicted, truth)
    return {
        "relative_bias": scores["relative_bias"],
        "rms_over_sqrt_n": scores["rms_over_sqrt_n"],
        "linearity_slope": scores["linearity_slope"],
    }


def _separation(cells: pd.DataFrame, counts: list[str], keep_fraction: float) -> pd.DataFrame:
    """π / K rows of every count column: ``method``, ``momentum_gev``, S, S / S_Poisson,
    and its two factors: ``contrast``, the π - K difference of mean dN/dx over the
    truth's, and ``spread``, the mean π and K resolution sigma over the truth's
    (S / S_Poisson = contrast / spread)."""
    evaluation = evaluate_tracks(cells, keep_fraction, counts=[TRUTH, *counts])
    table = evaluation.pair_factors(*PAIR)
    return table[table["method"].isin(counts)]


def report(params: Params, root: Path, work: Path) -> dict[str, Any]:
    """Assemble every trained variant's figures (raw and calibrated) and the
    classical references into one result."""
    truth = {
        split: _split_inputs(params, root, split, False).n_clusters
        for split in ("validation", "test")
    }
    cells = {split: pd.read_parquet(work / f"tracks-{split}.parquet") for split in TRACK_SPLITS}
    rows: dict[str, dict[str, Any]] = {}
    for name in VARIANTS:
        if not (work / f"{name}.npz").is_file():
            continue
        with np.load(work / f"{name}.npz") as saved:
            outputs = dict(saved)
        summary = json.loads((work / f"{name}.json").read_text())
        calibration = fit_calibration(outputs["validation"], truth["validation"])
        for label, apply in ((name, _identity), (f"{name} calibrated", calibration.apply)):
            rows[label] = {
                "variant": name,
                "calibrated": apply is not _identity,
                "calibration": dataclasses.asdict(calibration),
                "train_s": summary["train_s"],
                "epochs_trained": summary["epochs_trained"],
                "test": _waveform_figures(apply(outputs["test"]), truth["test"]),
                "validation": _waveform_figures(apply(outputs["validation"]), truth["validation"]),
            }
            for split in TRACK_SPLITS:
                cells[split][label] = apply(outputs[f"tracks_{split}"])
    keep = params.evaluate.dedx_keep_fraction
    separation = {
        split: _separation(cells[split], [*rows, *REFERENCES], keep) for split in TRACK_SPLITS
    }
    poisson = {
        split: evaluate_tracks(cells[split], keep, counts=[TRUTH]).pair_table(*PAIR)
        for split in TRACK_SPLITS
    }
    # Against the baseline on the same tracks, the common fluctuations cancel.
    against_baseline = {
        split: separation_table(
            track_table(cells[split], list(rows)), list(rows), "baseline", [PAIR]
        )
        for split in TRACK_SPLITS
        if "baseline" in rows
    }
    momenta = sorted(cells["test"]["momentum_gev"].unique().tolist())
    methods = [*rows, *REFERENCES]
    result = {
        "root": str(root),
        "pair": list(PAIR),
        "momenta_gev": momenta,
        "n_tracks": {split: int(cells[split]["track_id"].nunique()) for split in TRACK_SPLITS},
        "variants": rows,
        "poisson_S": {
            split: {
                f"{row.momentum_gev:g}": row.separation
                for row in poisson[split].itertuples()
                if row.method == TRUTH
            }
            for split in TRACK_SPLITS
        },
        "separation": {
            split: {
                method: {
                    f"{row.momentum_gev:g}": {
                        "S": row.separation,
                        "S_error": row.separation_error,
                        "ratio": row.ratio,
                        "ratio_error": row.ratio_error,
                        "contrast": row.contrast,
                        "spread": row.spread,
                    }
                    for row in separation[split][separation[split]["method"] == method].itertuples()
                }
                for method in methods
            }
            for split in TRACK_SPLITS
        },
        "ratio_to_baseline": {
            split: {
                method: {
                    f"{row.momentum_gev:g}": {"ratio": row.ratio, "ratio_error": row.ratio_error}
                    for row in table[table["method"] == method].itertuples()
                }
                for method in rows
            }
            for split, table in against_baseline.items()
        },
    }
    return result


def _identity(values: NDArray[np.floating]) -> NDArray[np.floating]:
    return values


def markdown(result: dict[str, Any]) -> str:
    """The comparison tables of :func:`report`."""
    momenta = [f"{p:g}" for p in result["momenta_gev"]]
    lines = [
        "# Cluster-counter variants",
        "",
        f"π / K on {result['n_tracks']['test']} test and {result['n_tracks']['validation']} "
        "validation tracks; per-waveform figures on the test split. Same data, seed and "
        "epochs for every variant; calibrated = the same model with the linear map fitted "
        "on validation, applied to every cell (its offset, summed over a track's cells, "
        "moves S: only a map of the track's dN/dx would leave S unchanged).",
        "",
        "## Per waveform (test)",
        "",
        "| variant | bias | RMS / √N | slope | epochs | training [s] |",
        "|:--|--:|--:|--:|--:|--:|",
    ]
    for label, row in result["variants"].items():
        test = row["test"]
        lines.append(
            f"| {label} | {100 * test['relative_bias']:+.1f} % | {test['rms_over_sqrt_n']:.3f} "
            f"| {test['linearity_slope']:.3f} | {row['epochs_trained']} | {row['train_s']:.0f} |"
        )
    for split in TRACK_SPLITS:
        lines += [
            "",
            f"## S / S_Poisson, π / K, {split} tracks",
            "",
            "| method | " + " | ".join(f"{p} GeV/c" for p in momenta) + " |",
            "|:--|" + "--:|" * len(momenta),
            "| S_Poisson | "
            + " | ".join(f"{result['poisson_S'][split][p]:.2f}" for p in momenta)
            + " |",
        ]
        for method, by_momentum in result["separation"][split].items():
            cells = [
                f"{by_momentum[p]['ratio']:.2f} ± {by_momentum[p]['ratio_error']:.2f}"
                if p in by_momentum
                else "–"
                for p in momenta
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for split, by_method in result["ratio_to_baseline"].items():
        lines += [
            "",
            f"## S / S_baseline, π / K, {split} tracks (paired: common fluctuations cancel)",
            "",
            "| variant | " + " | ".join(f"{p} GeV/c" for p in momenta) + " |",
            "|:--|" + "--:|" * len(momenta),
        ]
        for method, by_momentum in by_method.items():
            cells = [
                f"{by_momentum[p]['ratio']:.3f} ± {by_momentum[p]['ratio_error']:.3f}"
                if p in by_momentum
                else "–"
                for p in momenta
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Where S goes, test tracks: contrast / spread = S / S_Poisson",
        "",
        "Contrast: the π − K difference of mean dN/dx over the truth's; spread: the mean "
        "π and K track resolution σ over the truth's.",
        "",
        "| method | " + " | ".join(f"{p} GeV/c" for p in momenta) + " |",
        "|:--|" + "--:|" * len(momenta),
    ]
    for method, by_momentum in result["separation"]["test"].items():
        cells = [
            f"{by_momentum[p]['contrast']:.2f} / {by_momentum[p]['spread']:.2f}"
            if p in by_momentum
            else "–"
            for p in momenta
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="a finished run")
    parser.add_argument("--epochs", type=int, default=12, help="epochs of every variant")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--report-only", action="store_true", help="train nothing")
    parser.add_argument(
        "--baseline-from-run",
        action="store_true",
        help="the run's own trained counter is the baseline (its own epochs), not retrained",
    )
    parser.add_argument("--results", default="counter_variants", help="name of the result files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = args.root.resolve()
    params = load_params(root / "params.yaml")
    work = root / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    for split in TRACK_SPLITS:
        if not (work / f"tracks-{split}.npy").is_file():
            count_cells(params, root, split, work)
        if "expected_peaks" not in pd.read_parquet(work / f"tracks-{split}.parquet").columns:
            add_expected_peaks(params, root, split, work)
    if args.baseline_from_run and not (work / "baseline.npz").is_file():
        keep_run_counter(root, work)
    if not args.report_only:
        for name in args.variants:
            if not (work / f"{name}.npz").is_file():
                train_variant(params, root, name, args.epochs, work)
    result = _json_ready(report(params, root, work))
    result["epochs"] = args.epochs
    RESULTS.mkdir(exist_ok=True)
    result["baseline_from_run"] = args.baseline_from_run
    (RESULTS / f"{args.results}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.results}.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
