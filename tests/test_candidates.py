"""The candidates' pre-selection: chosen on validation, it loses no peak the peak finder accepts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from dndx.candidates import candidate_curvature, find_candidates, recall_safe_curvature
from dndx.config import parse_params
from dndx.preparation import prepare_waveforms
from dndx.preprocessing import normalise
from dndx.simulation import simulate_range
from tasks.onnx_models import OnnxModels
from tests.conftest import tiny_params


def test_preselection_keeps_every_true_peak_the_peak_finder_accepts(untrained_pair: Path) -> None:
    params = parse_params(tiny_params())
    every = dataclasses.replace(params.prepare, min_curvature_sigma=0.0)
    data = simulate_range(params.simulate, "validation", 0, params.simulate.n_validation)
    full = prepare_waveforms(data, every)
    probability = OnnxModels.load(untrained_pair / "bundle").peak_probability(full.windows)
    # The untrained model's upper half stands in for a trained model's peaks.
    accepted = (full.candidates["label"].to_numpy() == 1) & (probability >= np.median(probability))
    norm = normalise(
        data.adc, data.info["sampling_rate_ghz"].to_numpy(), every.model_sampling_rate_ghz
    )
    candidates = find_candidates(
        norm.samples,
        norm.lengths,
        every.candidate_threshold_sigma,
        every.window_before,
        every.window_after,
        0.0,
    )
    threshold = recall_safe_curvature(candidate_curvature(norm.samples, candidates), accepted, 0.0)

    selected = prepare_waveforms(data, dataclasses.replace(every, min_curvature_sigma=threshold))

    key = ["waveform_id", "sample"]
    kept = full.candidates.reset_index().merge(selected.candidates[key], on=key)
    assert accepted.any()
    assert accepted[kept["index"]].sum() == accepted.sum()
    assert 0 < len(selected.candidates) < len(full.candidates)
    np.testing.assert_array_equal(selected.windows, full.windows[kept["index"]])
    pd.testing.assert_series_equal(
        selected.candidates["label"], kept["label"], check_names=False, check_index=False
    )
