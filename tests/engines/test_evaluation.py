"""The evaluate stage's flow end to end through the real Prefect engine and Dask on
tiny simulated data and tracks with real (untrained) Keras models (its figures on
hand-made arrays: tests/unit/scoring/test_evaluation.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from dndx.chain.encoding import N_CHANNELS, encode_scored_candidates, samples_per_bin
from dndx.chain.preprocessing import normalise
from dndx.config import load_params, with_candidates
from dndx.io.dataset import part_name, part_paths, read_waveform_set, write_waveform_set
from dndx.io.prepared import write_prepared
from dndx.ragged import Ragged
from dndx.scoring.evaluation import (
    COUNTERS,
    PEAK_FINDERS,
)
from dndx.scoring.metrics import binary_scores
from dndx.scoring.track_evaluation import TRACK_METHODS
from dndx.simulation.generator import simulate_range
from dndx.simulation.tracks import simulate_tracks, track_chunks
from dndx.truth.preparation import prepare_waveforms

PARAMS = load_params()
SIM = dataclasses.replace(
    PARAMS.simulate, n_train=30, n_validation=60, n_test=60, block_size=30, chunk_size=30
)


N_BINS = 64


SCORE_THRESHOLD = 0.5


def _fake_counter_inputs(data_dir: Path, split: str, rng: np.random.Generator) -> None:
    """Simulated and prepared data of ``split``, with scores of a good fake peak
    finder (labels plus noise) and the cluster counter's encoded input."""
    prepare = PARAMS.prepare
    scores, encoded, ids, counts = [], [], [], []
    for index, start in enumerate(range(0, SIM.n_waveforms(split), SIM.chunk_size)):
        data = simulate_range(SIM, split, start, start + SIM.chunk_size)
        write_waveform_set(data, data_dir / "simulated" / split / part_name(index))
        chunk = prepare_waveforms(data, prepare)
        write_prepared(chunk, data_dir / "prepared" / split, index)
        table = chunk.candidates
        label = table["label"].to_numpy()
        probability = np.clip(0.1 + 0.8 * label + 0.15 * rng.standard_normal(len(label)), 0, 1)
        rate = prepare.candidates.model_sampling_rate_ghz
        norm = normalise(data.adc, data.info["sampling_rate_ghz"].to_numpy(), rate)
        rows = np.searchsorted(data.info["waveform_id"].to_numpy(), table["waveform_id"])
        candidates = Ragged.from_lengths(
            table["sample"].to_numpy().astype(np.int64), np.bincount(rows, minlength=len(data))
        )
        counter = encode_scored_candidates(
            norm.samples,
            norm.lengths,
            candidates,
            probability,
            SCORE_THRESHOLD,
            N_BINS,
            samples_per_bin(SIM.window_ns, rate, N_BINS),
        )
        scores.append(
            table[["waveform_id", "sample", "label"]].assign(
                probability=probability.astype(np.float32), detected=counter.detected
            )
        )
        encoded.append(counter.encoded)
        ids.append(data.info["waveform_id"].to_numpy())
        counts.append(data.info["n_clusters"].to_numpy())
    out = data_dir / "counter_inputs" / split
    out.mkdir(parents=True)
    pd.concat(scores, ignore_index=True).to_parquet(out / "scores.parquet", index=False)
    # Shuffled, so that the flow must align the CNN's predictions by waveform_id.
    order = rng.permutation(sum(len(i) for i in ids))
    np.savez(
        out / "encoded.npz",
        x=np.concatenate(encoded)[order],
        waveform_id=np.concatenate(ids)[order],
        n_clusters=np.concatenate(counts)[order],
    )


def _fake_models(data_dir: Path) -> None:
    from models import build_cluster_counter, build_peak_finder

    peak_dir = data_dir / "models" / "peak_finder"
    peak_dir.mkdir(parents=True)
    finder = build_peak_finder(
        dataclasses.replace(PARAMS.peak_finder, lstm_units=(4,), dense_units=(4,)),
        window_length=PARAMS.prepare.candidates.window_length,
        seed=3,
    )
    finder.save(peak_dir / "model.keras")
    selection = {"score_threshold": SCORE_THRESHOLD, "trial": 0, "hyperparameters": {}}
    (peak_dir / "selection.json").write_text(json.dumps({**selection, "metrics": {}}))
    counter_dir = data_dir / "models" / "cluster_counter"
    counter_dir.mkdir(parents=True)
    counter = build_cluster_counter(
        dataclasses.replace(PARAMS.cluster_counter, filters=(4,), dense_units=(8,)),
        n_bins=N_BINS,
        n_channels=N_CHANNELS,
    )
    counter.save(counter_dir / "model.keras")
    (counter_dir / "selection.json").write_text(
        json.dumps({"trial": 0, "hyperparameters": {}, "metrics": {}})
    )


TRACKS = dataclasses.replace(
    PARAMS.tracks, particles=("pi", "K"), momenta_gev=(5.0, 10.0), n_cells=8, n_test=4
)


def _tracks(data_dir: Path) -> None:
    """Two chunks of test tracks of each particle at each momentum."""
    chunks = track_chunks(dataclasses.replace(TRACKS, tracks_per_chunk=2), "test")
    for index, (track_set, start, stop) in enumerate(chunks):
        data = simulate_tracks(PARAMS.simulate, TRACKS, "test", track_set, start, stop)
        write_waveform_set(data, data_dir / "tracks" / "test" / part_name(index))


_PEAK_COUNTS = ("n_true", "n_detected", "n_matched")


def _dropped_by_the_preselection(data_dir: Path) -> pd.DataFrame:
    """The test candidates, found without the cut, whose windows spread less than
    it allows: their label, and whether the fake peak finder accepts them."""
    every = with_candidates(PARAMS.prepare, min_window_std_sigma=0.0)
    cut_sigma = PARAMS.prepare.candidates.min_window_std_sigma
    finder = keras.saving.load_model(data_dir / "models/peak_finder/model.keras")
    dropped = []
    for path in part_paths(data_dir / "simulated" / "test"):
        prepared = prepare_waveforms(read_waveform_set(path), every)
        cut = prepared.windows.std(axis=1, dtype=np.float32) < cut_sigma
        score = finder.predict(prepared.windows[cut][:, :, None], verbose=0)[:, 0]
        label = prepared.candidates["label"].to_numpy()[cut]
        dropped.append(pd.DataFrame({"label": label, "accepted": score >= SCORE_THRESHOLD}))
    return pd.concat(dropped)


def _true_separation(data_dir: Path) -> dict[float, float]:
    """S of pi and K by momentum from the true cluster counts of the test tracks: the
    tracks' dN/dx (clusters over path length), |mean difference| over the mean sigma."""
    cells = pd.concat(
        read_waveform_set(path).info for path in part_paths(data_dir / "tracks" / "test")
    )
    tracks = cells.groupby(["momentum_gev", "particle", "track_id"])[
        ["n_clusters", "path_length_cm"]
    ].sum()
    dndx = (tracks["n_clusters"] / tracks["path_length_cm"]).groupby(level=[0, 1])
    mean, sigma = dndx.mean(), dndx.std(ddof=1)
    return {
        momentum: abs(mean[momentum, "pi"] - mean[momentum, "K"])
        / ((sigma[momentum, "pi"] + sigma[momentum, "K"]) / 2)
        for momentum in TRACKS.momenta_gev
    }


def test_evaluate_flow_writes_metrics_report_and_plots(tmp_path: Path, shared_dask: str) -> None:
    from flows.evaluate import evaluate

    data_dir = tmp_path / "data"
    rng = np.random.default_rng(11)
    for split in ("validation", "test"):
        _fake_counter_inputs(data_dir, split, rng)
    _fake_models(data_dir)
    _tracks(data_dir)
    metrics_path = tmp_path / "metrics" / "evaluate.json"
    separation_path = tmp_path / "metrics" / "separation.json"
    report_path = tmp_path / "reports" / "evaluation.md"
    plots_dir = tmp_path / "reports" / "plots"

    # The counter's input as the fake counter was built for.
    params = dataclasses.replace(
        PARAMS, counter_input=dataclasses.replace(PARAMS.counter_input, n_bins=N_BINS)
    )
    returned = evaluate(params, tmp_path)

    metrics = json.loads(metrics_path.read_text())
    assert metrics == returned
    assert metrics["n_waveforms"] == SIM.n_test
    for key in ("precision", "recall", "f1", "auc", "efficiency_x_purity"):
        assert f"candidate.lstm.{key}" in metrics
    # Every finder is matched against the same expected peaks, and its scores are
    # those of its counts; the LSTM's peaks are the candidates it accepted.
    scores = pd.read_parquet(data_dir / "counter_inputs/test/scores.parquet")
    n_true = {metrics[f"peak.{finder}.n_true"] for finder in PEAK_FINDERS}
    assert len(n_true) == 1 and n_true.pop() > 0
    assert metrics["peak.lstm.n_detected"] == scores["detected"].sum()
    for finder in PEAK_FINDERS:
        true, found, matched = (metrics[f"peak.{finder}.{n}"] for n in _PEAK_COUNTS)
        assert 0 < matched <= min(true, found)
        assert metrics[f"peak.{finder}.efficiency"] == pytest.approx(matched / true)
        assert metrics[f"peak.{finder}.purity"] == pytest.approx(matched / found)
        assert metrics[f"peak.{finder}.efficiency_x_purity"] == pytest.approx(
            matched**2 / (true * found)
        )
        assert metrics[f"peak.{finder}.f1"] == pytest.approx(2 * matched / (true + found))
    for counter in COUNTERS:
        for key in ("relative_bias", "rms_over_sqrt_n", "linearity_slope"):
            assert f"counting.{counter}.{key}" in metrics
    assert metrics["targets.n_total"] == 6
    assert (
        sum(v for k, v in metrics.items() if k.endswith(".passed")) == metrics["targets.n_passed"]
    )

    # The candidate scores are those of the written decisions.
    # The pre-selection's check finds the test candidates anew: the ones it keeps
    # are the prepared ones, the ones it drops are scored.
    assert (
        metrics["preselection.min_window_std_sigma"]
        == PARAMS.prepare.candidates.min_window_std_sigma
    )
    assert metrics["preselection.candidates"] - metrics["preselection.dropped"] == len(scores)
    dropped = _dropped_by_the_preselection(data_dir)
    assert metrics["preselection.dropped"] == len(dropped)
    assert metrics["preselection.dropped_signal"] == dropped["label"].sum()
    assert metrics["preselection.dropped_accepted"] == dropped["accepted"].sum()
    assert metrics["preselection.dropped_signal"] < metrics["preselection.signal"]
    expected = binary_scores(scores["label"], scores["detected"].astype(float), 0.5)
    assert metrics["candidate.lstm.precision"] == pytest.approx(expected["precision"])
    assert metrics["candidate.lstm.recall"] == pytest.approx(expected["recall"])
    # No finder beats the candidates it chooses from.
    assert metrics["peak.lstm.efficiency"] <= metrics["peak.candidates.efficiency"]
    # The baselines were tuned on validation over the configured grids.
    assert metrics["tuning.d2.t2"] in PARAMS.evaluate.d2_t2_grid
    assert metrics["tuning.d2_clusterization.window_ns"] in PARAMS.evaluate.window_grid_ns

    report = report_path.read_text()
    assert report.startswith("# Evaluation on the test set")
    assert "| peak finder → counter |" in report
    assert "LSTM → CNN" in report and "D2 → time clusterization" in report
    # The headline table ends with the reference of perfect peak finding.
    assert "expected peaks → time clusterization (perfect peak finding)" in report
    assert metrics["tuning.truth_clusterization.window_ns"] in PARAMS.evaluate.window_grid_ns
    assert "## Targets" in report
    assert f"{metrics['preselection.dropped']} of {metrics['preselection.candidates']}" in report
    # Every per-waveform target, and the two track-level ones.
    assert report.count("✅") + report.count("❌") == metrics["targets.n_total"] + 2
    assert "## Peak finding per drift-time bin" in report
    assert "## Counting per particle and momentum" in report

    # Every method on every test track: the limit keeps all of its own separation,
    # and every method's S is a figure with an error.
    separation = json.loads(separation_path.read_text())
    assert separation["n_tracks"] == 2 * 2 * TRACKS.n_test
    truth_s = _true_separation(data_dir)
    assert separation["n_cells"] == TRACKS.n_cells
    for momentum in ("5GeV", "10GeV"):
        pi_k = separation["separation"]["pi_K"][momentum]
        assert sorted(pi_k) == sorted(TRACK_METHODS)
        assert pi_k["truth"]["ratio"] == 1.0
        assert pi_k["truth"]["S"] == pytest.approx(truth_s[float(momentum.removesuffix("GeV"))])
        for method in TRACK_METHODS:
            assert pi_k[method]["S"] == pytest.approx(pi_k[method]["ratio"] * pi_k["truth"]["S"])
            assert pi_k[method]["S_error"] > 0.0
    assert set(separation["target"]) == {
        "separation_ratio_to_poisson",
        "separation_gain_over_d2",
    }
    assert "## Particle identification along tracks" in report
    assert "### π / K separation power S" in report
    assert "| true count (Poisson limit) |" in report

    pngs = sorted(p.name for p in plots_dir.glob("*.png"))
    assert pngs == sorted(
        [
            "counting_by_momentum.png",
            "linearity.png",
            "peaks_vs_drift_time.png",
            "peaks_vs_noise.png",
            "residuals.png",
            "roc.png",
            "scores.png",
            "separation.png",
        ]
    )
    for name in pngs:
        assert (plots_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](plots/{name})" in report
