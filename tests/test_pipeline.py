"""The data stages end to end: real DVC running real Prefect flows on a real Dask cluster,
and their outputs through a DVC remote. Every test here reads the session's one trained
project, which is why they share a module: `make test` sends a module to one worker."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from dndx.dataset import part_paths, read_candidates
from flows.pipeline import pipeline
from tests.conftest import TrainedProject, copy_project, dvc

pytestmark = pytest.mark.pipeline

STAGES = (
    "simulate",
    "tracks",
    "prepare",
    "train_peak_finder",
    "encode",
    "train_cluster_counter",
    "evaluate",
    "register",
    "demo",
)


def _stale(project: Path) -> set[str]:
    """The stages ``dvc status`` reports as changed."""
    lines = dvc(project, "status", "--json").splitlines()
    return set(json.loads(next(line for line in lines if line.startswith("{"))))


def test_dvc_repro_runs_every_stage_then_nothing(trained_project: TrainedProject) -> None:
    project, log = trained_project.path, trained_project.repro_log
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
    tracks = params["tracks"]
    track_chunks = -(-tracks["n_test"] // tracks["tracks_per_chunk"])
    assert len(part_paths(project / "data/tracks/test")) == (
        len(tracks["particles"]) * len(tracks["momenta_gev"]) * track_chunks
    )
    candidates, windows = read_candidates(project / "data/prepared/train")
    assert windows.shape == (len(candidates), 15)
    balance = json.loads((project / "metrics/prepare.json").read_text())
    assert balance["train"]["n_waveforms"] == params["simulate"]["n_train"]
    assert 0.05 < balance["train"]["signal_fraction"] < 0.5
    for model in ("peak_finder", "cluster_counter"):
        assert (project / f"data/models/{model}/model.keras").exists()
        assert (project / f"reports/scan_{model}.md").exists()
    # The counter's trials were judged first on the validation tracks of the pair.
    training = params["train_cluster_counter"]
    with np.load(project / "data/counter_inputs/tracks_validation/encoded.npz") as cells:
        assert set(cells["particle"]) == set(training["separation_pair"])
        assert set(cells["momentum_gev"]) == set(training["separation_momenta_gev"])
        n_tracks = 2 * len(training["separation_momenta_gev"]) * tracks["n_validation"]
        assert len(cells["x"]) == len(cells["track_id"]) == n_tracks * tracks["n_cells"]
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    trials = client.search_runs(
        [client.get_experiment_by_name("dndx").experiment_id],
        "params.model = 'cluster_counter' and tags.status = 'finished'",
    )
    assert trials and all(0.0 < t.data.metrics["val_separation_ratio"] < 2.0 for t in trials)
    scan = (project / "reports/scan_cluster_counter.md").read_text()
    assert "ranked by val_separation_ratio, val_rms_over_sqrt_n" in scan
    assert "| val_separation_ratio |" in scan
    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    assert "counting.cnn.rms_over_sqrt_n" in evaluation
    separation = json.loads((project / "metrics/separation.json").read_text())
    assert separation["n_tracks"] == (
        len(tracks["particles"]) * len(tracks["momenta_gev"]) * tracks["n_test"]
    )
    assert separation["separation"]["pi_K"]["10GeV"]["truth"]["ratio"] == 1.0
    assert (project / "reports/evaluation.md").exists()
    registry = json.loads((project / "metrics/register.json").read_text())
    assert registry["alias"] == "champion"
    separation = registry["separation"]
    assert separation["pair"] == training["separation_pair"]
    # The registry's ONNX Runtime figure is the kept trial's Keras figure.
    kept = json.loads((project / "metrics/train_cluster_counter.json").read_text())
    assert separation["new"]["separation_ratio"] == pytest.approx(
        kept["val_separation_ratio"], rel=1e-4
    )
    assert separation["new"]["separation_ratio_error"] > 0.0
    assert separation["champion_before"] is None
    report = (project / "reports/registry.md").read_text()
    assert f"| separation_ratio | {separation['new']['separation_ratio']:.4f} ± " in report
    demo = json.loads((project / "metrics/demo.json").read_text())
    assert demo["n_waveforms"] == params["register"]["demo_waveforms"]
    assert (project / "data/demo/results.summary.md").exists()
    assert "train_peak_finder" in dvc(project, "metrics", "show")

    again = dvc(project, "repro")
    assert "Running stage" not in again
    assert "didn't change, skipping" in again
    assert not _stale(project)


def test_the_registered_pair_carries_its_training_domain(trained_project: TrainedProject) -> None:
    from dndx.domain import TrainingDomain

    project = trained_project.path
    domain = TrainingDomain.load(project / "data/bundle")
    assert domain is not None and domain.profile.n_waveforms > 0
    assert domain.profile.noise_excess == pytest.approx(1.0, abs=0.1)
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for name in ("peak-finder", "cluster-counter"):
        tags = client.get_model_version_by_alias(name, "champion").tags
        assert float(tags["domain.noise_excess"]) == pytest.approx(
            domain.profile.noise_excess, rel=1e-3
        )
    # The demo's file, from the training simulator at another rate and polarity, is in.
    summary = json.loads((project / "data/demo/results.summary.json").read_text())
    assert [entry["verdict"] for entry in summary["domain"]] == ["in"]


@pytest.mark.parametrize(
    ("section", "key", "stale"),
    [
        # A parameter of the demo: the demo alone.
        ("register", "demo_waveforms", {"demo"}),
        # A parameter of the CNN: its scan, never the encoding before it (the stages
        # after it follow once its outputs change).
        ("cluster_counter", "learning_rate", {"train_cluster_counter"}),
        # The momenta the counter is judged at: the tracks encoded for it, its scan and
        # the promotion, which measure there.
        (
            "train_cluster_counter",
            "separation_momenta_gev",
            {"encode", "train_cluster_counter", "register"},
        ),
    ],
)
def test_a_parameter_makes_stale_only_the_stage_that_reads_it(
    trained_project: TrainedProject, section: str, key: str, stale: set[str]
) -> None:
    project = trained_project.path
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params[section][key] *= 2
    try:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        assert _stale(project) == stale
    finally:
        params_file.write_text(original)
    assert not _stale(project)


def test_the_pipeline_prints_each_dvc_line_once_and_leaves_the_git_index_alone(
    trained_project: TrainedProject,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = copy_project(trained_project, tmp_path)

    def staged() -> str:
        return subprocess.run(
            ["git", "diff", "--cached", "--name-only"],
            cwd=project, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["register"]["demo_waveforms"] //= 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_CACHE_HOME", str(project / ".cache"))
    staged_before = staged()
    assert pipeline(project, ["evaluate", "demo"]) == {"evaluate": False, "demo": True}

    console = capfd.readouterr()
    printed = console.out + console.err
    assert printed.count("Stage 'evaluate' didn't change, skipping") == 1
    assert printed.count("Running stage 'demo'") == 1
    # DVC's records stay with DVC's own handlers, which printed them above.
    assert [r.getMessage() for r in caplog.records if r.name.split(".")[0] == "dvc"] == []
    assert "autostage" not in printed
    assert len([m for m in caplog.messages if "git add dvc.lock" in m]) == 1
    assert staged() == staged_before


def test_bad_params_stop_the_stage_before_any_work(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["simulate"]["noise_fraction"] = [0.1, 2.0]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "flows.simulate"], cwd=project, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "simulate.noise_fraction = [0.1, 2.0]: should be [low, high] within" in result.stderr
    assert not (project / "data").exists()


def _digests(directory: Path) -> dict[str, str]:
    """SHA-256 of every file DVC tracks below ``directory`` (not git's .gitignore)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".gitignore"
    }


def test_push_then_pull_into_an_empty_checkout_restores_the_data_byte_for_byte(
    trained_project: TrainedProject, tmp_path: Path
) -> None:
    project = copy_project(trained_project, tmp_path)
    outputs = {"ingest": "data/ingested", "simulate": "data/simulated", "prepare": "data/prepared"}
    before = {stage: _digests(project / out) for stage, out in outputs.items()}
    assert all(before.values())

    remote = tmp_path / "remote"
    dvc(project, "remote", "add", "-d", "storage", str(remote))
    dvc(project, "push", *outputs)
    assert any(remote.rglob("*")), "nothing was pushed"

    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    dvc(project, "pull", *outputs)

    assert {stage: _digests(project / out) for stage, out in outputs.items()} == before
    assert "up to date" in dvc(project, "status", *outputs)
    assert "in sync" in dvc(project, "status", "--cloud", *outputs)
