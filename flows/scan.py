"""A hyperparameter scan inside a flow: trials on Dask, tracking in MLflow, a winner.

Trials run as Prefect tasks on the flow's Dask task runner. As each finishes,
this process logs it as an MLflow run nested under the scan's run; at the
end the trials are ranked, one is chosen (the best, or the cheapest at
inference within ``cost_tolerance`` of the best) and its model is copied out
with the scan table (DVC metrics, CSV and Markdown).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import mlflow
import pandas as pd
from prefect import get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.states import State

from dndx.config import METRIC_GOALS, TrainingConfig
from dndx.paths import MODEL_FILE, MODELS_DIR, REPORTS_DIR, SCANS_DIR, SELECTION_FILE, metrics_file
from dndx.reporting.scan_table import scan_markdown
from dndx.storage import atomic_directory, atomic_file
from dndx.training.scan import rank_trials, select_cheapest, trial_choices
from tasks.tracking import log_trial
from tasks.training import TrialSpec, run_trial

__all__ = ["ScanOutputs", "run_scan"]


@dataclasses.dataclass(frozen=True)
class ScanOutputs:
    """Where a scan writes its results."""

    model_dir: Path  # the chosen model: model.keras + selection.json
    trials_dir: Path  # every trial's files
    metrics: Path  # best trial's metrics (DVC metrics)
    table_csv: Path  # one row per trial (DVC plots)
    table_md: Path  # the same for people
    history_csv: Path  # best trial's per-epoch curves (DVC plots)

    @classmethod
    def of(cls, kind: str, root: Path) -> ScanOutputs:
        """Where the ``train_<kind>`` stage writes, under the project ``root``.

        >>> ScanOutputs.of("peak_finder", Path("/repo")).history_csv
        PosixPath('/repo/reports/peak_finder_history.csv')
        """
        return cls(
            model_dir=root / MODELS_DIR / kind,
            trials_dir=root / SCANS_DIR / kind,
            metrics=root / metrics_file(f"train_{kind}"),
            table_csv=root / REPORTS_DIR / f"scan_{kind}.csv",
            table_md=root / REPORTS_DIR / f"scan_{kind}.md",
            history_csv=root / REPORTS_DIR / f"{kind}_history.csv",
        )


def _row(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "trial": result["trial"],
        "status": result["status"],
        "reason": result.get("reason", ""),
        **{k: v for k, v in result["hyperparameters"].items()},
        **result.get("metrics", {}),
        **result.get("resources", {}),
        "run_id": result.get("run_id", ""),
    }


def _crashed(spec: TrialSpec, state: State[Any], out_dir: Path) -> dict[str, Any]:
    return {
        "trial": spec.number,
        "hyperparameters": spec.hyperparameters,
        "trial_dir": str(out_dir / spec.name),
        "status": "failed",
        "reason": f"task {state.type.value.lower()}: {state.message}",
    }


def run_scan(
    kind: str,
    model_cfg: Any,
    training: TrainingConfig,
    data_dir: Path,
    outputs: ScanOutputs,
    tags: dict[str, str],
    n_parallel: int,
    opset: int,
    trial_task: Any = run_trial,
) -> dict[str, Any]:
    """Run the scan of ``training.scan`` and keep the chosen model; returns its row.

    Each trial's model is exported at ONNX ``opset`` (``register.opset``) to time it.
    """
    logger = get_run_logger()
    scan = training.scan
    with (
        atomic_directory(outputs.trials_dir) as trials_dir,
        mlflow.start_run(run_name=f"scan-{kind}") as parent,
    ):
        mlflow.set_tags({**tags, "kind": "scan", "model": kind})
        mlflow.log_params(
            {"strategy": scan.strategy, "n_trials": scan.n_trials, "space": json.dumps(scan.space)}
        )

        def submit(spec: TrialSpec) -> PrefectFuture[Any]:
            return trial_task.submit(kind, spec, model_cfg, training, data_dir, trials_dir, opset)

        results = _run_trials(kind, training, Path(trials_dir), tags, n_parallel, submit)
        ranked = rank_trials(pd.DataFrame([_row(r) for r in results]), training.selection)
        if ranked["status"].iloc[0] != "finished":
            raise RuntimeError(
                f"every trial of the {kind} scan failed: see MLflow run {parent.info.run_id}"
            )
        best = ranked.iloc[
            select_cheapest(ranked, training.selection[0], training.cost_tolerance)
        ].to_dict()
        _write_tables(kind, training, ranked, best["trial"], outputs)
        best_result = next(r for r in results if r["trial"] == best["trial"])
        mlflow.log_metrics({f"best_{k}": float(v) for k, v in best_result["metrics"].items()})
        mlflow.set_tag("best_trial", str(best["trial"]))
        mlflow.set_tag("best_run_id", best_result["run_id"])
        _keep_best(
            best_result, Path(trials_dir), outputs, parent.info.run_id, training.cost_tolerance
        )
    logger.info("%s scan: kept trial %d of %d", kind, best["trial"], len(results))
    return best


def _run_trials(
    kind: str,
    training: TrainingConfig,
    trials_dir: Path,
    tags: dict[str, str],
    n_parallel: int,
    submit: Callable[[TrialSpec], PrefectFuture[Any]],
) -> list[dict[str, Any]]:
    """Every trial of the scan, each logged to MLflow as it finishes, in that order."""
    logger = get_run_logger()
    fixed = {
        "model": kind,
        **{f"training.{k}": v for k, v in dataclasses.asdict(training).items() if k != "scan"},
        "scan.strategy": training.scan.strategy,
    }
    results: list[dict[str, Any]] = []

    def collect(spec: TrialSpec, future: PrefectFuture[Any]) -> dict[str, Any]:
        future.wait()
        state = future.state
        result = future.result() if state.is_completed() else _crashed(spec, state, trials_dir)
        result["run_id"] = log_trial(result, fixed, tags)
        results.append(result)
        metric = training.selection[0]
        logger.info(
            "%s %s: %s (%s = %s) [%d done]",
            kind, spec.name, result["status"], metric,
            result.get("metrics", {}).get(metric, result.get("reason")), len(results),
        )  # fmt: skip
        return result

    if training.scan.strategy == "optuna":
        _run_optuna(training, n_parallel, submit, collect)
    else:
        specs = [TrialSpec(i, c) for i, c in enumerate(trial_choices(training.scan))]
        futures = {submit(spec): spec for spec in specs}
        for future in as_completed(list(futures)):
            collect(futures[future], future)
    return results


def _write_tables(
    kind: str, training: TrainingConfig, ranked: pd.DataFrame, kept: int, outputs: ScanOutputs
) -> None:
    """The ranked trials as CSV and Markdown, also logged to the scan's MLflow run."""
    metric_names = [m for m in METRIC_GOALS if m in ranked.columns]
    with atomic_file(outputs.table_csv) as tmp:
        ranked.to_csv(tmp, index=False)
    with atomic_file(outputs.table_md) as tmp:
        tmp.write_text(
            f"# Scan of the {kind.replace('_', ' ')}\n\nStrategy `{training.scan.strategy}`, "
            f"ranked by {', '.join(training.selection)}; best first. Kept: trial "
            f"{kept} ({_kept_because(training)}).\n\n"
            + scan_markdown(ranked, list(training.scan.space), metric_names)
        )
    mlflow.log_artifact(str(outputs.table_md))
    mlflow.log_artifact(str(outputs.table_csv))


def _kept_because(training: TrainingConfig) -> str:
    if training.cost_tolerance == 0.0:
        return "the best"
    return (
        f"the fastest in ONNX Runtime within {training.cost_tolerance:.2%} of the best "
        f"{training.selection[0]}"
    )


def _keep_best(
    result: dict[str, Any],
    trials_dir: Path,
    outputs: ScanOutputs,
    scan_run: str,
    cost_tolerance: float,
) -> None:
    selection = {
        "trial": result["trial"],
        "hyperparameters": result["hyperparameters"],
        "metrics": result["metrics"],
        "score_threshold": result.get("score_threshold"),
        "cost_tolerance": cost_tolerance,
        "scan_run_id": scan_run,
        "trial_run_id": result["run_id"],
    }
    trial_dir = trials_dir / Path(result["trial_dir"]).name
    with atomic_directory(outputs.model_dir) as tmp:
        shutil.copy(trial_dir / MODEL_FILE, tmp / MODEL_FILE)
        (tmp / SELECTION_FILE).write_text(json.dumps(selection, indent=2, default=str) + "\n")
    with atomic_file(outputs.metrics) as tmp_metrics:
        tmp_metrics.write_text(
            json.dumps({"best_trial": result["trial"], **result["metrics"]}, indent=2) + "\n"
        )
    with atomic_file(outputs.history_csv) as tmp_history:
        pd.DataFrame(result["history"]).to_csv(tmp_history, index=False)


def _run_optuna(
    training: TrainingConfig,
    n_parallel: int,
    submit: Callable[[TrialSpec], PrefectFuture[Any]],
    collect: Callable[[TrialSpec, PrefectFuture[Any]], dict[str, Any]],
) -> None:
    """Ask Optuna for ``n_parallel`` trials at a time until the budget is spent."""
    import optuna

    scan = training.scan
    metric = training.selection[0]
    direction: Literal["maximize", "minimize"] = (
        "maximize" if METRIC_GOALS[metric] == "max" else "minimize"
    )
    study = optuna.create_study(
        direction=direction, sampler=optuna.samplers.TPESampler(seed=scan.seed)
    )
    encoded = {name: [json.dumps(v) for v in values] for name, values in scan.space.items()}
    number = 0
    while number < scan.n_trials:
        batch = []
        for _ in range(min(n_parallel, scan.n_trials - number)):
            trial = study.ask()
            choice = {
                name: _decode(trial.suggest_categorical(name, options))
                for name, options in encoded.items()
            }
            spec = TrialSpec(number, choice)
            batch.append((trial, spec, submit(spec)))
            number += 1
        for trial, spec, future in batch:
            result = collect(spec, future)
            value = result.get("metrics", {}).get(metric)
            if result["status"] == "finished" and value is not None:
                study.tell(trial, float(value))
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _decode(text: str) -> Any:
    value = json.loads(text)
    return tuple(value) if isinstance(value, list) else value
