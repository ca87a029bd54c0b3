"""Inference: the pure chain on simulated waveforms, and the flow end to end on
small ROOT, HDF5, Parquet and NPZ files through the real Prefect engine, a real
Dask cluster and ONNX Runtime. The models are untrained but seeded: what is
checked is the plumbing (formats, polarity, bad rows, atomicity,
reproducibility), not the physics performance.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import onnxruntime
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uproot

from dndx.chain.bundle import ModelBundle
from dndx.chain.inference import RESULT_COLUMNS, RESULT_SCHEMA, infer_waveforms, results_table
from dndx.chain.onnx import COUNTER_BATCH, PEAK_FINDER_BATCH, OnnxModels
from dndx.chain.preprocessing import estimate_baseline_noise
from dndx.config import load_params, with_candidates
from dndx.errors import DndxError, InputError
from dndx.io.inference_store import (
    Chunk,
    ChunkResult,
    OutputBusyError,
    finished_result,
    record_result,
)
from dndx.io.readers import WaveformSource
from dndx.ragged import Ragged
from dndx.simulation.generator import simulate_range
from flows.cli import main as cli
from flows.infer import infer, infer_planned
from flows.infer_plan import (
    DEFAULT_MODEL_URIS,
    DEFAULT_WORKERS,
    InferenceRequest,
    locked,
    plan_inference,
    resolve_bundle,
    summary_path,
    usable_cores,
)
from tasks.inference import infer_chunks, run_chunk
from tasks.registry import promote
from tasks.tracking import configure_mlflow
from tests.conftest import make_project, register_pair

N_WAVEFORMS = 60
RATE_GHZ = 1.2
FULL_SCALE = 4095
NAN_EVENT, EMPTY_EVENT = 7, 19
CHUNK_SIZE = 25


@pytest.fixture(scope="module")
def bundle_dir(untrained_pair: Path) -> Path:
    """Untrained, seeded models exported as a bundle, as the registry would hold them."""
    return untrained_pair / "bundle"


@pytest.fixture(scope="module")
def models(bundle_dir: Path) -> OnnxModels:
    return OnnxModels.load(bundle_dir)


@pytest.fixture(scope="module")
def adc() -> np.ndarray:
    """``(N_WAVEFORMS, 2400)`` positive 12-bit waveforms at 1.2 GS/s with a pedestal."""
    cfg = dataclasses.replace(
        load_params().simulate,
        n_train=N_WAVEFORMS,
        block_size=30,
        chunk_size=N_WAVEFORMS,
        sampling_rates_ghz=(RATE_GHZ,),
        polarities=(1,),
    )
    return np.stack(list(simulate_range(cfg, "train", 0, N_WAVEFORMS).adc))


def _rows(block: np.ndarray) -> Ragged:
    return Ragged.from_lengths(block.reshape(-1), np.full(len(block), block.shape[1]))


def test_infer_waveforms_gives_one_row_per_waveform(models: OnnxModels, adc: np.ndarray) -> None:
    results = infer_waveforms(_rows(adc), RATE_GHZ, "auto", models)
    assert tuple(results.columns) == RESULT_COLUMNS
    assert len(results) == N_WAVEFORMS
    n_peaks = results["n_peaks"].to_numpy()
    assert [len(t) for t in results["peak_time_ns"]] == n_peaks.tolist()
    # Seeded untrained models still split the candidates: some are peaks, most are not.
    assert 0 < n_peaks.sum() < results["n_candidates"].sum()
    window_ns = adc.shape[1] / RATE_GHZ
    for times in results["peak_time_ns"]:
        assert np.all(np.diff(times) > 0) and np.all((times >= 0) & (times < window_ns))
    counted = results["status"] == "ok"
    assert counted.any() and results["n_clusters"].dtype == np.float32
    assert results.loc[~counted, "n_clusters"].isna().all()
    # Every row is scored, for the registry, and the counter tells waveforms apart.
    assert results["counter_output"].notna().all() and results["counter_output"].nunique() > 1
    np.testing.assert_array_equal(
        results.loc[counted, "n_clusters"], results.loc[counted, "counter_output"]
    )
    assert (results.loc[results["n_peaks"] == 0, "status"] == "no_signal").all()
    assert (results["polarity"] == 1).all()
    # Baseline and noise are each input waveform's own, before resampling to the models' rate.
    baseline, noise_sigma = estimate_baseline_noise(adc)
    np.testing.assert_allclose(results["baseline"], baseline, rtol=1e-6)
    np.testing.assert_allclose(results["noise_sigma"], noise_sigma, rtol=1e-6)

    empty = infer_waveforms(_rows(adc[:0]), RATE_GHZ, "auto", models)
    assert tuple(empty.columns) == RESULT_COLUMNS and len(empty) == 0


def test_negative_polarity_with_pedestal_finds_the_same_peaks(
    models: OnnxModels, adc: np.ndarray
) -> None:
    positive = infer_waveforms(_rows(adc), RATE_GHZ, "positive", models)
    flipped = _rows(FULL_SCALE - adc.astype(np.float64))
    for polarity in ("negative", "auto"):
        negative = infer_waveforms(flipped, RATE_GHZ, polarity, models)  # type: ignore[arg-type]
        assert (negative["polarity"] == -1).all()
        np.testing.assert_array_equal(negative["n_peaks"], positive["n_peaks"])
        np.testing.assert_allclose(negative["baseline"], FULL_SCALE - positive["baseline"])
        for a, b in zip(negative["peak_time_ns"], positive["peak_time_ns"], strict=True):
            np.testing.assert_array_equal(a, b)


def test_devices_open_the_models_with_their_batches_or_say_what_is_missing(
    bundle_dir: Path,
) -> None:
    cpu = OnnxModels.on_device(bundle_dir, "cpu")
    assert cpu.peak_finder.get_providers() == ["CPUExecutionProvider"]
    assert (cpu.peak_finder_batch, cpu.counter_batch) == (PEAK_FINDER_BATCH, COUNTER_BATCH)
    with pytest.raises(DndxError, match="device 'tpu': expected one of cpu, cuda"):
        OnnxModels.on_device(bundle_dir, "tpu")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert OnnxModels.on_device(bundle_dir, "cuda").peak_finder_batch == 65536
    else:
        with pytest.raises(DndxError, match="no CUDAExecutionProvider; install onnxruntime-gpu"):
            OnnxModels.on_device(bundle_dir, "cuda")


def test_a_bundle_that_does_not_fit_its_graphs_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    for name in ("peak_finder.onnx", "cluster_counter.onnx"):
        (tmp_path / name).write_bytes((bundle_dir / name).read_bytes())
    bundle = ModelBundle.load(bundle_dir)
    with_candidates(bundle, window_after=7).save(tmp_path)
    with pytest.raises(InputError, match=r"peak_finder\.onnx: input 'window' has shape"):
        OnnxModels.load(tmp_path)


def test_models_are_a_local_bundle_or_registry_uris(bundle_dir: Path, tmp_path: Path) -> None:
    assert resolve_bundle([str(bundle_dir)], tmp_path) == bundle_dir
    assert resolve_bundle([str(bundle_dir / "bundle.json")], tmp_path) == bundle_dir
    with pytest.raises(InputError, match="not several paths or a mix"):
        resolve_bundle([str(bundle_dir), DEFAULT_MODEL_URIS[0]], tmp_path)
    with pytest.raises(InputError, match=rf"{tmp_path}: not a model bundle"):
        resolve_bundle([str(tmp_path)], tmp_path)
    # A registry that is not there is named, never created empty.
    store = tmp_path / "elsewhere" / "mlflow.db"
    with pytest.raises(InputError, match=rf"{store} does not exist.*--tracking-uri"):
        resolve_bundle(list(DEFAULT_MODEL_URIS), tmp_path, f"sqlite:///{store}")
    assert not store.exists()


_RESOLVE = """
import sys
from pathlib import Path
from dndx.errors import InputError
from flows.infer_plan import DEFAULT_MODEL_URIS, resolve_bundle
try:
    print(resolve_bundle(list(DEFAULT_MODEL_URIS), Path(sys.argv[1])))
except InputError as error:
    print(f"error: {error}")
"""


def test_infer_outside_the_checkout_never_creates_a_registry_where_it_runs(
    untrained_pair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkout of its own, whose registry the test controls, run from elsewhere.
    checkout = make_project(tmp_path / "checkout")
    store, elsewhere, cache = checkout / "mlflow.db", tmp_path / "elsewhere", tmp_path / "cache"
    elsewhere.mkdir()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = {**os.environ, "PYTHONPATH": str(checkout)}

    def resolve() -> str:
        run = subprocess.run(
            [sys.executable, "-c", _RESOLVE, str(cache)],
            cwd=elsewhere, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    # No registry in the checkout: named, and created neither there nor where it runs.
    assert resolve().startswith(
        f"error: no model registry at sqlite:///{store}: {store} does not exist"
    )
    assert not store.exists() and list(elsewhere.iterdir()) == []

    # Champions in the checkout's registry: fetched into the cache, nothing where it runs.
    configure_mlflow(load_params().mlflow, checkout)
    scores = {"peak_efficiency_x_purity": 0.7, "rms_over_sqrt_n": 0.8}
    assert promote(register_pair(untrained_pair, scores), scores, None)["alias"] == "champion"
    fetched = Path(resolve())
    assert fetched.is_relative_to(cache) and ModelBundle.load(fetched) == ModelBundle.load(
        untrained_pair / "bundle"
    )
    assert list(elsewhere.iterdir()) == []


def _write_inputs(directory: Path, adc: np.ndarray) -> dict[str, Path]:
    """The same waveforms in every format: ROOT in the CEPC layout (tree ``sim``,
    branch ``wf_i``), HDF5, Parquet with one NaN and one empty waveform, and NPZ
    with negative polarity (``4095 - x``)."""
    paths = {
        "root": directory / "sim.root",
        "hdf5": directory / "waves.h5",
        "parquet": directory / "waves.parquet",
        "npz": directory / "negative.npz",
    }
    with uproot.recreate(paths["root"]) as file:
        file.mktree("sim", {"wf_i": "var * int16", "event": "int64"})
        rows = ak.Array([row.astype(np.int16) for row in adc])
        file["sim"].extend({"wf_i": rows[:30], "event": np.arange(30)})
        file["sim"].extend({"wf_i": rows[30:], "event": np.arange(30, N_WAVEFORMS)})
    with h5py.File(paths["hdf5"], "w") as file:
        file.create_dataset("adc", data=adc.astype(np.uint16), chunks=(10, adc.shape[1]))
        file["pedestal"] = np.zeros(N_WAVEFORMS)
    lists = [row.astype(np.float32) for row in adc]
    lists[NAN_EVENT] = lists[NAN_EVENT].copy()
    lists[NAN_EVENT][100] = np.nan
    lists[EMPTY_EVENT] = np.zeros(0, np.float32)
    column = pa.array([row.tolist() for row in lists], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"samples": column}), paths["parquet"], row_group_size=20)
    np.savez(paths["npz"], waveforms=(FULL_SCALE - adc).astype(np.uint16))
    return paths


def test_a_chunk_of_bad_waveforms_only_writes_their_skipped_rows(
    bundle_dir: Path, adc: np.ndarray, tmp_path: Path
) -> None:
    paths = _write_inputs(tmp_path, adc)
    source = WaveformSource.from_path(paths["parquet"])
    chunk = Chunk(source, EMPTY_EVENT, EMPTY_EVENT + 1, tmp_path / "chunk.parquet")
    result = run_chunk(chunk, str(bundle_dir), "auto", 1.2, "cpu", "lstm")
    assert result == ChunkResult(0, ((EMPTY_EVENT, "length 0"),), {}, 0)
    table = pq.read_table(chunk.path)
    assert table.schema.equals(RESULT_SCHEMA)
    assert table.select(["event", "status", "reason", "n_peaks"]).to_pylist() == [
        {"event": EMPTY_EVENT, "status": "skipped", "reason": "length 0", "n_peaks": None}
    ]


def test_a_chunk_read_in_blocks_gives_the_results_of_one_block(
    bundle_dir: Path, adc: np.ndarray, tmp_path: Path
) -> None:
    source = WaveformSource.from_path(_write_inputs(tmp_path, adc)["parquet"])
    whole = Chunk(source, 3, N_WAVEFORMS, tmp_path / "whole.parquet")
    blocks = dataclasses.replace(whole, path=tmp_path / "blocks.parquet")
    expected = run_chunk(whole, str(bundle_dir), "auto", RATE_GHZ, "cpu", "lstm", 100)
    assert run_chunk(blocks, str(bundle_dir), "auto", RATE_GHZ, "cpu", "lstm", 7) == expected
    assert expected.bad_rows == ((NAN_EVENT, expected.bad_rows[0][1]), (EMPTY_EVENT, "length 0"))
    assert pq.read_table(blocks.path).equals(pq.read_table(whole.path))


def test_a_task_records_each_chunk_and_a_retry_redoes_only_the_unfinished(
    bundle_dir: Path, adc: np.ndarray, tmp_path: Path
) -> None:
    source = WaveformSource.from_path(_write_inputs(tmp_path, adc)["parquet"])
    chunks = [
        Chunk(source, start, min(start + 20, N_WAVEFORMS), tmp_path / f"part-{start}")
        for start in range(0, N_WAVEFORMS, 20)
    ]
    settings = (str(bundle_dir), "auto", RATE_GHZ, "cpu", "lstm")
    first = infer_chunks.fn(chunks, *settings)
    assert [finished_result(chunk) for chunk in chunks] == first
    assert sum(result.n_entries for result in first) == N_WAVEFORMS
    # A retry after a failure in the second chunk: the first one's record is taken
    # as it stands (a marked count shows it), the second is done again.
    marked = dataclasses.replace(first[0], statuses={"ok": -1})
    record_result(chunks[0], marked)
    chunks[1].record.unlink()
    assert infer_chunks.fn(chunks, *settings) == [marked, first[1], first[2]]


def test_the_flow_runs_a_plan_only_while_it_holds_the_output_lock(
    bundle_dir: Path, adc: np.ndarray, tmp_path: Path
) -> None:
    paths = _write_inputs(tmp_path, adc)
    request = InferenceRequest(
        (str(paths["npz"]),),
        str(tmp_path / "out" / "results.parquet"),
        sampling_rate_ghz=RATE_GHZ,
        model_uris=(str(bundle_dir),),
    )
    plan = plan_inference(request)
    assert plan.lock is None and plan.workers == min(DEFAULT_WORKERS, usable_cores())
    with pytest.raises(DndxError, match="the plan does not hold the output's lock"):
        infer_planned.fn(plan)
    with locked(plan) as held:
        assert held.lock is not None and held.lock.held
        # The lock is taken once per run: a second one, from this process too, is refused.
        with pytest.raises(OutputBusyError, match=rf"pid {os.getpid()} "), locked(plan):
            pass
    assert not held.lock.held and not plan.out.exists()


def _by_file(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    return table[table["source_file"] == str(path)].set_index("event")


def test_infer_flow_on_every_format_skips_bad_waveforms_and_reproduces(
    bundle_dir: Path,
    adc: np.ndarray,
    shared_dask: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", raising=False)
    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    paths = _write_inputs(tmp_path, adc)
    out = tmp_path / "results" / "run.parquet"
    common = {
        "sampling_rate_ghz": RATE_GHZ,
        "model_uris": [str(bundle_dir)],
        "workers": 2,
        "chunk_size": CHUNK_SIZE,
    }
    args = [*map(str, paths.values()), "--out", str(out), "--tree", "sim", "--branch", "wf_i"]
    args += ["--sampling-rate-ghz", str(RATE_GHZ), "--model-uri", str(bundle_dir)]
    args += ["--workers", "2", "--chunk-size", str(CHUNK_SIZE)]
    assert cli(["infer", *args]) == 0
    printed = capsys.readouterr().out
    summary = summary_path(out)
    assert f"Summary: {summary}" in printed
    assert f"{4 * N_WAVEFORMS - 2} waveforms -> {out} (" in printed
    assert "; 2 skipped)" in printed

    table = pq.read_table(out)
    assert table.schema.equals(RESULT_SCHEMA)
    results = table.to_pandas()
    assert len(results) == 4 * N_WAVEFORMS
    assert results["source_file"].unique().tolist() == [str(p) for p in paths.values()]
    hdf5 = _by_file(results, paths["hdf5"])
    assert hdf5.index.tolist() == list(range(N_WAVEFORMS))
    assert (hdf5["n_peaks"] > 0).any()
    for fmt in ("root", "npz"):
        other = _by_file(results, paths[fmt])
        assert other.index.tolist() == list(range(N_WAVEFORMS))
        np.testing.assert_array_equal(other["n_peaks"], hdf5["n_peaks"])
    assert (_by_file(results, paths["npz"])["polarity"] == -1).all()
    assert (hdf5["polarity"] == 1).all()

    # The Parquet file: its NaN and empty waveforms keep their rows, skipped with
    # their reason, and are listed; the rest are counted as in the other files.
    parquet = _by_file(results, paths["parquet"])
    good = sorted(set(range(N_WAVEFORMS)) - {NAN_EVENT, EMPTY_EVENT})
    assert parquet.index.tolist() == list(range(N_WAVEFORMS))
    assert parquet.loc[EMPTY_EVENT, ["status", "reason"]].tolist() == ["skipped", "length 0"]
    assert parquet.loc[[NAN_EVENT, EMPTY_EVENT], "n_peaks"].isna().all()
    assert parquet.loc[good, "reason"].isna().all()
    np.testing.assert_array_equal(parquet.loc[good, "n_peaks"], hdf5.loc[good, "n_peaks"])
    text = summary.read_text()
    skipped = text.split("## Skipped waveforms")[1]
    assert f"| {paths['parquet']} | {NAN_EVENT} | NaN or inf samples: 1 of" in skipped
    assert f"| {paths['parquet']} | {EMPTY_EVENT} | length 0 |" in skipped
    assert skipped.count(f"| {paths['parquet']} |") == 2
    assert "input sampling rate | 1.2 GS/s, given (--sampling-rate-ghz)" in text
    # A bundle without a training domain (registered before it was stored): unknown.
    domain = json.loads((out.parent / "run.summary.json").read_text())["domain"]
    assert {entry["verdict"] for entry in domain} == {"unknown"}
    assert "the domain cannot be judged" in printed
    written = sorted(p.name for p in out.parent.iterdir())
    assert set(written) == {
        "run.parquet",
        "run.summary.md",
        "run.summary.json",
        "run.n_clusters.png",
        "run.n_peaks.png",
        "run.examples.png",
    }

    first_bytes = out.read_bytes()
    report = infer([str(p) for p in paths.values()], str(out), tree="sim", branch="wf_i", **common)
    assert report.n_waveforms == 4 * N_WAVEFORMS - 2 and report.n_skipped == 2
    assert pq.read_table(out).equals(table)
    assert out.read_bytes() == first_bytes
    assert summary.read_text() == text


def _damage_hdf5_chunk(path: Path, adc: np.ndarray, chunk: int) -> None:
    with h5py.File(path, "w") as file:
        file.create_dataset(
            "adc", data=adc, chunks=(10, adc.shape[1]), compression="gzip", shuffle=True
        )
        info = file["adc"].id.get_chunk_info(chunk)
    with path.open("r+b") as handle:
        handle.seek(info.byte_offset + 16)
        handle.write(b"\xff" * 64)


def test_a_damaged_file_fails_the_run_and_leaves_no_output(
    bundle_dir: Path, adc: np.ndarray, shared_dask: str, tmp_path: Path
) -> None:
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as file:
        file["adc"] = adc
    damaged = tmp_path / "damaged.h5"
    _damage_hdf5_chunk(damaged, adc, chunk=4)
    out = tmp_path / "out" / "results.parquet"
    with pytest.raises(InputError, match=rf"{damaged}: entries 25 to 49 of dataset 'adc'"):
        infer(
            [str(good), str(damaged)],
            str(out),
            sampling_rate_ghz=RATE_GHZ,
            model_uris=[str(bundle_dir)],
            workers=1,
            chunk_size=CHUNK_SIZE,
        )
    # No output; only the hidden work directory that lets a re-run resume.
    assert [p.name for p in out.parent.iterdir() if not p.name.startswith(".")] == []

    # Resume: the good file's chunks are taken from the first run (a marked value in
    # one of them shows it), the repaired file is processed anew.
    (partial,) = out.parent.glob(".results.parquet.*.partial")
    parts = [Path(str(p).removesuffix(".json")) for p in sorted(partial.glob("*.json"))]
    good_parts = [p for p in parts if pq.read_table(p)["source_file"][0].as_py() == str(good)]
    assert len(good_parts) == -(-N_WAVEFORMS // CHUNK_SIZE)
    first_part = min(good_parts, key=lambda p: pq.read_table(p)["event"][0].as_py())
    marked = pq.read_table(first_part).to_pandas()
    marked.loc[0, "n_clusters"] = -1.0
    pq.write_table(results_table(marked), first_part)
    with h5py.File(damaged, "w") as file:
        file["adc"] = adc
    report = infer(
        [str(good), str(damaged)],
        str(out),
        sampling_rate_ghz=RATE_GHZ,
        model_uris=[str(bundle_dir)],
        workers=1,
        chunk_size=CHUNK_SIZE,
    )
    assert report.n_waveforms == 2 * N_WAVEFORMS
    resumed = pd.read_parquet(out)
    assert resumed["n_clusters"].iloc[0] == -1.0  # reused, not recomputed
    # The repaired file holds the good file's waveforms: its recomputed rows match the
    # reused ones, bar the marked value.
    reused, redone = resumed.iloc[:N_WAVEFORMS], resumed.iloc[N_WAVEFORMS:]
    assert redone["n_clusters"].iloc[0] != -1.0
    np.testing.assert_array_equal(redone["n_peaks"], reused["n_peaks"])
    np.testing.assert_array_equal(redone["n_clusters"].iloc[1:], reused["n_clusters"].iloc[1:])
    assert not partial.exists()


def test_bad_inputs_are_named_before_any_work(
    bundle_dir: Path,
    adc: np.ndarray,
    shared_dask: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = _write_inputs(tmp_path, adc)
    out = tmp_path / "out" / "results.parquet"
    model = ["--model-uri", str(bundle_dir)]
    cases = [
        ([str(tmp_path / "missing.h5"), *model], f"{tmp_path / 'missing.h5'}: no such file"),
        (
            [str(paths["root"]), "--tree", "sim", "--branch", "wf_q", *model],
            f"{paths['root']}: tree 'sim' has no branch 'wf_q'",
        ),
        ([str(paths["hdf5"]), "--dataset", "wf", *model], f"{paths['hdf5']}: no dataset 'wf'"),
        ([str(paths["hdf5"]), "--model-uri", str(tmp_path)], f"{tmp_path}: not a model bundle"),
    ]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        cases.append(([str(paths["hdf5"]), *model, "--device", "cuda"], "install onnxruntime-gpu"))
    for arguments, message in cases:
        assert cli(["infer", *arguments, "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("dndx: error: ") and message in error, error
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
