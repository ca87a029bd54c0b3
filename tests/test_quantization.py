"""The int8 pair: made with ONNX Runtime, kept and registered only if the test figures hold."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dndx.config import parse_params
from dndx.dataset import read_candidates, read_prepared_waveforms, read_waveform_set
from dndx.parity import OUTCOME_FIGURES
from tasks.onnx_models import OnnxModels
from tasks.quantization import (
    ARITHMETIC,
    FAST,
    QUANTIZED_SUBDIR,
    quantize_if_outcomes_hold,
    register_quantized_pair,
)
from tasks.registry import COUNTER_NAME, PEAK_FINDER_NAME, fetch_bundle, promote, score_bundle
from tests.conftest import register_pair, tiny_params
from tests.test_registry import local_registry  # noqa: F401 (a fixture)


@pytest.mark.parametrize("tolerance", [0.0, 1.0])
def test_the_int8_pair_is_kept_and_registered_only_within_the_tolerance(
    tolerance: float,
    untrained_pair: Path,
    prepared_data: Path,
    prefect_api: str,
    local_registry: Path,  # noqa: F811
) -> None:
    params = parse_params(tiny_params(register={"quantized_tolerance": tolerance}))
    work = local_registry / "work"
    bundle_dir = work / "bundle"
    shutil.copytree(untrained_pair / "bundle", bundle_dir)
    (part,) = sorted((prepared_data / "data/simulated/test").glob("part-*.parquet"))
    waveforms = read_waveform_set(part)
    truth = read_prepared_waveforms(prepared_data / "data/prepared/test")
    float_scores = score_bundle(bundle_dir, waveforms, truth, params)

    _, validation_windows = read_candidates(prepared_data / "data/prepared/validation")
    verdict = quantize_if_outcomes_hold(
        bundle_dir, validation_windows, waveforms, truth, float_scores, params
    )

    moved = max(abs(verdict["differences"][name]) for name in OUTCOME_FIGURES)
    # int8 arithmetic moves the untrained peak finder's decisions, so a zero tolerance fails.
    assert verdict["passed"] == (moved <= tolerance)
    assert verdict["passed"] == (tolerance > 0)
    kept = bundle_dir / QUANTIZED_SUBDIR
    assert kept.is_dir() == verdict["passed"]
    assert [p.name for p in work.iterdir()] == ["bundle"]
    if verdict["passed"]:
        int8 = OnnxModels.load(kept)
        assert int8.bundle.provenance["arithmetic"] == ARITHMETIC
        # Its working point accepts as many validation windows as the float one's.
        float_pair = OnnxModels.load(bundle_dir)
        accepted = {
            models.bundle.score_threshold: models.peak_probability(validation_windows)
            >= models.bundle.score_threshold
            for models in (float_pair, int8)
        }
        assert len({int(a.sum()) for a in accepted.values()}) == 1
        assert score_bundle(kept, waveforms, truth, params) == verdict["scores"]

    rng = np.random.default_rng(5)
    float_versions = register_pair(untrained_pair, float_scores)
    promotion = promote(float_versions, float_scores, None)
    registered = register_quantized_pair(
        verdict,
        bundle_dir,
        {name: untrained_pair / f"{name.replace('-', '_')}.keras" for name in float_versions},
        {
            PEAK_FINDER_NAME: rng.normal(size=(3, 15, 1)).astype(np.float32),
            COUNTER_NAME: rng.random((2, 1024, 4)).astype(np.float32),
        },
        {"git_commit": "abc"},
        promotion,
    )

    client = MlflowClient()
    uris = [f"models:/{PEAK_FINDER_NAME}@{FAST}", f"models:/{COUNTER_NAME}@{FAST}"]
    if not verdict["passed"]:
        assert registered == {"alias": None, "versions": {}}
        for name in float_versions:
            with pytest.raises(MlflowException):
                client.get_model_version_by_alias(name, FAST)
            assert len(client.search_model_versions(f"name='{name}'")) == 1
        return
    assert registered["alias"] == FAST
    for name, version in registered["versions"].items():
        assert version != float_versions[name]
        tags = client.get_model_version(name, version).tags
        assert tags["arithmetic"] == ARITHMETIC
        assert tags["int8_gate"] == verdict["reason"]
        assert tags["int8_gate.tolerance"] == "1"
        assert float(tags["int8_gate.rms_over_sqrt_n"]) == pytest.approx(
            verdict["differences"]["rms_over_sqrt_n"], rel=1e-3
        )
    fetched = fetch_bundle(uris, local_registry / "cache", mlflow.get_tracking_uri())
    for name in ("peak_finder.onnx", "cluster_counter.onnx"):
        assert (fetched / name).read_bytes() == (kept / name).read_bytes()
