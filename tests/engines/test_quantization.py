"""The int8 pair: made with ONNX Runtime, kept and registered only if the test figures hold."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dndx.chain.onnx import OnnxModels
from dndx.config import parse_params
from dndx.io.dataset import read_waveform_set
from dndx.io.prepared import read_candidates, read_prepared_waveforms
from dndx.scoring.bundle_scores import score_bundle
from dndx.scoring.parity import OUTCOME_FIGURES
from flows.cli import main as cli
from tasks.quantization import (
    ARITHMETIC,
    FAST,
    FAST_CHALLENGER,
    QUANTIZED_SUBDIR,
    quantize_if_outcomes_hold,
    register_quantized_pair,
)
from tasks.registry import COUNTER_NAME, PEAK_FINDER_NAME, fetch_bundle, promote
from tests.conftest import register_pair, tiny_params


@pytest.mark.parametrize("tolerance", [0.0, 1.0])
def test_the_int8_pair_is_kept_and_registered_only_within_the_tolerance(
    tolerance: float,
    untrained_pair: Path,
    prepared_data: Path,
    shared_dask: str,
    local_registry: Path,
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


def _verdict(passed: bool) -> dict[str, Any]:
    """A gate's verdict as :func:`quantize_if_outcomes_hold` returns it."""
    differences = dict.fromkeys(OUTCOME_FIGURES, 0.001 if passed else 0.01)
    return {
        "passed": passed,
        "reason": "within 0.005" if passed else "rms_over_sqrt_n moved by +0.01",
        "tolerance": 0.005,
        "scores": {"peak_efficiency_x_purity": 0.7, "rms_over_sqrt_n": 0.8},
        "differences": differences,
    }


def test_the_fast_aliases_follow_the_float_pairs_promotion_and_gate(
    untrained_pair: Path,
    local_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The float bundle with an int8 pair kept beside it (its graphs stand in for int8).
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(untrained_pair / "bundle", bundle_dir)
    shutil.copytree(untrained_pair / "bundle", bundle_dir / QUANTIZED_SUBDIR)
    keras_files = {
        name: untrained_pair / f"{name.replace('-', '_')}.keras"
        for name in (PEAK_FINDER_NAME, COUNTER_NAME)
    }
    rng = np.random.default_rng(5)
    examples = {
        PEAK_FINDER_NAME: rng.normal(size=(3, 15, 1)).astype(np.float32),
        COUNTER_NAME: rng.random((2, 1024, 4)).astype(np.float32),
    }
    client = MlflowClient()

    def register(
        scores: dict[str, float], champion: dict[str, float] | None, passed: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        promotion = promote(register_pair(untrained_pair, scores), scores, champion)
        int8 = register_quantized_pair(
            _verdict(passed), bundle_dir, keras_files, examples, {}, promotion
        )
        return promotion, int8

    def aliased(alias: str) -> dict[str, str]:
        named: dict[str, str] = {}
        for name in keras_files:
            with contextlib.suppress(MlflowException):
                named[name] = str(client.get_model_version_by_alias(name, alias).version)
        return named

    first = {"peak_efficiency_x_purity": 0.70, "rms_over_sqrt_n": 0.80}
    promotion, fast = register(first, None, passed=True)
    assert promotion["alias"] == "champion" and fast["alias"] == FAST
    assert aliased(FAST) == fast["versions"]

    # A float pair that stays challenger: its int8 pair is fast-challenger; fast stays.
    worse = {"peak_efficiency_x_purity": 0.69, "rms_over_sqrt_n": 0.90}
    promotion, challenger = register(worse, first, passed=True)
    assert promotion["alias"] == "challenger" and challenger["alias"] == FAST_CHALLENGER
    assert aliased(FAST_CHALLENGER) == challenger["versions"]
    assert aliased(FAST) == fast["versions"]

    # A new champion whose int8 pair fails its gate: fast no longer names the old one.
    better = {"peak_efficiency_x_purity": 0.75, "rms_over_sqrt_n": 0.70}
    promotion, failed = register(better, first, passed=False)
    assert promotion["alias"] == "champion" and failed == {"alias": None, "versions": {}}
    assert aliased(FAST) == {}
    assert aliased(FAST_CHALLENGER) == challenger["versions"]

    # dndx infer on @fast then says so in one line, before any work.
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    source = tmp_path / "waveforms.npz"
    np.savez(source, waveforms=rng.normal(500, 5, (4, 600)))
    out = tmp_path / "results.parquet"
    uris = [f"models:/{name}@{FAST}" for name in keras_files]
    argv = [str(source), "--out", str(out), "--tracking-uri", mlflow.get_tracking_uri()]
    argv += [arg for uri in uris for arg in ("--model-uri", uri)]
    capsys.readouterr()
    assert cli(["infer", *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"dndx: error: {uris[0]}: not in the model registry at ")
    assert error.count("\n") == 1 and "PREFECT_API_URL" not in os.environ
    assert not out.exists()


def test_quantizing_drops_only_the_advice_to_pre_process(
    untrained_pair: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from dndx.chain.bundle import PEAK_FINDER_FILE
    from tasks.quantization import quantize_bundle

    windows = np.zeros(
        (8, OnnxModels.load(untrained_pair / "bundle").bundle.candidates.window_length)
    )
    with caplog.at_level("WARNING"):
        # ONNX Runtime called bare gives the advice on the root logger ...
        quantize_dynamic(
            untrained_pair / "bundle" / PEAK_FINDER_FILE,
            tmp_path / "bare.onnx",
            weight_type=QuantType.QInt8,
        )
        advised = [r for r in caplog.records if "pre-processing" in r.getMessage()]
        caplog.clear()
        quantize_bundle(untrained_pair / "bundle", tmp_path / "int8", windows.astype(np.float32))
        # ... which quantize_bundle drops, leaving the root logger's filters as they were.
        dropped = [r for r in caplog.records if "pre-processing" in r.getMessage()]
    assert (len(advised), dropped) == (1, [])
    assert not logging.getLogger().filters
