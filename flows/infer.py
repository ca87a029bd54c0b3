"""Inference on users' waveform files: peaks and cluster counts per waveform.

``dndx infer`` runs this flow. It checks every input, the output path and the
models before any work (:mod:`flows.infer_plan`), takes the output's lock,
cuts every file into entry ranges that Dask workers read and process
themselves, then joins their results in (file, event) order into one Parquet
file and writes a summary (Markdown and PNG) beside it; on tracks (inputs with
a track column) also a table of one row per track with its dN/dx. The output and its
summary appear only once complete; the chunks live in a hidden work directory
beside the output (:mod:`dndx.io.inference_store`), so that running the same
command again after an interruption redoes only the chunks that are missing.
The cluster shuts down while the outputs are written, and the report says
where the run's wall time went (:attr:`InferenceReport.phase_seconds`).
"""

from __future__ import annotations

import dataclasses
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
from dndx.errors import InputError
from dndx.io.inference_store import (
    Chunk,
    ChunkResult,
    finished_result,
    join_chunks,
    output_lock,
    plan_chunks,
    read_result_row,
    record_result,
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
    check_replaceable,
    plan_inference,
    summary_json_path,
    summary_path,
    tracks_path,
)
from flows.runtime import dask_task_runner, die_with_parent
from tasks.inference import infer_chunk

__all__ = ["InferenceReport", "infer", "polarity_warning"]


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
        phase_seconds: wall time of each step of the run, in order: planning,
            cluster start-up, chunks, the training-domain verdicts, joining the
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


@flow(name="infer", log_prints=True)
def infer(
    inputs: list[str],
    out: str,
    fmt: str | None = None,
    tree: str | None = None,
    branch: str | None = None,
    dataset: str | None = None,
    column: str | None = None,
    array: str | None = None,
    sampling_rate_ghz: float | None = None,
    polarity: str = "auto",
    model_uris: list[str] | None = None,
    workers: int = 2,
    chunk_size: int = 2000,
    model_cache_dir: str | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    wait: bool = False,
    tracking_uri: str | None = None,
    method: str = "lstm",
    track_column: str | None = None,
    path_column: str | None = None,
    rate_column: str | None = None,
) -> InferenceReport:
    """Peaks and cluster counts of every waveform of ``inputs`` into ``out`` (Parquet).

    Args:
        inputs: waveform files (ROOT, HDF5, Parquet, NPZ).
        out: the results file; its summary is written beside it.
        fmt: the format of every input; default: from each file's suffix.
        tree, branch, dataset, column, array: where the waveforms are, for the
            inputs of the matching format; default: found in each file.
        sampling_rate_ghz: the inputs' sampling rate; default: the models' rate.
        polarity: ``auto`` (read off each waveform), ``positive`` or ``negative``.
        model_uris: a local bundle directory, or MLflow URIs; default: the champions.
        workers: Dask worker processes, one thread each.
        chunk_size: waveforms per task.
        model_cache_dir: where registry models are cached.
        device: where ONNX Runtime runs the models, ``cpu`` or ``cuda`` (needs
            ``onnxruntime-gpu``; the workers share the GPU).
        overwrite: replace existing outputs that are not this command's own.
        wait: wait for another run writing ``out`` instead of refusing.
        tracking_uri: the MLflow registry of ``model_uris``; default:
            ``MLFLOW_TRACKING_URI`` or the project's.
        method: ``lstm`` (the bundle's models) or ``d2`` (the classical chain
            with the bundle's tuned D2 settings), :data:`dndx.chain.inference.METHODS`.
        track_column: the column (branch, dataset, array) of every input that
            holds each waveform's track id; the run then also writes one row
            per track (:func:`flows.infer_plan.tracks_path`).
        path_column: the column of path lengths in the cell (cm), summed per
            track for dN/dx; needs ``track_column``.
        rate_column: the column of each waveform's sampling rate (GS/s);
            default: one of :data:`dndx.io.readers.RATE_COLUMN_NAMES`, where present.

    Raises:
        InputError: a bad input file, location or model bundle.
        DndxError: a bad setting or output path; another run writes ``out``.
    """
    logger = get_run_logger()
    phases: dict[str, float] = {}
    locations = {"tree": tree, "branch": branch, "dataset": dataset, "column": column}
    with _timed(phases, "planning"):
        plan = plan_inference(
            inputs,
            out,
            fmt,
            {**locations, "array": array},
            sampling_rate_ghz,
            polarity,
            model_uris,
            workers,
            chunk_size,
            model_cache_dir,
            device,
            overwrite,
            tracking_uri,
            method,
            track_column,
            path_column,
            rate_column,
            wait,
        )
    _log_plan(plan)
    started = time.perf_counter()
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(plan.out, wait, logger.info):
        check_replaceable(plan)
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
    cluster that ``cluster`` closes; all results in chunk order. The wall time of
    the cluster's start-up and of the chunks are added to ``phases``."""
    results: list[ChunkResult | None] = [finished_result(chunk) for chunk in chunks]
    n_done = sum(r is not None for r in results)
    if n_done:
        get_run_logger().info(
            "resuming: %d of %d chunks are done from an earlier run", n_done, len(chunks)
        )
    with _timed(phases, "cluster start-up"):
        runner = cluster.enter_context(_local_cluster(plan.workers))
    with (
        _timed(phases, "chunks"),
        tqdm(total=plan.n_entries, unit="wf", unit_scale=True, desc="infer", disable=None) as bar,
    ):
        bar.update(sum(r.n_entries for r in results if r is not None))
        futures: dict[PrefectFuture[ChunkResult], int] = {}
        for index, chunk in enumerate(chunks):
            if results[index] is None:
                parameters = {
                    "chunk": chunk,
                    "bundle_dir": str(plan.bundle_dir),
                    "polarity": plan.polarity,
                    "sampling_rate_ghz": plan.sampling_rate_ghz,
                    "device": plan.device,
                    "method": plan.method,
                }
                futures[runner.submit(infer_chunk, parameters)] = index
        for future in as_completed(list(futures)):
            result = future.result()
            record_result(chunks[futures[future]], result)
            results[futures[future]] = result
            bar.update(result.n_entries)
    return [r for r in results if r is not None]


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
