"""Inference on users' waveform files: peaks and cluster counts per waveform.

``dndx infer`` runs :func:`infer_planned` on a plan that it checked (every
input, the output path and the models) and whose output it locked before any
work (:mod:`flows.infer_plan`); :func:`infer`, the deployment's and Python's
way in, plans and locks in its own run first. Either cuts every file into
entry ranges that Dask workers read and process themselves, a few tasks of
consecutive ranges per worker, then joins their results in (file, event)
order into one Parquet file and writes a summary (Markdown and PNG) beside
it; on tracks (inputs with a track column) also a table of one row per track
with its dN/dx. The output and its summary appear only once complete; the
chunks live in a hidden work directory beside the output
(:mod:`dndx.io.inference_store`), so that running the same command again
after an interruption redoes only the chunks that are missing. The cluster
shuts down while the outputs are written, and the report says where the
run's wall time went (:attr:`InferenceReport.phase_seconds`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner
from tqdm import tqdm

from dndx.chain.inference import SKIPPED, STATUSES
from dndx.config import load_params
from dndx.domain.files import profile_files
from dndx.domain.profile import DomainVerdict, describe, judge, not_judged, verdict_table
from dndx.errors import DndxError, InputError
from dndx.io.inference_store import (
    Chunk,
    ChunkResult,
    finished_result,
    join_chunks,
    plan_chunks,
    read_result_row,
    remove_stale_work,
)
from dndx.io.readers import read_chunk
from dndx.reporting.inference_summary import (
    ExampleWaveform,
    choose_examples,
    figure_paths,
    summarise,
)
from dndx.scoring.separation import counted_tracks
from dndx.storage import atomic_file
from flows.infer_plan import (
    InferencePlan,
    InferenceRequest,
    locked_plan,
    summary_json_path,
    summary_path,
    tracks_path,
)
from flows.runtime import dask_task_runner, die_with_parent
from tasks.inference import infer_chunks

__all__ = [
    "TASK_WAVEFORMS",
    "InferenceReport",
    "infer",
    "infer_planned",
    "polarity_warning",
    "task_groups",
]

#: The most waveforms a task of the flow covers: about ten seconds of a worker
#: at the chain's rates, against a few tenths of a second of Prefect's work per
#: task run.
TASK_WAVEFORMS = 20_000


@dataclass(frozen=True)
class InferenceReport:
    """What an inference run wrote.

    Attributes:
        out: the results file.
        summary: the summary's Markdown file (figures beside it).
        n_waveforms: waveforms processed, one row each in ``out``.
        n_skipped: unusable waveforms skipped (listed in the summary).
        seconds: wall time from the first chunk submitted to the summary written.
        statuses: rows of each status.
        warnings: what the summary warns of.
        tracks: the track table, for a run on tracks.
        n_tracks: its rows.
        domain: per input file, its place against the training domain, in words.
        phase_seconds: wall time of each step of the run, in order: cluster
            start-up, chunks, the training-domain verdicts, joining the
            parts into ``out``, summary,
            and the cluster's shut-down beyond the outputs (it overlaps them).
        worker_seconds: the chunks' time in the workers, summed over chunks:
            ``read`` (waiting for the reader), ``chain``, ``write``.
    """

    out: Path
    summary: Path
    n_waveforms: int
    n_skipped: int
    seconds: float
    statuses: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    tracks: Path | None = None
    n_tracks: int = 0
    domain: tuple[str, ...] = ()
    phase_seconds: dict[str, float] = field(default_factory=dict)
    worker_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def waveforms_per_second(self) -> float:
        """Throughput of the run."""
        return (self.n_waveforms + self.n_skipped) / max(self.seconds, 1e-9)


_DEFAULTS = InferenceRequest((), "")  # the command's defaults, written in InferenceRequest


@flow(name="infer", log_prints=True)
def infer(
    inputs: list[str],
    out: str,
    fmt: str | None = _DEFAULTS.fmt,
    tree: str | None = _DEFAULTS.tree,
    branch: str | None = _DEFAULTS.branch,
    dataset: str | None = _DEFAULTS.dataset,
    column: str | None = _DEFAULTS.column,
    array: str | None = _DEFAULTS.array,
    sampling_rate_ghz: float | None = _DEFAULTS.sampling_rate_ghz,
    polarity: str = _DEFAULTS.polarity,
    model_uris: list[str] | None = None,
    workers: int | None = _DEFAULTS.workers,
    chunk_size: int = _DEFAULTS.chunk_size,
    model_cache_dir: str | None = None,
    device: str = _DEFAULTS.device,
    overwrite: bool = _DEFAULTS.overwrite,
    wait: bool = _DEFAULTS.wait,
    tracking_uri: str | None = _DEFAULTS.tracking_uri,
    method: str = _DEFAULTS.method,
    track_column: str | None = _DEFAULTS.track_column,
    path_column: str | None = _DEFAULTS.path_column,
    rate_column: str | None = _DEFAULTS.rate_column,
) -> InferenceReport:
    """Peaks and cluster counts of every waveform of ``inputs`` into ``out`` (Parquet):
    the deployment's and Python's way in. Plans and locks
    (:func:`flows.infer_plan.locked_plan`), then carries the plan out as
    :func:`infer_planned` does. The arguments are the fields of
    :class:`flows.infer_plan.InferenceRequest`, with its defaults;
    ``model_uris`` and ``model_cache_dir`` None: the request's.

    Raises:
        InputError: a bad input file, location or model bundle.
        DndxError: a bad setting or output path; another run writes ``out``.
    """
    request = InferenceRequest(
        tuple(inputs),
        out,
        fmt=fmt,
        tree=tree,
        branch=branch,
        dataset=dataset,
        column=column,
        array=array,
        sampling_rate_ghz=sampling_rate_ghz,
        polarity=polarity,
        workers=workers,
        chunk_size=chunk_size,
        device=device,
        overwrite=overwrite,
        wait=wait,
        tracking_uri=tracking_uri,
        method=method,
        track_column=track_column,
        path_column=path_column,
        rate_column=rate_column,
    )
    if model_uris:
        request = replace(request, model_uris=tuple(model_uris))
    if model_cache_dir:
        request = replace(request, model_cache_dir=Path(model_cache_dir))
    with locked_plan(request, get_run_logger().info) as plan:
        return _carry_out(plan)


@flow(name="infer", log_prints=True, validate_parameters=False)
def infer_planned(plan: InferencePlan) -> InferenceReport:
    """Peaks and cluster counts of every waveform of a checked ``plan`` into its
    output (Parquet), with the summary beside it: ``dndx infer``'s flow.

    ``plan`` comes from :func:`flows.infer_plan.locked`, which holds the
    output's lock for the run; :func:`flows.infer_plan.plan_inference` checked
    the inputs, the settings and the models: the flow checks nothing again.

    Raises:
        DndxError: ``plan`` does not hold its output's lock.
    """
    return _carry_out(plan)


def _carry_out(plan: InferencePlan) -> InferenceReport:
    """The run of a locked ``plan`` in the current flow."""
    if plan.lock is None or not plan.lock.held:
        raise DndxError(
            f"--out {plan.out}: the plan does not hold the output's lock; "
            "run it inside flows.infer_plan.locked"
        )
    logger = get_run_logger()
    phases: dict[str, float] = {}
    _log_plan(plan)
    started = time.perf_counter()
    with _work_directory(plan) as directory:
        chunks = plan_chunks(plan.sources, plan.counts, plan.chunk_size, directory)
        with ExitStack() as cluster:
            results = _run_chunks(chunks, plan, phases, cluster)
            # Workers stop one by one, for seconds, and the outputs need none
            # of them: the cluster shuts down while they are written.
            closing = threading.Thread(target=cluster.close, name="close the cluster")
            closing.start()
            try:
                report = _write_outputs(chunks, results, plan, directory, phases)
            finally:
                with _timed(phases, "cluster shut-down beyond the outputs"):
                    closing.join()
    worker_seconds: dict[str, float] = {}
    for result in results:
        for step, seconds in result.seconds.items():
            worker_seconds[step] = worker_seconds.get(step, 0.0) + seconds
    report = dataclasses.replace(
        report,
        seconds=time.perf_counter() - started,
        phase_seconds=phases,
        worker_seconds=worker_seconds,
    )
    for warning in report.warnings:
        logger.warning(warning)
    logger.info(
        "%d waveforms (%s; %d skipped) in %.1f s, %.0f waveforms/s: %s, summary %s",
        report.n_waveforms,
        ", ".join(f"{n} {status}" for status, n in report.statuses.items()) or "none",
        report.n_skipped,
        report.seconds,
        report.waveforms_per_second,
        report.out,
        report.summary,
    )
    return report


@contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's wall time to ``phases[name]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - started


def _log_plan(plan: InferencePlan) -> None:
    logger = get_run_logger()
    settings = plan.settings()
    for source, count in zip(plan.sources, plan.counts, strict=True):
        logger.info("%s: %d waveforms", source.path, count)
    logger.info("sampling rate: %s", settings["input sampling rate"])
    logger.info("models %s: %s", settings["models"], settings["input sampling rate"])


@contextmanager
def _work_directory(plan: InferencePlan) -> Iterator[Path]:
    """The run's work directory, holding the chunks of an earlier run with the
    same settings if there is one; other work directories of the output are
    stale and removed. Removed once the output is written, and after a failure
    unless it holds finished chunks that the same command would resume."""
    logger = get_run_logger()
    for stale in remove_stale_work(plan.out, plan.work_dir):
        logger.info("removed %s, left by a run with other settings", stale)
    directory = plan.work_dir
    directory.mkdir(exist_ok=True)
    shutil.rmtree(directory / "summary", ignore_errors=True)
    try:
        yield directory
    except BaseException:
        if not any(directory.glob("*.json")):
            shutil.rmtree(directory, ignore_errors=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _local_cluster(workers: int) -> Iterator[TaskRunner[Any]]:
    """A Dask task runner whose worker processes ignore Ctrl-C: it reaches this
    process alone, which keeps the finished chunks and stops the workers in order
    instead of each printing its own traceback. The workers die with this process."""
    # Inference runs on this machine with the user's worker count, whatever cluster
    # the stages use; memory and threads per worker still come from params.yaml.
    cluster = replace(load_params().dask, mode="local", n_workers=workers)
    with dask_task_runner(cluster) as runner:
        if threading.current_thread() is threading.main_thread():
            # Children inherit an ignored signal; the cluster starts on first use.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                cast(DaskTaskRunner, runner).client  # noqa: B018
            finally:
                signal.signal(signal.SIGINT, previous)
        # The workers end with this process, even when it is killed.
        cast(DaskTaskRunner, runner).client.run(die_with_parent)
        yield runner


def _run_chunks(
    chunks: list[Chunk], plan: InferencePlan, phases: dict[str, float], cluster: ExitStack
) -> list[ChunkResult]:
    """Run every chunk not finished by an earlier, interrupted run on a local Dask
    cluster that ``cluster`` closes, in tasks of consecutive chunks
    (:func:`task_groups`); all results in chunk order. The wall time of the
    cluster's start-up and of the chunks are added to ``phases``."""
    results: list[ChunkResult | None] = [finished_result(chunk) for chunk in chunks]
    n_done = sum(r is not None for r in results)
    if n_done:
        get_run_logger().info(
            "resuming: %d of %d chunks are done from an earlier run", n_done, len(chunks)
        )
    pending = [index for index, result in enumerate(results) if result is None]
    with _timed(phases, "cluster start-up"):
        runner = cluster.enter_context(_local_cluster(plan.workers))
    with (
        _timed(phases, "chunks"),
        tqdm(total=plan.n_entries, unit="wf", unit_scale=True, desc="infer", disable=None) as bar,
    ):
        bar.update(sum(r.n_entries for r in results if r is not None))
        futures: dict[PrefectFuture[list[ChunkResult]], list[int]] = {}
        for group in task_groups([chunks[i] for i in pending], plan.workers):
            indices = pending[: len(group)]
            pending = pending[len(group) :]
            parameters = {
                "chunks": group,
                "bundle_dir": str(plan.bundle_dir),
                "polarity": plan.polarity,
                "sampling_rate_ghz": plan.sampling_rate_ghz,
                "device": plan.device,
                "method": plan.method,
            }
            futures[runner.submit(infer_chunks, parameters)] = indices
        for future in as_completed(list(futures)):
            for index, result in zip(futures[future], future.result(), strict=True):
                results[index] = result
                bar.update(result.n_entries)
    return [r for r in results if r is not None]


def task_groups(chunks: list[Chunk], workers: int) -> list[list[Chunk]]:
    """``chunks`` cut into runs of consecutive chunks, one Prefect task each: at
    least two per worker, so that a worker slowed down leaves less of a tail, and
    at most :data:`TASK_WAVEFORMS` waveforms each, so that the progress moves.

    >>> from dndx.io.readers import WaveformSource
    >>> source = WaveformSource(Path("a.root"), "root")
    >>> chunks = [Chunk(source, s, s + 2000, Path(str(s))) for s in range(0, 40000, 2000)]
    >>> [len(group) for group in task_groups(chunks, 2)]
    [5, 5, 5, 5]
    >>> [len(group) for group in task_groups(chunks[:3], 2)]
    [1, 1, 1]
    >>> len(task_groups(chunks * 10, 2))
    20
    """
    n_waveforms = sum(chunk.stop - chunk.start for chunk in chunks)
    n_tasks = min(len(chunks), max(2 * workers, -(-n_waveforms // TASK_WAVEFORMS)))
    bounds = [round(task * len(chunks) / n_tasks) for task in range(n_tasks + 1)]
    return [chunks[start:stop] for start, stop in itertools.pairwise(bounds)]


def polarity_warning(polarity: str, n_contradicted: int, n_waveforms: int) -> str | None:
    """A warning when a given polarity contradicts most waveforms.

    >>> polarity_warning("positive", 150, 200)  # doctest: +ELLIPSIS
    '--polarity positive contradicts 150 of 200 waveforms: ...'
    >>> polarity_warning("auto", 0, 200) is None
    True
    """
    if polarity == "auto" or 2 * n_contradicted <= n_waveforms:
        return None
    return (
        f"--polarity {polarity} contradicts {n_contradicted} of {n_waveforms} waveforms: "
        "their larger excursion from the baseline is on the other side; check the "
        "polarity, or use --polarity auto"
    )


def _write_outputs(
    chunks: list[Chunk],
    results: list[ChunkResult],
    plan: InferencePlan,
    directory: Path,
    phases: dict[str, float],
) -> InferenceReport:
    """Join the chunk parts into the output and write the summary beside it; the
    summary is staged first, so that nothing appears unless everything is written.
    The wall time of the joining and of the summary are added to ``phases``."""
    out = plan.out
    skipped = [
        (str(chunk.source.path), event, reason)
        for chunk, result in zip(chunks, results, strict=True)
        for event, reason in result.bad_rows
    ]
    n_waveforms = sum(r.n_waveforms for r in results)
    warning = polarity_warning(
        plan.polarity, sum(r.n_polarity_contradicted for r in results), n_waveforms
    )
    with _timed(phases, "domain"):
        domain = _judge_domain(plan)
    warnings: tuple[str, ...] = (*plan.warnings, *((warning,) if warning else ()))
    warnings += tuple(
        f"{name} is outside the models' training domain: {describe(verdict)}"
        for name, verdict in domain
        if verdict.verdict == "outside"
    )
    staging = directory / "summary"
    staging.mkdir()
    stem = staging / out.stem
    with atomic_file(out) as tmp_out:
        with _timed(phases, "joining"):
            columns = join_chunks(chunks, tmp_out, plan.key, plan.result_schema)
            columns = columns[columns["status"] != SKIPPED]
        with _timed(phases, "summary"):
            examples = _examples(chunks, columns, plan.sampling_rate_ghz)
            tracks = counted_tracks(columns) if plan.on_tracks else None
            text = summarise(
                columns.drop(columns=["chunk", "row"]),
                examples,
                skipped,
                [str(source.path) for source in plan.sources],
                stem,
                plan.settings(),
                warnings,
                tracks,
                ["## Training domain", "", *verdict_table(domain)],
            )
            staged = [
                *figure_paths(stem),
                staging / summary_json_path(out).name,
                staging / summary_path(out).name,
            ]
            staged[-1].write_text(text)
            record = {"domain": [{"file": name, **verdict.to_dict()} for name, verdict in domain]}
            staged[-2].write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            if tracks is not None:
                staged.insert(0, staging / tracks_path(out).name)
                pq.write_table(pa.Table.from_pandas(tracks, preserve_index=False), staged[0])
            else:
                # A track table of an earlier run that this one replaces would
                # otherwise sit beside results it does not describe.
                tracks_path(out).unlink(missing_ok=True)
            for path in staged:
                os.replace(path, out.with_name(path.name))
    counts = columns["status"].value_counts()
    statuses = {status: int(counts[status]) for status in STATUSES if status in counts}
    return InferenceReport(
        out,
        summary_path(out),
        len(columns),
        len(skipped),
        0.0,
        statuses,
        warnings,
        tracks_path(out) if tracks is not None else None,
        len(tracks) if tracks is not None else 0,
        tuple(f"{name}: {describe(verdict)}" for name, verdict in domain),
    )


def _judge_domain(plan: InferencePlan) -> list[tuple[str, DomainVerdict]]:
    """Per input file, its place against the models' training domain."""
    names = [str(source.path) for source in plan.sources]
    if plan.method == "d2":
        verdict = not_judged(
            "not judged", "--method d2 runs no trained model: the training domain does not apply"
        )
        return [(name, verdict) for name in names]
    training = plan.training_domain
    if training is None:
        verdict = not_judged(
            "unknown",
            "the models hold no training domain (registered before dndx stored one): the "
            "domain cannot be judged",
        )
        return [(name, verdict) for name in names]
    verdicts = []
    for name, source in zip(names, plan.sources, strict=True):
        try:
            profile = profile_files(
                [source],
                plan.sampling_rate_ghz,
                training.config,
                plan.bundle.candidates.candidate_threshold_sigma,
                plan.polarity,
            )
        except InputError as error:
            verdicts.append((name, not_judged("unknown", f"cannot be profiled: {error}")))
            continue
        verdicts.append((name, judge(profile, training)))
    return verdicts


def _examples(
    chunks: list[Chunk], columns: pd.DataFrame, sampling_rate_ghz: float
) -> list[ExampleWaveform]:
    """A few counted waveforms spread over the counts, re-read from their files."""
    counted = np.flatnonzero(columns["status"].to_numpy() == "ok")
    examples = []
    for position in counted[choose_examples(columns["n_clusters"].to_numpy()[counted])]:
        chunk = chunks[int(columns["chunk"].iat[position])]
        row = read_result_row(chunk.path, int(columns["row"].iat[position]))
        waveform = read_chunk(chunk.source, row["event"], row["event"] + 1)
        examples.append(
            ExampleWaveform(
                source_file=str(chunk.source.path),
                event=row["event"],
                samples=waveform.samples[0],
                sampling_rate_ghz=sampling_rate_ghz
                if waveform.sampling_rate_ghz is None
                else float(waveform.sampling_rate_ghz[0]),
                peak_time_ns=np.asarray(row["peak_time_ns"], dtype=np.float32),
                n_clusters=row["n_clusters"],
                baseline=row["baseline"],
            )
        )
    return examples
