"""The evaluation's figures on inputs made by hand: candidate, peak and counting
scores, the targets, the alignment of a split."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from dndx.config import load_params, parse_params
from dndx.errors import ConfigError, InputError
from dndx.ragged import Ragged
from dndx.scoring.evaluation import (
    COUNTERS,
    PEAK_FINDERS,
    SplitInputs,
    assemble_split,
    check_targets,
    evaluate_candidates,
    evaluate_counting,
    evaluate_peaks,
    evaluate_split,
    tune_baselines,
)
from tests.conftest import tiny_params

PARAMS = load_params()


RATE_GHZ = 1.5


PULSE = np.array([0.0, 8.0, 10.0, 6.0, 3.0, 1.0], dtype=np.float32)  # maximum 2 samples in


def test_candidate_scores_at_the_working_point() -> None:
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    probability = [0.9, 0.8, 0.7, 0.2, 0.75, 0.3, 0.2, 0.1, 0.1, 0.05]
    detected = [p >= 0.5 for p in probability]
    c = evaluate_candidates(labels, probability, detected, 0.5)
    assert c.scores["precision"] == 0.75  # 3 of 4 detections are signal
    assert c.scores["recall"] == 0.75  # 3 of 4 signal candidates detected
    assert c.scores["f1"] == 0.75
    assert c.scores["efficiency_x_purity"] == 0.5625
    # Pairs (signal, noise) ordered right: 0.9, 0.8 beat all 6; 0.7 beats 5; 0.2 beats 3, ties 1.
    assert c.scores["auc"] == pytest.approx((6 + 6 + 5 + 3.5) / 24)
    assert c.working_point == (1 / 6, 0.75)
    assert (c.scores["n_candidates"], c.scores["n_signal"], c.scores["n_detected"]) == (10, 4, 4)
    assert c.fpr[0] == 0.0 and c.tpr[-1] == 1.0


def test_peak_scores_overall_and_per_bin() -> None:
    # Waveform 0: expected at 10, 20 and 40 samples; detections at 11 (match), 30 (fake).
    # Waveform 1: expected at 70; detected at 69 (match) and 71 (a double count).
    detected = Ragged.from_lengths(np.array([11, 30, 69, 71]), [2, 2])
    expected = Ragged.from_lengths(np.array([10.0, 20.0, 40.0, 70.0]), [3, 1])
    drift_ns = np.array([5.0, 12.0, 25.0, 40.0])
    p = evaluate_peaks(
        detected,
        expected,
        drift_ns,
        [0.035, 0.085],
        sampling_rate_ghz=1.0,
        tolerance_samples=2,
        drift_time_edges_ns=[0.0, 10.0, 50.0],
        noise_fraction_edges=[0.03, 0.06, 0.10],
    )
    assert (p.scores["n_true"], p.scores["n_detected"], p.scores["n_matched"]) == (4, 4, 2)
    assert p.scores["efficiency"] == 0.5 and p.scores["purity"] == 0.5
    assert p.scores["efficiency_x_purity"] == 0.25 and p.scores["f1"] == 0.5
    assert p.by_noise[["n_true", "n_detected", "n_matched"]].to_numpy().tolist() == [
        [3, 2, 1],
        [1, 2, 1],
    ]
    # Unmatched detections take their time less the waveform's offset, the smallest
    # expected time minus drift time (5 ns, 30 ns): the fake at 30 - 5 = 25 ns and the
    # double count at 71 - 30 = 41 ns fall in the second bin.
    table = p.by_drift_time[["n_true", "n_detected", "n_matched"]].to_numpy().tolist()
    assert table == [[1, 1, 1], [3, 3, 1]]


def test_counting_scores_and_table() -> None:
    n_true = np.array([5, 10, 20, 40, 10, 20])
    n_rec = np.array([5.0, 11.0, 19.0, 42.0, 10.0, 20.0])
    c = evaluate_counting(
        n_rec, n_true, ["pi", "pi", "pi", "K", "K", "K"], [1.5, 3, 30, 1.5, 3, 30], [1, 10, 50]
    )
    assert c.scores["mean_residual"] == pytest.approx(2 / 6)
    assert c.scores["relative_bias"] == pytest.approx(2 / 105)
    assert c.scores["rms_residual"] == pytest.approx(math.sqrt(6 / 6))
    assert c.scores["rms_over_sqrt_n"] == pytest.approx(1 / math.sqrt(17.5))
    x, y = n_true.astype(float), n_rec
    slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    assert c.scores["linearity_slope"] == pytest.approx(slope)
    assert c.table[["particle", "momentum_gev_low", "n"]].to_numpy().tolist() == [
        ["K", 1.0, 2],
        ["K", 10.0, 1],
        ["pi", 1.0, 2],
        ["pi", 10.0, 1],
    ]


def test_targets_pass_at_their_limits_and_fail_on_nan() -> None:
    checks = check_targets(
        {"precision": 0.96, "recall": 0.94, "auc": float("nan")},
        {"efficiency_x_purity": 0.80},
        {"efficiency_x_purity": 0.75},
        {"relative_bias": -0.02},
        PARAMS.quality_gate,
    )
    passed = {c.name: c.passed for c in checks}
    assert passed == {
        "candidate_precision": True,
        "candidate_recall": True,
        "candidate_auc": False,
        "peak_gain_over_d2": False,
        "peak_efficiency_x_purity": True,
        "counting_abs_relative_bias": True,
    }
    gain = next(c for c in checks if c.name == "peak_gain_over_d2")
    assert gain.value == pytest.approx(0.05)


def test_the_thresholds_are_the_users_and_each_check_names_its_param() -> None:
    stricter = dataclasses.replace(PARAMS.quality_gate, min_candidate_recall=0.95)
    checks = check_targets(
        {"precision": 0.96, "recall": 0.94, "auc": 0.995},
        {"efficiency_x_purity": 0.90},
        {"efficiency_x_purity": 0.75},
        {"relative_bias": 0.0},
        stricter,
    )
    failed = [(c.name, c.limit, c.param) for c in checks if not c.passed]
    assert failed == [("candidate_recall", 0.95, "quality_gate.min_candidate_recall")]


def test_config_rejects_bad_edges() -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.noise_fraction_edges = \[0\.05, 0\.05"):
        parse_params(tiny_params(evaluate={"noise_fraction_edges": [0.05, 0.05, 0.1]}))


def _hand_made_split(n_clusters: list[int]) -> SplitInputs:
    """Waveforms of isolated one-electron pulses, 30 samples apart, one per cluster;
    every candidate is a true peak and the peak finder detects all of them."""
    n_samples = 40 + 30 * max(n_clusters) + 20
    samples = np.zeros((len(n_clusters), n_samples), dtype=np.float32)
    starts = [40 + 30 * np.arange(n) for n in n_clusters]
    for row, first in enumerate(starts):
        for start in first:
            samples[row, start : start + len(PULSE)] = PULSE
    peak_samples = np.concatenate(starts) + 2
    lengths = np.array(n_clusters)
    n_peaks = len(peak_samples)
    return SplitInputs(
        waveform_id=np.arange(len(n_clusters), dtype=np.int64) + 100,
        samples=samples,
        lengths=np.full(len(n_clusters), n_samples, dtype=np.int64),
        sampling_rate_ghz=RATE_GHZ,
        n_clusters=lengths.astype(np.int64),
        particle=np.array(["pi", "K"] * (len(n_clusters) // 2)),
        momentum_gev=np.linspace(2.0, 40.0, len(n_clusters)),
        noise_fraction=np.full(len(n_clusters), 0.05),
        expected_time_ns=Ragged.from_lengths(peak_samples / RATE_GHZ, lengths),
        expected_drift_time_ns=(peak_samples - 42) / RATE_GHZ,
        candidate_sample=Ragged.from_lengths(peak_samples.astype(np.int64), lengths),
        candidate_label=np.ones(n_peaks, dtype=np.int8),
        candidate_probability=np.full(n_peaks, 0.9),
        candidate_detected=np.ones(n_peaks, dtype=bool),
    )


def test_perfect_inputs_give_perfect_scores_and_honest_targets() -> None:
    split = _hand_made_split([5, 8, 12, 20])
    cfg = PARAMS.evaluate
    tuning = tune_baselines(split, 2, cfg)
    assert tuning.d2.best["efficiency_x_purity"] == 1.0
    assert tuning.lstm_clusterization.scan["rms_residual"].min() == 0.0
    ids = split.waveform_id[::-1]
    evaluation = evaluate_split(
        split,
        tuning,
        ids,
        split.n_clusters[::-1].astype(float),
        score_threshold=0.5,
        tolerance_samples=2,
        cfg=cfg,
        gate=PARAMS.quality_gate,
    )
    for name in PEAK_FINDERS:
        assert evaluation.peaks[name].scores["efficiency_x_purity"] == 1.0
    for name in COUNTERS:
        scores = evaluation.counting[name].scores
        assert (scores["rms_residual"], scores["linearity_slope"]) == (0.0, 1.0)
    passed = {c.name: c.passed for c in evaluation.targets}
    # One class only: precision 1 but no AUC; D2 is as perfect as the LSTM here.
    assert passed["candidate_precision"] and not passed["candidate_auc"]
    assert not passed["peak_gain_over_d2"] and passed["peak_efficiency_x_purity"]

    metrics = evaluation.to_metrics()
    json.dumps(metrics, allow_nan=False)
    assert metrics["candidate.lstm.auc"] is None
    assert metrics["counting.cnn.linearity_slope"] == 1.0
    assert metrics["target.counting_abs_relative_bias.passed"] is True
    assert metrics["targets.n_total"] == 6
    assert metrics["tuning.d2.t1_sigma"] == tuning.d2.t1_sigma

    with pytest.raises(InputError, match="CNN predictions: 1 waveform_id"):
        evaluate_split(
            split,
            tuning,
            ids[:-1],
            np.ones(3),
            score_threshold=0.5,
            tolerance_samples=2,
            cfg=cfg,
            gate=PARAMS.quality_gate,
        )


def test_assemble_split_aligns_by_waveform_id() -> None:
    waveforms = pd.DataFrame(
        {
            "waveform_id": [7, 3],
            "n_clusters": [2, 1],
            "particle": ["pi", "K"],
            "momentum_gev": [2.0, 3.0],
            "noise_fraction": [0.05, 0.06],
            "expected_time_ns": [np.array([10.0, 20.0]), np.array([5.0])],
            "expected_drift_time_ns": [np.array([1.0, 2.0]), np.array([3.0])],
        }
    )
    scores = pd.DataFrame(
        {
            "waveform_id": [3, 7, 7, 3],
            "sample": [9, 30, 15, 4],
            "probability": [0.1, 0.2, 0.9, 0.8],
            "detected": [False, False, True, True],
            "label": [0, 0, 1, 1],
        }
    )
    rng = np.random.default_rng(0)
    adc = Ragged.from_lengths(
        np.concatenate([np.full(60, 100.0), np.full(90, 200.0)]) + rng.normal(0, 1, 150), [60, 90]
    )
    split = assemble_split(waveforms, scores, adc, [3, 7], [1.0, 1.5], RATE_GHZ)
    assert split.waveform_id.tolist() == [7, 3]
    assert split.lengths.tolist() == [90, 90]  # waveform 3 resampled from 1.0 to 1.5 GS/s
    assert [row.tolist() for row in split.candidate_sample] == [[15, 30], [4, 9]]
    assert split.candidate_probability.tolist() == [0.9, 0.2, 0.8, 0.1]
    assert [row.tolist() for row in split.detected_samples] == [[15], [4]]
    assert split.expected_samples.values.tolist() == [15.0, 30.0, 7.5]
    with pytest.raises(InputError, match="simulated waveforms: 1 waveform_id"):
        assemble_split(waveforms, scores, adc, [3, 8], [1.0, 1.5], RATE_GHZ)
