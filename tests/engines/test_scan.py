"""Scans through the real Prefect engine, a real Dask cluster and a real MLflow store."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from prefect import flow, task

from dndx.config import Params, ScanConfig, parse_params
from dndx.training.scan import COST_COLUMNS, rank_trials, select_cheapest, trial_choices
from flows.runtime import dask_task_runner
from flows.scan import ScanOutputs, run_scan
from flows.train_peak_finder import train_peak_finder
from tasks.tracking import configure_mlflow
from tasks.training import TrialSpec, run_trial
from tests.conftest import ROOT, tiny_params

# Dask workers cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _params(root: Path) -> Params:
    return parse_params(
        tiny_params(mlflow={"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}),
    )


@pytest.fixture
def workdir(prepared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(prepared_data / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _runs(root: Path) -> tuple[Any, list[Any]]:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dndx")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "scan"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], sorted(children, key=lambda r: int(r.data.tags["trial"]))


def test_two_trial_scan_tracks_every_trial_and_keeps_the_best(
    workdir: Path, prefect_api: str, capfd: pytest.CaptureFixture[str]
) -> None:
    params = _params(workdir)
    params = dataclasses.replace(
        params,
        train_peak_finder=dataclasses.replace(
            params.train_peak_finder, learning_rate_schedule="cosine"
        ),
    )
    runner = dask_task_runner(params.dask)
    best = train_peak_finder.with_options(task_runner=runner)(params, workdir)

    # Each epoch of each trial is reported as it ends, on the console of the
    # process that started the flow (the trials run in Dask worker processes).
    console = capfd.readouterr()
    epoch_lines = re.findall(
        r"peak_finder (trial-\d{3}) epoch (\d+)/2: val_loss [\d.]+, "
        r"val_efficiency_x_purity [\d.]+ \([\d.]+ s\)",
        console.out + console.err,
    )
    trained = pd.read_csv("reports/scan_peak_finder.csv").set_index("trial")["epochs_trained"]
    for number, epochs in trained.items():
        reported = [int(epoch) for name, epoch in epoch_lines if name == f"trial-{number:03d}"]
        assert reported == list(range(1, epochs + 1))

    # The learning rate falls along half a cosine from the model's rate over `epochs`.
    history = pd.read_csv("reports/peak_finder_history.csv")
    start, epochs = params.peak_finder.learning_rate, params.train_peak_finder.epochs
    expected = [start * (1 + math.cos(math.pi * epoch / epochs)) / 2 for epoch in history["epoch"]]
    assert history["learning_rate"].tolist() == pytest.approx(expected, rel=1e-5)

    parent, children = _runs(workdir)
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    for child in children:
        metrics = child.data.metrics
        for name in (
            "val_f1",
            "val_auc",
            "val_efficiency_x_purity",
            "wall_time_s",
            "peak_memory_mb",
        ):
            assert name in metrics
        # A peak finder's cost per waveform is its cost per window times the windows.
        assert metrics["candidates_per_waveform"] > 1.0
        for name in COST_COLUMNS:
            assert metrics[name] > 0.0
        assert child.data.params["lstm_units"] in ("[8]", "[16]")
        # An LSTM of u units on one feature: 4u(u + 2) weights, then the dense head.
        units = int(child.data.params["lstm_units"].strip("[]"))
        assert metrics["n_parameters"] > 4 * units * (units + 2)
        assert {"git_commit", "params_hash", "data_version.data/prepared"} <= set(child.data.tags)
        # Every epoch the trial trained, logged at its step with its own figure, and
        # the trial's val_loss (its best epoch's), logged as a run metric, at step 0.
        number = int(child.data.tags["trial"])
        result = json.loads(
            Path(f"data/scans/peak_finder/trial-{number:03d}/result.json").read_text()
        )
        epochs = [(int(row["epoch"]), row["val_loss"]) for row in result["history"]]
        assert len(epochs) == trained[number]
        assert result["metrics"]["val_loss"] == min(loss for _, loss in epochs)
        logged = sorted(
            (m.step, m.value) for m in client.get_metric_history(child.info.run_id, "val_loss")
        )
        expected = sorted([*epochs, (0, result["metrics"]["val_loss"])])
        assert [step for step, _ in logged] == [step for step, _ in expected]
        assert [loss for _, loss in logged] == pytest.approx([loss for _, loss in expected])
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"model.keras", "curves.png", "roc.png", "scores.png"} <= artifacts
    assert parent.data.tags["best_trial"] == str(best["trial"])

    selection = json.loads(Path("data/models/peak_finder/selection.json").read_text())
    assert 0.0 < selection["score_threshold"] < 1.0
    assert Path("data/models/peak_finder/model.keras").exists()
    table = pd.read_csv("reports/scan_peak_finder.csv")
    assert len(table) == 2 and table["trial"].iloc[0] == best["trial"]
    assert (table[list(COST_COLUMNS)] > 0).all().all()
    # The wider LSTM does more arithmetic per window, on the same windows.
    macs = table.sort_values("n_parameters")["macs_per_waveform"]
    assert macs.iloc[1] > macs.iloc[0]
    markdown = Path("reports/scan_peak_finder.md").read_text()
    assert "| trial | status |" in markdown and "| n_parameters |" in markdown
    assert "| onnx_us_per_waveform | macs_per_waveform |" in markdown
    assert f"Kept: trial {best['trial']} (the best)" in markdown
    assert (
        json.loads(Path("metrics/train_peak_finder.json").read_text())["best_trial"]
        == best["trial"]
    )


@task
def flaky_trial(kind: str, spec: TrialSpec, *args: Any) -> dict[str, Any]:
    """A trial that raises for trial 1 and trains normally otherwise."""
    if spec.number == 1:
        raise RuntimeError("injected failure")
    return run_trial.fn(kind, spec, *args)


def test_a_trial_that_raises_is_recorded_as_failed_and_the_scan_completes(
    workdir: Path, shared_dask: str
) -> None:
    # Optuna chooses the trials here; the failed one is told to the study as failed.
    params = dataclasses.replace(
        _params(workdir),
        train_peak_finder=dataclasses.replace(
            _params(workdir).train_peak_finder,
            scan=ScanConfig(
                strategy="optuna", n_trials=2, seed=7, space={"lstm_units": ((8,), (16,))}
            ),
        ),
    )
    configure_mlflow(params.mlflow, workdir)
    # Absolute paths: the session's Dask workers run elsewhere than in `workdir`.
    out = workdir / "out"
    outputs = ScanOutputs(
        out / "model", out / "trials", out / "metrics.json",
        out / "table.csv", out / "table.md", out / "history.csv",
    )  # fmt: skip

    @flow
    def scan() -> dict[str, Any]:
        return run_scan(
            "peak_finder", params.peak_finder, params.train_peak_finder, workdir / "data/prepared",
            outputs, {"test": "yes"}, n_parallel=2, opset=params.register.opset,
            trial_task=flaky_trial,
        )  # fmt: skip

    best = scan.with_options(task_runner=dask_task_runner(params.dask))()
    assert best["trial"] == 0
    _, children = _runs(workdir)
    assert [c.info.status for c in children] == ["FINISHED", "FAILED"]
    assert "injected failure" in children[1].data.tags["failure_reason"]
    table = pd.read_csv(outputs.table_csv)
    assert table["status"].tolist() == ["finished", "failed"]


def _full_scan_profile(section: str) -> dict[str, Any]:
    """The full-scan profile that ``params.yaml`` gives as comments in ``section``:
    the lines indented as keys of the section after ``#``."""
    lines = (ROOT / "params.yaml").read_text().splitlines()
    start = lines.index(f"{section}:") + 1
    end = next(i for i in range(start, len(lines)) if lines[i] and not lines[i][0].isspace())
    profile = [line[5:] for line in lines[start:end] if line.startswith("  #   ")]
    return dict(yaml.safe_load("\n".join(profile)))


@pytest.mark.parametrize(
    ("section", "trials"),
    [
        (
            "train_peak_finder",
            [
                {"lstm_units": lstm_units, "learning_rate": learning_rate}
                for lstm_units in ((32,), (32, 32))
                for learning_rate in (0.002, 0.004)
            ],
        ),
        ("train_cluster_counter", [{"filters": (32, 64, 64)}, {"filters": (32, 64, 64, 64)}]),
    ],
)
def test_the_full_scan_profile_in_params_yaml_is_valid_and_runs_every_trial(
    section: str, trials: list[dict[str, Any]]
) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    default = getattr(parse_params(params), section)
    params[section].update(_full_scan_profile(section))
    full = getattr(parse_params(params), section)
    assert full.learning_rate_schedule == "constant"
    assert trial_choices(full.scan) == trials
    assert len(trial_choices(default.scan)) < len(trials)


def _scored(
    metric: str, values: list[float], onnx_us: list[float], macs: list[int]
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial": range(len(values)),
            "status": ["finished"] * len(values),
            metric: values,
            "onnx_us_per_waveform": onnx_us,
            "macs_per_waveform": macs,
        }
    )


@pytest.mark.parametrize(
    ("metric", "values", "tolerance", "kept"),
    [
        # Higher is better: within 2 % of 0.90 means at least 0.882.
        ("val_efficiency_x_purity", [0.90, 0.885, 0.88, 0.70], 0.0, 0),
        ("val_efficiency_x_purity", [0.90, 0.885, 0.88, 0.70], 0.02, 1),
        ("val_efficiency_x_purity", [0.90, 0.885, 0.88, 0.70], 0.03, 2),
        # Lower is better: within 10 % of 0.70 means at most 0.77.
        ("val_rms_over_sqrt_n", [0.70, 0.76, 0.78, 0.95], 0.1, 1),
    ],
)
def test_the_cheapest_trial_within_the_tolerance_of_the_best_is_kept(
    metric: str, values: list[float], tolerance: float, kept: int
) -> None:
    # Each worse trial is cheaper than the one before.
    ranked = rank_trials(_scored(metric, values, [40.0, 30.0, 20.0, 10.0], [4, 3, 2, 1]), (metric,))
    assert ranked["trial"].iloc[select_cheapest(ranked, metric, tolerance)] == kept


def test_equal_times_are_told_apart_by_multiply_adds_and_a_failed_trial_is_never_kept() -> None:
    metric = "val_f1"
    table = _scored(metric, [0.90, 0.90, 0.89, 0.90], [5.0, 5.0, 5.0, 1.0], [30, 20, 25, 1])
    table.loc[3, "status"] = "failed"
    ranked = rank_trials(table, (metric,))
    assert ranked["trial"].iloc[select_cheapest(ranked, metric, 0.5)] == 1
