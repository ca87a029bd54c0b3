"""A catalogue of bad inputs to ``dndx infer``, each a regression test.

:data:`REFUSED` lists command lines that must stop with one ``dndx: error:``
line naming the file, model or path and the problem, exit status 2, before
Prefect starts and without writing anything: a new case is one line.
:data:`ROWS` lists waveforms that must not stop a file: each is flagged with
a status or skipped with its reason, keeping its row, all in one run of the
flow. :data:`IMPOSSIBLE_LABELS` lists labelled files that ``dndx data check``
and the ``ingest`` task refuse, and :data:`DATA_REFUSED` command lines of
``dndx data`` that stop in one line. The models are the untrained, seeded
pair of ``tests/conftest.py``.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import awkward as ak
import h5py
import numpy as np
import onnx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numpy.typing import NDArray
from onnx import numpy_helper

from dndx.chain.inference import infer_waveforms
from dndx.chain.onnx import OnnxModels
from dndx.config import load_params
from dndx.errors import InputError
from dndx.io.inference_store import lock_path
from dndx.io.ingestion import IngestJob
from dndx.io.labelled import LabelledLayout
from dndx.ragged import Ragged
from dndx.simulation.generator import simulate_range
from flows.cli import main as cli
from tasks.ingestion import ingest_chunk
from tests.conftest import ROOT, hold_output_lock
from tests.labelled_files import PEAKS, cepc_branches, write_tree

RATE_GHZ = 1.5
N_GOOD = 12
#: Chunks of the interrupted run: the first finishes, the barrier holds the others.
N_CHUNKS = 3
STORED_RATES_GHZ = (1.2, 1.5, 2.0)
FULL_SCALE = 4095.0

#: (case, arguments after ``dndx infer``, what the error line says). ``{d}`` is
#: the directory of the files below, ``{bundle}`` the untrained bundle.
REFUSED: list[tuple[str, str, str]] = [
    ("missing input", "{d}/gone.h5 --out {d}/o.parquet", "{d}/gone.h5: no such file"),
    ("unknown suffix", "{d}/notes.txt --out {d}/o.parquet", "unknown waveform file type '.txt'"),
    ("truncated input", "{d}/truncated.h5 --out {d}/o.parquet", "{d}/truncated.h5: is not"),
    ("wrong dataset", "{d}/good.h5 --dataset wf --out {d}/o.parquet", "no dataset 'wf'"),
    ("location of no input", "{d}/good.h5 --tree sim --out {d}/o.parquet", "applies to root"),
    ("out is the input", "{d}/good.h5 --out {d}/good.h5", "would overwrite the input"),
    (
        "out is the input, renamed",
        "{d}/good.h5 --out {d}/../{d.name}/good.h5",
        "overwrite the input",
    ),
    ("out is a link to the input", "{d}/good.h5 --out {d}/link.h5", "would overwrite the input"),
    ("existing output", "{d}/good.h5 --out {d}/taken.parquet", "pass --overwrite"),
    ("existing summary", "{d}/good.h5 --out {d}/report.parquet", "report.summary.md"),
    ("out is a directory", "{d}/good.h5 --out {d}", "is a directory"),
    ("out under a file", "{d}/good.h5 --out {d}/notes.txt/o.parquet", "is a file, not a dir"),
    ("out unwritable", "{d}/good.h5 --out /proc/o.parquet", "cannot write in /proc"),
    ("rate far too high", "{d}/good.h5 --sampling-rate-ghz 1e6 --out {d}/o.parquet", "1.2 to 2"),
    ("rate infinite", "{d}/good.h5 --sampling-rate-ghz inf --out {d}/o.parquet", "finite"),
    ("rate zero", "{d}/good.h5 --sampling-rate-ghz 0 --out {d}/o.parquet", "positive"),
    ("rate below range", "{d}/good.h5 --sampling-rate-ghz 1.1 --out {d}/o.parquet", "1.2 to 2"),
    ("no workers", "{d}/good.h5 --workers 0 --out {d}/o.parquet", "must be at least 1"),
    ("unknown polarity", "{d}/good.h5 --polarity up --out {d}/o.parquet", "invalid choice: 'up'"),
    ("unknown format", "{d}/good.h5 --format csv --out {d}/o.parquet", "invalid choice: 'csv'"),
    ("no --out", "{d}/good.h5", "the following arguments are required: --out"),
    ("not a bundle", "{d}/good.h5 --model-uri {d} --out {d}/o.parquet", "not a model bundle"),
    ("damaged model", "{d}/good.h5 --model-uri {d}/nan_bundle --out {d}/o.parquet", "damaged"),
    ("workers above the cores", "{d}/good.h5 --workers 100000 --out {d}/o.parquet", "at most"),
    ("unmatched glob", "'{d}/run*/*.h5' --out {d}/o.parquet", "no file matches this pattern"),
    ("no waveforms", "{d}/empty.h5 --out {d}/o.parquet", "{d}/empty.h5: hold(s) no waveforms"),
    (
        "rate the stored rates contradict",
        "{d}/rates.h5 --sampling-rate-ghz 1.5 --out {d}/o.parquet",
        "--sampling-rate-ghz 1.5 contradicts {d}/rates.h5: sampling-rate column",
    ),
    ("stored rate outside the models'", "{d}/fast.h5 --out {d}/o.parquet", "outside 1.2 to 2"),
    (
        "missing rate column",
        "{d}/good.h5 --sampling-rate-branch rate --out {d}/o.parquet",
        "no dataset 'rate'",
    ),
    (
        "tracking server not answering",
        "{d}/good.h5 --model-uri models:/peak-finder@champion --model-uri "
        "models:/cluster-counter@champion --tracking-uri http://127.0.0.1:9/ --out {d}/o.parquet",
        "--tracking-uri http://127.0.0.1:9/: no answer from 127.0.0.1:9",
    ),
    (
        "registry not there",
        "{d}/good.h5 --model-uri models:/peak-finder@champion --model-uri "
        "models:/cluster-counter@champion --tracking-uri sqlite:///{d}/none/mlflow.db "
        "--out {d}/o.parquet",
        "{d}/none/mlflow.db does not exist",
    ),
]


def _flat(row: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.zeros_like(row)


def _clipped(row: NDArray[np.float64]) -> NDArray[np.float64]:
    base = np.median(row)
    return np.minimum(row, base + 0.2 * (row.max() - base))


def _nan(row: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.where(np.arange(len(row)) == 100, np.nan, row)


#: (case, the row made from a good waveform with peaks, status or skip reason).
ROWS: list[tuple[str, Callable[[NDArray[np.float64]], NDArray[np.float64]], str]] = [
    ("dead channel", _flat, "no_signal"),
    ("pinned at full scale", lambda row: np.full_like(row, FULL_SCALE), "no_signal"),
    ("saturated pulses", _clipped, "saturated"),
    ("200k samples", lambda row: np.tile(row, 84), "truncated"),
    ("one sample", lambda row: row[:1], "too short: 1 samples, the models need at least 15"),
    ("five samples", lambda row: row[:5], "too short: 5 samples"),
    ("empty", lambda row: row[:0], "length 0"),
    ("NaN sample", _nan, "NaN or inf samples: 1 of"),
]


@pytest.fixture(scope="module")
def good_adc() -> NDArray[np.float64]:
    """``(N_GOOD, 3000)`` positive waveforms at the models' rate."""
    cfg = dataclasses.replace(
        load_params().simulate,
        n_train=N_GOOD,
        block_size=N_GOOD,
        chunk_size=N_GOOD,
        sampling_rates_ghz=(RATE_GHZ,),
        polarities=(1,),
    )
    return np.stack(list(simulate_range(cfg, "train", 0, N_GOOD).adc)).astype(np.float64)


@pytest.fixture(scope="module")
def data(
    tmp_path_factory: pytest.TempPathFactory, untrained_pair: Path, good_adc: np.ndarray
) -> Path:
    """The files the refused command lines name."""
    d = tmp_path_factory.mktemp("data")
    with h5py.File(d / "good.h5", "w") as file:
        file["adc"] = good_adc
    (d / "truncated.h5").write_bytes((d / "good.h5").read_bytes()[:1000])
    (d / "link.h5").symlink_to(d / "good.h5")
    (d / "notes.txt").write_text("not waveforms")
    (d / "taken.parquet").write_text("someone else's results")
    (d / "report.summary.md").write_text("someone else's summary")
    with h5py.File(d / "empty.h5", "w") as file:
        file["adc"] = good_adc[:0]
    for name, rates in (("rates.h5", STORED_RATES_GHZ), ("fast.h5", (5.0,))):
        with h5py.File(d / name, "w") as file:
            file["adc"] = good_adc
            file["sampling_rate_ghz"] = np.resize(rates, N_GOOD)
    damaged = d / "nan_bundle"
    damaged.mkdir()
    for name in ("bundle.json", "peak_finder.onnx"):
        (damaged / name).write_bytes((untrained_pair / "bundle" / name).read_bytes())
    counter = onnx.load(untrained_pair / "bundle" / "cluster_counter.onnx")
    weights = next(w for w in counter.graph.initializer if w.data_type == onnx.TensorProto.FLOAT)
    weights.CopyFrom(
        numpy_helper.from_array(np.full_like(numpy_helper.to_array(weights), np.nan), weights.name)
    )
    onnx.save(counter, damaged / "cluster_counter.onnx")
    return d


def _listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.mark.parametrize(("case", "arguments", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_bad_input_is_one_error_line_before_prefect_starts(
    case: str,
    arguments: str,
    message: str,
    data: Path,
    untrained_pair: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    argv = shlex.split(arguments.format(d=data))
    if "--model-uri" not in argv:
        argv += ["--model-uri", str(untrained_pair / "bundle")]
    before = _listing(data)
    assert cli(["infer", *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("dndx: error: ") and error.count("\n") == 1, error
    assert message.format(d=data) in error, error
    assert "PREFECT_API_URL" not in os.environ  # refused before Prefect started
    assert _listing(data) == before


def test_a_second_run_on_the_same_output_names_the_first(
    data: Path,
    untrained_pair: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    out = tmp_path / "results.parquet"
    with hold_output_lock(out) as holder:
        argv = [str(data / "good.h5"), "--out", str(out)]
        assert cli(["infer", *argv, "--model-uri", str(untrained_pair / "bundle")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"dndx: error: {out}: another run (pid {holder.pid} ")
    assert "pass --wait" in error and "PREFECT_API_URL" not in os.environ
    assert not out.exists()


class _Said(io.TextIOBase):
    """A stream that passes what is written on to ``stream`` and calls ``then``
    once ``words`` have been written."""

    def __init__(self, stream: TextIO, words: str, then: Callable[[], None]) -> None:
        self.stream, self.words, self.then = stream, words, then

    def write(self, text: str) -> int:
        self.stream.write(text)
        if self.words in text:
            self.then()
        return len(text)


def test_a_run_that_waited_does_not_replace_what_the_first_wrote(
    data: Path,
    untrained_pair: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    out = tmp_path / "results.parquet"
    with hold_output_lock(out, writes="the first run's results") as holder:
        # The first run finishes only once the second says that it waits for it.
        waiting = _Said(sys.stderr, "dndx: waiting for another run", holder.release)
        monkeypatch.setattr(sys, "stderr", waiting)
        argv = [str(data / "good.h5"), "--out", str(out), "--wait"]
        assert cli(["infer", *argv, "--model-uri", str(untrained_pair / "bundle")]) == 2
        holder.expect("released")
    error = capsys.readouterr().err.splitlines()
    assert error[0].startswith(f"dndx: waiting for another run (pid {holder.pid} ")
    assert error[-1].startswith(f"dndx: error: --out {out}: {out} exist(s)")
    assert "PREFECT_API_URL" not in os.environ
    assert out.read_text() == "the first run's results"


@pytest.fixture(scope="module")
def peaky(untrained_pair: Path, good_adc: np.ndarray) -> NDArray[np.float64]:
    """A good waveform in which the untrained peak finder finds peaks."""
    rows = Ragged.from_lengths(good_adc.reshape(-1), np.full(N_GOOD, good_adc.shape[1]))
    found = infer_waveforms(rows, RATE_GHZ, "auto", OnnxModels.load(untrained_pair / "bundle"))
    return good_adc[int(np.argmax(found["n_peaks"].to_numpy()))]


def test_rows_that_cannot_be_counted_are_flagged_or_skipped_never_stopping_the_file(
    peaky: NDArray[np.float64],
    good_adc: np.ndarray,
    untrained_pair: Path,
    shared_dask: str,
    tmp_path: Path,
) -> None:
    rows = [*good_adc, *(make(peaky) for _, make, _ in ROWS)]
    column = pa.array([row.tolist() for row in rows], type=pa.list_(pa.float64()))
    source = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({"samples": column}), source)
    out = tmp_path / "out" / "results.parquet"
    argv = [str(source), "--out", str(out), "--model-uri", str(untrained_pair / "bundle")]
    assert cli(["infer", *argv, "--chunk-size", "7", "--workers", "1"]) == 0

    results = pd.read_parquet(out).set_index("event")
    summary = out.with_name("results.summary.md").read_text()
    for index, (case, _, expected) in enumerate(ROWS):
        event = N_GOOD + index
        if expected in ("no_signal", "saturated", "truncated"):
            assert results.loc[event, "status"] == expected, case
            assert np.isnan(results.loc[event, "n_clusters"]), case
        else:
            assert results.loc[event, "status"] == "skipped", case
            assert results.loc[event, "reason"].startswith(expected), case
            assert results.loc[event, ["n_peaks", "polarity", "noise_sigma"]].isna().all(), case
            assert f"| {source} | {event} | {expected}" in summary, case
    assert results.index.tolist() == list(range(len(rows)))  # one row per input row, in order
    # A flat row has no sign and no noise; it does not report the stand-ins +1 and 1.0.
    assert results.loc[N_GOOD, ["polarity", "noise_sigma"]].tolist() == [0, 0.0]
    good = results.loc[: N_GOOD - 1]
    assert len(good) == N_GOOD
    assert ((good["status"] == "no_signal") == (good["n_peaks"] == 0)).all()
    assert good.loc[good["status"] == "ok", "n_clusters"].notna().all()
    for status, count in results["status"].value_counts().items():
        assert f"| {status} | {count} |" in summary
    assert "| skipped |" in summary


def test_a_forced_polarity_against_most_waveforms_is_a_warning_and_overwrite_replaces(
    good_adc: np.ndarray,
    untrained_pair: Path,
    shared_dask: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "negative.h5"
    with h5py.File(source, "w") as file:
        file["adc"] = FULL_SCALE - good_adc
    out = tmp_path / "results.parquet"
    out.write_text("an older, unrelated file")
    argv = [str(source), "--out", str(out), "--model-uri", str(untrained_pair / "bundle")]
    argv += ["--polarity", "positive", "--workers", "1", "--overwrite"]
    assert cli(["infer", *argv]) == 0
    printed = capsys.readouterr().out
    warning = f"--polarity positive contradicts {N_GOOD} of {N_GOOD} waveforms"
    assert f"warning: {warning}" in printed
    assert f"## Warnings\n\n- {warning}" in out.with_name("results.summary.md").read_text()
    results = pq.read_table(out).to_pandas()
    # No contradicted row passes as counted, with whatever the counter made of it.
    assert results["status"].tolist() == ["polarity_contradicted"] * N_GOOD
    assert results["n_clusters"].isna().all()


def test_a_file_damaged_past_its_header_fails_in_one_line_naming_the_entries(
    good_adc: np.ndarray, untrained_pair: Path, tmp_path: Path
) -> None:
    source = tmp_path / "damaged.h5"
    with h5py.File(source, "w") as file:
        file.create_dataset("adc", data=good_adc, chunks=(4, good_adc.shape[1]), compression="gzip")
        info = file["adc"].id.get_chunk_info(1)
    with source.open("r+b") as handle:
        handle.seek(info.byte_offset + 16)
        handle.write(b"\xff" * 64)
    out = tmp_path / "results.parquet"
    command = [sys.executable, "-m", "flows.cli", "infer", str(source), "--out", str(out)]
    command += ["--model-uri", str(untrained_pair / "bundle"), "--chunk-size", "4"]
    run = subprocess.run(
        [*command, "--workers", "1"], capture_output=True, text=True, env=_cli_env(), check=False
    )
    assert run.returncode == 2, run.stderr
    error = run.stderr.splitlines()
    assert error[-1].startswith(f"dndx: error: {source}: entries 4 to 7 of dataset 'adc'")
    assert [line for line in error if not line.startswith("dndx: ")] == [], run.stderr
    assert not out.exists()


def _cli_env() -> dict[str, str]:
    """The environment of a ``dndx`` process of its own, with its own Prefect server."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    return env


_BARRIER = """
import os, time
from pathlib import Path
import dndx.io.readers

_read_ahead = dndx.io.readers.read_ahead


def read_ahead(source, start, stop, block_size):
    # Every chunk but the first to start waits for the test to lift the barrier.
    barrier, deadline = Path(os.environ["DNDX_TEST_BARRIER"]), time.monotonic() + 300
    try:
        os.close(os.open(f"{barrier}.first", os.O_CREAT | os.O_EXCL))
        return _read_ahead(source, start, stop, block_size)
    except FileExistsError:
        pass
    while not barrier.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{barrier}: the test never lifted the barrier")
        time.sleep(0.05)
    return _read_ahead(source, start, stop, block_size)


dndx.io.readers.read_ahead = read_ahead
"""


def _wait_for(
    found: Callable[[], list[Path]], run: subprocess.Popen[str], timeout_s: float
) -> None:
    """Wait until ``found()`` finds something while ``run`` lives; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not found():
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, f"nothing found within {timeout_s:g} s"
        time.sleep(0.1)


def test_ctrl_c_stops_keeping_finished_chunks_and_the_same_command_resumes(
    untrained_pair: Path, good_adc: np.ndarray, tmp_path: Path, prefect_server: str
) -> None:
    source = tmp_path / "long_run.h5"
    with h5py.File(source, "w") as file:
        file["adc"] = np.tile(good_adc, (N_CHUNKS, 1))
    out = tmp_path / "results.parquet"
    command = [sys.executable, "-m", "flows.cli", "infer", str(source), "--out", str(out)]
    command += ["--model-uri", str(untrained_pair / "bundle"), "--chunk-size", str(N_GOOD)]
    command += ["--workers", "1"]
    # A test-only reader in this run's processes and its Dask workers: the chunks
    # after the first wait for a barrier file, so that Ctrl-C lands after exactly one.
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text(_BARRIER)
    barrier = tmp_path / "barrier"
    env = _cli_env()
    env["PYTHONPATH"] = f"{tmp_path / 'slow'}{os.pathsep}{env['PYTHONPATH']}"
    env["DNDX_TEST_BARRIER"] = str(barrier)
    run = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        # As at a terminal: a background child of a shell would ignore Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(lambda: list(tmp_path.glob(".results.parquet.*.partial/*.json")), run, 300)
        os.killpg(run.pid, signal.SIGINT)
        _, error = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 130, error
    lines = [line for line in error.splitlines() if line.startswith("dndx: interrupted")]
    assert len(lines) == 1, error
    assert lines[0].startswith("dndx: interrupted: 1 finished chunks are kept in "), error
    assert lines[0].endswith("; run the same command again to resume"), error
    assert "Traceback" not in error, error
    assert not out.exists() and not lock_path(out).exists()

    barrier.touch()
    # The interrupted run owned its Prefect server; the resumed one, whose stop is not
    # tested, uses the session's rather than booting another.
    env["PREFECT_API_URL"] = prefect_server
    resumed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming 1 finished chunks" in resumed.stderr, resumed.stderr
    assert pq.read_table(out)["event"].to_pylist() == list(range(N_CHUNKS * N_GOOD))
    assert not list(tmp_path.glob(".results.parquet.*"))


def test_stored_rates_are_read_per_row_and_leftovers_of_a_dead_run_are_cleared(
    data: Path,
    good_adc: np.ndarray,
    untrained_pair: Path,
    shared_dask: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "results.parquet"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    lock_path(out).write_text(
        f'{{"pid": {dead.stdout.strip()}, "host": "{os.uname().nodename}", '
        '"started": "earlier", "command": "dndx infer killed"}'
    )
    (tmp_path / ".results.parquet.0123abcd.partial").mkdir()
    argv = [str(data / "rates.h5"), str(data / "empty.h5"), "--out", str(out), "--workers", "1"]
    assert cli(["infer", *argv, "--model-uri", str(untrained_pair / "bundle")]) == 0
    captured = capsys.readouterr()
    assert f"cleared the lock of {lock_path(out)}, left by a run that died" in captured.err
    assert "removed " in captured.err and ".partial, left by an earlier run" in captured.err
    assert "per waveform, 1.2, 1.5, 2 GS/s, from column 'sampling_rate_ghz'" in captured.err
    assert f"warning: {data / 'empty.h5'}: holds no waveforms" in captured.out
    summary = out.with_name("results.summary.md").read_text()
    assert "from column 'sampling_rate_ghz'" in summary

    # Each row at its own rate: the results of the rows of one rate run alone at it.
    results = pq.read_table(out).to_pandas()
    rates = np.resize(STORED_RATES_GHZ, N_GOOD)
    models = OnnxModels.load(untrained_pair / "bundle")
    for rate in STORED_RATES_GHZ:
        rows = np.flatnonzero(rates == rate)
        alone = infer_waveforms(
            Ragged.from_lengths(good_adc[rows].reshape(-1), np.full(len(rows), good_adc.shape[1])),
            rate,
            "auto",
            models,
        )
        assert results.loc[rows, "status"].tolist() == alone["status"].tolist(), rate
        np.testing.assert_array_equal(results.loc[rows, "n_peaks"], alone["n_peaks"])
    assert not list(tmp_path.glob(".results.parquet.*"))


#: (case, labelled-file branches changed from ``cepc_branches()``, the problem named).
IMPOSSIBLE_LABELS: list[tuple[str, dict[str, object], str]] = [
    ("negative count", {"ncls": np.array([2, 3, -3, 2])}, "entry 2: 'ncls' (n_clusters) holds -3"),
    (
        "fractional count",
        {"ncls": np.array([2.0, 3.0, 1.5, 2.0])},
        "entry 2: 'ncls' (n_clusters) holds 1.5",
    ),
    (
        "NaN count",
        {"ncls": np.array([2.0, np.nan, 1.0, 2.0])},
        "entry 1: 'ncls' (n_clusters) holds nan",
    ),
    (
        "count against the tags",
        {"ncls": np.array([2, 3, 4, 2], np.int32)},
        "entry 2: 'ncls' (n_clusters) holds 4 but 1 peaks",
    ),
    (
        "peak time outside the waveform",
        {
            "time": ak.Array(
                [
                    [40.0, 80.0, 150.0, 220.0],
                    [60.0, 61.0, 200.0, 260.0],
                    [900.0],
                    [100.0, 130.0, 170.0, 250.0],
                ]
            )
        },
        "entry 2: 'time' (time) holds 900.0",
    ),
    (
        "NaN height",
        {
            "height": ak.Array(
                [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, np.nan, 1.0], [1.0], [1.0, 1.0, 1.0, 1.0]]
            )
        },
        "entry 1: 'height' (height) holds nan",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "problem"), IMPOSSIBLE_LABELS, ids=[c[0] for c in IMPOSSIBLE_LABELS]
)
def test_data_check_refuses_impossible_labels_naming_file_entry_branch_and_value(
    case: str,
    change: dict[str, object],
    problem: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_tree(tmp_path / "labelled.root", cepc_branches(**change))
    assert cli(["data", "check", str(path), "--layout", "cepc"]) == 2, case
    printed = capsys.readouterr()
    assert f"first problem: {path}: {problem}" in printed.out, printed.out
    assert printed.err == "dndx: error: 1 of 1 file(s) have problems\n"
    # The ingest stage's task refuses the file the same way, writing nothing.
    job = IngestJob("train", 0, path, 0, len(PEAKS), 0)
    with pytest.raises(InputError, match=re.escape(f"{path}: {problem}")):
        ingest_chunk.fn(LabelledLayout("cepc"), job, 15, tmp_path / "ingested")
    assert not (tmp_path / "ingested").exists()


#: (case, arguments after ``dndx data``, what the one error line says). ``{d}``:
#: a directory holding ``taken.root``.
DATA_REFUSED: list[tuple[str, str, str]] = [
    (
        "existing file",
        "write {d}/taken.root --layout cepc --waveforms 3",
        "exists; pass --overwrite",
    ),
    (
        "no waveforms",
        "write {d}/new.root --layout cepc --waveforms 0",
        "--waveforms 0: expected at least 1",
    ),
    (
        "not a labelled format",
        "write {d}/new.parquet --layout cepc --waveforms 3",
        "written as ROOT",
    ),
]


@pytest.mark.parametrize(
    ("case", "arguments", "message"), DATA_REFUSED, ids=[c[0] for c in DATA_REFUSED]
)
def test_data_write_refuses_in_one_line_and_replaces_nothing(
    case: str, arguments: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken.root").write_text("someone's data")
    assert cli(["data", *shlex.split(arguments.format(d=tmp_path))]) == 2, case
    error = capsys.readouterr().err
    assert error.startswith("dndx: error: ") and error.count("\n") == 1, error
    assert message in error, error
    assert _listing(tmp_path) == ["taken.root"]
    assert (tmp_path / "taken.root").read_text() == "someone's data"


_PARENT = """
import subprocess, sys, time
from flows.runtime import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         preexec_fn=die_with_parent)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_child_started_with_die_with_parent_dies_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while _alive(child):
        assert time.monotonic() < deadline, f"pid {child} outlived its killed parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A dead child not yet reaped by init is a zombie: gone for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"
