"""``dndx infer``'s rows are the chain's rows: the command (its reading, chunks,
workers, transfer and joining) adds nothing to and changes nothing in what the
in-process chain of :mod:`dndx.chain.inference` gives for the same waveforms, in
the same (file, entry) order. The data path may be rearranged for speed; this
module pins its output to an independent path through the same pure functions.
"""

from __future__ import annotations

import dataclasses
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dndx.chain.bundle import D2Settings, ModelBundle
from dndx.chain.inference import (
    infer_rows,
    infer_waveforms,
    infer_waveforms_d2,
    minimum_length,
    results_table,
)
from dndx.chain.onnx import OnnxModels
from dndx.config import load_params
from dndx.io.labelled_writer import write_labelled
from dndx.io.readers import WaveformSource, read_chunk
from dndx.ragged import Ragged
from dndx.simulation.generator import simulate_range
from flows.cli import main as cli

RATE_GHZ = 1.2
#: Waveforms of each file; chunks of 25 and blocks of the task cut through files.
N_WAVEFORMS = (40, 30)
CHUNK_SIZE = 25
D2 = D2Settings(t1_sigma=3.0, t2=1.0, window_ns=1.5, growth_ns_per_sqrt_ns=0.2)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two ROOT files of simulated waveforms at 1.2 GS/s, as the project's writer
    writes them (``cepc`` layout: jagged float32 branch ``wf_i`` of tree ``sim``)."""
    directory = tmp_path_factory.mktemp("rows")
    paths = []
    for index, n_waveforms in enumerate(N_WAVEFORMS):
        cfg = dataclasses.replace(
            load_params().simulate,
            seed=100 + index,
            n_train=n_waveforms,
            block_size=10,
            chunk_size=n_waveforms,
            sampling_rates_ghz=(RATE_GHZ,),
        )
        path = directory / f"run-{index}.root"
        write_labelled(simulate_range(cfg, "train", 0, n_waveforms), path, "cepc")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def bundle(untrained_pair: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained pair's bundle with D2 settings, so both methods run."""
    directory = tmp_path_factory.mktemp("bundle") / "bundle"
    shutil.copytree(untrained_pair / "bundle", directory)
    dataclasses.replace(ModelBundle.load(directory), d2=D2).save(directory)
    return directory


def in_process_rows(paths: list[Path], bundle: Path, method: str) -> pa.Table:
    """Every file read whole and run through the chain in this process, in order."""
    models = OnnxModels.load(bundle)

    def chain(samples: Ragged, rate_ghz: float) -> pd.DataFrame:
        if method == "d2":
            return infer_waveforms_d2(samples, rate_ghz, "auto", models.bundle)
        return infer_waveforms(samples, rate_ghz, "auto", models)

    tables = []
    for path, n_waveforms in zip(paths, N_WAVEFORMS, strict=True):
        source = WaveformSource(path, "root", tree="sim", branch="wf_i")
        samples = read_chunk(source, 0, n_waveforms).samples
        rates = np.full(n_waveforms, RATE_GHZ)
        results = infer_rows(samples, rates, chain, partial(minimum_length, models.bundle))
        results.insert(0, "event", np.arange(n_waveforms, dtype=np.int64))
        results.insert(0, "source_file", str(path))
        tables.append(results_table(results))
    return pa.concat_tables(tables)


@pytest.mark.parametrize("method", ["d2", "lstm"])
def test_the_commands_rows_are_the_in_process_chains_rows_in_order(
    inputs: list[Path], bundle: Path, shared_dask: str, tmp_path: Path, method: str
) -> None:
    out = tmp_path / "results.parquet"
    arguments = [*map(str, inputs), "--out", str(out), "--branch", "wf_i"]
    arguments += ["--sampling-rate-ghz", str(RATE_GHZ), "--model-uri", str(bundle)]
    arguments += ["--method", method, "--chunk-size", str(CHUNK_SIZE)]

    assert cli(["infer", *arguments]) == 0

    written = pq.read_table(out)
    expected = in_process_rows(inputs, bundle, method)
    assert written.num_rows == sum(N_WAVEFORMS)
    assert written.schema.remove_metadata().equals(expected.schema.remove_metadata())
    for name in expected.column_names:
        assert written.column(name).equals(expected.column(name)), name
