"""Int8 dynamic quantization of a bundle's two graphs with ONNX Runtime.

The weights of the LSTM's and the CNN's matrix products become int8 and the
activations are quantized on the fly; the graphs' inputs, outputs and
``bundle.json`` stay those of the float bundle, so the quantized bundle runs
through every inference path unchanged. Whether it may be used is decided on
outcomes (:func:`dndx.parity.outcome_parity`), never on raw outputs.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from onnxruntime.quantization import QuantType, quantize_dynamic
from prefect import task
from prefect.cache_policies import NO_CACHE

from dndx.bundle import COUNTER_FILE, PEAK_FINDER_FILE, ModelBundle
from dndx.config import Params
from dndx.parity import outcome_parity
from dndx.simulation import WaveformSet
from dndx.storage import atomic_directory
from tasks.registry import score_bundle

__all__ = ["ARITHMETIC", "QUANTIZED_SUBDIR", "quantize_bundle", "quantize_if_outcomes_hold"]

#: What the quantized bundle's provenance says of its arithmetic.
ARITHMETIC = "int8 dynamic quantization (onnxruntime.quantization.quantize_dynamic)"


def quantize_bundle(float_dir: str | Path, quantized_dir: str | Path) -> Path:
    """Write the int8 version of the bundle ``float_dir`` to ``quantized_dir``, atomically."""
    source = Path(float_dir)
    bundle = ModelBundle.load(source)
    with atomic_directory(quantized_dir) as tmp:
        for name in (PEAK_FINDER_FILE, COUNTER_FILE):
            quantize_dynamic(source / name, tmp / name, weight_type=QuantType.QInt8)
        provenance = {**bundle.provenance, "arithmetic": ARITHMETIC, "float_bundle": str(source)}
        dataclasses.replace(bundle, provenance=provenance).save(tmp)
    return Path(quantized_dir)


#: Where a quantized pair that passed the gate lives: inside the float bundle,
#: so the registry stores and serves it with the float pair it was made from.
QUANTIZED_SUBDIR = "int8"


@task(task_run_name="quantize the pair and gate it on outcomes", cache_policy=NO_CACHE)
def quantize_if_outcomes_hold(
    bundle_dir: Path,
    waveforms: WaveformSet,
    truth: pd.DataFrame,
    float_scores: dict[str, float],
    params: Params,
) -> dict[str, Any]:
    """Quantize the bundle, score it like the float pair on the same test waveforms,
    and keep it as ``bundle_dir/int8`` only if :func:`dndx.parity.outcome_parity`
    passes within ``register.quantized_tolerance``.

    Returns:
        ``passed``, ``reason``, the quantized pair's ``scores`` and ``differences``.
    """
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=bundle_dir.parent) as scratch:
        candidate = quantize_bundle(bundle_dir, Path(scratch) / QUANTIZED_SUBDIR)
        scores = score_bundle(candidate, waveforms, truth, params)
        verdict = outcome_parity(float_scores, scores, params.register.quantized_tolerance)
        if verdict.passed:
            os.replace(candidate, bundle_dir / QUANTIZED_SUBDIR)
    return {
        "passed": verdict.passed,
        "reason": verdict.reason,
        "scores": scores,
        "differences": verdict.differences,
    }
