"""The model registry on a real MLflow store: registration, promotion by aliases, fetching."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from dndx.chain.bundle import ModelBundle
from dndx.config import load_params
from dndx.errors import InputError
from dndx.scoring.promotion import CHALLENGER, CHAMPION
from tasks.registry import COUNTER_NAME, PEAK_FINDER_NAME, fetch_bundle, promote
from tests.conftest import register_pair


def test_better_pair_becomes_champion_worse_stays_challenger(
    untrained_pair: Path, local_registry: Path
) -> None:
    first = {"peak_efficiency_x_purity": 0.70, "rms_over_sqrt_n": 0.80}
    better = {"peak_efficiency_x_purity": 0.75, "rms_over_sqrt_n": 0.70}
    worse = {"peak_efficiency_x_purity": 0.76, "rms_over_sqrt_n": 0.90}

    assert promote(register_pair(untrained_pair, first), first, None)["alias"] == CHAMPION
    second = register_pair(untrained_pair, better)
    assert promote(second, better, first)["alias"] == CHAMPION
    third = register_pair(untrained_pair, worse)
    decision = promote(third, worse, better)
    assert decision["alias"] == CHALLENGER
    assert "rms_over_sqrt_n 0.9000 vs champion 0.7000 (worse)" in decision["reason"]

    client = MlflowClient()
    for name in (PEAK_FINDER_NAME, COUNTER_NAME):
        assert str(client.get_model_version_by_alias(name, CHAMPION).version) == second[name]
        assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == third[name]
        version = client.get_model_version(name, third[name])
        assert version.tags["git_commit"] == "abc"
        assert version.tags["promotion"].startswith("challenger: ")
        info = mlflow.models.get_model_info(f"models:/{name}/{version.version}")
        assert info.signature is not None and info.saved_input_example_info is not None

    fetched = fetch_bundle(
        [f"models:/{PEAK_FINDER_NAME}@{CHAMPION}", f"models:/{COUNTER_NAME}@{CHAMPION}"],
        local_registry / "cache",
        mlflow.get_tracking_uri(),
    )
    assert ModelBundle.load(fetched) == ModelBundle.load(untrained_pair / "bundle")
    onnx_bytes = (untrained_pair / "bundle" / "peak_finder.onnx").read_bytes()
    assert (fetched / "peak_finder.onnx").read_bytes() == onnx_bytes


def test_fetching_an_unknown_alias_names_it(untrained_pair: Path, local_registry: Path) -> None:
    with pytest.raises(InputError, match="models:/peak-finder@champion: not in the model registry"):
        fetch_bundle(
            [f"models:/{PEAK_FINDER_NAME}@{CHAMPION}", f"models:/{COUNTER_NAME}@{CHAMPION}"],
            local_registry / "cache",
            mlflow.get_tracking_uri(),
        )


def _evaluated(root: Path, recall: float) -> None:
    """The evaluate stage's checks, as its metrics files hold them, with this recall."""
    (root / "metrics").mkdir(exist_ok=True)
    limit = load_params().quality_gate.min_candidate_recall
    (root / "metrics/evaluate.json").write_text(
        json.dumps(
            {
                "target.candidate_recall.value": recall,
                "target.candidate_recall.limit": limit,
                "target.candidate_recall.passed": recall >= limit,
            }
        )
    )
    gain = {"value": 1.7, "limit": 1.6, "passed": True}
    (root / "metrics/separation.json").write_text(
        json.dumps({"target": {"separation_gain_over_d2": gain}})
    )


def test_a_required_quality_gate_withholds_a_pair_that_missed_a_threshold(
    untrained_pair: Path, local_registry: Path
) -> None:
    from flows.register import _promote_or_withhold

    off = load_params()
    assert not off.quality_gate.require
    on = dataclasses.replace(off, quality_gate=dataclasses.replace(off.quality_gate, require=True))
    scores = {"peak_efficiency_x_purity": 0.70, "rms_over_sqrt_n": 0.80}
    client = MlflowClient()

    def aliases(versions: dict[str, str]) -> list[list[str]]:
        return [client.get_model_version(n, v).aliases for n, v in versions.items()]

    _evaluated(local_registry, recall=0.93)
    versions = register_pair(untrained_pair, scores)
    # On: the pair is registered without an alias, and the reason names the threshold.
    withheld = _promote_or_withhold(on, local_registry, versions, scores, None)
    assert (withheld["alias"], aliases(versions)) == (None, [[], []])
    missed = "missed candidate_recall 0.93 vs quality_gate.min_candidate_recall 0.94"
    assert withheld["reason"].endswith(missed)
    tags = [client.get_model_version(n, v).tags["promotion"] for n, v in versions.items()]
    assert all(tag.endswith(missed) for tag in tags)
    # Off (params.yaml's default): the missed threshold changes nothing.
    assert _promote_or_withhold(off, local_registry, versions, scores, None)["alias"] == CHAMPION
    assert aliases(versions) == [[CHAMPION], [CHAMPION]]
    # On, every threshold met: promoted as ever.
    _evaluated(local_registry, recall=0.95)
    assert _promote_or_withhold(on, local_registry, versions, scores, None)["alias"] == CHAMPION
    (local_registry / "metrics/separation.json").unlink()
    with pytest.raises(InputError, match=r"separation\.json: cannot read the evaluate stage"):
        _promote_or_withhold(on, local_registry, versions, scores, None)
