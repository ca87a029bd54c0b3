"""The model registry: export a chosen pair of models, prove the export, register,
promote with aliases, and fetch a registered pair back for inference.

The two registered models are ``peak-finder`` and ``cluster-counter``. Each
version carries its Keras model (with signature and input example) and, as
run artifacts, the whole ONNX bundle (both graphs, ``bundle.json`` and the training
domain's ``domain.json``), plus
tags linking it to its scan run, data version, git commit and parameters.
Promotion uses the aliases ``champion`` and ``challenger``; a pair is promoted
together, because the counter was trained on its own peak finder's output.

The promotion rule (:func:`decide`), both pairs run through ONNX Runtime:

1. separation decides: S / S_Poisson of ``train_cluster_counter.separation_pair``
   on the validation tracks, averaged over ``separation_momenta_gev``
   (:func:`score_separation`). The new pair becomes ``champion`` if it keeps at
   least as much of the Poisson separation power as the champion, else
   ``challenger``; the test figures of :data:`COMPARED` are reported beside it;
2. without a separation figure for both pairs, the test figures decide: the new
   pair becomes ``champion`` only if it is at least as good on each.

Where the validation tracks hold none of the chosen particles and momenta
(imported files of other ones), step 1 is skipped and says so.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from numpy.typing import NDArray

from dndx.chain.bundle import BUNDLE_FILE, COUNTER_FILE, PEAK_FINDER_FILE, ModelBundle
from dndx.chain.encoding import COUNTER_INPUT_FILE
from dndx.chain.inference import infer_waveforms
from dndx.config import (
    PARAMS_PATH,
    PROJECT_ROOT,
    CounterTrainingConfig,
    MlflowConfig,
    Params,
    load_params,
)
from dndx.domain.profile import DOMAIN_FILE, TrainingDomain
from dndx.errors import InputError
from dndx.io.dataset import part_paths, read_waveform_set
from dndx.io.prepared import read_candidates, read_prepared_waveforms
from dndx.ragged import Ragged
from dndx.scoring.evaluation import evaluate_counting, evaluate_peaks
from dndx.scoring.separation import mean_separation_ratio, selection_rows
from dndx.waveforms import WaveformSet
from tasks.onnx_models import OnnxModels
from tasks.tracking import set_tracking_uri, tracking_uri

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "COUNTER_NAME",
    "PEAK_FINDER_NAME",
    "RegistryInputs",
    "champion_bundle",
    "decide",
    "fetch_bundle",
    "load_test_set",
    "load_validation_tracks",
    "promote",
    "register_bundle",
    "registry_uri",
    "score_bundle",
    "score_separation",
]

PEAK_FINDER_NAME = "peak-finder"
COUNTER_NAME = "cluster-counter"
CHAMPION = "champion"
CHALLENGER = "challenger"
BUNDLE_ARTIFACTS = "bundle"

#: The test figures a pair is compared on after the separation, and which way is better.
COMPARED = {"peak_efficiency_x_purity": "max", "rms_over_sqrt_n": "min"}
#: The figure compared first: S / S_Poisson on the validation tracks (larger is better).
SEPARATION = "separation_ratio"


def _infer(models: OnnxModels, waveforms: WaveformSet) -> pd.DataFrame:
    """:func:`dndx.chain.inference.infer_waveforms` of waveforms of any rates, in their order."""
    rates = waveforms.info["sampling_rate_ghz"].to_numpy()
    results = []
    for rate in np.unique(rates):
        rows = np.flatnonzero(rates == rate)
        found = infer_waveforms(waveforms.adc.take(rows), float(rate), "auto", models)
        results.append(found.assign(row=rows))
    return pd.concat(results).sort_values("row")


def score_bundle(
    bundle_dir: Path, test: WaveformSet, truth: pd.DataFrame, params: Params
) -> dict[str, float]:
    """Run a bundle through the inference path (ONNX Runtime) on the test waveforms
    and score it against the truth: peak efficiency x purity and counting figures."""
    found = _infer(OnnxModels.load(bundle_dir), test)
    rate = params.prepare.model_sampling_rate_ghz
    detected = Ragged.from_rows([np.asarray(t) * rate for t in found["peak_time_ns"]], np.float64)
    expected = Ragged.from_rows(
        [np.asarray(t) * rate for t in truth["expected_time_ns"]], np.float64
    )
    peaks = evaluate_peaks(
        Ragged(np.rint(detected.values), detected.offsets),
        expected,
        np.concatenate([np.asarray(t) for t in truth["expected_drift_time_ns"]]),
        truth["noise_fraction"].to_numpy(),
        sampling_rate_ghz=rate,
        tolerance_samples=params.prepare.match_tolerance_samples,
        drift_time_edges_ns=params.evaluate.drift_time_edges_ns,
        noise_fraction_edges=params.evaluate.noise_fraction_edges,
    )
    counting = evaluate_counting(
        # Every simulated waveform has a truth: scored like the evaluate stage, counted or not.
        found["counter_output"].to_numpy(),
        truth["n_clusters"].to_numpy(),
        truth["particle"].to_numpy(),
        truth["momentum_gev"].to_numpy(),
        params.evaluate.momentum_edges_gev,
    )
    return {
        "peak_efficiency_x_purity": peaks.scores["efficiency_x_purity"],
        "peak_efficiency": peaks.scores["efficiency"],
        "peak_purity": peaks.scores["purity"],
        "rms_over_sqrt_n": counting.scores["rms_over_sqrt_n"],
        "relative_bias": counting.scores["relative_bias"],
        "linearity_slope": counting.scores["linearity_slope"],
    }


def load_validation_tracks(tracks_dir: Path, training: CounterTrainingConfig) -> WaveformSet | None:
    """The cells of the validation tracks in ``tracks_dir`` of the particles and
    momenta the counter is judged on (``separation_pair``, ``separation_momenta_gev``),
    or None where there are none."""
    chosen = []
    for path in part_paths(tracks_dir):
        cells = read_waveform_set(path)
        rows = selection_rows(
            cells.info["particle"],
            cells.info["momentum_gev"],
            training.separation_pair,
            training.separation_momenta_gev,
        )
        if len(rows):
            chosen.append(cells.take(rows))
    return WaveformSet.concatenate(chosen) if chosen else None


def score_separation(
    bundle_dir: Path, tracks: WaveformSet | None, training: CounterTrainingConfig
) -> dict[str, float]:
    """S / S_Poisson of a bundle (ONNX Runtime) on ``tracks``
    (:func:`load_validation_tracks`), averaged over the separation momenta, with its
    uncertainty: ``separation_ratio`` and ``separation_ratio_error``; empty where
    nothing is measured."""
    if tracks is None:
        return {}
    found = _infer(OnnxModels.load(bundle_dir), tracks)
    cells = tracks.info[["track_id", "particle", "momentum_gev", "path_length_cm"]].assign(
        truth=tracks.info["n_clusters"].to_numpy(), counted=found["counter_output"].to_numpy()
    )
    ratio = mean_separation_ratio(
        cells, "counted", "truth", training.separation_pair, training.separation_momenta_gev
    )
    if not np.isfinite(ratio.value):
        return {}
    return {SEPARATION: ratio.value, f"{SEPARATION}_error": ratio.error}


@dataclass(frozen=True, eq=False)
class RegistryInputs:
    """The test split as the register stage uses it, loaded once.

    Attributes:
        waveforms: the raw test waveforms.
        truth: ``(n_waveforms, ...)`` their prepared truth, in the same order.
        windows: ``(n_candidates, window_length, 1)`` float32 peak-finder inputs.
        encoded: ``(n_waveforms, n_bins, N_CHANNELS)`` float32 cluster-counter inputs.
    """

    waveforms: WaveformSet
    truth: pd.DataFrame
    windows: NDArray[np.float32]
    encoded: NDArray[np.float32]


def load_test_set(simulated_dir: Path, prepared_dir: Path, inputs_dir: Path) -> RegistryInputs:
    """The test waveforms, their truth, candidate windows and counter inputs."""
    parts = sorted(simulated_dir.glob("part-*.parquet"))
    if not parts:
        raise InputError(f"{simulated_dir}: no simulated test waveforms")
    test = WaveformSet.concatenate([read_waveform_set(p) for p in parts])
    truth = read_prepared_waveforms(prepared_dir)
    if not np.array_equal(truth["waveform_id"], test.info["waveform_id"]):
        raise InputError(f"{prepared_dir}: prepared waveforms do not match {simulated_dir}")
    _, windows = read_candidates(prepared_dir)
    try:
        with np.load(inputs_dir / COUNTER_INPUT_FILE) as data:
            encoded = data["x"]
    except (OSError, KeyError, ValueError) as error:
        raise InputError(
            f"{inputs_dir / COUNTER_INPUT_FILE}: cannot read the counter inputs 'x' ({error}); "
            "run the encode stage first"
        ) from None
    return RegistryInputs(test, truth, windows[:, :, None], encoded)


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


def decide(new: dict[str, float], champion: dict[str, float] | None) -> tuple[str, str]:
    """The alias of a new pair against the champion pair's figures, and why: the
    separation (:data:`SEPARATION`) where both were measured, else every test
    figure of :data:`COMPARED`; the reason names every figure either way.

    >>> decide({"separation_ratio": 0.80, "peak_efficiency_x_purity": 0.9,
    ...         "rms_over_sqrt_n": 0.5}, {"separation_ratio": 0.82,
    ...         "peak_efficiency_x_purity": 0.8, "rms_over_sqrt_n": 0.7})[0]
    'challenger'
    >>> decide({"separation_ratio": 0.84, "peak_efficiency_x_purity": 0.8,
    ...         "rms_over_sqrt_n": 0.72}, {"separation_ratio": 0.82,
    ...         "peak_efficiency_x_purity": 0.8, "rms_over_sqrt_n": 0.7})[0]
    'champion'
    """
    if champion is None:
        return CHAMPION, "no champion yet: the first registered pair becomes champion"

    def verdict(key: str, ok: bool) -> str:
        return (
            f"{key} {new[key]:.4f} vs champion {champion[key]:.4f} "
            f"({'at least as good' if ok else 'worse'})"
        )

    better_or_equal = {
        key: new[key] >= champion[key] if goal == "max" else new[key] <= champion[key]
        for key, goal in COMPARED.items()
    }
    figures = [verdict(key, ok) for key, ok in better_or_equal.items()]
    if SEPARATION in new and SEPARATION in champion:
        kept = new[SEPARATION] >= champion[SEPARATION]
        return (
            CHAMPION if kept else CHALLENGER,
            "; ".join([verdict(SEPARATION, kept) + ": the separation decides", *figures]),
        )
    not_measured = (
        f"{SEPARATION} not measured on both pairs (no validation tracks of the "
        "chosen particles and momenta): the test figures decide"
    )
    return (
        CHAMPION if all(better_or_equal.values()) else CHALLENGER,
        "; ".join([not_measured, *figures]),
    )


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
