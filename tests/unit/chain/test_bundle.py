"""The model bundle: one candidate step shared with training, a validated
``bundle.json``, and the layouts of earlier releases still read."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dndx.chain.bundle import COUNTER_FILE, PEAK_FINDER_FILE, D2Settings, ModelBundle
from dndx.chain.candidates import candidate_step
from dndx.config import load_params
from dndx.errors import InputError
from dndx.simulation.generator import simulate_range
from dndx.truth.preparation import prepare_waveforms

PARAMS = load_params()
CANDIDATES = PARAMS.prepare.candidates
D2 = D2Settings(t1_sigma=3.0, t2=1.5, window_ns=2.0, growth_ns_per_sqrt_ns=0.1)

#: ``bundle.json`` as the release before the candidate settings were nested wrote it.
FLAT_LAYOUT: dict[str, Any] = {
    "candidate_threshold_sigma": 2.0,
    "d2": {"growth_ns_per_sqrt_ns": 0.1, "t1_sigma": 3.0, "t2": 1.5, "window_ns": 2.0},
    "min_curvature_sigma": 0.0,
    "min_window_std_sigma": 0.87,
    "model_sampling_rate_ghz": 1.5,
    "n_bins": 1024,
    "provenance": {"git_commit": "676b257"},
    "samples_per_bin": 2.9296875,
    "score_threshold": 0.62,
    "window_after": 9,
    "window_before": 5,
}


def _bundle_dir(directory: Path, raw: dict[str, Any]) -> Path:
    """A bundle directory holding ``raw`` as its ``bundle.json`` (the ONNX files
    are placeholders: loading checks that they exist)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bundle.json").write_text(json.dumps(raw))
    for name in (PEAK_FINDER_FILE, COUNTER_FILE):
        (directory / name).write_bytes(b"")
    return directory


# An int8 pair whose float twin accepts nothing gets an infinite working point.
@pytest.mark.parametrize("score_threshold", [0.62, float("inf")])
def test_a_bundle_reads_back_as_it_was_saved(tmp_path: Path, score_threshold: float) -> None:
    bundle = ModelBundle(CANDIDATES, score_threshold, 1024, 3000 / 1024, {"origin": "tests"}, D2)
    bundle.save(_bundle_dir(tmp_path, {}))
    assert ModelBundle.load(tmp_path) == bundle
    assert json.loads((tmp_path / "bundle.json").read_text())["candidates"] == (
        dataclasses.asdict(CANDIDATES)
    )


def test_a_bundle_of_the_earlier_flat_layout_still_loads(tmp_path: Path) -> None:
    bundle = ModelBundle.load(_bundle_dir(tmp_path, FLAT_LAYOUT))
    assert dataclasses.asdict(bundle.candidates) == {
        key: FLAT_LAYOUT[key] for key in dataclasses.asdict(CANDIDATES)
    }
    assert bundle.candidates.window_length == 15
    assert (bundle.score_threshold, bundle.n_bins, bundle.d2) == (0.62, 1024, D2)
    assert bundle.provenance == {"git_commit": "676b257"}


def test_bundles_from_before_the_preselection_keep_every_candidate(tmp_path: Path) -> None:
    oldest = {
        key: value
        for key, value in FLAT_LAYOUT.items()
        if key not in ("min_curvature_sigma", "min_window_std_sigma", "d2", "provenance")
    }
    bundle = ModelBundle.load(_bundle_dir(tmp_path, oldest))
    assert (bundle.candidates.min_curvature_sigma, bundle.candidates.min_window_std_sigma) == (
        0.0,
        0.0,
    )
    assert (bundle.d2, bundle.provenance) == (None, {})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"window_after": "nine"},
            r"bundle\.json: candidates\.window_after = 'nine': should be a valid integer",
        ),
        ({"n_bins": None}, r"bundle\.json: n_bins = None: should be a valid integer"),
        ({"colour": "red"}, r"bundle\.json: colour: unknown key; allowed keys are \['candidates'"),
        (
            {"d2": {"t1_sigma": 3.0}},
            r"bundle\.json: 3 problems:\n  d2\.t2: missing; every key must be given",
        ),
        ({"d2": {**FLAT_LAYOUT["d2"], "t3": 1.0}}, r"d2\.t3: unknown key; allowed keys are \['t1"),
    ],
)
def test_a_bad_bundle_is_named_by_file_key_and_value(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    directory = _bundle_dir(tmp_path, {**FLAT_LAYOUT, **change})
    with pytest.raises(InputError, match=message) as error:
        ModelBundle.load(directory)
    assert str(directory / "bundle.json") in str(error.value)


def test_a_bundle_of_the_nested_layout_misses_no_key(tmp_path: Path) -> None:
    saved = ModelBundle(CANDIDATES, 0.5, 1024, 3.0, {}, None).to_json()
    del saved["candidates"]["window_before"]
    with pytest.raises(InputError, match=r"candidates\.window_before: missing"):
        ModelBundle.load(_bundle_dir(tmp_path, saved))


def test_training_and_serving_run_one_candidate_step() -> None:
    """The prepared windows are the ones a bundle with the ``prepare`` section's
    settings cuts from the same raw waveforms."""
    simulate = dataclasses.replace(PARAMS.simulate, n_train=40, block_size=20, chunk_size=40)
    data = simulate_range(simulate, "train", 0, 40)
    prepared = prepare_waveforms(data, PARAMS.prepare)
    bundle = ModelBundle(CANDIDATES, 0.5, 1024, 3.0, {}, None)
    _, candidates, windows = candidate_step(
        data.adc, data.info["sampling_rate_ghz"].to_numpy(), "auto", bundle.candidates
    )
    assert len(windows) > 0
    np.testing.assert_array_equal(windows, prepared.windows)
    np.testing.assert_array_equal(candidates.values, prepared.candidates["sample"].to_numpy())
