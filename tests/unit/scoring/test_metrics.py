"""Peak-finding, classifier and counting metrics against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dndx.ragged import Ragged
from dndx.scoring.metrics import (
    binary_scores,
    binned,
    count_matches,
    counting_metrics,
    counting_table,
    peak_scores,
    peak_table_by_drift_time,
    peak_table_by_waveform,
    roc_auc,
    roc_curve,
)
from dndx.truth.labels import Matching, match_peaks


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    positive, negative = scores[labels == 1], scores[labels == 0]
    diff = positive[:, None] - negative[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_the_pairwise_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounding makes many ties
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores), abs=1e-12)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(labels, scores), abs=1e-12)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0) and np.all(np.diff(thresholds) < 0)


def test_roc_auc_trivial_cases() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    assert roc_auc(labels, [0.1, 0.2, 0.3, 0.8, 0.9]) == 1.0
    assert roc_auc(labels, [0.9, 0.8, 0.7, 0.2, 0.1]) == 0.0
    assert roc_auc(labels, np.full(5, 0.4)) == 0.5
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_binary_scores_from_the_confusion_matrix() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 500).astype(bool)
    scores = rng.normal(labels, 1.0)
    s = binary_scores(labels, scores, 0.5)
    tp = np.sum(labels & (scores >= 0.5))
    fp = np.sum(~labels & (scores >= 0.5))
    fn = np.sum(labels & (scores < 0.5))
    tn = np.sum(~labels & (scores < 0.5))
    assert s["precision"] == pytest.approx(tp / (tp + fp))
    assert s["recall"] == pytest.approx(tp / (tp + fn))
    assert s["f1"] == pytest.approx(
        2 * s["precision"] * s["recall"] / (s["precision"] + s["recall"])
    )
    assert s["accuracy"] == pytest.approx((tp + tn) / 500)
    assert s["balanced_accuracy"] == pytest.approx((tp / (tp + fn) + tn / (tn + fp)) / 2)


def test_peak_scores_without_anything_to_count_are_nan() -> None:
    s = peak_scores(0, 0, 0)
    assert all(math.isnan(s[k]) for k in ("efficiency", "purity", "efficiency_x_purity", "f1"))
    assert peak_scores(5, 0, 0)["efficiency"] == 0.0


def test_counting_metrics_of_a_doubled_count() -> None:
    n_true = np.array([5, 10, 20, 40, 40, 60])
    m = counting_metrics(2 * n_true, n_true)
    assert m["n"] == 6
    assert m["relative_bias"] == pytest.approx(1.0)
    assert m["mean_residual"] == pytest.approx(n_true.mean())
    assert m["rms_residual"] == pytest.approx(np.sqrt(np.mean(n_true**2.0)))
    assert m["rms_over_sqrt_n"] == pytest.approx(np.sqrt(np.mean(n_true**2.0) / n_true.mean()))
    assert m["linearity_slope"] == pytest.approx(2.0)


def test_linearity_slope_is_fitted_over_5_to_40_only() -> None:
    n_true = np.array([2, 5, 15, 25, 40, 41, 80])
    n_rec = np.array([30.0, 5, 15, 25, 40, 0, 0])  # off only outside the fit range
    assert counting_metrics(n_rec, n_true)["linearity_slope"] == pytest.approx(1.0)
    assert math.isnan(counting_metrics([1.0], [20])["linearity_slope"])
    assert counting_metrics([], [])["n"] == 0


def test_binned_bins_and_counts() -> None:
    values = np.array([0.0, 0.5, 1.0, 1.5, 2.0, -1.0, np.nan, 2.5])
    table = binned(values, [0.0, 1.0, 2.0], lambda i: {"n": len(i)}, "x")
    assert table.columns.tolist() == ["x_low", "x_high", "n"]
    assert table.to_numpy().tolist() == [[0.0, 1.0, 2], [1.0, 2.0, 3]]


MatchedPeaks = tuple[Ragged, Ragged, np.ndarray, Matching]


@pytest.fixture
def matched_peaks() -> MatchedPeaks:
    rng = np.random.default_rng(2)
    n_waveforms = 30
    n_expected = rng.integers(0, 25, n_waveforms)
    expected = Ragged.from_lengths(
        np.concatenate([np.sort(rng.uniform(50, 1500, n)) for n in n_expected]), n_expected
    )
    # Detections: most expected peaks, displaced by under 3 samples, plus noise hits.
    detected_rows = []
    for row in expected:
        kept = row[rng.random(len(row)) < 0.8]
        kept = kept + rng.uniform(-3, 3, len(kept))
        noise = rng.uniform(50, 1500, rng.integers(0, 4))
        detected_rows.append(np.sort(np.round(np.concatenate([kept, noise]))))
    detected = Ragged.from_lengths(np.concatenate(detected_rows), [len(r) for r in detected_rows])
    drift = expected.values - 40.0 - rng.uniform(0, 2, len(expected.values))
    return detected, expected, drift, match_peaks(detected, expected, 2)


def test_peak_tables_add_up_to_the_overall_counts(matched_peaks: MatchedPeaks) -> None:
    detected, expected, drift, matching = matched_peaks
    counts = count_matches(detected, expected, matching)
    overall = counts.scores()
    assert overall["n_true"] == len(expected.values)
    assert overall["n_detected"] == len(detected.values)
    assert overall["n_matched"] == np.count_nonzero(matching.detection_match >= 0)

    noise_fraction = np.linspace(0.03, 0.1, len(expected))
    by_noise = peak_table_by_waveform(noise_fraction, [0.03, 0.05, 0.07, 0.1], counts, "noise")
    assert len(by_noise) == 3
    for key in ("n_true", "n_detected", "n_matched"):
        assert by_noise[key].sum() == overall[key]

    by_drift = peak_table_by_drift_time(detected, expected, drift, matching, [-100, 500, 2000])
    assert by_drift["n_true"].sum() == overall["n_true"]
    assert by_drift["n_matched"].sum() == overall["n_matched"]
    # Waveforms without expected peaks give their detections no drift time.
    without_truth = counts.n_detected[counts.n_true == 0].sum()
    assert by_drift["n_detected"].sum() == overall["n_detected"] - without_truth
    assert np.all(by_drift["n_matched"] <= np.minimum(by_drift["n_true"], by_drift["n_detected"]))


def test_counting_table_has_every_particle_and_momentum_bin() -> None:
    rng = np.random.default_rng(4)
    particle = rng.choice(["mu", "pi", "K"], 200)
    momentum = np.exp(rng.uniform(0, np.log(50), 200))
    n_true = rng.poisson(16, 200)
    table = counting_table(n_true + 1, n_true, particle, momentum, [1, 5, 20, 50])
    assert table["particle"].tolist() == ["K"] * 3 + ["mu"] * 3 + ["pi"] * 3
    assert table["momentum_gev_low"].tolist() == [1.0, 5.0, 20.0] * 3
    for (name, low), n in zip(
        table[["particle", "momentum_gev_low"]].itertuples(index=False), table["n"], strict=True
    ):
        high = {1.0: 5.0, 5.0: 20.0, 20.0: 50.0}[low]
        assert n == np.sum((particle == name) & (momentum >= low) & (momentum < high))
    assert np.allclose(table["mean_residual"], 1.0)
