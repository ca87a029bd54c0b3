"""The model registry (MLflow): register a chosen pair of models, promote it with
aliases, and fetch a registered pair back for inference.

The two registered models are ``peak-finder`` and ``cluster-counter``. Each
version carries its ONNX graph (with signature and input example) and, as
run artifacts, the Keras originals and the whole ONNX bundle (both graphs,
``bundle.json`` and the training domain's ``domain.json``), plus tags linking it
to its scan run, data version, git commit and parameters. Promotion uses the
aliases ``champion`` and ``challenger`` as :func:`dndx.scoring.promotion.decide`
chooses them; a pair is promoted together, because the counter was trained on its
own peak finder's output.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from dndx.chain.bundle import BUNDLE_FILE, COUNTER_FILE, PEAK_FINDER_FILE, ModelBundle
from dndx.config import PARAMS_PATH, PROJECT_ROOT, MlflowConfig, load_params
from dndx.domain.profile import DOMAIN_FILE, TrainingDomain
from dndx.errors import InputError
from dndx.scoring.promotion import CHAMPION, decide
from tasks.tracking import set_tracking_uri, tracking_uri

__all__ = [
    "COUNTER_NAME",
    "PEAK_FINDER_NAME",
    "champion_bundle",
    "fetch_bundle",
    "promote",
    "register_bundle",
    "registry_uri",
    "withhold",
]

PEAK_FINDER_NAME = "peak-finder"
COUNTER_NAME = "cluster-counter"
BUNDLE_ARTIFACTS = "bundle"


def register_bundle(
    bundle_dir: Path,
    keras_files: dict[str, Path],
    examples: dict[str, np.ndarray],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> dict[str, str]:
    """Register both models from one run and return the new version of each.

    Each registered version is the ONNX graph (MLflow's ONNX flavour, with
    signature and input example); the run also holds the Keras originals and
    the whole bundle that inference fetches.
    """
    import onnx
    import onnxruntime

    files = {PEAK_FINDER_NAME: PEAK_FINDER_FILE, COUNTER_NAME: COUNTER_FILE}
    client = MlflowClient()
    versions = {}
    with mlflow.start_run(run_name="register") as run:
        mlflow.set_tags({**tags, "kind": "register"})
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_artifacts(str(bundle_dir), BUNDLE_ARTIFACTS)
        for name, onnx_file in files.items():
            mlflow.log_artifact(str(keras_files[name]), f"keras/{name}")
            session = onnxruntime.InferenceSession(
                str(bundle_dir / onnx_file), providers=["CPUExecutionProvider"]
            )
            example = examples[name]
            output = session.run(None, {session.get_inputs()[0].name: example})[0]
            info = mlflow.onnx.log_model(
                onnx.load(bundle_dir / onnx_file),
                name=name,
                signature=infer_signature(example, output),
                input_example=example,
                registered_model_name=name,
                # What MLflow would infer for an ONNX graph, pinned to the versions
                # installed, without the subprocess it infers them in (2 s a model).
                pip_requirements=mlflow.onnx.get_default_pip_requirements(),
            )
            version = str(info.registered_model_version)
            for key, value in {**tags, "register_run_id": run.info.run_id}.items():
                client.set_model_version_tag(name, version, key, value)
            for key, value in metrics.items():
                client.set_model_version_tag(name, version, f"test_{key}", f"{value:.6g}")
            versions[name] = version
    return versions


def _champion_version(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def promote(
    versions: dict[str, str], new: dict[str, float], champion: dict[str, float] | None
) -> dict[str, Any]:
    """Give the new pair the alias :func:`decide` chooses against the current
    champion pair's figures; says why."""
    alias, reason = decide(new, champion)
    client = MlflowClient()
    for name, version in versions.items():
        client.set_registered_model_alias(name, alias, version)
        client.set_model_version_tag(name, version, "promotion", f"{alias}: {reason}")
    return {"alias": alias, "reason": reason, "versions": versions}


def withhold(versions: dict[str, str], missed: list[str]) -> dict[str, Any]:
    """Leave the new pair without an alias, as ``quality_gate.require`` asks of a pair
    that ``missed`` thresholds (:func:`dndx.scoring.promotion.missed_thresholds`);
    its versions' ``promotion`` tag says which."""
    reason = "not promoted: quality_gate.require is on and it missed " + "; ".join(missed)
    client = MlflowClient()
    for name, version in versions.items():
        client.set_model_version_tag(name, version, "promotion", reason)
    return {"alias": None, "reason": reason, "versions": versions}


def champion_bundle(cache_dir: Path) -> Path | None:
    """The current champion pair's bundle, fetched from the registry MLflow is
    pointed at, or None if there is none."""
    client = MlflowClient()
    if any(_champion_version(client, n) is None for n in (PEAK_FINDER_NAME, COUNTER_NAME)):
        return None
    return fetch_bundle(
        [f"models:/{PEAK_FINDER_NAME}@{CHAMPION}", f"models:/{COUNTER_NAME}@{CHAMPION}"],
        cache_dir,
        mlflow.get_tracking_uri(),
    )


def _parse(uri: str) -> tuple[str, str]:
    """``models:/name@alias`` or ``models:/name/version`` into (name, alias-or-version)."""
    body = uri.removeprefix("models:/")
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, f"@{alias}"
    name, _, version = body.partition("/")
    return name, version


_HOW_TO_NAME = (
    "name the registry with --tracking-uri or MLFLOW_TRACKING_URI (e.g. "
    "sqlite:////path/to/dndx/mlflow.db or http://mlflow:5000), or pass a model bundle "
    "directory with --model-uri"
)


@functools.cache
def _project_mlflow() -> MlflowConfig | None:
    """The project's ``mlflow`` section, read once; None outside a checkout."""
    return load_params(PARAMS_PATH).mlflow if PARAMS_PATH.is_file() else None


def registry_uri(explicit: str | None = None) -> str:
    """The tracking URI of the model registry: ``explicit``, else
    ``MLFLOW_TRACKING_URI``, else the project's (a relative SQLite path taken
    from :data:`PROJECT_ROOT`).

    Raises:
        InputError: none of them names a registry, or a SQLite store that does
            not exist (opening it would create an empty one).
    """
    cfg = None if explicit else _project_mlflow()
    if explicit:
        uri = explicit
    elif cfg is not None:
        uri = tracking_uri(cfg, PROJECT_ROOT)
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        uri = os.environ["MLFLOW_TRACKING_URI"]
    else:
        raise InputError(f"no model registry: this is no dndx checkout; {_HOW_TO_NAME}")
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///"))
        if not store.is_file():
            raise InputError(
                f"no model registry at {uri}: {store} does not exist (run `make run` to "
                f"train and register models); {_HOW_TO_NAME}"
            )
    return uri


def fetch_bundle(model_uris: list[str], cache_dir: Path, registry: str | None = None) -> Path:
    """Download the ONNX bundle of the registered models ``model_uris`` into
    ``cache_dir`` and return the bundle directory.

    Args:
        model_uris: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.
        cache_dir: where fetched bundles are kept.
        registry: the tracking URI (default: :func:`registry_uri`).

    Raises:
        InputError: no registry found; a name, alias or version that the
            registry does not hold.
    """
    set_tracking_uri(registry_uri(registry))
    client = MlflowClient()
    runs: dict[str, str] = {}
    for uri in model_uris:
        name, which = _parse(uri)
        try:
            if which.startswith("@"):
                version = client.get_model_version_by_alias(name, which[1:])
            else:
                version = client.get_model_version(name, which)
        except MlflowException as error:
            raise InputError(
                f"{uri}: not in the model registry at {mlflow.get_tracking_uri()} "
                f"({error.message.splitlines()[0]}); run `make run` or `dndx run` first"
            ) from None
        runs[name] = str(version.run_id)
    finder_run = runs.get(PEAK_FINDER_NAME)
    counter_run = runs.get(COUNTER_NAME)
    if finder_run is None or counter_run is None:
        raise InputError(
            f"models {model_uris}: name one {PEAK_FINDER_NAME} and one {COUNTER_NAME} model"
        )
    target = cache_dir / f"{finder_run}-{counter_run}"
    if (target / BUNDLE_FILE).exists():
        return target
    staging = cache_dir / f".{target.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for run_id, files in (
        (finder_run, (PEAK_FINDER_FILE, BUNDLE_FILE)),
        (counter_run, (COUNTER_FILE,)),
    ):
        downloaded = Path(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=BUNDLE_ARTIFACTS)
        )
        for file in files:
            shutil.copy(downloaded / file, staging / file)
        # Pairs registered before the training domain was stored have none.
        if run_id == finder_run and (downloaded / DOMAIN_FILE).is_file():
            shutil.copy(downloaded / DOMAIN_FILE, staging / DOMAIN_FILE)
    ModelBundle.load(staging)
    TrainingDomain.load(staging)
    staging.rename(target)
    return target
