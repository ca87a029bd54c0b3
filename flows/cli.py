"""The ``dndx`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from dndx.errors import DndxError

if TYPE_CHECKING:  # the commands import what they use when they run: a fast --help
    from dndx.config import DomainConfig, Params
    from dndx.domain.profile import DomainProfile, DomainVerdict, TrainingDomain
    from flows.infer_plan import InferenceRequest

__all__ = ["main"]


def _read(root: Path, stage: str) -> dict[str, Any] | None:
    """The metrics ``stage`` wrote under the project ``root``; None if it has not run."""
    from dndx.paths import metrics_file

    file = root / metrics_file(stage)
    return json.loads(file.read_text()) if file.exists() else None


def _run(args: argparse.Namespace) -> None:
    from dndx.config import PARAMS_PATH, load_params
    from flows.network import check_reachable
    from flows.runtime import DASK_ADDRESS_ENV, dask_config_from_environment, project_root

    root = project_root(args.params or PARAMS_PATH)
    dask = dask_config_from_environment(load_params(args.params or PARAMS_PATH).dask)
    if dask.mode == "address":
        check_reachable(dask.address, f"the Dask scheduler ({DASK_ADDRESS_ENV} or dask.address)")
    from flows.pipeline import main as run_pipeline

    ran = run_pipeline(args.params or PARAMS_PATH, args.stage or None)
    print("\nStages:", ", ".join(f"{s} ({'ran' if r else 'up to date'})" for s, r in ran.items()))
    if balance := _read(root, "prepare"):
        print("\nClass balance of the peak candidates (metrics/prepare.json):")
        for split, counts in balance.items():
            print(
                f"  {split:<10} {counts['n_candidates']:>9} candidates: "
                f"{100 * counts['signal_fraction']:5.1f} % signal, "
                f"{100 * (1 - counts['signal_fraction']):5.1f} % noise"
            )
    if evaluation := _read(root, "evaluate"):
        print("\nTest set, models beside baselines (reports/evaluation.md):")
        for finder, counter, name in (
            ("lstm", "cnn", "LSTM -> CNN"),
            ("lstm", "lstm_clusterization", "LSTM -> time clusterization"),
            ("d2", "d2_clusterization", "D2 -> time clusterization (baseline)"),
            (None, "truth_clusterization", "perfect peaks -> time clust. (reference)"),
        ):
            # Perfect peak finding is the truth itself: efficiency x purity 1.
            gain = evaluation[f"peak.{finder}.efficiency_x_purity"] if finder else 1.0
            print(
                f"  {name:<41} peak eff x purity {gain:.3f}   count bias "
                f"{100 * evaluation[f'counting.{counter}.relative_bias']:+5.1f} %   RMS/sqrt(N) "
                f"{evaluation[f'counting.{counter}.rms_over_sqrt_n']:.3f}   slope "
                f"{evaluation[f'counting.{counter}.linearity_slope']:.3f}"
            )
        print(f"  targets met: {evaluation['targets.n_passed']} of {evaluation['targets.n_total']}")
    if registry := _read(root, "register"):
        versions = ", ".join(f"{n} v{v}" for n, v in registry["versions"].items())
        print(f"\nRegistry (reports/registry.md): {versions} -> {registry['alias']}")
        print(f"  {registry['reason']}")
    if demo := _read(root, "demo"):
        print(
            f"\nChampions on a new file (data/demo/results.summary.md): {demo['n_waveforms']} "
            f"waveforms, count bias {100 * demo['relative_bias']:+.1f} %, "
            f"RMS/sqrt(N) {demo['rms_over_sqrt_n']:.3f}"
        )
    if separation := _read(root, "separation"):
        pair = load_params(args.params or PARAMS_PATH).train_cluster_counter.separation_pair
        _print_separation(separation, pair)


def _print_separation(separation: dict[str, Any], pair: tuple[str, str]) -> None:
    """The separation power of ``pair`` (``train_cluster_counter.separation_pair``)
    per method and momentum."""
    from dndx.reporting.plots import LABELS
    from dndx.reporting.report import pair_name
    from dndx.scoring.track_evaluation import TRACK_METHODS

    a, b = pair
    by_momentum = separation["separation"].get(f"{a}_{b}")
    if not by_momentum:
        return
    # Keys are momentum_key()s: "2_5GeV" is 2.5 GeV/c.
    momenta = {float(key.removesuffix("GeV").replace("_", ".")): key for key in by_momentum}
    print(
        f"\n{pair_name(a, b)} separation power S (S / S_Poisson) on "
        f"{separation['n_tracks']} test tracks (reports/evaluation.md):"
    )
    print(f"  {'p [GeV/c]':<36}" + "".join(f"{m:>14g}" for m in sorted(momenta)))
    for method in TRACK_METHODS:
        cells = []
        for momentum in sorted(momenta):
            figures = by_momentum[momenta[momentum]].get(method) or {}
            s, ratio = figures.get("S"), figures.get("ratio")
            cells.append(f"{s:6.2f} ({ratio:.2f})" if s is not None and ratio is not None else "–")
        print(f"  {LABELS.get(method, method):<36}" + "".join(f"{c:>14}" for c in cells))


def _infer(args: argparse.Namespace) -> None:
    import time

    from flows.infer_plan import InferenceRequest, locked, plan_inference

    steps = {"start-up": time.time() - _process_started()}
    started = time.perf_counter()
    given = vars(args)
    for many in ("inputs", "model_uris"):
        if many in given:
            given[many] = tuple(given[many])
    request = InferenceRequest(
        **{f.name: given[f.name] for f in dataclasses.fields(InferenceRequest) if f.name in given}
    )
    # Every check runs before Prefect and Dask start, so a mistake returns at once.
    plan = plan_inference(request)
    steps["planning"] = time.perf_counter() - started
    _create_parent(plan.out, "--out: ")
    with locked(plan, lambda line: print(f"dndx: {line}", file=sys.stderr)) as plan:
        for left in plan.out.parent.glob(f".{plan.out.name}.*.partial"):
            if left != plan.work_dir or not any(left.glob("*.json")):
                shutil.rmtree(left, ignore_errors=True)
                print(
                    f"dndx: removed {left}, left by an earlier run that stopped "
                    "(its process is gone) with nothing this run can resume",
                    file=sys.stderr,
                )
        print(f"dndx: sampling rate: {plan.settings()['input sampling rate']}", file=sys.stderr)
        for warning in plan.warnings:
            print(f"dndx: warning: {warning}", file=sys.stderr)
        n_done = len(list(plan.work_dir.glob("*.json")))
        resuming = f", resuming {n_done} finished chunks" if n_done else ""
        print(
            f"dndx: {plan.n_entries} waveforms in {len(plan.sources)} file(s) -> {plan.out}"
            f"{resuming}",
            file=sys.stderr,
        )
        try:
            report = _run_infer_flow(plan, args.verbose, steps)
        except KeyboardInterrupt:
            n_done = len(list(plan.work_dir.glob("*.json")))
            kept = (
                f"{n_done} finished chunks are kept in {plan.work_dir}"
                if n_done
                else "no chunk had finished"
            )
            raise _Interrupted(
                f"interrupted: {kept}; run the same command again to resume"
            ) from None
    print(f"\nSummary: {report.summary}")
    statuses = ", ".join(f"{n} {status}" for status, n in report.statuses.items()) or "none"
    print(
        f"{report.n_waveforms} waveforms -> {report.out} ({statuses}; {report.n_skipped} "
        f"skipped) in {report.seconds:.1f} s, {report.waveforms_per_second:.0f} waveforms/s"
    )
    if report.tracks is not None:
        print(f"{report.n_tracks} tracks -> {report.tracks}")
    for line in report.domain:
        print(f"training domain: {line}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    steps |= {f"flow {name}": seconds for name, seconds in report.phase_seconds.items()}
    worker = ", ".join(f"{name} {s:.1f} s" for name, s in report.worker_seconds.items())
    print(
        "time: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items())
        + f"; in the workers, summed: {worker or 'none'}",
        file=sys.stderr,
    )


def _process_started() -> float:
    """When this process started (seconds since the epoch): its start-up, imports
    included, is part of what a user waits for."""
    import psutil

    return float(psutil.Process().create_time())


def _run_infer_flow(plan: Any, verbose: bool, steps: dict[str, float]) -> Any:
    """The inference flow on ``plan``; adds the wall time of the Prefect API's
    start and of the flow to ``steps``."""
    import time

    started = time.perf_counter()
    from flows.runtime import quiet_prefect_console, start_prefect_api

    wait_for_api = start_prefect_api()
    if not verbose:
        quiet_prefect_console()
    # Imported while the server boots in its own process.
    from flows.infer import infer_planned

    wait_for_api()
    steps["prefect api"] = time.perf_counter() - started
    started = time.perf_counter()
    report = infer_planned(plan)
    steps["flow"] = time.perf_counter() - started
    return report


def _plain(error: Exception) -> str:
    """An unexpected library error as one line; a validation library's report as
    its fields and problems, without the library's own dump."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'value'}: {problem['msg']} "
            f"(got {problem.get('input')!r})"
            for problem in error.errors()
        )
    return " ".join(str(error).split())


def _create_parent(path: Path, prefix: str) -> None:
    """Create the missing directory of an output, saying so."""
    parent = path.absolute().parent
    if not parent.exists():
        parent.mkdir(parents=True)
        print(f"dndx: {prefix}created the directory {path.parent}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes as one ``dndx: error:`` line, like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"dndx: error: {message} (see {self.prog} --help)\n")


class _Interrupted(Exception):
    """Ctrl-C, with what was kept and how to go on."""


def _add_infer(commands: Any) -> None:
    from dndx.io.readers import WAVEFORM_FORMATS
    from flows.infer_plan import InferenceRequest

    # Options the user leaves out stay out of the namespace: the request's own
    # defaults apply, and the help shows them.
    infer = commands.add_parser(
        "infer",
        help="peaks and cluster counts of waveform files (ROOT, HDF5, Parquet, NPZ)",
        description="Run the peak finder and the cluster counter on waveform files; write one "
        "Parquet row per waveform and a summary (Markdown and PNG) beside it.",
        argument_default=argparse.SUPPRESS,
    )
    defaults = InferenceRequest((), "")
    infer.add_argument("inputs", nargs="+", metavar="INPUT", help="waveform files")
    infer.add_argument("--out", required=True, help="the results file (Parquet)")
    infer.add_argument(
        "--verbose",
        action="store_true",
        default=False,
        help="show Prefect's logs and tracebacks of failures",
    )
    infer.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs that are not this command's own earlier result",
    )
    infer.add_argument(
        "--wait",
        action="store_true",
        help="wait for another run writing the same --out instead of refusing",
    )
    infer.add_argument(
        "--format",
        dest="fmt",
        choices=WAVEFORM_FORMATS,
        help="format of every input (default: from each file's suffix)",
    )
    _add_infer_locations(infer)
    _add_infer_rates(infer)
    _add_infer_models(infer, defaults)
    _add_infer_run(infer, defaults)
    infer.set_defaults(handler=_infer)


def _add_infer_locations(infer: argparse.ArgumentParser) -> None:
    """Where the waveforms are in each file, and the per-track columns."""
    from dndx.io.readers import LOCATION_KEYS

    where = infer.add_argument_group(
        "where the waveforms are (default: the only suitable one in each file)"
    )
    helps = {
        "tree": "ROOT tree, e.g. sim",
        "branch": "ROOT branch, one waveform per entry, e.g. wf_i",
        "dataset": "HDF5 dataset (n_waveforms, n_samples)",
        "column": "Parquet column of lists of samples",
        "array": "NPZ array (n_waveforms, n_samples)",
    }
    for key in (key for keys in LOCATION_KEYS.values() for key in keys):
        where.add_argument(f"--{key}", help=helps[key])
    on_tracks = infer.add_argument_group(
        "tracks (default: none): one more table beside --out, <stem>.tracks.parquet, "
        "with per track its cells, summed count, summed path and dN/dx"
    )
    on_tracks.add_argument(
        "--track-column",
        metavar="NAME",
        help="the branch, dataset, column or array of every input holding each "
        "waveform's track id (integers)",
    )
    on_tracks.add_argument(
        "--path-column",
        metavar="NAME",
        help="likewise, the track's path length in each waveform's cell, in cm, for "
        "dN/dx in clusters per cm (needs --track-column)",
    )


def _add_infer_rates(infer: argparse.ArgumentParser) -> None:
    """The inputs' sampling rate, given or stored per waveform."""
    infer.add_argument(
        "--sampling-rate-ghz",
        type=float,
        help="the inputs' sampling rate in GS/s, within the range the models were trained "
        "on (default: each waveform's stored rate, else the models' rate)",
    )
    infer.add_argument(
        "--sampling-rate-branch",
        dest="rate_column",
        metavar="NAME",
        help="the branch, dataset, column or array of every input holding each waveform's "
        "sampling rate in GS/s (default: sampling_rate_ghz or sampling_rate beside the "
        "waveforms, where a file has one)",
    )


def _add_infer_models(infer: argparse.ArgumentParser, defaults: InferenceRequest) -> None:
    """Which models, or the classical chain, and how the signal is read."""
    from dndx.chain.inference import METHODS
    from dndx.chain.preprocessing import POLARITIES

    infer.add_argument(
        "--method",
        choices=METHODS,
        help="lstm: the bundle's peak finder and cluster counter; d2: the classical D2 "
        "peaks and time clusterization with the settings the evaluation tuned, kept in "
        f"the bundle (default: {defaults.method})",
    )
    infer.add_argument(
        "--polarity",
        choices=POLARITIES,
        help=f"sign of the signal (default: {defaults.polarity}, read off each waveform)",
    )
    infer.add_argument(
        "--model-uri",
        dest="model_uris",
        metavar="URI",
        action="append",
        help="a local model bundle directory, or MLflow model URIs (repeatable; default: "
        f"{' and '.join(defaults.model_uris)})",
    )
    infer.add_argument(
        "--tracking-uri",
        help="the MLflow registry of --model-uri (default: MLFLOW_TRACKING_URI, or this "
        "checkout's mlflow.db)",
    )


def _add_infer_run(infer: argparse.ArgumentParser, defaults: InferenceRequest) -> None:
    """Where and in how many processes the run goes."""
    from dndx.chain.onnx import DEVICES
    from flows.infer_plan import DEFAULT_WORKERS

    infer.add_argument(
        "--workers",
        type=int,
        help="Dask worker processes, at most one per usable core (default: "
        f"{DEFAULT_WORKERS}, or the cores if fewer)",
    )
    infer.add_argument(
        "--chunk-size",
        type=int,
        help=f"waveforms per chunk, the unit a resumed run redoes (default: {defaults.chunk_size})",
    )
    infer.add_argument(
        "--device",
        choices=tuple(DEVICES),
        help=f"where ONNX Runtime runs the models (default: {defaults.device}; cuda needs "
        "onnxruntime-gpu and a GPU, shared by the workers)",
    )


def _serve(args: argparse.Namespace) -> None:
    from flows.serve import serve, stop_stale

    if args.stop:
        stop_stale(Path("."))
    else:
        serve(Path("."), args.host, args.port)


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="a local Prefect server, the dndx work pool and deployments, and a worker",
        description="Start a Prefect server on loopback (unless one answers there), create "
        "the process work pool 'dndx', register the deployments of infra/prefect.yaml and "
        "run a worker for the pool until Ctrl-C, which stops the worker, its flow runs "
        "(marked Cancelled) and the server; Ctrl-C again kills them at once. Run it from the "
        "repository root.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="server host (default: %(default)s)")
    serve.add_argument("--port", type=int, default=4200, help="server port (default: %(default)s)")
    serve.add_argument(
        "--stop",
        action="store_true",
        help="stop what an earlier `dndx serve` here left running (.prefect/serve.json)",
    )
    serve.set_defaults(handler=_serve)


def _layout(args: argparse.Namespace) -> Any:
    from dndx.io.labelled import LabelledLayout

    names = dict(item.split("=", 1) for item in args.name or [])
    return LabelledLayout(
        args.layout, names, args.time_unit, args.sampling_rate_unit, args.particle or ""
    )


def _data_check(args: argparse.Namespace) -> None:
    from dndx.config import load_params
    from dndx.io.labelled import summarise_file

    prepare = load_params(args.params).prepare if args.params else load_params().prepare
    layout = _layout(args)
    problems = 0
    for path in args.files:
        summary = summarise_file(path, layout, prepare.candidates.window_length)
        rates = ", ".join(f"{r:g}" for r in summary.sampling_rates_ghz) or "-"
        momenta = summary.momenta_gev
        span = (
            f"{min(momenta):g} to {max(momenta):g} GeV/c ({len(momenta)} values)"
            if momenta
            else "-"
        )
        print(
            f"{path}: {summary.n_waveforms} waveforms ({summary.n_usable} usable), "
            f"{summary.samples_min}-{summary.samples_max} samples, sampling rates {rates} GHz, "
            f"particles {', '.join(summary.particles) or 'unknown'}, momenta {span}, "
            f"mean ncls {summary.mean_n_clusters:.2f}, tags 0/1/2: "
            + "/".join(str(n) for n in summary.tag_counts)
        )
        if summary.problem:
            problems += 1
            print(f"  first problem: {summary.problem}")
        if summary.skipped:
            print(f"  {len(summary.skipped)} waveforms would be skipped")
    if problems:
        raise DndxError(f"{problems} of {len(args.files)} file(s) have problems")


def _data_write(args: argparse.Namespace) -> None:
    import dataclasses

    from dndx.config import load_params
    from dndx.io.labelled_writer import labelled_format, write_labelled
    from dndx.simulation.generator import simulate_range

    labelled_format(args.out)
    if args.waveforms < 1:
        raise DndxError(f"--waveforms {args.waveforms}: expected at least 1")
    if args.out.is_dir():
        raise DndxError(f"{args.out}: is a directory; expected the path of a .root or .h5 file")
    if args.out.exists() and not args.overwrite:
        raise DndxError(
            f"{args.out}: exists; pass --overwrite to replace it, or choose another path"
        )
    _create_parent(args.out, "")
    cfg = (load_params(args.params) if args.params else load_params()).simulate
    cfg = dataclasses.replace(
        cfg,
        seed=args.seed if args.seed is not None else cfg.seed,
        n_train=args.waveforms,
        block_size=min(cfg.block_size, args.waveforms),
        chunk_size=min(cfg.block_size, args.waveforms),
    )
    write_labelled(simulate_range(cfg, "train", 0, args.waveforms), args.out, args.layout)
    print(f"{args.out}: {args.waveforms} simulated waveforms in the {args.layout} layout")


def _data_profile(args: argparse.Namespace) -> None:
    from dndx.config import load_params
    from dndx.domain.files import profile_files
    from dndx.domain.profile import describe, judge, not_judged
    from flows.infer_plan import resolve_sources

    out = Path(args.json)
    outputs = [out, out.with_suffix(".md"), out.with_suffix(".png")]
    existing = [str(path) for path in outputs if path.exists()]
    if existing and not args.overwrite:
        raise DndxError(
            f"--json {out}: {', '.join(existing)} exist(s); pass --overwrite to replace them"
        )
    locations = {
        key: getattr(args, key) for key in ("tree", "branch", "dataset", "column", "array")
    }
    sources = resolve_sources(args.files, args.format, locations)
    params = load_params(args.params) if args.params else load_params()
    cfg, threshold, rate, training = _profile_settings(args, params)
    profile = profile_files(sources, rate, cfg, threshold, args.polarity)
    if training is not None:
        verdict = judge(profile, training)
    elif args.model_uri:
        verdict = not_judged(
            "unknown", "the models hold no training domain (registered before it was stored)"
        )
    else:
        verdict = not_judged("not judged", "no models given (--model-uri)")
    _write_profile(
        outputs, [str(source.path) for source in sources], rate, profile, training, verdict
    )
    rise, fall = profile.rise_time_ns, profile.fall_time_ns
    print(
        f"{out}: {profile.n_waveforms} waveforms, {profile.n_pulses} isolated pulses, rise "
        f"{rise if rise is None else f'{rise:.2f}'} ns, fall "
        f"{fall if fall is None else f'{fall:.2f}'} ns, noise RMS / white sigma "
        f"{profile.noise_excess if profile.noise_excess is None else f'{profile.noise_excess:.2f}'}"
    )
    print(f"domain: {describe(verdict)}")


def _profile_settings(
    args: argparse.Namespace, params: Params
) -> tuple[DomainConfig, float, float, TrainingDomain | None]:
    """How ``dndx data profile`` measures: the ``domain`` settings, candidate threshold
    and model rate of the project, or of the models of ``--model-uri`` (with their
    training domain, else None), the rate overridden by ``--sampling-rate-ghz``."""
    import math

    from dndx.chain.bundle import ModelBundle
    from dndx.domain.profile import TrainingDomain
    from flows.infer_plan import DEFAULT_MODEL_CACHE, resolve_bundle

    cfg, candidates, training = params.domain, params.prepare.candidates, None
    if args.model_uri:
        bundle_dir = resolve_bundle(args.model_uri, DEFAULT_MODEL_CACHE, args.tracking_uri)
        candidates = ModelBundle.load(bundle_dir).candidates
        training = TrainingDomain.load(bundle_dir)
        if training is not None:
            cfg = training.config
    threshold, rate = candidates.candidate_threshold_sigma, candidates.model_sampling_rate_ghz
    if args.sampling_rate_ghz is not None:
        if not (math.isfinite(args.sampling_rate_ghz) and args.sampling_rate_ghz > 0):
            raise DndxError(
                f"--sampling-rate-ghz {args.sampling_rate_ghz}: expected a positive, finite number"
            )
        rate = args.sampling_rate_ghz
    return cfg, threshold, rate, training


def _write_profile(
    outputs: list[Path],
    names: list[str],
    rate: float,
    profile: DomainProfile,
    training: TrainingDomain | None,
    verdict: DomainVerdict,
) -> None:
    """The profile as JSON, Markdown and a figure (``outputs``), each written atomically."""
    from dndx.domain.profile import describe, plot_domain, profile_table
    from dndx.storage import atomic_file

    out, markdown, figure = outputs
    record = {
        "files": names,
        "sampling_rate_ghz": rate,
        "profile": profile.to_dict(),
        "training": training.profile.to_dict() if training else None,
        "domain": verdict.to_dict(),
    }
    lines = [
        f"# Domain profile: {', '.join(names)}",
        "",
        f"Verdict against the training domain: **{describe(verdict)}**",
        "",
        *profile_table(profile, training.profile if training else None),
        "",
        f"![pulse shape and noise spectrum]({figure.name})",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_domain(profile, training.profile if training else None, figure)
    with atomic_file(markdown) as tmp:
        tmp.write_text("\n".join(lines))
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _add_data(commands: Any) -> None:
    data = commands.add_parser(
        "data",
        help="waveform files: check or profile them, or write simulated ones",
        description="Labelled waveform files in the cepc or dndx layout (README: Train on "
        "your own data).",
    )
    verbs = data.add_subparsers(dest="verb", required=True)
    check = verbs.add_parser(
        "check",
        help="validate labelled files without training",
        description="Read every file as ingest would and print per file: waveforms, samples "
        "per waveform, sampling rates, particles and momenta, mean ncls, counts per tag and "
        "the first problem with its entry. Exit status 2 when a file has a problem.",
    )
    check.add_argument("files", nargs="+", type=Path, help="ROOT, HDF5 or Parquet files")
    check.add_argument("--layout", choices=("cepc", "dndx"), required=True)
    check.add_argument(
        "--name",
        action="append",
        metavar="ROLE=BRANCH",
        help="read ROLE from BRANCH instead of the layout's name (repeatable; roles: "
        "tree, waveform, sampling_rate, n_clusters, momentum, time, tag, height, ...)",
    )
    check.add_argument(
        "--time-unit",
        choices=("samples", "ns"),
        default="samples",
        help="unit of the peak times (default: %(default)s)",
    )
    check.add_argument(
        "--sampling-rate-unit",
        choices=("ghz", "ns_per_sample"),
        default="ghz",
        help="unit of the sampling rate (default: %(default)s)",
    )
    check.add_argument("--particle", help="the particle of every waveform, if the files lack it")
    check.add_argument("--params", type=Path, help="parameter file (default: the project's)")
    check.set_defaults(handler=_data_check)
    write = verbs.add_parser(
        "write",
        help="simulate waveforms into a labelled ROOT or HDF5 file (example data, test input)",
        description="Simulate waveforms with the simulate section of params.yaml and write "
        "them, with their truth, as a ROOT (.root) or HDF5 (.h5, .hdf5) file in the cepc or "
        "dndx layout.",
    )
    write.add_argument("out", type=Path, help="the ROOT or HDF5 file to write")
    write.add_argument("--layout", choices=("cepc", "dndx"), required=True)
    write.add_argument("--waveforms", type=int, default=1000, help="default: %(default)s")
    write.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it exists (default: refuse)"
    )
    write.add_argument("--seed", type=int, help="default: simulate.seed of params.yaml")
    write.add_argument("--params", type=Path, help="parameter file (default: the project's)")
    write.set_defaults(handler=_data_write)
    _add_data_profile(verbs)


def _add_data_profile(verbs: Any) -> None:
    from dndx.chain.preprocessing import POLARITIES
    from dndx.io.readers import LOCATION_KEYS, WAVEFORM_FORMATS

    profile = verbs.add_parser(
        "profile",
        help="what characterises unlabelled waveform files' front end and noise",
        description="Profile waveform files from the waveforms alone: the mean isolated pulse "
        "(rise, fall, tail), the noise (RMS, autocorrelation, spectrum), baseline wander, pulse "
        "heights, candidates per waveform, polarity. Writes JSON (--json), Markdown and a PNG "
        "beside it; with --model-uri, compared with the models' training domain.",
    )
    profile.add_argument("files", nargs="+", help="waveform files (ROOT, HDF5, Parquet, NPZ)")
    profile.add_argument("--json", required=True, help="the profile (JSON); .md and .png beside")
    profile.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    profile.add_argument("--format", choices=WAVEFORM_FORMATS, help="format of every input")
    for key in (key for keys in LOCATION_KEYS.values() for key in keys):
        profile.add_argument(f"--{key}", help=f"as dndx infer --{key}")
    profile.add_argument(
        "--sampling-rate-ghz",
        type=float,
        help="the files' sampling rate in GS/s (default: the models', or prepare's)",
    )
    profile.add_argument("--polarity", choices=POLARITIES, default=POLARITIES[0])
    profile.add_argument(
        "--model-uri",
        action="append",
        help="compare with these models' training domain: a bundle directory or MLflow URIs",
    )
    profile.add_argument("--tracking-uri", help="the MLflow registry of --model-uri")
    profile.add_argument("--params", type=Path, help="parameter file (default: the project's)")
    profile.set_defaults(handler=_data_profile)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = _Parser(prog="dndx", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="reproduce the whole pipeline (DVC stages via Prefect)")
    run.add_argument(
        "--params", type=Path, help="parameter file (default: the project's params.yaml)"
    )
    run.add_argument("--stage", action="append", help="only this stage (repeatable)")
    run.set_defaults(handler=_run)
    _add_infer(commands)
    _add_serve(commands)
    _add_data(commands)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:
        return int(done.code or 0)
    try:
        args.handler(args)
    except _Interrupted as interrupted:
        print(f"dndx: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("dndx: interrupted", file=sys.stderr)
        return 130
    except DndxError as error:
        print(f"dndx: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        if getattr(args, "verbose", False):
            raise
        detail = _plain(error)
        print(
            f"dndx: error: {type(error).__name__}: {detail} (--verbose shows the traceback)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
