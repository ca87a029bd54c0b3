"""Domain profiles through the command line and the inference flow: ``dndx data
profile`` and ``dndx infer`` saying which files are in or outside the training domain
(the profiles themselves: tests/unit/domain/test_profile.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dndx.chain.bundle import D2Settings, ModelBundle
from dndx.domain.profile import (
    DomainProfile,
)
from flows.cli import main as cli
from flows.infer import _judge_domain, infer
from flows.infer_plan import InferenceRequest, plan_inference
from tests.front_ends import (
    shifted,
    simulate_waveforms,
    training_domain,
)


@pytest.fixture(scope="module")
def domain_bundle(untrained_pair: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained pair's bundle with a training domain, as the register stage writes it."""
    bundle = Path(shutil.copytree(untrained_pair / "bundle", tmp_path_factory.mktemp("b") / "b"))
    training_domain().save(bundle)
    d2 = D2Settings(t1_sigma=3.0, t2=1.5, window_ns=2.0, growth_ns_per_sqrt_ns=0.1)
    dataclasses.replace(ModelBundle.load(bundle), d2=d2).save(bundle)
    return bundle


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A training-like and a shifted NPZ file at 1.5 GS/s, and an empty one."""
    root = tmp_path_factory.mktemp("files")
    data = simulate_waveforms(300, seed=6, sampling_rates_ghz=(1.5,))
    rates = data.info["sampling_rate_ghz"].to_numpy()
    paths = {name: root / f"{name}.npz" for name in ("like", "shifted", "empty")}
    np.savez(paths["like"], waveforms=np.stack(list(data.adc)))
    np.savez(
        paths["shifted"],
        waveforms=np.stack(list(shifted(data, np.random.default_rng(7), 6.0))),
    )
    np.savez(paths["empty"], waveforms=np.zeros((0, 100)))
    assert rates.tolist() == [1.5] * 300
    return paths


def test_data_profile_writes_json_markdown_and_figure_and_refuses_bad_input(
    domain_bundle: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "profile" / "shifted.json"
    args = [str(files["shifted"]), "--json", str(out), "--model-uri", str(domain_bundle)]
    assert cli(["data", "profile", *args, "--sampling-rate-ghz", "1.5"]) == 0
    assert "domain: outside: " in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["domain"]["verdict"] == "outside"
    assert DomainProfile.from_dict(record["profile"], out).n_waveforms == 300
    assert record["training"] is not None
    markdown = out.with_suffix(".md").read_text()
    assert "| quantity | input | training |" in markdown and "**outside: " in markdown
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"

    # An existing output, a missing file, a file without waveforms, a bad rate: one
    # line each, exit 2, nothing written.
    for bad, problem in (
        ([str(files["like"]), "--json", str(out)], "exist(s); pass --overwrite"),
        ([str(tmp_path / "missing.npz"), "--json", str(tmp_path / "m.json")], "no such file"),
        ([str(files["empty"]), "--json", str(tmp_path / "e.json")], "no usable waveforms"),
        (
            [str(files["like"]), "--json", str(tmp_path / "r.json"), "--sampling-rate-ghz", "0"],
            "--sampling-rate-ghz 0.0: expected a positive",
        ),
    ):
        assert cli(["data", "profile", *bad]) == 2
        error = capsys.readouterr().err
        assert error.startswith("dndx: error: ") and problem in error
        assert error.count("\n") == 1
    assert not any((tmp_path / name).exists() for name in ("m.json", "e.json", "r.json"))
    assert json.loads(out.read_text()) == record

    # Without models: profiled, not judged.
    like = tmp_path / "like.json"
    assert cli(["data", "profile", str(files["like"]), "--json", str(like)]) == 0
    assert json.loads(like.read_text())["domain"]["verdict"] == "not judged"


def test_infer_writes_each_files_verdict_in_its_summaries(
    domain_bundle: Path,
    untrained_pair: Path,
    files: dict[str, Path],
    shared_dask: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run.parquet"
    inputs = [str(files["like"]), str(files["shifted"])]
    common = ["--sampling-rate-ghz", "1.5", "--workers", "1", "--chunk-size", "300"]
    assert (
        cli(["infer", *inputs, "--out", str(out), "--model-uri", str(domain_bundle), *common]) == 0
    )
    printed = capsys.readouterr().out
    assert f"training domain: {files['like']}: in: " in printed
    assert f"training domain: {files['shifted']}: outside: " in printed
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    verdicts = {entry["file"]: entry["verdict"] for entry in summary["domain"]}
    assert verdicts == {str(files["like"]): "in", str(files["shifted"]): "outside"}
    markdown = (tmp_path / "run.summary.md").read_text()
    assert "## Training domain" in markdown
    assert f"{files['shifted']} is outside the models' training domain" in markdown

    # A bundle registered before the training domain was stored still runs: unknown.
    old = tmp_path / "old.parquet"
    bundle = str(untrained_pair / "bundle")
    report = infer(inputs[:1], str(old), sampling_rate_ghz=1.5, model_uris=[bundle], workers=1)
    assert report.domain == (
        f"{inputs[0]}: unknown: the models hold no training domain (registered before dndx "
        "stored one): the domain cannot be judged",
    )
    summary = json.loads((tmp_path / "old.summary.json").read_text())
    assert [entry["verdict"] for entry in summary["domain"]] == ["unknown"]


def test_the_classical_chain_is_not_judged(
    domain_bundle: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    plan = plan_inference(
        InferenceRequest(
            (str(files["like"]),),
            str(tmp_path / "d2.parquet"),
            sampling_rate_ghz=1.5,
            model_uris=(str(domain_bundle),),
            method="d2",
        )
    )
    [(name, verdict)] = _judge_domain(plan)
    assert name == str(files["like"]) and verdict.verdict == "not judged"
    assert "--method d2 runs no trained model" in verdict.reason
