"""Where an inference run keeps its work: chunk parts, resume records and a lock.

An output file ``out`` has a hidden work directory beside it,
``.<out name>.<settings key>.partial``, that holds one Parquet part per chunk
(entries ``[start, stop)`` of one input file) and, beside each finished part,
a JSON record of what the chunk found (:class:`ChunkResult`). A chunk with a
record is never redone: running the same command again after an interruption
redoes only the chunks without one. Parts are named after their file's
identity (path, size, modification time), and the directory after everything
else that decides a result (the models' bytes, polarity, rate, locations), so
a changed input or setting never reuses a stale part.

One run at a time writes an output: :func:`output_lock` holds an exclusive
lock on ``.<out name>.lock`` for the run, which the operating system releases
if the process dies, so a killed run never blocks the next one, and a work
directory is only ever used by the run that holds the lock.

When every chunk is done, :func:`join_chunks` writes the parts in (file,
entry) order into one file, with the settings key in its metadata, so that a
later run can tell its own earlier result (:func:`written_settings_key`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dndx.chain.inference import RESULT_SCHEMA, TRACK_FIELDS
from dndx.errors import DndxError
from dndx.io.readers import WaveformSource

__all__ = [
    "SETTINGS_KEY_METADATA",
    "Chunk",
    "ChunkResult",
    "HeldLock",
    "OutputBusyError",
    "check_free",
    "file_key",
    "finished_result",
    "join_chunks",
    "lock_path",
    "output_lock",
    "plan_chunks",
    "read_result_row",
    "record_result",
    "remove_stale_work",
    "settings_key",
    "work_directory",
    "written_settings_key",
]

#: The key of the output file's Parquet metadata that holds its settings key.
SETTINGS_KEY_METADATA = b"dndx.settings_key"


class OutputBusyError(DndxError):
    """Another live run holds the lock of the same output."""


@dataclass(frozen=True)
class Chunk:
    """Entries ``[start, stop)`` of ``source``, whose results go to the part ``path``."""

    source: WaveformSource
    start: int
    stop: int
    path: Path

    @property
    def record(self) -> Path:
        """The finished chunk's :class:`ChunkResult`, as JSON beside its part."""
        return self.path.with_name(self.path.name + ".json")


@dataclass(frozen=True)
class ChunkResult:
    """What a finished chunk found.

    Attributes:
        n_waveforms: rows written to the chunk's part.
        bad_rows: ``(event, reason)`` of every skipped entry, ``event`` the
            entry index in the file.
        statuses: rows of each status (:data:`dndx.chain.inference.STATUSES`).
        n_polarity_contradicted: rows whose polarity, read off the waveform,
            is not the one given.
        seconds: where the worker's time went: ``read`` (waiting for the
            reader, beyond what overlapped the chain), ``chain`` and ``write``;
            a measurement, not a result, so left out of comparisons.
    """

    n_waveforms: int
    bad_rows: tuple[tuple[int, str], ...] = ()
    statuses: Mapping[str, int] = field(default_factory=dict)
    n_polarity_contradicted: int = 0
    seconds: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def n_entries(self) -> int:
        """Entries of the file the chunk covered, written or skipped."""
        return self.n_waveforms + len(self.bad_rows)


def file_key(path: Path) -> str:
    """Identity of an input file's content as far as the file system tells: a file
    that is replaced or changed gets a new key, and its chunks are redone."""
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def settings_key(bundle_dir: Path, settings: Mapping[str, Any]) -> str:
    """What, besides the inputs' content, decides a chunk's result: the bundle's
    files, byte for byte, and ``settings``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in sorted(p for p in bundle_dir.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def work_directory(out: Path, key: str) -> Path:
    """The work directory of ``out`` for the settings ``key``.

    >>> work_directory(Path("runs/results.parquet"), "0123abcd").as_posix()
    'runs/.results.parquet.0123abcd.partial'
    """
    return out.parent / f".{out.name}.{key}.partial"


def lock_path(out: Path) -> Path:
    """The lock file of ``out``.

    >>> lock_path(Path("runs/results.parquet")).as_posix()
    'runs/.results.parquet.lock'
    """
    return out.parent / f".{out.name}.lock"


def plan_chunks(
    sources: Sequence[WaveformSource], counts: Sequence[int], chunk_size: int, directory: Path
) -> list[Chunk]:
    """Every file cut into entry ranges of ``chunk_size``, in (file, entry) order."""
    chunks = []
    for source, count in zip(sources, counts, strict=True):
        key = file_key(source.path)
        for start in range(0, count, chunk_size):
            stop = min(start + chunk_size, count)
            chunks.append(Chunk(source, start, stop, directory / f"{key}-{start:010d}-{stop:010d}"))
    return chunks


def finished_result(chunk: Chunk) -> ChunkResult | None:
    """The result of ``chunk`` if a run finished it, else None."""
    if not (chunk.record.exists() and chunk.path.exists()):
        return None
    raw = json.loads(chunk.record.read_text())
    return ChunkResult(
        n_waveforms=int(raw["n_waveforms"]),
        bad_rows=tuple((int(event), str(reason)) for event, reason in raw["bad_rows"]),
        statuses={str(k): int(v) for k, v in raw["statuses"].items()},
        n_polarity_contradicted=int(raw["n_polarity_contradicted"]),
        # Records of a release before the timings have none.
        seconds={str(k): float(v) for k, v in raw.get("seconds", {}).items()},
    )


def record_result(chunk: Chunk, result: ChunkResult) -> None:
    """Mark ``chunk`` finished with ``result``; its part must be written already."""
    tmp = chunk.record.with_name(chunk.record.name + ".tmp")
    tmp.write_text(json.dumps(asdict(result)))
    os.replace(tmp, chunk.record)


def remove_stale_work(out: Path, keep: Path) -> list[Path]:
    """Remove the work directories of ``out`` other than ``keep``: left by runs
    with other settings that were killed or failed. Call it holding the lock.
    Returns what was removed."""
    stale = [p for p in out.parent.glob(f".{out.name}.*.partial") if p != keep and p.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def written_settings_key(out: Path) -> str | None:
    """The settings key in the metadata of an earlier result at ``out``; None
    if ``out`` is no such file."""
    try:
        metadata = pq.read_schema(out).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    key = metadata.get(SETTINGS_KEY_METADATA)
    return key.decode() if key else None


def join_chunks(
    chunks: Sequence[Chunk], path: Path, key: str, schema: pa.Schema = RESULT_SCHEMA
) -> pd.DataFrame:
    """Write the chunk parts, of ``schema``, in order into ``path``, marked with
    the settings ``key``; return the columns the summary and the track table
    need, with each row's ``chunk`` and ``row`` within it."""
    parts = []
    marked = schema.with_metadata({SETTINGS_KEY_METADATA: key.encode()})
    columns = ["status", "n_peaks", "n_clusters", "polarity"]
    columns += [name for name in TRACK_FIELDS if name in schema.names]
    with pq.ParquetWriter(path, marked) as writer:
        for index, chunk in enumerate(chunks):
            table = pq.read_table(chunk.path, schema=schema)
            writer.write_table(table.replace_schema_metadata(marked.metadata))
            part = table.select(columns).to_pandas()
            part.insert(0, "source_file", str(chunk.source.path))
            part["chunk"] = index
            part["row"] = np.arange(len(part))
            parts.append(part)
    if not parts:
        empty = pa.Table.from_pylist([], schema).select(["source_file", *columns])
        parts.append(
            empty.to_pandas().assign(chunk=np.zeros(0, np.int64), row=np.zeros(0, np.int64))
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["source_file"] = frame["source_file"].astype("category")
    return frame


def read_result_row(path: Path, row: int) -> dict[str, Any]:
    """Row ``row`` of a chunk part: its event, peak times, count and baseline."""
    table = pq.read_table(path, columns=["event", "peak_time_ns", "n_clusters", "baseline"])
    return table.slice(row, 1).to_pylist()[0]


def _holder(lock: Path) -> str:
    try:
        raw = json.loads(lock.read_text())
    except (OSError, ValueError):
        return "another run"
    return (
        f"another run (pid {raw['pid']} on {raw['host']}, started {raw['started']}: "
        f"{raw['command']})"
    )


def _busy(lock: Path) -> OutputBusyError:
    return OutputBusyError(
        f"{lock.parent / lock.name.removeprefix('.').removesuffix('.lock')}: "
        f"{_holder(lock)} is writing this output; wait for it to finish, pass --wait "
        "to queue behind it, or choose another --out"
    )


def check_free(out: Path) -> None:
    """Refuse at once an output whose lock a live run holds: a check before
    the slow preparations of a run, which :func:`output_lock` repeats.

    Raises:
        OutputBusyError: as :func:`output_lock` without ``wait``.
    """
    lock = lock_path(out)
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            raise _busy(lock) from None
        raise
    finally:
        os.close(fd)


def _stale_holder(fd: int) -> str | None:
    """The pid a lock file names, when that process is gone from this host."""
    try:
        raw = json.loads(os.pread(fd, 4096, 0) or b"null")
        pid, host = int(raw["pid"]), raw["host"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if host != socket.gethostname() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"pid {pid}, {raw.get('command', 'a run')}"
    except PermissionError:
        return None
    return None


def _acquire(lock: Path, wait: bool, on_wait: Callable[[str], None]) -> int:
    """An open descriptor of ``lock`` holding its exclusive lock."""
    waited = False
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = _holder(lock)
            if not wait:
                os.close(fd)
                raise _busy(lock) from None
            if not waited:
                on_wait(f"waiting for {holder} to finish writing this output")
                waited = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        # The holder before us may have removed the file after we opened it.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@dataclass(frozen=True)
class HeldLock:
    """The lock of an output, held by this process (:func:`output_lock`).

    Attributes:
        path: the lock file.
        fd: the open descriptor that holds it.
    """

    path: Path
    fd: int

    @property
    def held(self) -> bool:
        """Whether the descriptor is still open on the lock file."""
        try:
            return os.fstat(self.fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False


@contextlib.contextmanager
def output_lock(
    out: Path, wait: bool = False, on_wait: Callable[[str], None] = print
) -> Iterator[HeldLock]:
    """Hold the lock of ``out`` for the block. Not re-entrant: a run plans once
    and takes its lock once, so a second lock of the same output, from this
    process too, is another run's.

    Args:
        out: the output file; its directory must exist.
        wait: wait for a live run that holds the lock instead of refusing.
        on_wait: told once, in words, whom this run waits for; and of a lock
            left by a process that is gone, which is cleared.

    Raises:
        OutputBusyError: another live run holds the lock and ``wait`` is False.
    """
    lock = lock_path(out).absolute()
    fd = _acquire(lock, wait, on_wait)
    if stale := _stale_holder(fd):
        on_wait(f"cleared the lock of {lock.parent / lock.name}, left by a run that died ({stale})")
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv)),
    }
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    try:
        yield HeldLock(lock, fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)
