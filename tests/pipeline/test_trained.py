"""Checks that need models trained on the default data: run `make run`, then
`make test-slow`. Marked slow; CI, which trains only tiny models, skips them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dndx.chain.inference import infer_waveforms
from dndx.chain.onnx import OnnxModels
from dndx.config import load_params
from dndx.simulation.generator import simulate_range

BUNDLE = Path(__file__).resolve().parents[2] / "data" / "bundle"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models() -> OnnxModels:
    if not (BUNDLE / "bundle.json").exists():
        pytest.skip(f"{BUNDLE}: no trained bundle; run `make run` first")
    return OnnxModels.load(BUNDLE)


def test_the_same_events_at_1_2_and_2_0_gs_s_give_counts_that_agree(models: OnnxModels) -> None:
    counts, truth = {}, {}
    for rate in (1.2, 2.0):
        # Same seed: the same tracks, clusters and electrons, recorded at another rate.
        cfg = dataclasses.replace(
            load_params().simulate,
            seed=11,
            n_test=300,
            block_size=300,
            chunk_size=300,
            sampling_rates_ghz=(rate,),
        )
        data = simulate_range(cfg, "test", 0, 300)
        truth[rate] = data.info["n_clusters"].to_numpy()
        counts[rate] = infer_waveforms(data.adc, rate, "auto", models)["counter_output"].to_numpy()
    np.testing.assert_array_equal(truth[1.2], truth[2.0])  # the same events, truly
    # Paired events: the mean of the per-event differences, against its own spread.
    difference = counts[1.2] - counts[2.0]
    error = difference.std(ddof=1) / np.sqrt(len(difference))
    assert abs(difference.mean()) < 3 * error
