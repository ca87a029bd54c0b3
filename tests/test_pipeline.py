"""The data stages end to end: real DVC running real Prefect flows on a real Dask cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dndx.dataset import part_paths, read_candidates
from flows.pipeline import pipeline
from tests.conftest import venv_env


def _dvc(repo: Path, *args: str) -> str:
    env = {**venv_env(), "XDG_CACHE_HOME": str(repo / ".cache")}
    result = subprocess.run(
        ["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


STAGES = (
    "simulate",
    "prepare",
    "train_peak_finder",
    "train_cluster_counter",
    "evaluate",
    "register",
    "demo",
)


def test_dvc_repro_runs_every_stage_then_nothing(project: Path, prefect_api: str) -> None:
    log = _dvc(project, "repro")
    for stage in STAGES:
        assert f"Running stage '{stage}'" in log
    # Each stage ran as a Prefect flow whose chunks and trials ran as Dask tasks.
    assert "simulate train chunk 1" in log and "prepare test chunk 0" in log
    assert "peak_finder trial-001" in log and "cluster_counter trial-001" in log
    assert "Finished in state Completed()" in log

    params = yaml.safe_load((project / "params.yaml").read_text())
    assert len(part_paths(project / "data/simulated/train")) == (
        params["simulate"]["n_train"] // params["simulate"]["chunk_size"]
    )
    candidates, windows = read_candidates(project / "data/prepared/train")
    assert windows.shape == (len(candidates), 15)
    balance = json.loads((project / "metrics/prepare.json").read_text())
    assert balance["train"]["n_waveforms"] == params["simulate"]["n_train"]
    assert 0.05 < balance["train"]["signal_fraction"] < 0.5
    for model in ("peak_finder", "cluster_counter"):
        assert (project / f"data/models/{model}/model.keras").exists()
        assert (project / f"reports/scan_{model}.md").exists()
    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    assert "counting.cnn.rms_over_sqrt_n" in evaluation
    assert (project / "reports/evaluation.md").exists()
    assert json.loads((project / "metrics/register.json").read_text())["alias"] == "champion"
    demo = json.loads((project / "metrics/demo.json").read_text())
    assert demo["n_waveforms"] == params["register"]["demo_waveforms"]
    assert (project / "data/demo/results.summary.md").exists()
    assert "train_peak_finder" in _dvc(project, "metrics", "show")

    again = _dvc(project, "repro")
    assert "Running stage" not in again
    assert "didn't change, skipping" in again
    assert "up to date" in _dvc(project, "status")

    # A parameter of the demo re-runs the demo and nothing else.
    params["register"]["demo_waveforms"] = 30
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _dvc(project, "repro")
    assert "Running stage 'demo'" in third
    for stage in STAGES[:-1]:
        assert f"Running stage '{stage}'" not in third


def test_the_pipeline_prints_each_dvc_line_once_and_leaves_the_git_index_alone(
    project: Path,
    prefect_api: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def staged() -> str:
        return subprocess.run(
            ["git", "diff", "--cached", "--name-only"],
            cwd=project, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_CACHE_HOME", str(project / ".cache"))
    staged_before = staged()
    assert pipeline(project, ["simulate", "prepare"]) == {"simulate": True, "prepare": True}

    console = capfd.readouterr()
    printed = console.out + console.err
    assert printed.count("Running stage 'simulate'") == 1
    assert printed.count("Running stage 'prepare'") == 1
    # DVC's records stay with DVC's own handlers, which printed them above.
    assert [r.getMessage() for r in caplog.records if r.name.split(".")[0] == "dvc"] == []
    assert "autostage" not in printed
    assert len([m for m in caplog.messages if "git add dvc.lock" in m]) == 1
    assert (project / "dvc.lock").exists() and staged() == staged_before


def test_bad_params_stop_the_stage_before_any_work(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["simulate"]["noise_fraction"] = [0.1, 2.0]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "flows.simulate"], cwd=project, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "simulate.noise_fraction[1] = 2.0 is out of range" in result.stderr
    assert not (project / "data").exists()
