"""Labelled files (cepc and dndx layouts; ROOT, HDF5, Parquet): truth read from the
tags, bad files and waveforms named, written layouts that read back as simulated."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import awkward as ak
import h5py
import numpy as np
import pytest

from dndx.config import Range, load_params
from dndx.errors import InputError
from dndx.io.labelled import LabelledLayout, read_labelled
from dndx.io.labelled_writer import write_labelled
from dndx.simulation.generator import simulate_range
from dndx.truth.preparation import prepare_waveforms
from tests.labelled_files import (
    MIN_SAMPLES,
    N_SAMPLES,
    PEAKS,
    RATE_GHZ,
    cepc_branches,
    without_branch,
    write_hdf5,
    write_parquet,
    write_tree,
)

_WRITERS = {"root": write_tree, "hdf5": write_hdf5}


def test_cepc_file_reads_tagged_peaks_as_truth(tmp_path: Path) -> None:
    path = write_tree(tmp_path / "signal_pi_12.5_0.root", cepc_branches())
    chunk = read_labelled(path, LabelledLayout("cepc", particle="pi"), 0, 4, MIN_SAMPLES)
    data = chunk.data
    assert chunk.skipped == []
    assert chunk.tag_counts.tolist() == [1, 8, 4]
    assert data.info["n_clusters"].tolist() == [2, 3, 1, 2]
    assert data.info["particle"].tolist() == ["pi"] * 4
    assert data.info["beta_gamma"].to_numpy() == pytest.approx(12.5 / 0.139570)
    expected = [[at / RATE_GHZ for at, tag in p if tag in (1, 2)] for p in PEAKS]
    flat = [t for row in expected for t in row]
    assert data.electrons["time_ns"].tolist() == pytest.approx(flat)
    assert data.electrons["primary"].tolist() == [
        tag == 1 for p in PEAKS for _, tag in p if tag in (1, 2)
    ]
    assert np.diff(data.electron_offsets).tolist() == [len(e) for e in expected]


def test_cepc_candidates_on_tagged_peaks_are_signal(tmp_path: Path) -> None:
    path = write_tree(tmp_path / "sim.root", cepc_branches())
    prepare = load_params().prepare
    chunk = prepare_waveforms(
        read_labelled(path, LabelledLayout("cepc"), 0, 4, MIN_SAMPLES).data, prepare
    )
    signal = chunk.candidates[chunk.candidates["label"] == 1]
    noise = chunk.candidates[chunk.candidates["label"] == 0]
    # 12 peaks tagged 1 or 2; 60 and 61 of waveform 1 are closer than the
    # resolving time, one pulse: 11 expected peaks, each with its candidate.
    assert len(signal) == 11
    assert chunk.waveforms["n_expected_peaks"].tolist() == [3, 3, 1, 4]
    tagged_ns = {at / RATE_GHZ for p in PEAKS for at, tag in p if tag in (1, 2)}
    for time_ns in signal["time_ns"]:
        gap = min(abs(time_ns - t) for t in tagged_ns)
        assert gap <= prepare.match_tolerance_samples / prepare.candidates.model_sampling_rate_ghz
    # The background-tagged pulse at sample 220 is a candidate but not signal.
    assert np.isclose(noise["time_ns"], 220 / RATE_GHZ, atol=2.0).any()
    assert chunk.waveforms["n_clusters"].tolist() == [2, 3, 1, 2]


BAD_WAVEFORMS = [
    (
        "time/tag length mismatch",
        {"tag": ak.Array([[1, 2, 1, 0], [1, 2, 1], [1], [1, 2, 2, 1]])},
        1,
        "'time' has 4 entries, 'tag' 3",
    ),
    (
        "tag outside 0, 1, 2",
        {"tag": ak.Array([[1, 2, 1, 0], [1, 2, 1, 1], [3], [1, 2, 2, 1]])},
        2,
        "tag 3",
    ),
    ("NaN sample", {"wf_i": None}, 3, "NaN or inf"),
    ("waveform shorter than a window", {"wf_i": "short"}, 0, "too short"),
]


@pytest.mark.parametrize("fmt", ["root", "hdf5"])
@pytest.mark.parametrize(
    ("change", "entry", "reason"),
    [case[1:] for case in BAD_WAVEFORMS],
    ids=[case[0] for case in BAD_WAVEFORMS],
)
def test_one_bad_waveform_is_skipped_with_its_entry(
    tmp_path: Path, change: dict, entry: int, reason: str, fmt: str
) -> None:
    branches = cepc_branches()
    if "wf_i" in change:
        rows = [np.asarray(r) for r in ak.to_list(branches["wf_i"])]
        if change["wf_i"] is None:
            rows[entry][5] = np.nan
        else:
            rows[entry] = rows[entry][:10]
        change = {"wf_i": ak.Array(rows), "time": branches["time"]}
        if entry == 0:
            change["time"] = ak.Array([[5.0], *ak.to_list(branches["time"])[1:]])
            change["tag"] = ak.Array([[1], *ak.to_list(branches["tag"])[1:]])
            change["ncls"] = np.array([1, 3, 1, 2], dtype=np.int32)
    path = _WRITERS[fmt](tmp_path / f"bad.{fmt}", {**branches, **change})
    chunk = read_labelled(path, LabelledLayout("cepc"), 0, 4, MIN_SAMPLES)
    assert [e for e, _ in chunk.skipped] == [entry]
    assert reason in chunk.skipped[0][1]
    assert len(chunk.data) == 3
    assert entry not in chunk.data.info["entry"].tolist()


BAD_FILES = [
    (
        "missing branch",
        lambda p: write_tree(p, without_branch(cepc_branches(), "tag")),
        "names.tag",
    ),
    ("wrong tree", lambda p: write_tree(p, cepc_branches(), "events"), "names.tree"),
    ("time unit", lambda p: p, "time_unit"),
    ("truncated", lambda p: _truncate(write_tree(p, cepc_branches())), "truncated"),
    ("not a file", lambda p: p.with_name("missing.root"), "no such file"),
]


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:400])
    return path


@pytest.mark.parametrize(
    ("make", "named"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES]
)
def test_bad_file_names_file_and_setting(tmp_path: Path, make: Any, named: str) -> None:
    path = write_tree(tmp_path / "input.root", cepc_branches())
    path = make(path)
    layout = LabelledLayout("cepc", time_unit="ns" if named == "time_unit" else "samples")
    with pytest.raises(InputError) as error:
        read_labelled(path, layout, 0, 4, MIN_SAMPLES)
    assert str(path) in str(error.value)
    assert named in str(error.value)


OTHER_FORMATS = [
    ("hdf5, 2-D waveforms in group sim", lambda p, b: write_hdf5(p.with_suffix(".h5"), b), 0),
    (
        "hdf5, variable-length waveforms at the root",
        lambda p, b: write_hdf5(p.with_suffix(".h5"), b, None),
        10,
    ),
    (
        "parquet, row groups of 3",
        lambda p, b: write_parquet(p.with_suffix(".parquet"), b),
        10,
    ),
]


@pytest.mark.parametrize(
    ("write", "shorter"),
    [case[1:] for case in OTHER_FORMATS],
    ids=[case[0] for case in OTHER_FORMATS],
)
def test_cepc_file_in_other_formats_reads_as_root(tmp_path: Path, write: Any, shorter: int) -> None:
    branches = cepc_branches()
    rows = ak.to_list(branches["wf_i"])
    # Every other waveform ``shorter`` samples shorter: waveforms of several lengths.
    branches["wf_i"] = ak.Array(
        [row[: N_SAMPLES - shorter * (i % 2)] for i, row in enumerate(rows)]
    )
    layout = LabelledLayout("cepc", particle="pi")
    other = write(tmp_path / "a", branches)
    from_other = read_labelled(other, layout, 1, 4, MIN_SAMPLES)
    from_root = read_labelled(write_tree(tmp_path / "a.root", branches), layout, 1, 4, MIN_SAMPLES)
    assert from_other.skipped == []
    assert from_other.tag_counts.tolist() == from_root.tag_counts.tolist() == [0, 6, 3]
    assert from_other.data.electrons.equals(from_root.data.electrons)
    assert from_other.data.adc.lengths.tolist() == from_root.data.adc.lengths.tolist()
    assert np.array_equal(from_other.data.adc.values, from_root.data.adc.values)
    assert from_other.data.info.equals(from_root.data.info.assign(source_file=str(other)))


def _string_tags(path: Path) -> Path:
    branches = cepc_branches()
    write_hdf5(path, without_branch(branches, "tag"))
    with h5py.File(path, "a") as file:
        file["sim"].create_dataset("tag", data=np.array([b"a", b"b", b"c", b"d"]))
    return path


BAD_HDF5 = [
    (
        "missing dataset",
        lambda p: write_hdf5(p, without_branch(cepc_branches(), "tag")),
        "no dataset 'tag' in group 'sim' for 'tag' (layout cepc; rename it with names.tag)",
    ),
    (
        "no group named like the tree",
        lambda p: write_hdf5(p, cepc_branches(), "events"),
        "no dataset 'wf_i' at the file root (no group 'sim', names.tree)",
    ),
    (
        "datasets of different lengths",
        lambda p: write_hdf5(p, cepc_branches(mom=np.full(3, 12.5))),
        "dataset 'mom' in group 'sim' holds 3 entries, 'wf_i' 4",
    ),
    ("strings", _string_tags, "dataset 'tag' in group 'sim' holds |S1 of shape (4,)"),
    ("truncated", lambda p: _truncate(write_hdf5(p, cepc_branches())), "not a readable HDF5"),
]


@pytest.mark.parametrize(
    ("make", "message"), [case[1:] for case in BAD_HDF5], ids=[case[0] for case in BAD_HDF5]
)
def test_bad_hdf5_file_names_file_and_dataset(tmp_path: Path, make: Any, message: str) -> None:
    path = make(tmp_path / "input.h5")
    with pytest.raises(InputError) as error:
        read_labelled(path, LabelledLayout("cepc"), 0, 4, MIN_SAMPLES)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_layout_rejects_unknown_role() -> None:
    with pytest.raises(InputError, match="unknown names"):
        LabelledLayout("cepc", {"waveforms": "adc"})


@pytest.mark.parametrize("front_end", ["nominal", "shaped"])
@pytest.mark.parametrize("suffix", [".root", ".h5"])
@pytest.mark.parametrize("layout", ["cepc", "dndx"])
def test_written_layouts_label_as_the_simulator(
    tmp_path: Path, layout: str, suffix: str, front_end: str
) -> None:
    params = load_params()
    cfg = dataclasses.replace(params.simulate, n_train=30, block_size=30, chunk_size=30)
    if front_end == "shaped":
        # The labels follow the shaped pulse's peak, in the cepc peak times and in the
        # dndx truth read back alike.
        cfg = dataclasses.replace(
            cfg, fall_time_ns=Range(7.5, 15.0), shaping_time_ns=Range(2.0, 6.0)
        )
    simulated = simulate_range(cfg, "train", 0, 30)
    path = tmp_path / f"{layout}{suffix}"
    write_labelled(simulated, path, layout)
    read = read_labelled(path, LabelledLayout(layout), 0, 30, MIN_SAMPLES)
    direct = prepare_waveforms(simulated, params.prepare)
    ingested = prepare_waveforms(read.data, params.prepare)
    assert read.skipped == []
    assert ingested.candidates["label"].tolist() == direct.candidates["label"].tolist()
    assert ingested.waveforms["n_clusters"].tolist() == simulated.info["n_clusters"].tolist()
    if layout == "dndx":
        assert read.data.info["particle"].tolist() == simulated.info["particle"].tolist()


def test_hdf5_writer_stores_waveforms_of_one_length_as_2d(tmp_path: Path) -> None:
    params = load_params()
    cfg = dataclasses.replace(
        params.simulate, n_train=10, block_size=10, chunk_size=10, sampling_rates_ghz=(1.5,)
    )
    simulated = simulate_range(cfg, "train", 0, 10)
    path = tmp_path / "one-rate.h5"
    write_labelled(simulated, path, "cepc")
    with h5py.File(path) as file:
        assert file["sim/wf_i"].shape == (10, simulated.adc.lengths[0])
        assert h5py.check_vlen_dtype(file["sim/time"].dtype) == np.float32
    read = read_labelled(path, LabelledLayout("cepc"), 0, 10, MIN_SAMPLES)
    assert read.skipped == []
    assert np.array_equal(read.data.adc.values, simulated.adc.values)
