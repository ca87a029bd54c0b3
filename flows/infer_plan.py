"""Everything ``dndx infer`` checks before any work, in plain Python.

:func:`plan_inference` checks what a user asks (an :class:`InferenceRequest`):
the settings, the inputs (they exist, are readable, their locations resolve),
the sampling rate, the output path and the models; it returns an
:class:`InferencePlan`. :func:`locked` holds the output's lock beside it,
and the flow carries that plan out without checking anything again. This
module imports neither Prefect nor Dask, so the command line plans before
either starts and a mistake is reported in about a second.

The output is guarded: ``--out`` that is one of the inputs is refused, and
existing outputs (the results file, its track table or its summary) are replaced only with
``overwrite``, or when the results file is this same command's own earlier
result (same inputs, models and settings, recorded in its metadata).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa

from dndx.chain.bundle import BUNDLE_FILE, ModelBundle
from dndx.chain.inference import METHODS, check_sampling_rate, minimum_length, result_schema
from dndx.chain.preprocessing import POLARITIES, Polarity
from dndx.config import SAMPLING_RATES_GHZ
from dndx.domain.profile import TrainingDomain
from dndx.errors import DndxError, InputError
from dndx.io.inference_store import (
    HeldLock,
    check_free,
    output_lock,
    settings_key,
    work_directory,
    written_settings_key,
)
from dndx.io.readers import (
    LOCATION_KEYS,
    PER_WAVEFORM_KEYS,
    WAVEFORM_FORMATS,
    WaveformSource,
    count_waveforms,
    find_rate_column,
    missing_file,
    resolve_source,
    stored_rates,
)
from dndx.reporting.inference_summary import figure_paths
from flows.network import check_reachable

__all__ = [
    "DEFAULT_MODEL_CACHE",
    "DEFAULT_MODEL_URIS",
    "DEFAULT_WORKERS",
    "InferencePlan",
    "InferenceRequest",
    "locked",
    "locked_plan",
    "plan_inference",
    "resolve_bundle",
    "resolve_sources",
    "summary_json_path",
    "summary_path",
    "tracks_path",
    "usable_cores",
]

#: The registered champions.
DEFAULT_MODEL_URIS: tuple[str, ...] = (
    "models:/peak-finder@champion",
    "models:/cluster-counter@champion",
)
#: Worker processes of a run that names none, at most the usable cores.
DEFAULT_WORKERS = 2
#: Where models fetched from the registry are kept between runs.
DEFAULT_MODEL_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dndx" / "models"
)

# A URI scheme of two or more letters ("models:/", "runs:/"); "C:/" stays a path.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
_LOCATION_FORMATS = {key: fmt for fmt, keys in LOCATION_KEYS.items() for key in keys}


def summary_path(out: Path) -> Path:
    """The summary beside ``out``: ``<out stem>.summary.md``.

    >>> summary_path(Path("runs/results.parquet")).as_posix()
    'runs/results.summary.md'
    """
    return out.with_name(out.stem + ".summary.md")


def summary_json_path(out: Path) -> Path:
    """The machine-readable summary beside ``out``: ``<out stem>.summary.json``.

    >>> summary_json_path(Path("runs/results.parquet")).as_posix()
    'runs/results.summary.json'
    """
    return out.with_name(out.stem + ".summary.json")


def tracks_path(out: Path) -> Path:
    """The track table beside ``out``: ``<out stem>.tracks.parquet``.

    >>> tracks_path(Path("runs/results.parquet")).as_posix()
    'runs/results.tracks.parquet'
    """
    return out.with_name(out.stem + ".tracks.parquet")


@dataclass(frozen=True)
class InferencePlan:
    """A checked inference run: what to read, with which models, where to write.

    Attributes:
        sources: the inputs with every location resolved.
        counts: entries of each source.
        out: the results file.
        bundle_dir: the model bundle directory (fetched if from the registry).
        bundle: its ``bundle.json``.
        model_uris: the models as the user named them.
        sampling_rate_ghz: the inputs' rate (given, or the models' rate).
        polarity: as given.
        device: where ONNX Runtime runs.
        workers: Dask worker processes.
        chunk_size: entries per task.
        min_length: the fewest samples a usable waveform has at the inputs' rate.
        key: the settings key of the run (:func:`dndx.io.inference_store.settings_key`).
        overwrite: whether existing outputs may be replaced.
        wait: whether to wait for another run writing ``out`` instead of refusing.
        method: a key of :data:`dndx.chain.inference.METHODS`.
        rate_origin: the rate each input is read at and where it comes from, in words.
        warnings: what the run warns of before it starts (inputs without waveforms).
        training_domain: the models' training domain; None for a bundle
            registered before it was stored.
        lock: the output's lock, held for the run (:func:`locked_plan`); None
            for a plan not yet locked.
    """

    sources: tuple[WaveformSource, ...]
    counts: tuple[int, ...]
    out: Path
    bundle_dir: Path
    bundle: ModelBundle
    model_uris: tuple[str, ...]
    sampling_rate_ghz: float
    polarity: Polarity
    device: str
    workers: int
    chunk_size: int
    min_length: int
    key: str
    overwrite: bool = field(default=False)
    wait: bool = field(default=False)
    method: str = field(default=METHODS[0])
    rate_origin: str = field(default="")
    warnings: tuple[str, ...] = field(default=())
    training_domain: TrainingDomain | None = None
    lock: HeldLock | None = None

    @property
    def work_dir(self) -> Path:
        """The work directory of the run's chunks."""
        return work_directory(self.out, self.key)

    @property
    def n_entries(self) -> int:
        """Entries of every input together."""
        return sum(self.counts)

    @property
    def on_tracks(self) -> bool:
        """Whether the inputs name a track column: the run writes a track table."""
        return self.sources[0].track_column is not None

    @property
    def result_schema(self) -> pa.Schema:
        """The schema of the results: with ``track`` and ``path_cm`` where named."""
        source = self.sources[0]
        named = {"track": source.track_column, "path_cm": source.path_column}
        return result_schema([column for column, name in named.items() if name is not None])

    def settings(self) -> dict[str, str]:
        """The run's settings as the summary lists them."""
        model_rate = self.bundle.candidates.model_sampling_rate_ghz
        resampled = (
            "" if self.sampling_rate_ghz == model_rate else ", resampled to the models' rate"
        )
        rate = self.rate_origin or f"{self.sampling_rate_ghz:g} GS/s{resampled}"
        return {
            "inputs": ", ".join(f"{s.path} ({location(s)})" for s in self.sources),
            "models": ", ".join(self.model_uris),
            "model sampling rate": f"{model_rate:g} GS/s",
            "input sampling rate": rate,
            "polarity": self.polarity,
            "method": self.method,
            **{
                key.replace("_", " "): str(getattr(self.sources[0], key))
                for key in PER_WAVEFORM_KEYS
                if getattr(self.sources[0], key) is not None
            },
            "peak-finder threshold": f"{self.bundle.score_threshold:g}",
            **{f"provenance: {k}": v for k, v in sorted(self.bundle.provenance.items())},
        }


def location(source: WaveformSource) -> str:
    """The format and location keys of ``source``, in words.

    >>> location(WaveformSource(Path("a.root"), "root", tree="sim", branch="wf_i"))
    "root, tree 'sim', branch 'wf_i'"
    """
    keys = [key for key in LOCATION_KEYS[source.format] if getattr(source, key) is not None]
    return ", ".join([source.format, *(f"{key} {getattr(source, key)!r}" for key in keys)])


@dataclass(frozen=True)
class InferenceRequest:
    """What a user asks of ``dndx infer``, unchecked; every default of the
    command is written here once, and the command line shows these.

    Attributes:
        inputs: waveform files (ROOT, HDF5, Parquet, NPZ).
        out: the results file (Parquet); its summary is written beside it.
        fmt: the format of every input; None: from each file's suffix.
        tree, branch, dataset, column, array: where the waveforms are, for the
            inputs of the matching format (:data:`dndx.io.readers.LOCATION_KEYS`);
            None: found in each file.
        sampling_rate_ghz: the inputs' rate; None: each waveform's stored rate,
            else the models' rate.
        polarity: a key of :data:`dndx.chain.preprocessing.POLARITIES`.
        model_uris: a local bundle directory, or MLflow URIs.
        workers: Dask worker processes, one thread each; None:
            :data:`DEFAULT_WORKERS`, or the usable cores if fewer.
        chunk_size: waveforms per chunk, the unit a resumed run redoes.
        model_cache_dir: where models fetched from the registry are kept.
        device: where ONNX Runtime runs the models (:data:`dndx.chain.onnx.DEVICES`).
        overwrite: replace existing outputs that are not this command's own.
        wait: wait for another run writing ``out`` instead of refusing.
        tracking_uri: the MLflow registry of ``model_uris``; None:
            ``MLFLOW_TRACKING_URI`` or the project's.
        method: a key of :data:`dndx.chain.inference.METHODS`.
        track_column, path_column, rate_column: columns of every input holding
            each waveform's track id, path length in the cell (cm) and
            sampling rate (GS/s); None: no tracks, and the rate column found
            among :data:`dndx.io.readers.RATE_COLUMN_NAMES` where present.
    """

    inputs: tuple[str, ...]
    out: str
    fmt: str | None = None
    tree: str | None = None
    branch: str | None = None
    dataset: str | None = None
    column: str | None = None
    array: str | None = None
    sampling_rate_ghz: float | None = None
    polarity: str = POLARITIES[0]
    model_uris: tuple[str, ...] = DEFAULT_MODEL_URIS
    workers: int | None = None
    chunk_size: int = 2000
    model_cache_dir: Path = DEFAULT_MODEL_CACHE
    device: str = "cpu"
    overwrite: bool = False
    wait: bool = False
    tracking_uri: str | None = None
    method: str = METHODS[0]
    track_column: str | None = None
    path_column: str | None = None
    rate_column: str | None = None

    @property
    def locations(self) -> dict[str, str | None]:
        """The location keys as given, by key."""
        return {key: getattr(self, key) for key in _LOCATION_FORMATS}


def plan_inference(request: InferenceRequest) -> InferencePlan:
    """Check every setting, input, the output path and the models of ``request``;
    start nothing and lock nothing (:func:`locked` locks).

    Each input is read at the sampling rate it stores per waveform: in
    ``rate_column``, or else in one of :data:`dndx.io.readers.RATE_COLUMN_NAMES`
    beside its waveforms; an input that stores none at ``sampling_rate_ghz``,
    or else at the models' rate. A ``sampling_rate_ghz`` that a stored rate
    contradicts is refused. Without ``wait``, an output another run writes
    is refused here, before the models load.

    ``track_column`` names a column (ROOT branch, HDF5 dataset, Parquet column,
    NPZ array) of track ids beside the waveforms of every input, and
    ``path_column`` one of path lengths in cm: the run then writes a track
    table (:func:`tracks_path`). Both are checked in every file here.

    Raises:
        DndxError: a bad setting; the output is an input, cannot be written,
            or exists (without ``overwrite``).
        InputError: a missing, unreadable or foreign input or location; bad models.
    """
    r = request
    workers = _checked_request(r)
    out_path = Path(r.out)
    _check_out(out_path, r.inputs)
    if not r.wait:
        check_free(out_path)
    per_waveform = {
        "track_column": r.track_column,
        "path_column": r.path_column,
        "rate_column": r.rate_column,
    }
    sources = resolve_sources(r.inputs, r.fmt, r.locations, per_waveform)
    counts = tuple(count_waveforms(source) for source in sources)
    warnings = _check_counts(sources, counts)
    if r.rate_column is None:
        sources = [replace(source, rate_column=find_rate_column(source)) for source in sources]
    origins = [_stored_rates(source, r.sampling_rate_ghz) for source in sources]
    bundle_dir, bundle = _checked_bundle(r)
    rate = (
        bundle.candidates.model_sampling_rate_ghz
        if r.sampling_rate_ghz is None
        else r.sampling_rate_ghz
    )
    key = settings_key(
        bundle_dir,
        {
            "polarity": r.polarity,
            "rate": rate,
            "sources": [repr(s) for s in sources],
            "method": r.method,
        },
    )
    _check_existing(out_path, key, r.overwrite)
    return InferencePlan(
        sources=tuple(sources),
        counts=counts,
        out=out_path,
        bundle_dir=bundle_dir,
        bundle=bundle,
        model_uris=tuple(r.model_uris),
        sampling_rate_ghz=rate,
        polarity=cast(Polarity, r.polarity),
        device=r.device,
        workers=workers,
        chunk_size=r.chunk_size,
        min_length=minimum_length(bundle, rate),
        key=key,
        overwrite=r.overwrite,
        wait=r.wait,
        method=r.method,
        rate_origin=_rate_origin(sources, origins, rate, given=r.sampling_rate_ghz is not None),
        warnings=warnings,
        training_domain=TrainingDomain.load(bundle_dir),
    )


def _checked_request(r: InferenceRequest) -> int:
    """The workers ``r`` runs on, once its settings are checked.

    Raises:
        DndxError: a bad setting, named by its flag.
    """
    workers = min(DEFAULT_WORKERS, usable_cores()) if r.workers is None else r.workers
    _check_settings(r.polarity, r.sampling_rate_ghz, workers, r.chunk_size)
    if r.path_column is not None and r.track_column is None:
        raise DndxError(
            f"--path-column {r.path_column}: path lengths are summed per track; name the "
            "column of track ids with --track-column too"
        )
    if r.method not in METHODS:
        raise DndxError(f"--method {r.method}: expected one of {', '.join(METHODS)}")
    if r.sampling_rate_ghz is not None:
        check_sampling_rate(r.sampling_rate_ghz, SAMPLING_RATES_GHZ)
    return workers


def _rate_origin(
    sources: Sequence[WaveformSource], origins: Sequence[str | None], rate: float, given: bool
) -> str:
    """Where each input's sampling rate comes from: its stored rates (``origins``)
    or ``rate``, given with --sampling-rate-ghz or the models' own."""
    fallback = (
        f"{rate:g} GS/s, given (--sampling-rate-ghz)"
        if given
        else f"{rate:g} GS/s, assumed: the models' rate (no --sampling-rate-ghz)"
    )
    if not any(origins):
        return fallback
    return "; ".join(
        f"{source.path}: {origin or fallback}"
        for source, origin in zip(sources, origins, strict=True)
    )


def _checked_bundle(request: InferenceRequest) -> tuple[Path, ModelBundle]:
    """The bundle directory of ``request`` and its bundle, its models opened and
    probed on the request's device: a bad bundle, a damaged graph or an unusable
    device fails here.

    Raises:
        InputError: as :func:`resolve_bundle`; a damaged bundle; no D2 settings
            for ``--method d2``.
    """
    from dndx.chain.onnx import OnnxModels

    bundle_dir = resolve_bundle(
        request.model_uris, request.model_cache_dir, request.tracking_uri
    ).resolve()
    models = OnnxModels.on_device(bundle_dir, request.device)
    models.probe()
    if request.method == "d2" and models.bundle.d2 is None:
        raise InputError(
            f"{bundle_dir}: the bundle holds no D2 settings for --method d2: it was "
            "registered without an evaluation (run the evaluate stage, then register)"
        )
    return bundle_dir, models.bundle


@contextmanager
def locked(plan: InferencePlan, on_wait: Callable[[str], None] = print) -> Iterator[InferencePlan]:
    """``plan`` holding its output's lock for the block: what the inference flow
    carries out (:func:`flows.infer.infer`). The output's directory is created.

    The check of existing outputs is repeated holding the lock, since a run
    waited for (``wait``) may have written them meanwhile; ``on_wait`` is told
    whom the run waits for (:func:`dndx.io.inference_store.output_lock`).

    Raises:
        DndxError: as :func:`plan_inference`; another run writes the output
            (without ``wait``).
    """
    plan.out.absolute().parent.mkdir(parents=True, exist_ok=True)
    with output_lock(plan.out, plan.wait, on_wait) as lock:
        _check_existing(plan.out, plan.key, plan.overwrite)
        yield replace(plan, lock=lock)


@contextmanager
def locked_plan(
    request: InferenceRequest, on_wait: Callable[[str], None] = print
) -> Iterator[InferencePlan]:
    """The plan of ``request`` (:func:`plan_inference`), :func:`locked` for the block."""
    with locked(plan_inference(request), on_wait) as plan:
        yield plan


def _check_counts(sources: Sequence[WaveformSource], counts: Sequence[int]) -> tuple[str, ...]:
    """Refuse inputs that hold no waveform at all; warn of each empty one among others.

    Raises:
        InputError: no input holds a waveform.
    """
    empty = [str(s.path) for s, n in zip(sources, counts, strict=True) if n == 0]
    if len(empty) == len(sources):
        raise InputError(f"{', '.join(empty)}: hold(s) no waveforms; nothing to infer")
    return tuple(f"{name}: holds no waveforms; the other inputs are read" for name in empty)


def _stored_rates(source: WaveformSource, sampling_rate_ghz: float | None) -> str:
    """Where ``source`` stores a rate per waveform: the rates checked against the
    models' range and ``sampling_rate_ghz``, in words; "" if it stores none.

    Raises:
        DndxError: a stored rate outside the models' range, or other than
            ``sampling_rate_ghz``.
    """
    if source.rate_column is None:
        return ""
    rates = np.unique(stored_rates(source))
    listed = ", ".join(f"{r:g}" for r in rates[:10]) + (" ..." if len(rates) > 10 else "")
    where = f"{source.path}: sampling-rate column {source.rate_column!r} ({listed} GS/s)"
    if sampling_rate_ghz is not None and (rates != sampling_rate_ghz).any():
        raise DndxError(
            f"--sampling-rate-ghz {sampling_rate_ghz:g} contradicts {where}; leave "
            "--sampling-rate-ghz out to read each waveform at its stored rate"
        )
    for rate in rates:
        try:
            check_sampling_rate(float(rate), SAMPLING_RATES_GHZ)
        except DndxError as error:
            raise DndxError(f"{where}: {error}") from None
    return f"per waveform, {listed} GS/s, from column {source.rate_column!r}"


def _check_settings(
    polarity: str, sampling_rate_ghz: float | None, workers: int, chunk_size: int
) -> None:
    if polarity not in POLARITIES:
        raise DndxError(f"--polarity {polarity}: expected one of {', '.join(POLARITIES)}")
    if sampling_rate_ghz is not None and not (
        math.isfinite(sampling_rate_ghz) and sampling_rate_ghz > 0
    ):
        raise DndxError(
            f"--sampling-rate-ghz {sampling_rate_ghz}: expected a positive, finite number"
        )
    if workers < 1 or chunk_size < 1:
        raise DndxError(f"--workers {workers}, --chunk-size {chunk_size}: both must be at least 1")
    if workers > usable_cores():
        raise DndxError(
            f"--workers {workers}: this machine runs at most {usable_cores()} worker "
            "processes (one per core it lets this process use)"
        )


def usable_cores() -> int:
    """The cores this process may run on: the most worker processes a run starts."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _outputs(out: Path) -> list[Path]:
    """Every file a run writes: the results, the track table, the summaries and figures."""
    return [
        out,
        tracks_path(out),
        summary_path(out),
        summary_json_path(out),
        *figure_paths(out.with_suffix("")),
    ]


def _check_out(out: Path, inputs: Sequence[str]) -> None:
    """Refuse an output that is an input, a directory, or cannot be written."""
    targets = {p.resolve() for p in _outputs(out)}
    for name in inputs:
        path = Path(name)
        if path.resolve() in targets or (
            path.exists() and any(t.exists() and os.path.samefile(path, t) for t in targets)
        ):
            raise DndxError(
                f"--out {out}: would overwrite the input {name}; choose another output path"
            )
    if out.is_dir():
        raise DndxError(f"--out {out}: is a directory; expected the path of a Parquet file")
    parent = out.absolute().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DndxError(f"--out {out}: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise DndxError(
            f"--out {out}: cannot write in {existing} ({error.strerror or error})"
        ) from None


def _check_existing(out: Path, key: str, overwrite: bool) -> None:
    """Refuse to replace existing outputs unless asked, or unless ``out`` is this
    command's own earlier result."""
    if overwrite or (out.exists() and written_settings_key(out) == key):
        return
    existing = [str(p) for p in _outputs(out) if p.exists()]
    if existing:
        raise DndxError(
            f"--out {out}: {', '.join(existing)} exist(s) and are not this command's own "
            "earlier result; pass --overwrite to replace them, or choose another output path"
        )


def resolve_sources(
    inputs: Sequence[str],
    fmt: str | None,
    locations: dict[str, str | None],
    per_waveform: Mapping[str, str | None] | None = None,
) -> list[WaveformSource]:
    """Sources of ``inputs`` with every location filled in from the files.

    Each location key applies to the inputs of its format (``tree`` and
    ``branch`` to ROOT files, ``dataset`` to HDF5, ``column`` to Parquet,
    ``array`` to NPZ); a key that applies to none of them is an error. The
    columns of ``per_waveform`` (keys of
    :data:`dndx.io.readers.PER_WAVEFORM_KEYS`) apply to every input.

    Raises:
        InputError: no inputs; an unknown format; a file is missing or
            unreadable; a location is wrong or ambiguous; a per-waveform
            column is missing or holds no usable numbers (the message names
            the file and the column).
    """
    if not inputs:
        raise InputError("no input files given")
    if fmt is not None and fmt not in WAVEFORM_FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(WAVEFORM_FORMATS)}")
    for name in inputs:
        path = Path(name)
        if not path.exists():
            raise missing_file(path)
        if path.is_file() and not os.access(path, os.R_OK):
            raise InputError(f"{path}: cannot be read (permission denied)")
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
        resolve_source(
            WaveformSource(
                source.path,
                source.format,
                **{
                    key: value
                    for key, value in locations.items()
                    if _LOCATION_FORMATS[key] == source.format
                },
                **(per_waveform or {}),
            )
        )
        for source in sources
    ]


def resolve_bundle(
    model_uris: Sequence[str], cache_dir: Path, tracking_uri: str | None = None
) -> Path:
    """The model bundle directory that ``model_uris`` name.

    Either one local path (a bundle directory, or its ``bundle.json``) or
    MLflow URIs such as ``models:/peak-finder@champion`` (fetched through
    :func:`tasks.registry.fetch_bundle` from the registry at ``tracking_uri``,
    default: ``MLFLOW_TRACKING_URI`` or the project's, into ``cache_dir``).

    Raises:
        InputError: no URI; local paths and URIs mixed; several local paths;
            a local path that is not a bundle; no registry found.
    """
    if not model_uris:
        raise InputError("no model given: pass a bundle directory or MLflow model URIs")
    remote = [bool(_URI.match(uri)) for uri in model_uris]
    if all(remote):
        if tracking_uri:
            check_reachable(tracking_uri, "--tracking-uri")
        elif os.environ.get("MLFLOW_TRACKING_URI"):
            check_reachable(os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI")
        from tasks.registry import fetch_bundle

        return Path(fetch_bundle(list(model_uris), cache_dir, tracking_uri))
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
