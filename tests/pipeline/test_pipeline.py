"""The data stages end to end: real DVC running real Prefect flows on a real Dask cluster,
and their outputs through a DVC remote. Every test here reads the session's one trained
project, which is why they share a module: `make test` sends a module to one worker."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dndx.chain.bundle import ModelBundle
from dndx.chain.inference import infer_waveforms
from dndx.chain.onnx import OnnxModels
from dndx.config import Range, load_params
from dndx.io.dataset import part_paths
from dndx.io.prepared import read_candidates
from dndx.scoring.parity import OUTCOME_FIGURES
from dndx.simulation.generator import simulate_range
from dndx.waveforms import WaveformSet
from flows.pipeline import pipeline
from models.saving import load_model
from tests.conftest import TrainedProject, copy_project, dvc

pytestmark = pytest.mark.pipeline

STAGES = (
    "profile",
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


def _completed_task_runs(names: set[str]) -> set[str]:
    """Those of ``names`` that the session's Prefect API holds a completed task run of."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=sorted(names)))
        )
    return {run.name for run in runs if run.state is not None and run.state.is_completed()}


def _dask_task_prefixes(address: str) -> set[str]:
    """The names of the functions the Dask scheduler at ``address`` has run as tasks."""
    from distributed import Client

    def prefixes(dask_scheduler: Any) -> list[str]:
        return list(dask_scheduler.task_prefixes)

    with Client(address) as client:
        return set(client.run_on_scheduler(prefixes))


def test_dvc_repro_runs_every_stage_then_nothing(trained_project: TrainedProject) -> None:
    project, log = trained_project.path, trained_project.repro_log
    for stage in STAGES:
        assert f"Running stage '{stage}'" in log
    # Each stage ran as a Prefect flow whose chunks and trials ran as Prefect tasks on
    # the Dask cluster.
    assert "Finished in state Completed()" in log
    tasks = {"simulate train chunk 1", "prepare test chunk 0", "encode validation chunk 0"}
    tasks |= {"peak_finder trial-001", "cluster_counter trial-001"}
    assert _completed_task_runs(tasks) == tasks
    functions = {"simulate_chunk", "prepare_chunk", "encode_chunk", "run_trial"}
    assert functions <= _dask_task_prefixes(trained_project.dask_address)

    # data.source simulate: the ingest stage ran and ingested nothing.
    assert "Running stage 'ingest'" in log
    assert json.loads((project / "metrics/ingest.json").read_text()) == {"source": "simulate"}
    assert [p.name for p in (project / "data/ingested").iterdir()] == ["SOURCE"]
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
        # The model kept is the kept trial's, and the scan table says which it is.
        kept_trial = json.loads((project / f"data/models/{model}/selection.json").read_text())
        trial_dir = project / f"data/scans/{model}/trial-{kept_trial['trial']:03d}"
        kept_model = (project / f"data/models/{model}/model.keras").read_bytes()
        assert kept_model == (trial_dir / "model.keras").read_bytes()
        scan = (project / f"reports/scan_{model}.md").read_text()
        assert f"Kept: trial {kept_trial['trial']} (" in scan
        n_trials = params[f"train_{model}"]["scan"]["n_trials"]
        assert sorted(
            line.split(" | ")[0] for line in scan.splitlines() if " | finished | " in line
        ) == [f"| {n}" for n in range(n_trials)]
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
    # Each trial's figure is what its model keeps of the true counts' separation.
    assert len(trials) == training["scan"]["n_trials"]
    for trial in trials:
        model = project / f"data/scans/cluster_counter/trial-{int(trial.data.tags['trial']):03d}"
        assert trial.data.metrics["val_separation_ratio"] == pytest.approx(
            _separation_ratio(model / "model.keras", project, training), rel=1e-3
        )
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
    # The report's headline row holds the evaluation's figures of the chain.
    report = (project / "reports/evaluation.md").read_text()
    (headline,) = [line for line in report.splitlines() if line.startswith("| LSTM → CNN | ")]
    peaks = [f"{evaluation[f'peak.lstm.{k}']:.3f}" for k in ("efficiency", "purity")]
    counts = [f"{evaluation[f'counting.cnn.{k}']:.3f}" for k in ("rms_over_sqrt_n",)]
    assert [cell.strip() for cell in headline.split("|")][3:5] == peaks
    assert [cell.strip() for cell in headline.split("|")][8] == counts[0]
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
    _check_int8_gate(project, registry, params)
    demo = json.loads((project / "metrics/demo.json").read_text())
    assert demo["n_waveforms"] == params["register"]["demo_waveforms"]
    results = pd.read_parquet(project / "data/demo/results.parquet")
    assert len(results) == demo["n_waveforms"]
    summary = (project / "data/demo/results.summary.md").read_text()
    for status, count in results["status"].value_counts().items():
        assert f"| {status} | {count} |" in summary
    assert "train_peak_finder" in dvc(project, "metrics", "show")

    again = dvc(project, "repro")
    assert "Running stage" not in again
    assert "didn't change, skipping" in again
    assert not _stale(project)


def _separation_ratio(model_path: Path, project: Path, training: dict) -> float:
    """S / S_Poisson of the separation pair averaged over the separation momenta, of
    the counter at ``model_path`` on the encoded validation tracks: per track, dN/dx is
    the counts over the path length; S = |mean_a - mean_b| / ((sigma_a + sigma_b) / 2)."""
    model = load_model(model_path)
    with np.load(project / "data/counter_inputs/tracks_validation/encoded.npz") as data:
        cells = pd.DataFrame(
            {k: data[k] for k in ("track_id", "particle", "momentum_gev", "path_length_cm")}
        )
        cells["truth"] = data["n_clusters"]
        output = model.predict(data["x"], verbose=0)
    cells["cnn"] = (output[0] if isinstance(output, list) else output)[:, 0]
    tracks = cells.groupby(["momentum_gev", "particle", "track_id"]).sum(numeric_only=True)
    dndx = tracks[["cnn", "truth"]].div(tracks["path_length_cm"], axis=0)
    a, b = training["separation_pair"]

    def power(momentum: float, counts: str) -> float:
        first, second = dndx.loc[(momentum, a), counts], dndx.loc[(momentum, b), counts]
        return abs(first.mean() - second.mean()) / ((first.std() + second.std()) / 2)

    momenta = training["separation_momenta_gev"]
    return float(np.mean([power(p, "cnn") / power(p, "truth") for p in momenta]))


def _check_int8_gate(project: Path, registry: dict, params: dict) -> None:
    """register.json's int8 entry: the gate's differences are the int8 pair's test
    figures less the float pair's, it passed if and only if each is within the
    tolerance, and only then is the pair kept in the bundle and registered as fast."""
    int8 = registry["int8"]
    tolerance = params["register"]["quantized_tolerance"]
    assert int8["tolerance"] == tolerance
    for figure in OUTCOME_FIGURES:
        assert int8["differences"][figure] == pytest.approx(
            int8["scores"][figure] - registry["test"][figure]
        )
    assert int8["passed"] == all(abs(d) <= tolerance for d in int8["differences"].values())
    assert (project / "data/bundle/int8").is_dir() == int8["passed"]
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for name in ("peak-finder", "cluster-counter"):
        if int8["passed"]:
            assert int8["registered"]["alias"] == "fast"  # the float pair is champion
            version = client.get_model_version_by_alias(name, "fast")
            assert str(version.version) == int8["registered"]["versions"][name]
            assert version.tags["int8_gate"] == int8["reason"]
        else:
            assert int8["registered"] == {"alias": None, "versions": {}}
            with pytest.raises(MlflowException):
                client.get_model_version_by_alias(name, "fast")


def test_the_trained_counts_agree_at_1_2_and_2_0_gs_s(trained_project: TrainedProject) -> None:
    """What tests/pipeline/test_trained.py asserts of the pair `make run` trains, on the
    tiny pipeline's: the same events recorded at 1.2 and 2.0 GS/s give counts that agree.

    The tolerance has two parts. These events are a sample: three standard errors of
    their paired differences' mean. And a tiny counter learns each rate's mean count
    from only m = n_train / n_rates waveforms, so its counts at two rates carry
    offsets of the size of its residuals' spread over sqrt(m) at each (in quadrature,
    the fit error): allowed twice, not thrice, since it is not a fluctuation of this
    sample but a property of the one trained counter, the same at every rerun. That is
    tight enough that a plausible bug breaks it, which the test shows: the 2.0 GS/s
    events read as if at the models' own rate (the resampling skipped) fall outside."""
    project = trained_project.path
    models = OnnxModels.load(project / "data/bundle")
    simulate = load_params(project / "params.yaml").simulate
    n_events = 300

    def events(rate: float) -> WaveformSet:
        # Same seed: the same tracks, clusters and electrons, recorded at another rate.
        cfg = dataclasses.replace(
            simulate, seed=11, n_test=n_events, block_size=n_events, chunk_size=n_events,
            sampling_rates_ghz=(rate,),
        )  # fmt: skip
        return simulate_range(cfg, "test", 0, n_events)

    def count(data: WaveformSet, rate: float) -> np.ndarray:
        return infer_waveforms(data.adc, rate, "auto", models)["counter_output"].to_numpy()

    data = {rate: events(rate) for rate in (1.2, 2.0)}
    truth = {rate: data[rate].info["n_clusters"].to_numpy() for rate in data}
    counts = {rate: count(data[rate], rate) for rate in data}
    np.testing.assert_array_equal(truth[1.2], truth[2.0])
    difference = counts[1.2] - counts[2.0]
    paired = difference.std(ddof=1) / np.sqrt(n_events)
    n_per_rate = simulate.n_train / len(simulate.sampling_rates_ghz)
    fit = np.sqrt(sum((counts[r] - truth[r]).var(ddof=1) for r in counts) / n_per_rate)
    tolerance = 3 * paired + 2 * fit
    assert abs(difference.mean()) < tolerance, (difference.mean(), paired, fit)
    model_rate = ModelBundle.load(project / "data/bundle").candidates.model_sampling_rate_ghz
    misread = counts[1.2] - count(data[2.0], model_rate)
    assert abs(misread.mean()) > tolerance, (misread.mean(), tolerance)
    # And it counts: its counts follow the true ones beyond the 3/sqrt(n) that the
    # correlation of n unrelated pairs stays within.
    assert np.corrcoef(counts[1.2], truth[1.2])[0, 1] > 3 / np.sqrt(n_events)


def test_the_registered_pair_carries_its_training_domain(trained_project: TrainedProject) -> None:
    from dndx.domain.profile import TrainingDomain

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


def test_the_target_is_profiled_fitted_trained_on_and_recorded(
    trained_project: TrainedProject,
) -> None:
    from dndx.domain.fit import TARGET_FILE, TargetFit
    from dndx.io.dataset import read_waveform_set
    from dndx.paths import TARGET_FIT_PATH

    project = trained_project.path
    fit = TargetFit.load(project / TARGET_FIT_PATH)
    assert fit.files == ("examples/target/run0.h5", "examples/target/run1.h5")
    assert fit.target is not None and fit.target.sampling_rates_ghz == (1.5,)
    # The fit chose among the tiny candidates, no worse than the simulate section.
    candidates = load_params(project / "params.yaml").target.fit.candidates
    for name, (low, high) in fit.setting.items():
        assert Range(low, high) in candidates[name]
    assert fit.distance is not None and fit.start_distance is not None
    assert fit.distance <= fit.start_distance
    assert "Target: profile and front-end fit" in (project / "data/target/fit.md").read_text()
    # simulate trained on the fitted front end.
    low, high = fit.setting["fall_time_ns"]
    for path in part_paths(project / "data/simulated/train"):
        fall = read_waveform_set(path).info["fall_time_ns"]
        assert fall.between(low, high).all()
    # The bundle and the registered versions carry the target's files, fit and checks.
    assert TargetFit.load(project / "data/bundle" / TARGET_FILE) == fit
    checks = json.loads((project / "metrics/register.json").read_text())["target"]["checks"]
    assert checks["n_counted"] > 0 and checks["count_ratio_to_d2"] > 0
    assert 0 < checks["peak_acceptance"] <= 1
    assert checks["verdict"] in ("in", "outside")
    assert "## Target (2 files, no labels)" in (project / "reports/registry.md").read_text()
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for name in ("peak-finder", "cluster-counter"):
        tags = client.get_model_version_by_alias(name, "champion").tags
        assert tags["target.files"] == "examples/target/run0.h5, examples/target/run1.h5"
        assert tags["target.fit.fall_time_ns"] == f"[{low:g}, {high:g}]"
        assert tags["target.verdict"] == checks["verdict"]


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
    shared_dask: str,
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
    outputs = {
        "ingest": "data/ingested",
        "profile": "data/target",
        "simulate": "data/simulated",
        "prepare": "data/prepared",
    }
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
