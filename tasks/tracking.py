"""MLflow from the flow's own process: where runs go, lineage tags, one run per trial.

Workers never write to MLflow (an SQLite store locks under several writer
processes): they return metrics and paths, and these functions log them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from dndx.config import MlflowConfig, Params

__all__ = [
    "configure_mlflow",
    "data_version",
    "lineage_tags",
    "log_trial",
    "params_hash",
    "set_tracking_uri",
    "tracking_uri",
]


# mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; what dndx exported
# itself must not later pass for the user's choice.
_exported: dict[str, str] = {}


def tracking_uri(cfg: MlflowConfig, root: Path, environ: Mapping[str, str] | None = None) -> str:
    """The tracking URI: ``MLFLOW_TRACKING_URI`` if the user set it, else the
    configured one, with a relative SQLite path taken from ``root``.

    >>> cfg = MlflowConfig("sqlite:///mlflow.db", "dndx", "mlartifacts")
    >>> tracking_uri(cfg, Path("/repo"), {})
    'sqlite:////repo/mlflow.db'
    >>> tracking_uri(cfg, Path("/repo"), {"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    'http://mlflow:5000'
    """
    environ = os.environ if environ is None else environ
    from_user = environ.get("MLFLOW_TRACKING_URI", "")
    uri = from_user if from_user and from_user != _exported.get("uri") else cfg.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{(root / uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def set_tracking_uri(uri: str) -> None:
    """Point MLflow at ``uri`` (exported to child processes too)."""
    current = os.environ.get("MLFLOW_TRACKING_URI", "")
    users_own = uri == current and current != _exported.get("uri")
    mlflow.set_tracking_uri(uri)
    if not users_own:
        _exported["uri"] = uri


def configure_mlflow(cfg: MlflowConfig, root: Path) -> str:
    """Point MLflow at the configured store and experiment; a relative artifact
    location is taken from ``root``."""
    uri = tracking_uri(cfg, root)
    set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(cfg.experiment) is None:
        location = cfg.artifact_location
        if "://" not in location:
            location = (root / location).resolve().as_uri()
        # Against a tracking server, its own artifact store is the right default.
        is_server = uri.startswith(("http://", "https://"))
        mlflow.create_experiment(cfg.experiment, None if is_server else location)
    mlflow.set_experiment(cfg.experiment)
    return uri


def _git_commit(root: Path) -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def data_version(root: Path, path: str) -> str:
    """The DVC hash of output ``path`` as recorded in ``dvc.lock`` ("unknown" if absent)."""
    lock = root / "dvc.lock"
    if not lock.exists():
        return "unknown"
    for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") == path:
                return str(out.get("md5") or out.get("hash") or "unknown")
    return "unknown"


def params_hash(params: Params, sections: list[str]) -> str:
    """A short hash of the named sections of the parameters.

    >>> from dndx.config import load_params
    >>> params_hash(load_params(), ["prepare"]) == params_hash(load_params(), ["prepare"])
    True
    """
    chosen = {name: dataclasses.asdict(getattr(params, name)) for name in sections}
    text = json.dumps(chosen, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lineage_tags(
    root: Path, params: Params, sections: list[str], data: list[str]
) -> dict[str, str]:
    """Tags that tie a run to its code, its data versions and its parameters."""
    tags = {"git_commit": _git_commit(root), "params_hash": params_hash(params, sections)}
    for path in data:
        tags[f"data_version.{path}"] = data_version(root, path)
    return tags


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    return {
        f"{prefix}{k}": json.dumps(v) if isinstance(v, list | tuple) else str(v)
        for k, v in values.items()
    }


def log_trial(result: dict[str, Any], fixed_params: dict[str, Any], tags: dict[str, str]) -> str:
    """Log one trial as a run nested under the active scan run; returns its run id."""
    name = Path(result["trial_dir"]).name
    with mlflow.start_run(run_name=name, nested=True) as run:
        mlflow.log_params({**_flat("", fixed_params), **_flat("", result["hyperparameters"])})
        mlflow.set_tags({**tags, "trial": str(result["trial"]), "status": result["status"]})
        for row in result.get("history", []):
            epoch = int(row["epoch"])
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
        mlflow.log_metrics(
            {k: float(v) for k, v in result.get("metrics", {}).items() if v is not None}
        )
        mlflow.log_metrics(result.get("resources", {}))
        if Path(result["trial_dir"]).is_dir():
            mlflow.log_artifacts(result["trial_dir"])
        if result["status"] != "finished":
            mlflow.set_tag("failure_reason", result.get("reason", "unknown"))
    if result["status"] != "finished":
        MlflowClient().set_terminated(run.info.run_id, status="FAILED")
    return run.info.run_id
