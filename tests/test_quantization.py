"""The int8 pair: made with ONNX Runtime, kept only if the test figures hold."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dndx.config import parse_params
from dndx.dataset import read_prepared_waveforms, read_waveform_set
from dndx.parity import OUTCOME_FIGURES
from tasks.onnx_models import OnnxModels
from tasks.quantization import ARITHMETIC, QUANTIZED_SUBDIR, quantize_if_outcomes_hold
from tasks.registry import score_bundle
from tests.conftest import tiny_params


@pytest.mark.parametrize("tolerance", [0.0, 1.0])
def test_the_int8_pair_is_kept_only_within_the_tolerance(
    tolerance: float, untrained_pair: Path, prepared_data: Path, prefect_api: str, tmp_path: Path
) -> None:
    params = parse_params(tiny_params(register={"quantized_tolerance": tolerance}))
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(untrained_pair / "bundle", bundle_dir)
    (part,) = sorted((prepared_data / "data/simulated/test").glob("part-*.parquet"))
    waveforms = read_waveform_set(part)
    truth = read_prepared_waveforms(prepared_data / "data/prepared/test")
    float_scores = score_bundle(bundle_dir, waveforms, truth, params)

    verdict = quantize_if_outcomes_hold(bundle_dir, waveforms, truth, float_scores, params)

    moved = max(abs(verdict["differences"][name]) for name in OUTCOME_FIGURES)
    # int8 arithmetic moves the untrained counter's output, so a zero tolerance fails.
    assert verdict["passed"] == (moved <= tolerance)
    assert verdict["passed"] == (tolerance > 0)
    kept = bundle_dir / QUANTIZED_SUBDIR
    assert kept.is_dir() == verdict["passed"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    if verdict["passed"]:
        assert OnnxModels.load(kept).bundle.provenance["arithmetic"] == ARITHMETIC
        assert score_bundle(kept, waveforms, truth, params) == verdict["scores"]
