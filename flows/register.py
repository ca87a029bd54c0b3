"""DVC stage ``register``: export the chosen pair to ONNX, prove the export against
Keras, register both models in MLflow and promote them with aliases.

The new pair and the current champion pair are both run through the inference
path (ONNX Runtime) on the same validation tracks and test waveforms; the new
pair becomes ``champion`` if it keeps at least as much of the Poisson
separation power (where both have that figure; else it must be at least as good
on every compared test figure), and ``challenger`` otherwise
(:func:`dndx.scoring.promotion.decide`). The int8 pair made from it is registered
beside it, under an alias of its own, only if it passes its gate on the same
test waveforms.
``reports/registry.md`` says which, and why. The bundle carries the training
waveforms' domain profile (``domain.json``, :mod:`dndx.domain.profile`), and the
registered versions its figures as ``domain.*`` tags, so that ``dndx infer`` can
say when its inputs lie outside the training domain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dndx.chain.bundle import COUNTER_FILE, PEAK_FINDER_FILE, D2Settings, ModelBundle
from dndx.chain.encoding import samples_per_bin
from dndx.config import PARAMS_PATH, Params, load_params
from dndx.domain.checks import checks_table, target_tags
from dndx.domain.fit import TARGET_FILE, TargetFit
from dndx.domain.profile import TrainingDomain, headline
from dndx.domain.target import target_sources
from dndx.errors import InputError
from dndx.io.prepared import read_candidates
from dndx.paths import (
    BUNDLE_DIR,
    COUNTER_DIR,
    COUNTER_INPUTS_DIR,
    MODEL_FILE,
    PEAK_FINDER_DIR,
    PREPARED_DIR,
    REGISTRY_CACHE_DIR,
    REGISTRY_REPORT,
    SELECTION_FILE,
    SIMULATED_DIR,
    TARGET_FIT_PATH,
    TRACKS_DIR,
    metrics_file,
)
from dndx.reporting.tables import MISSING, markdown_table
from dndx.scoring.bundle_scores import (
    RegistryInputs,
    load_test_set,
    load_validation_tracks,
    score_bundle,
    score_separation,
)
from dndx.scoring.quality_gate import missed_thresholds
from dndx.storage import atomic_directory, atomic_file
from flows.runtime import ensure_prefect_api, project_root
from tasks.domain import check_target, profile_training
from tasks.quantization import quantize_if_outcomes_hold, register_quantized_pair
from tasks.registry import (
    COUNTER_NAME,
    PEAK_FINDER_NAME,
    champion_bundle,
    promote,
    register_bundle,
    withhold,
)
from tasks.tracking import configure_mlflow, lineage_tags

__all__ = ["main", "register"]

#: The columns of the report's tables: the new pair beside the champion before it.
FIGURE_HEADER = ["figure", "new pair", "champion before"]
#: The pair's Keras models as the scans chose them, by registered name.
KERAS_FILES = {
    PEAK_FINDER_NAME: PEAK_FINDER_DIR / MODEL_FILE,
    COUNTER_NAME: COUNTER_DIR / MODEL_FILE,
}


def new_bundle(params: Params, root: Path) -> ModelBundle:
    """The bundle of the models the scans chose: the ``prepare`` section's
    candidate step, the chosen working point, the evaluation's D2 tuning (None
    without an evaluation: the bundle then serves the models only, not
    ``--method d2``) and the pair's lineage."""
    finder_selection = json.loads((root / PEAK_FINDER_DIR / SELECTION_FILE).read_text())
    counter_selection = json.loads((root / COUNTER_DIR / SELECTION_FILE).read_text())
    evaluation = root / metrics_file("evaluate")
    d2 = (
        D2Settings.from_metrics(json.loads(evaluation.read_text()), evaluation)
        if evaluation.is_file()
        else None
    )
    candidates = params.prepare.candidates
    tags = lineage_tags(
        root,
        params,
        ["data", "simulate", "prepare", "counter_input"],
        [str(PREPARED_DIR), str(SIMULATED_DIR)],
    )
    # data/simulated holds the ingested files' parts when the source is files.
    tags["data_source"] = (
        f"files:{params.data.root}" if params.data.source == "files" else "simulate"
    )
    n_bins = params.counter_input.n_bins
    return ModelBundle(
        candidates=candidates,
        score_threshold=float(finder_selection["score_threshold"]),
        n_bins=n_bins,
        samples_per_bin=samples_per_bin(
            params.simulate.window_ns, candidates.model_sampling_rate_ghz, n_bins
        ),
        provenance={
            **tags,
            "peak_finder_scan_run_id": finder_selection["scan_run_id"],
            "peak_finder_trial_run_id": finder_selection["trial_run_id"],
            "cluster_counter_scan_run_id": counter_selection["scan_run_id"],
            "cluster_counter_trial_run_id": counter_selection["trial_run_id"],
        },
        d2=d2,
    )


@task(task_run_name="export and check parity", cache_policy=NO_CACHE)
def export_pair(
    params: Params,
    root: Path,
    test: RegistryInputs,
    domain: TrainingDomain,
    target: TargetFit | None,
) -> dict[str, float]:
    """Write the ONNX bundle, with the training ``domain``, and return the largest
    ONNX-vs-Keras differences."""
    from models.export import export_onnx, onnx_parity
    from models.saving import load_model

    cfg = params.register
    bundle = new_bundle(params, root)
    described = bundle.to_json()
    # The graphs carry the bundle's settings, flat as bundles of earlier releases held them.
    metadata = {
        key: str(value)
        for key, value in {**described.pop("candidates"), **described}.items()
        if key != "provenance"
    }
    finder = load_model(root / KERAS_FILES[PEAK_FINDER_NAME])
    counter = load_model(root / KERAS_FILES[COUNTER_NAME])
    with atomic_directory(root / BUNDLE_DIR) as tmp:
        export_onnx(finder, tmp / PEAK_FINDER_FILE, opset=cfg.opset, metadata=metadata)
        export_onnx(counter, tmp / COUNTER_FILE, opset=cfg.opset, metadata=metadata)
        bundle.save(tmp)
        domain.save(tmp)
        if target is not None:
            target.save(tmp / TARGET_FILE)
        # The gate: a bundle that disagrees with Keras never reaches the registry.
        return {
            PEAK_FINDER_NAME: onnx_parity(
                finder, tmp / PEAK_FINDER_FILE, test.windows[: cfg.parity_windows],
                atol=cfg.parity_atol,
            ),
            COUNTER_NAME: onnx_parity(
                counter, tmp / COUNTER_FILE, test.encoded[: cfg.parity_waveforms],
                atol=cfg.parity_atol,
            ),
        }  # fmt: skip


def _scores(
    params: Params, root: Path, test: RegistryInputs, champion_dir: Path | None
) -> dict[str, Any]:
    """The new pair's and the champion's (None without one) test figures and
    separation power, both through ONNX Runtime, and the int8 pair's outcome."""
    bundle_dir = root / BUNDLE_DIR
    new = score_bundle(bundle_dir, test.waveforms, test.truth, params)
    _, validation_windows = read_candidates(root / PREPARED_DIR / "validation")
    quantized = quantize_if_outcomes_hold(
        bundle_dir, validation_windows, test.waveforms, test.truth, new, params
    )
    training = params.train_cluster_counter
    tracks = load_validation_tracks(root / TRACKS_DIR / "validation", training)
    return {
        "test": new,
        "champion_before": (
            score_bundle(champion_dir, test.waveforms, test.truth, params) if champion_dir else None
        ),
        "separation": score_separation(bundle_dir, tracks, training),
        "champion_separation": (
            score_separation(champion_dir, tracks, training) if champion_dir else None
        ),
        "int8": quantized,
    }


@flow(name="register", log_prints=True)
def register(params: Params, root: Path) -> dict[str, Any]:
    """Export, check, score, register and promote; returns the summary."""
    logger = get_run_logger()
    configure_mlflow(params.mlflow, root)
    test = load_test_set(
        root / SIMULATED_DIR / "test",
        root / PREPARED_DIR / "test",
        root / COUNTER_INPUTS_DIR / "test",
    )
    domain = profile_training(
        root / SIMULATED_DIR / "train",
        params.domain,
        params.prepare.candidates.candidate_threshold_sigma,
    )
    target = TargetFit.load(root / TARGET_FIT_PATH) if params.target.files else None
    parity = export_pair(params, root, test, domain, target)
    logger.info("ONNX parity (max |ONNX - Keras|): %s", parity)
    scores = _scores(params, root, test, champion_bundle(root / REGISTRY_CACHE_DIR))
    quantized, champion = scores["int8"], scores["champion_before"]
    logger.info(
        "int8 pair %s: %s", "kept" if quantized["passed"] else "refused", quantized["reason"]
    )

    bundle_dir = root / BUNDLE_DIR
    checks = (
        check_target(
            bundle_dir,
            target_sources(params.target, root),
            target,
            params.domain.max_waveforms,
        )
        if target is not None
        else None
    )
    tags = {
        **ModelBundle.load(bundle_dir).provenance,
        **(target_tags(target, checks) if target is not None and checks is not None else {}),
        "onnx_opset": str(params.register.opset),
        **{f"onnx_parity.{k}": f"{v:.3g}" for k, v in parity.items()},
        **{f"val_{k}": f"{v:.4g}" for k, v in scores["separation"].items()},
        **{f"domain.{k}": f"{v:.4g}" for k, v in headline(domain.profile).items()},
    }
    keras_files = {name: root / path for name, path in KERAS_FILES.items()}
    examples = {PEAK_FINDER_NAME: test.windows[:5], COUNTER_NAME: test.encoded[:2]}
    versions = register_bundle(bundle_dir, keras_files, examples, scores["test"], tags)
    decision = _promote_or_withhold(
        params,
        root,
        versions,
        {**scores["separation"], **scores["test"]},
        None if champion is None else {**(scores["champion_separation"] or {}), **champion},
    )
    logger.info("registered %s as %s: %s", versions, decision["alias"], decision["reason"])
    fast = register_quantized_pair(quantized, bundle_dir, keras_files, examples, tags, decision)
    logger.info("int8 pair registered: %s", fast)
    summary = _summary(params, scores, parity, versions, decision, fast)
    summary["target"] = None if target is None else {"files": list(target.files), "checks": checks}
    _write_summary(root, summary)
    return summary


def _summary(
    params: Params,
    scores: dict[str, Any],
    parity: dict[str, float],
    versions: dict[str, str],
    decision: dict[str, Any],
    fast: dict[str, Any],
) -> dict[str, Any]:
    """What ``metrics/register.json`` holds: the registered versions and their
    alias, why, both pairs' figures, the ONNX parity and the int8 pair's fate."""
    training = params.train_cluster_counter
    return {
        "versions": versions,
        "alias": decision["alias"],
        "reason": decision["reason"],
        "test": scores["test"],
        "champion_before": scores["champion_before"],
        "separation": {
            "pair": list(training.separation_pair),
            "momenta_gev": list(training.separation_momenta_gev),
            "new": scores["separation"],
            "champion_before": scores["champion_separation"],
        },
        "onnx_parity": parity,
        "int8": {**scores["int8"], "registered": fast},
    }


def _write_summary(root: Path, summary: dict[str, Any]) -> None:
    """``metrics/register.json`` and ``reports/registry.md``, atomically."""
    with atomic_file(root / metrics_file("register")) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    with atomic_file(root / REGISTRY_REPORT) as tmp:
        tmp.write_text(_report(summary))


def _promote_or_withhold(
    params: Params,
    root: Path,
    versions: dict[str, str],
    new: dict[str, float],
    champion: dict[str, float] | None,
) -> dict[str, Any]:
    """:func:`tasks.registry.promote`, unless ``quality_gate.require`` is on and the
    evaluate stage found a threshold missed: then no alias (:func:`tasks.registry.withhold`)."""
    if params.quality_gate.require:
        missed = missed_thresholds(
            _evaluate_metrics(root / metrics_file("evaluate")),
            _evaluate_metrics(root / metrics_file("separation")),
        )
        if missed:
            return withhold(versions, missed)
    return promote(versions, new, champion)


def _evaluate_metrics(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise InputError(
            f"{path}: cannot read the evaluate stage's checks, which quality_gate.require "
            f"asks for ({error}); run the evaluate stage first"
        ) from None


def _report(summary: dict[str, Any]) -> str:
    champion = summary["champion_before"]
    rows = [
        [key, f"{value:.4f}", f"{champion[key]:.4f}" if champion else MISSING]
        for key, value in summary["test"].items()
    ]
    versions = ", ".join(f"`{n}` version {v}" for n, v in summary["versions"].items())
    return (
        "# Model registry\n\n"
        f"Registered {versions} as **{summary['alias'] or 'no alias (not promoted)'}**.\n\n"
        f"Why: {summary['reason']}.\n\n"
        + _separation_report(summary["separation"])
        + "Both pairs run through ONNX Runtime on the same test waveforms:\n\n"
        + markdown_table(FIGURE_HEADER, rows)
        + "\n\n"
        f"ONNX parity with Keras (max abs difference): {summary['onnx_parity']}\n\n"
        f"int8 pair ({_int8_outcome(summary['int8'])}): {summary['int8']['reason']}.\n"
        + _target_report(summary["target"])
    )


def _target_report(target: dict[str, Any] | None) -> str:
    """The label-free checks on the target files, as a Markdown section ("" without)."""
    if target is None:
        return ""
    return (
        f"\n## Target ({len(target['files'])} files, no labels)\n\n"
        "The new pair on the target's waveforms, beside the classical chain (D2) with the "
        "bundle's settings, and the target's profile against the pair's training domain "
        "(data/target/fit.md: the fit):\n\n" + "\n".join(checks_table(target["checks"])) + "\n"
    )


def _separation_report(separation: dict[str, Any]) -> str:
    """The figure compared first, of both pairs, as a Markdown paragraph and table."""
    pair = "/".join(separation["pair"])
    momenta = ", ".join(f"{m:g}" for m in separation["momenta_gev"])
    if not separation["new"]:
        return (
            f"Separation power not measured: the validation tracks hold no {pair} at "
            f"{momenta} GeV/c.\n\n"
        )

    def figure(scores: dict[str, float] | None) -> str:
        if not scores:
            return MISSING
        return f"{scores['separation_ratio']:.4f} ± {scores['separation_ratio_error']:.4f}"

    return (
        f"What decides, through ONNX Runtime: S / S_Poisson of {pair} on the validation "
        f"tracks at {momenta} GeV/c, the mean over the momenta; the new pair becomes "
        "champion if it keeps at least the champion's:\n\n"
        + markdown_table(
            FIGURE_HEADER,
            [
                [
                    "separation_ratio",
                    figure(separation["new"]),
                    figure(separation["champion_before"]),
                ]
            ],
        )
        + "\n\n"
    )


def _int8_outcome(int8: dict[str, Any]) -> str:
    """Where the int8 pair went.

    >>> print(_int8_outcome({"passed": True, "registered": {"alias": "fast",
    ...     "versions": {"peak-finder": "4", "cluster-counter": "4"}}}))
    kept in the bundle as int8/, registered as `peak-finder` version 4,
    `cluster-counter` version 4 under **fast**
    >>> _int8_outcome({"passed": False, "registered": {"alias": None, "versions": {}}})
    'not kept, not registered'
    """
    if not int8["passed"]:
        return "not kept, not registered"
    registered = int8["registered"]
    versions = ", ".join(f"`{n}` version {v}" for n, v in registered["versions"].items())
    return f"kept in the bundle as int8/, registered as {versions} under **{registered['alias']}**"


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.register``."""
    params = load_params(params_path)
    ensure_prefect_api()
    register(params, project_root(params_path))


if __name__ == "__main__":
    main()
