"""Int8 dynamic quantization of a bundle's peak finder with ONNX Runtime.

The weights of the LSTM's matrix products become int8 and the activations are
quantized on the fly: on one CPU core it runs about 1.35x faster. The cluster
counter stays float: ONNX Runtime runs its int8 convolutions about 3.6x slower
than the float ones (``benchmarks/infer.py``), so quantizing it would cost time
and precision both. The graphs' inputs, outputs and ``bundle.json`` stay those
of the float bundle, so the quantized bundle runs through every inference path
unchanged. Whether it may be used is decided on
outcomes (:func:`dndx.scoring.parity.outcome_parity`), never on raw outputs. A pair
that passes is registered as new versions of the same registered models under
an alias of its own (:data:`FAST`), so ``models:/peak-finder@fast`` and
``models:/cluster-counter@fast`` fetch it like any registered pair.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from numpy.typing import NDArray
from onnxruntime.quantization import QuantType, quantize_dynamic
from prefect import task
from prefect.cache_policies import NO_CACHE

from dndx.chain.bundle import COUNTER_FILE, PEAK_FINDER_FILE
from dndx.chain.onnx import OnnxModels
from dndx.config import Params
from dndx.domain.fit import TARGET_FILE
from dndx.domain.profile import DOMAIN_FILE
from dndx.scoring.bundle_scores import score_bundle
from dndx.scoring.parity import matching_threshold, outcome_parity
from dndx.scoring.promotion import CHAMPION
from dndx.storage import atomic_directory
from dndx.waveforms import WaveformSet
from tasks.registry import register_bundle

__all__ = [
    "ARITHMETIC",
    "FAST",
    "FAST_CHALLENGER",
    "QUANTIZED_SUBDIR",
    "quantize_bundle",
    "quantize_if_outcomes_hold",
    "register_quantized_pair",
]

#: What the quantized bundle's provenance says of its arithmetic.
ARITHMETIC = (
    "peak finder: int8 dynamic quantization (onnxruntime.quantization.quantize_dynamic); "
    "cluster counter: float"
)


def _drops_preprocessing_advice(record: logging.LogRecord) -> bool:
    advice = "pre-processing before quantization" in record.getMessage()
    return not (advice and "onnxruntime" in record.pathname)


@contextlib.contextmanager
def _no_preprocessing_advice() -> Iterator[None]:
    """Drop ONNX Runtime's advice to pre-process the graph before quantizing, which
    it logs on the root logger at every call: the bundle's graphs are exported as
    they are, and the gate judges the quantized pair on its outcomes."""
    root = logging.getLogger()
    root.addFilter(_drops_preprocessing_advice)
    try:
        yield
    finally:
        root.removeFilter(_drops_preprocessing_advice)


def quantize_bundle(
    float_dir: str | Path, quantized_dir: str | Path, validation_windows: NDArray[np.float32]
) -> Path:
    """Write the bundle ``float_dir`` with its peak finder in int8 to ``quantized_dir``,
    atomically; the cluster counter is copied as it is. The int8 peak finder's
    working point accepts as many of ``validation_windows`` (``(n_windows,
    window_length)``) as the float one does at its own
    (:func:`dndx.scoring.parity.matching_threshold`)."""
    source = Path(float_dir)
    float_models = OnnxModels.load(source)
    bundle = float_models.bundle
    with atomic_directory(quantized_dir) as tmp:
        with _no_preprocessing_advice():
            quantize_dynamic(
                source / PEAK_FINDER_FILE, tmp / PEAK_FINDER_FILE, weight_type=QuantType.QInt8
            )
        shutil.copy(source / COUNTER_FILE, tmp / COUNTER_FILE)
        for lineage in (DOMAIN_FILE, TARGET_FILE):
            if (source / lineage).is_file():
                shutil.copy(source / lineage, tmp / lineage)
        bundle.save(tmp)
        threshold = matching_threshold(
            float_models.peak_probability(validation_windows),
            bundle.score_threshold,
            OnnxModels.load(tmp).peak_probability(validation_windows),
        )
        provenance = {
            **bundle.provenance,
            "arithmetic": ARITHMETIC,
            "float_bundle": str(source),
            "float_score_threshold": f"{bundle.score_threshold:.6g}",
        }
        dataclasses.replace(bundle, score_threshold=threshold, provenance=provenance).save(tmp)
    return Path(quantized_dir)


#: Where a quantized pair that passed the gate lives: inside the float bundle,
#: so the registry stores and serves it with the float pair it was made from.
QUANTIZED_SUBDIR = "int8"
#: The registry alias of the int8 pair of the champion pair.
FAST = "fast"
#: The alias of the int8 pair of a float pair promoted to challenger only.
FAST_CHALLENGER = "fast-challenger"


@task(task_run_name="quantize the pair and gate it on outcomes", cache_policy=NO_CACHE)
def quantize_if_outcomes_hold(
    bundle_dir: Path,
    validation_windows: NDArray[np.float32],
    waveforms: WaveformSet,
    truth: pd.DataFrame,
    float_scores: dict[str, float],
    params: Params,
) -> dict[str, Any]:
    """Quantize the bundle (its working point set on ``validation_windows``:
    :func:`quantize_bundle`), score it like the float pair on the same test waveforms,
    and keep it as ``bundle_dir/int8`` only if :func:`dndx.scoring.parity.outcome_parity`
    passes within ``register.quantized_tolerance``.

    Returns:
        ``passed``, ``reason``, ``tolerance``, the quantized pair's ``scores`` and
        ``differences``.
    """
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=bundle_dir.parent) as scratch:
        candidate = quantize_bundle(
            bundle_dir, Path(scratch) / QUANTIZED_SUBDIR, validation_windows
        )
        scores = score_bundle(candidate, waveforms, truth, params)
        verdict = outcome_parity(float_scores, scores, params.register.quantized_tolerance)
        if verdict.passed:
            os.replace(candidate, bundle_dir / QUANTIZED_SUBDIR)
    return {
        "passed": verdict.passed,
        "reason": verdict.reason,
        "tolerance": params.register.quantized_tolerance,
        "scores": scores,
        "differences": verdict.differences,
    }


def register_quantized_pair(
    verdict: dict[str, Any],
    bundle_dir: Path,
    keras_files: dict[str, Path],
    examples: dict[str, np.ndarray],
    tags: dict[str, str],
    float_promotion: dict[str, Any],
) -> dict[str, Any]:
    """Register the int8 pair that :func:`quantize_if_outcomes_hold` kept in
    ``bundle_dir/int8`` as new versions of the float pair's registered models,
    tagged with the gate's figures, under :data:`FAST` where the float pair
    became champion, :data:`FAST_CHALLENGER` where it became challenger.

    A pair that failed the gate is not registered, and the alias it would have
    taken is removed: it named the int8 pair of an earlier float pair. Nor is the
    int8 pair of a float pair left without an alias (:func:`tasks.registry.withhold`).

    Args:
        verdict: what :func:`quantize_if_outcomes_hold` returned.
        bundle_dir: the float bundle.
        keras_files, examples: the float pair's Keras originals and input
            examples, by registered name (:func:`tasks.registry.register_bundle`).
        tags: the float pair's lineage tags.
        float_promotion: what :func:`tasks.registry.promote` returned for the float pair.

    Returns:
        ``alias`` and the registered ``versions`` by name (None and empty where
        the gate failed).
    """
    if float_promotion["alias"] is None:  # the float pair was withheld: so is its int8 pair
        return {"alias": None, "versions": {}}
    alias = FAST if float_promotion["alias"] == CHAMPION else FAST_CHALLENGER
    float_versions = float_promotion["versions"]
    if not verdict["passed"]:
        client = MlflowClient()
        for name in float_versions:
            client.delete_registered_model_alias(name, alias)
        return {"alias": None, "versions": {}}
    gate = {
        "arithmetic": ARITHMETIC,
        "int8_gate": verdict["reason"],
        "int8_gate.tolerance": f"{verdict['tolerance']:g}",
        **{f"int8_gate.{k}": f"{v:+.4g}" for k, v in verdict["differences"].items()},
        "float_versions": ", ".join(f"{n} {v}" for n, v in float_versions.items()),
    }
    versions = register_bundle(
        bundle_dir / QUANTIZED_SUBDIR, keras_files, examples, verdict["scores"], {**tags, **gate}
    )
    client = MlflowClient()
    for name, version in versions.items():
        client.set_registered_model_alias(name, alias, version)
    return {"alias": alias, "versions": versions}
