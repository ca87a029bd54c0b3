"""Determinism and the on-disk form of simulated data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dndx.config import load_params
from dndx.dataset import read_waveform_set, write_waveform_set
from dndx.simulation import WaveformSet, simulate_range

CFG = dataclasses.replace(
    load_params().simulate, n_train=90, n_validation=30, block_size=15, chunk_size=30
)


def _assert_same(a: WaveformSet, b: WaveformSet) -> None:
    pd.testing.assert_frame_equal(a.info, b.info)
    pd.testing.assert_frame_equal(a.electrons, b.electrons)
    assert np.array_equal(a.adc.values, b.adc.values)
    assert np.array_equal(a.adc.offsets, b.adc.offsets)
    assert np.array_equal(a.electron_offsets, b.electron_offsets)


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_waveform_set(simulate_range(CFG, "train", 0, 90), tmp_path / f"{name}.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_chunked_generation_equals_whole() -> None:
    whole = simulate_range(CFG, "train", 0, 90)
    chunks = [simulate_range(CFG, "train", start, start + 30) for start in (0, 30, 60)]
    _assert_same(whole, WaveformSet.concatenate(chunks))


def test_seed_and_split_change_the_data() -> None:
    base = simulate_range(CFG, "train", 0, 30)
    other_seed = simulate_range(dataclasses.replace(CFG, seed=7), "train", 0, 30)
    other_split = simulate_range(CFG, "validation", 0, 30)
    assert not base.info["momentum_gev"].equals(other_seed.info["momentum_gev"])
    assert not base.info["momentum_gev"].equals(other_split.info["momentum_gev"])


def test_ranges_must_fall_on_blocks() -> None:
    with pytest.raises(ValueError, match="blocks of 15"):
        simulate_range(CFG, "train", 5, 30)


def test_parquet_round_trip(tmp_path: Path) -> None:
    data = simulate_range(CFG, "train", 0, 30)
    write_waveform_set(data, tmp_path / "part.parquet")
    back = read_waveform_set(tmp_path / "part.parquet")
    pd.testing.assert_frame_equal(back.info, data.info)
    assert np.array_equal(back.adc.values, data.adc.values)
    assert np.array_equal(back.electron_offsets, data.electron_offsets)
    np.testing.assert_allclose(back.electrons["time_ns"], data.electrons["time_ns"], rtol=1e-6)
    assert list(tmp_path.iterdir()) == [tmp_path / "part.parquet"]  # no temporary left
