"""Inference on users' waveform files: peaks and cluster counts per waveform.

``dndx infer`` runs this flow. It checks every input and the models before any
work, cuts every file into entry ranges that Dask workers read and process
themselves, then joins their results in (file, event) order into one Parquet
file and writes a summary (Markdown and PNG) beside it. Nothing is left behind
by a failed run: the chunk files live in a hidden work directory next to the
output, and the output and its summary appear only once complete. Running the
same command again after an interruption redoes only the chunks that are
missing: chunks are keyed by their file's identity (path, size, modification
time) and the run's settings, so a file that changed is processed anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from tqdm import tqdm

from dndx.bundle import BUNDLE_FILE, ModelBundle
from dndx.config import DaskConfig
from dndx.errors import DndxError, InputError
from dndx.inference import RESULT_SCHEMA
from dndx.inference_summary import ExampleWaveform, choose_examples, figure_paths, summarise
from dndx.readers import WAVEFORM_FORMATS, WaveformSource, count_waveforms, read_chunk
from dndx.readers import resolve_source as resolve_location
from dndx.storage import atomic_file
from flows.runtime import dask_task_runner
from tasks.inference import infer_chunk
from tasks.onnx_models import OnnxModels

__all__ = [
    "DEFAULT_MODEL_CACHE",
    "DEFAULT_MODEL_URIS",
    "POLARITIES",
    "InferenceReport",
    "infer",
    "resolve_bundle",
    "resolve_sources",
    "summary_path",
]

#: The registered champions.
DEFAULT_MODEL_URIS: tuple[str, ...] = (
    "models:/peak-finder@champion",
    "models:/cluster-counter@champion",
)
#: Where models fetched from the registry are kept between runs.
DEFAULT_MODEL_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dndx" / "models"
)
POLARITIES: tuple[str, ...] = ("auto", "positive", "negative")

# A URI scheme of two or more letters ("models:/", "runs:/"); "C:/" stays a path.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
_LOCATION_FORMATS = {
    "tree": "root",
    "branch": "root",
    "dataset": "hdf5",
    "column": "parquet",
    "array": "npz",
}


@dataclass(frozen=True)
class InferenceReport:
    """What an inference run wrote.

    Attributes:
        out: the results file.
        summary: the summary's Markdown file (figures beside it).
        n_waveforms: waveforms processed, one row each in ``out``.
        n_skipped: unusable waveforms skipped (listed in the summary).
        seconds: wall time from the first chunk submitted to the summary written.
    """

    out: Path
    summary: Path
    n_waveforms: int
    n_skipped: int
    seconds: float

    @property
    def waveforms_per_second(self) -> float:
        """Throughput of the run."""
        return (self.n_waveforms + self.n_skipped) / max(self.seconds, 1e-9)


def summary_path(out: Path) -> Path:
    """The summary beside ``out``: ``<out stem>.summary.md``.

    >>> summary_path(Path("runs/results.parquet")).as_posix()
    'runs/results.summary.md'
    """
    return out.with_name(out.stem + ".summary.md")


def resolve_sources(
    inputs: Sequence[str], fmt: str | None, locations: dict[str, str | None]
) -> list[WaveformSource]:
    """Sources of ``inputs`` with every location filled in from the files.

    Each location key applies to the inputs of its format (``tree`` and
    ``branch`` to ROOT files, ``dataset`` to HDF5, ``column`` to Parquet,
    ``array`` to NPZ); a key that applies to none of them is an error.

    Raises:
        InputError: no inputs; an unknown format; a file is missing or
            unreadable; a location is wrong or ambiguous (the message names
            the file).
    """
    if not inputs:
        raise InputError("no input files given")
    if fmt is not None and fmt not in WAVEFORM_FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(WAVEFORM_FORMATS)}")
    sources = [
        WaveformSource.from_path(path) if fmt is None else WaveformSource(Path(path), fmt)
        for path in inputs
    ]
    formats = {source.format for source in sources}
    for key, value in locations.items():
        if value is not None and _LOCATION_FORMATS[key] not in formats:
            raise InputError(
                f"--{key} {value!r} applies to {_LOCATION_FORMATS[key]} files, and no input "
                f"is one: {', '.join(inputs)}"
            )
    return [
        resolve_location(
            WaveformSource(
                source.path,
                source.format,
                **{
                    key: value
                    for key, value in locations.items()
                    if _LOCATION_FORMATS[key] == source.format
                },
            )
        )
        for source in sources
    ]


def resolve_bundle(model_uris: Sequence[str], cache_dir: Path) -> Path:
    """The model bundle directory that ``model_uris`` name.

    Either one local path (a bundle directory, or its ``bundle.json``) or
    MLflow URIs such as ``models:/peak-finder@champion`` (fetched through
    :func:`tasks.registry.fetch_bundle` into ``cache_dir``).

    Raises:
        InputError: no URI; local paths and URIs mixed; several local paths;
            a local path that is not a bundle.
    """
    if not model_uris:
        raise InputError("no model given: pass a bundle directory or MLflow model URIs")
    remote = [bool(_URI.match(uri)) for uri in model_uris]
    if all(remote):
        from tasks.registry import fetch_bundle

        return Path(fetch_bundle(list(model_uris), cache_dir))
    if any(remote) or len(model_uris) > 1:
        raise InputError(
            f"models {list(model_uris)}: give either one local bundle directory or "
            "MLflow model URIs (models:/NAME@ALIAS), not several paths or a mix"
        )
    path = Path(model_uris[0])
    if path.is_file() and path.name == BUNDLE_FILE:
        path = path.parent
    if not (path / BUNDLE_FILE).is_file():
        raise InputError(
            f"{model_uris[0]}: not a model bundle: expected a directory holding {BUNDLE_FILE}, "
            "peak_finder.onnx and cluster_counter.onnx, or an MLflow URI such as "
            f"{DEFAULT_MODEL_URIS[0]}"
        )
    return path


def _check_settings(
    polarity: str, sampling_rate_ghz: float | None, workers: int, chunk_size: int
) -> None:
    if polarity not in POLARITIES:
        raise DndxError(f"polarity {polarity!r}: expected one of {', '.join(POLARITIES)}")
    if sampling_rate_ghz is not None and not sampling_rate_ghz > 0:
        raise DndxError(f"sampling rate {sampling_rate_ghz} GS/s: expected a positive number")
    if workers < 1 or chunk_size < 1:
        raise DndxError(f"workers = {workers}, chunk_size = {chunk_size}: both must be at least 1")


@dataclass(frozen=True)
class _Job:
    """Entries ``[start, stop)`` of ``source``, whose results go to ``path``."""

    source: WaveformSource
    start: int
    stop: int
    path: Path


def _read_row(path: Path, row: int) -> dict[str, Any]:
    table = pq.read_table(path, columns=["event", "peak_time_ns", "n_clusters", "baseline"])
    return table.slice(row, 1).to_pylist()[0]


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

    Raises:
        InputError: a bad input file, location or model bundle.
        DndxError: a bad setting.
    """
    logger = get_run_logger()
    _check_settings(polarity, sampling_rate_ghz, workers, chunk_size)
    out_path = Path(out)
    if out_path.is_dir():
        raise InputError(f"{out_path}: is a directory; expected the path of a Parquet file")
    locations = {"tree": tree, "branch": branch, "dataset": dataset, "column": column}
    sources = resolve_sources(inputs, fmt, {**locations, "array": array})
    counts = [count_waveforms(source) for source in sources]
    for source, count in zip(sources, counts, strict=True):
        logger.info("%s (%s): %d waveforms", source.path, _location(source), count)

    uris = list(model_uris or DEFAULT_MODEL_URIS)
    cache = Path(model_cache_dir) if model_cache_dir else DEFAULT_MODEL_CACHE
    bundle_dir = resolve_bundle(uris, cache).resolve()
    # Opening the models here fails early on a bad bundle or an unusable device.
    bundle = OnnxModels.on_device(bundle_dir, device).bundle
    if sampling_rate_ghz is None:
        sampling_rate_ghz = bundle.model_sampling_rate_ghz
        logger.info(
            "no sampling rate given (--sampling-rate-ghz): assuming the models' rate, %g GS/s",
            sampling_rate_ghz,
        )
    settings = {
        "output": str(out_path),
        **_settings(sources, uris, bundle, sampling_rate_ghz, polarity),
    }
    logger.info("models %s: %s", settings["models"], settings["input sampling rate"])

    started = time.perf_counter()
    key = _settings_key(
        bundle_dir,
        {"polarity": polarity, "rate": sampling_rate_ghz, "sources": [repr(s) for s in sources]},
    )
    with _chunk_directory(out_path, key) as chunk_dir:
        jobs = _jobs(sources, counts, chunk_size, chunk_dir)
        results = _run_chunks(
            jobs, bundle_dir, polarity, sampling_rate_ghz, workers, sum(counts), device
        )
        skipped = [
            (str(job.source.path), event, reason)
            for job, result in zip(jobs, results, strict=True)
            for event, reason in result["bad_rows"]
        ]
        files = [str(source.path) for source in sources]
        n_written = _write_outputs(
            jobs, files, skipped, settings, sampling_rate_ghz, out_path, chunk_dir
        )
    report = InferenceReport(
        out_path, summary_path(out_path), n_written, len(skipped), time.perf_counter() - started
    )
    logger.info(
        "%d waveforms (%d skipped) in %.1f s, %.0f waveforms/s: %s, summary %s",
        report.n_waveforms,
        report.n_skipped,
        report.seconds,
        report.waveforms_per_second,
        report.out,
        report.summary,
    )
    return report


def _location(source: WaveformSource) -> str:
    keys = [key for key in _LOCATION_FORMATS if getattr(source, key) is not None]
    return ", ".join([source.format, *(f"{key} {getattr(source, key)!r}" for key in keys)])


def _settings(
    sources: list[WaveformSource],
    uris: list[str],
    bundle: ModelBundle,
    sampling_rate_ghz: float,
    polarity: str,
) -> dict[str, str]:
    """The run's settings as the summary lists them."""
    model_rate = bundle.model_sampling_rate_ghz
    resampled = "" if sampling_rate_ghz == model_rate else ", resampled to the models' rate"
    return {
        "inputs": ", ".join(f"{s.path} ({_location(s)})" for s in sources),
        "models": ", ".join(uris),
        "model sampling rate": f"{model_rate:g} GS/s",
        "input sampling rate": f"{sampling_rate_ghz:g} GS/s{resampled}",
        "polarity": polarity,
        "peak-finder threshold": f"{bundle.score_threshold:g}",
        **{f"provenance: {k}": v for k, v in sorted(bundle.provenance.items())},
    }


@contextmanager
def _chunk_directory(out: Path, settings_key: str) -> Iterator[Path]:
    """The work directory beside ``out`` for the chunk files of these settings.

    It outlives a failed or interrupted run, so that running the same command
    again only redoes what is missing; it is removed once ``out`` is written.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    directory = out.parent / f".{out.name}.{settings_key}.partial"
    directory.mkdir(exist_ok=True)
    shutil.rmtree(directory / "summary", ignore_errors=True)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _file_key(path: Path) -> str:
    """Identity of an input file's content as far as the file system tells: a file
    that is replaced or changed gets a new key, and its chunks are redone."""
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _settings_key(bundle_dir: Path, location: dict[str, Any]) -> str:
    """What, besides the inputs, decides a chunk's result."""
    files = sorted(p for p in bundle_dir.iterdir() if p.is_file())
    digest = hashlib.sha256(json.dumps(location, sort_keys=True, default=str).encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _jobs(
    sources: list[WaveformSource], counts: list[int], chunk_size: int, chunk_dir: Path
) -> list[_Job]:
    """Every file cut into entry ranges of ``chunk_size``, in (file, entry) order."""
    return [
        _Job(
            source,
            start,
            min(start + chunk_size, count),
            chunk_dir
            / f"{_file_key(source.path)}-{start:010d}-{min(start + chunk_size, count):010d}",
        )
        for source, count in zip(sources, counts, strict=True)
        for start in range(0, count, chunk_size)
    ]


def _write_outputs(
    jobs: list[_Job],
    files: list[str],
    skipped: list[tuple[str, int, str]],
    settings: dict[str, str],
    sampling_rate_ghz: float,
    out: Path,
    chunk_dir: Path,
) -> int:
    """Join the chunk files into ``out`` and write the summary beside it; the
    summary is staged first, so that nothing appears unless everything is written.
    Returns the number of rows written."""
    staging = chunk_dir / "summary"
    staging.mkdir()
    stem = staging / out.stem
    with atomic_file(out) as tmp_out:
        columns = _concatenate(jobs, tmp_out)
        examples = _examples(jobs, columns, sampling_rate_ghz)
        text = summarise(
            columns.drop(columns=["job", "row"]), examples, skipped, files, stem, settings
        )
        staged = [*figure_paths(stem), staging / summary_path(out).name]
        staged[-1].write_text(text)
        for path in staged:
            os.replace(path, out.with_name(path.name))
    return len(columns)


def _run_chunks(
    jobs: list[_Job],
    bundle_dir: Path,
    polarity: str,
    sampling_rate_ghz: float,
    workers: int,
    n_total: int,
    device: str,
) -> list[dict[str, Any]]:
    """Run every job not done by an earlier, interrupted run on a local Dask
    cluster; all results in job order."""
    results: list[dict[str, Any] | None] = [_done(job) for job in jobs]
    n_done = sum(r is not None for r in results)
    if n_done:
        get_run_logger().info(
            "resuming: %d of %d chunks are done from an earlier run", n_done, len(jobs)
        )
    with (
        dask_task_runner(DaskConfig(n_workers=workers)) as runner,
        tqdm(total=n_total, unit="wf", unit_scale=True, desc="infer", disable=None) as bar,
    ):
        bar.update(sum(_size(r) for r in results if r is not None))
        futures: dict[PrefectFuture[Any], int] = {}
        for index, job in enumerate(jobs):
            if results[index] is not None:
                continue
            parameters = {
                "source": job.source,
                "start": job.start,
                "stop": job.stop,
                "bundle_dir": bundle_dir,
                "polarity": polarity,
                "sampling_rate_ghz": sampling_rate_ghz,
                "out_path": job.path,
                "device": device,
            }
            futures[runner.submit(infer_chunk, parameters)] = index
        for future in as_completed(list(futures)):
            result = future.result()
            job = jobs[futures[future]]
            with atomic_file(_record(job)) as tmp:
                tmp.write_text(json.dumps({**result, "path": str(result["path"])}))
            results[futures[future]] = result
            bar.update(_size(result))
    return [r for r in results if r is not None]


def _record(job: _Job) -> Path:
    """Where a finished chunk's result is kept, beside its Parquet part."""
    return job.path.with_name(job.path.name + ".json")


def _done(job: _Job) -> dict[str, Any] | None:
    """The result of ``job`` if an earlier run finished it."""
    record = _record(job)
    if not (record.exists() and job.path.exists()):
        return None
    result: dict[str, Any] = json.loads(record.read_text())
    result["bad_rows"] = [tuple(row) for row in result["bad_rows"]]
    return result


def _size(result: dict[str, Any]) -> int:
    return int(result["n_waveforms"]) + len(result["bad_rows"])


def _concatenate(jobs: list[_Job], path: Path) -> pd.DataFrame:
    """Write the chunk files in job order into ``path``; return the columns the
    summary needs, with each row's ``job`` and ``row`` within it."""
    parts = []
    with pq.ParquetWriter(path, RESULT_SCHEMA) as writer:
        for index, job in enumerate(jobs):
            table = pq.read_table(job.path, schema=RESULT_SCHEMA)
            writer.write_table(table)
            part = table.select(["n_peaks", "n_clusters", "polarity"]).to_pandas()
            part.insert(0, "source_file", str(job.source.path))
            part["job"] = index
            part["row"] = np.arange(len(part))
            parts.append(part)
    if not parts:
        parts.append(
            pd.DataFrame(
                {
                    "source_file": pd.Series([], dtype=object),
                    "n_peaks": np.zeros(0, np.int32),
                    "n_clusters": np.zeros(0, np.float32),
                    "polarity": np.zeros(0, np.int8),
                    "job": np.zeros(0, np.int64),
                    "row": np.zeros(0, np.int64),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["source_file"] = frame["source_file"].astype("category")
    return frame


def _examples(
    jobs: list[_Job], columns: pd.DataFrame, sampling_rate_ghz: float
) -> list[ExampleWaveform]:
    """A few waveforms spread over the counts, re-read from their files."""
    examples = []
    for position in choose_examples(columns["n_clusters"].to_numpy()):
        job = jobs[int(columns["job"].iat[position])]
        row = _read_row(job.path, int(columns["row"].iat[position]))
        chunk = read_chunk(job.source, row["event"], row["event"] + 1)
        examples.append(
            ExampleWaveform(
                source_file=str(job.source.path),
                event=row["event"],
                samples=chunk.samples[0],
                sampling_rate_ghz=sampling_rate_ghz,
                peak_time_ns=np.asarray(row["peak_time_ns"], dtype=np.float32),
                n_clusters=row["n_clusters"],
                baseline=row["baseline"],
            )
        )
    return examples
