"""The candidates' pre-selection: chosen on validation, it loses no peak the peak finder accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dndx.chain.onnx import OnnxModels
from dndx.chain.preselection import check_preselection, recall_safe_threshold, window_spread
from dndx.config import parse_params, with_candidates
from dndx.simulation.generator import simulate_range
from dndx.truth.preparation import prepare_waveforms
from tests.conftest import tiny_params


def test_preselection_keeps_every_true_peak_the_peak_finder_accepts(untrained_pair: Path) -> None:
    params = parse_params(tiny_params())
    every = with_candidates(params.prepare, min_window_std_sigma=0.0)
    models = OnnxModels.load(untrained_pair / "bundle")
    validation = simulate_range(params.simulate, "validation", 0, params.simulate.n_validation)
    full = prepare_waveforms(validation, every)
    # The untrained model's upper half stands in for a trained model's peaks.
    working_point = float(np.median(models.peak_probability(full.windows)))

    def accepted(windows: np.ndarray, label: np.ndarray) -> np.ndarray:
        return (label == 1) & (models.peak_probability(windows) >= working_point)

    chosen = accepted(full.windows, full.candidates["label"].to_numpy())
    threshold = recall_safe_threshold(window_spread(full.windows), chosen, 0.1)
    selected = prepare_waveforms(validation, with_candidates(every, min_window_std_sigma=threshold))

    key = ["waveform_id", "sample"]
    kept = full.candidates.reset_index().merge(selected.candidates[key], on=key)
    assert chosen.any()
    assert chosen[kept["index"]].sum() == chosen.sum()
    assert 0 < len(selected.candidates) < len(full.candidates)
    np.testing.assert_array_equal(selected.windows, full.windows[kept["index"]])
    pd.testing.assert_series_equal(
        selected.candidates["label"], kept["label"], check_names=False, check_index=False
    )

    # On waveforms it was not chosen on, the evaluation's check counts what it drops.
    test = prepare_waveforms(
        simulate_range(params.simulate, "test", 0, params.simulate.n_test), every
    )
    dropped = window_spread(test.windows) < threshold
    label = test.candidates["label"].to_numpy()
    probability = models.peak_probability(test.windows)
    check = check_preselection(dropped, label, probability[dropped], working_point, threshold)
    assert check.n_dropped == dropped.sum() > 0
    assert check.n_dropped_accepted == (probability[dropped] >= working_point).sum()
    assert check.n_dropped_signal == ((label == 1) & dropped).sum()
