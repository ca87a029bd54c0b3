"""The ingest stage through real DVC running real Prefect flows on a real Dask cluster:
labelled files in both layouts, bad inputs, and what DVC reruns after a changed file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import yaml

from dndx.config import parse_params
from dndx.dataset import part_paths, read_waveform_set
from dndx.errors import InputError
from dndx.ingestion import split_files
from dndx.labelled import LabelledLayout, read_labelled
from flows.cli import main
from tests.conftest import venv_env
from tests.test_labelled import PEAKS, _cepc_branches, _write_hdf5, _write_parquet, _write_tree

N_FILES = 5


def _dvc(repo: Path, *args: str, ok: bool = True) -> str:
    env = {**venv_env(), "XDG_CACHE_HOME": str(repo / ".cache"), "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(
        ["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout + result.stderr


def _use_files(project: Path, **data: Any) -> dict:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"].update(
        {"source": "files", "root": "data/labelled", "files": ["*.root"], "chunk_size": 3, **data}
    )
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def _cepc_files(root: Path, n_files: int = N_FILES) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    return [_write_tree(root / f"signal_{i}.root", _cepc_branches()) for i in range(n_files)]


def test_cepc_files_ingest_and_rerun_only_on_change(project: Path, prefect_api: str) -> None:
    root = project / "data/labelled"
    _cepc_files(root, N_FILES - 2)
    # Formats mix in one production: HDF5 and Parquet written as a third party would.
    _write_hdf5(root / f"signal_{N_FILES - 2}.h5", _cepc_branches())
    _write_parquet(root / f"signal_{N_FILES - 1}.parquet", _cepc_branches())
    _use_files(project, particle="pi", files=["*"])
    _dvc(project, "add", "data/labelled")
    log = _dvc(project, "repro", "prepare")
    for stage in ("ingest", "simulate", "prepare"):
        assert f"Running stage '{stage}'" in log
    metrics = json.loads((project / "metrics/ingest.json").read_text())
    assert metrics["source"] == "files"
    assert sum(metrics[s]["n_files"] for s in ("train", "validation", "test")) == N_FILES
    for split in ("train", "validation", "test"):
        assert metrics[split]["n_waveforms"] == len(PEAKS) * metrics[split]["n_files"]
        assert metrics[split]["particles"] == ["pi"]
        assert metrics[split]["mean_n_clusters"] == pytest.approx(2.0)
        assert metrics[split]["n_skipped"] == 0
        parts = part_paths(project / "data/simulated" / split)
        ids = np.concatenate([read_waveform_set(p).info["waveform_id"] for p in parts])
        assert len(set(ids.tolist())) == len(ids) == metrics[split]["n_waveforms"]
    prepared = json.loads((project / "metrics/prepare.json").read_text())
    assert prepared["train"]["n_signal"] == 11 * metrics["train"]["n_files"]
    assert "up to date" in _dvc(project, "status", "ingest", "simulate", "prepare")

    # One changed file: DVC names the tracked data, and reruns what depends on it.
    changed = _cepc_branches(mom=np.full(len(PEAKS), 5.0))
    _write_tree(project / "data/labelled/signal_0.root", changed)
    assert "data/labelled" in _dvc(project, "status")
    _dvc(project, "add", "data/labelled")
    again = _dvc(project, "repro", "prepare")
    assert "Running stage 'ingest'" in again
    momenta = {m for s in ("train", "validation", "test") for m in _momenta(project, s)}
    assert momenta == {5.0, 12.5}


def test_simulate_source_leaves_ingest_empty(project: Path, prefect_api: str) -> None:
    log = _dvc(project, "repro", "simulate")
    assert "Running stage 'ingest'" in log
    assert json.loads((project / "metrics/ingest.json").read_text()) == {"source": "simulate"}
    assert [p.name for p in (project / "data/ingested").iterdir()] == ["SOURCE"]
    simulated = sum(len(read_waveform_set(p)) for p in part_paths(project / "data/simulated/train"))
    assert simulated == yaml.safe_load((project / "params.yaml").read_text())["simulate"]["n_train"]


def _momenta(project: Path, split: str) -> list[float]:
    return json.loads((project / "metrics/ingest.json").read_text())[split]["momenta_gev"]


def test_dndx_layout_round_trip_through_ingest(project: Path, prefect_api: str) -> None:
    root = project / "data/labelled"
    for split in ("train", "validation", "test"):
        written = root / split / "sim.root"
        written.parent.mkdir(parents=True, exist_ok=True)
        assert main(["data", "write", str(written), "--layout", "dndx", "--waveforms", "8"]) == 0
    _use_files(
        project,
        layout="dndx",
        files=[],
        splits={"train": ["train"], "validation": ["validation"], "test": ["test"]},
    )
    _dvc(project, "repro", "simulate")
    parts = [read_waveform_set(p) for p in part_paths(project / "data/simulated/train")]
    assert [len(p) for p in parts] == [3, 3, 2]
    data = parts[0]
    assert set(data.info["particle"]) <= {"mu", "pi", "K"}
    assert "rise_time_ns" in data.info


def _one_bad_waveform(root: Path) -> None:
    _cepc_files(root, 3)
    tags = ak.to_list(_cepc_branches()["tag"])
    tags[2] = [7]
    _write_tree(root / "signal_1.root", _cepc_branches(tag=ak.Array(tags)))


BAD_INPUTS = [
    (
        "missing branch",
        lambda root: _write_tree(root / "signal_1.root", _without("tag")),
        "names.tag",
    ),
    ("empty file", lambda root: (root / "signal_2.root").write_bytes(b""), "signal_2.root"),
    (
        "truncated file",
        lambda root: (root / "signal_2.root").write_bytes(
            (root / "signal_2.root").read_bytes()[:500]
        ),
        "truncated",
    ),
    (
        "tag/time length mismatch in every waveform",
        lambda root: _write_tree(
            root / "signal_0.root", _cepc_branches(tag=ak.Array([[1, 2]] * len(PEAKS)))
        ),
        "no usable waveform",
    ),
]


def _without(name: str) -> dict:
    return {k: v for k, v in _cepc_branches().items() if k != name}


@pytest.mark.parametrize(
    ("spoil", "named"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_stops_ingest_naming_it(
    project: Path, prefect_api: str, spoil: Any, named: str
) -> None:
    root = project / "data/labelled"
    _cepc_files(root, 3)
    spoil(root)
    _use_files(
        project,
        files=[],
        splits={
            "train": ["signal_0.root"],
            "validation": ["signal_1.root"],
            "test": ["signal_2.root"],
        },
    )
    log = _dvc(project, "repro", "ingest", ok=False)
    assert named in log
    assert not (project / "data/ingested").exists()
    assert not (project / "metrics/ingest.json").exists()


def test_one_bad_waveform_is_skipped_and_counted(project: Path, prefect_api: str) -> None:
    _one_bad_waveform(project / "data/labelled")
    _use_files(
        project,
        files=[],
        splits={
            "train": ["signal_0.root"],
            "validation": ["signal_1.root"],
            "test": ["signal_2.root"],
        },
    )
    _dvc(project, "repro", "ingest")
    metrics = json.loads((project / "metrics/ingest.json").read_text())
    assert metrics["validation"]["n_skipped"] == 1
    assert metrics["validation"]["n_waveforms"] == len(PEAKS) - 1
    assert metrics["validation"]["skipped"] == {"tag 7": 1}
    assert metrics["train"]["n_skipped"] == 0


def test_split_with_no_files_names_the_split(tmp_path: Path) -> None:
    _cepc_files(tmp_path, 3)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["data"].update(
        {
            "source": "files",
            "splits": {"train": ["signal_0.root"], "validation": ["val/*.root"], "test": ["*"]},
        }
    )
    with pytest.raises(InputError, match=r"data\.splits\.validation \['val/\*\.root'\]"):
        split_files(parse_params(params).data, tmp_path)
    params["data"].update({"splits": {"train": [], "validation": [], "test": []}, "files": ["*"]})
    split = split_files(parse_params(params).data, tmp_path)
    assert sorted(p.name for paths in split.values() for p in paths) == [
        f"signal_{i}.root" for i in range(3)
    ]
    assert all(len(paths) == 1 for paths in split.values())


def test_hdf5_files_are_inputs_like_root(tmp_path: Path) -> None:
    for name in ("a.root", "b.h5", "c.hdf5", "d.parquet", "notes.txt"):
        (tmp_path / name).touch()
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["data"].update({"source": "files", "files": ["*"]})
    split = split_files(parse_params(params).data, tmp_path)
    assert sorted(p.name for paths in split.values() for p in paths) == [
        "a.root",
        "b.h5",
        "c.hdf5",
        "d.parquet",
    ]


def test_inputs_outside_the_project_through_dvc_import_url(tmp_path: Path) -> None:
    """The README's route for a production outside the repository: ``dvc import-url``
    of its directory, then ``dvc update`` after a file there changed."""
    store = tmp_path / "store" / "peakFinding"
    store.mkdir(parents=True)
    _write_tree(store / "signal_0.root", _cepc_branches())
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc(repo, "init", "-q")
    # DVC wants the target's parent to exist, and a fresh clone has no data/.
    (repo / "data").mkdir()
    _dvc(repo, "import-url", str(store), "data/labelled")
    imported = repo / "data/labelled/signal_0.root"
    assert imported.read_bytes() == (store / "signal_0.root").read_bytes()
    _write_tree(store / "signal_0.root", _cepc_branches(mom=np.full(len(PEAKS), 5.0)))
    assert "data/labelled.dvc" in _dvc(repo, "status")
    _dvc(repo, "update", "data/labelled.dvc")
    assert imported.read_bytes() == (store / "signal_0.root").read_bytes()
    updated = read_labelled(imported, LabelledLayout("cepc"), 0, len(PEAKS), 15)
    assert updated.data.info["momentum_gev"].tolist() == [5.0] * len(PEAKS)


def _random_cepc_branches(rng: np.random.Generator, n: int) -> dict:
    """``n`` waveforms of 600 samples at 1.5 GHz: Poisson clusters of 1 to 3 peaks
    (the first tagged 1, the others 2), each a negative pulse over white noise."""
    waves, times, tags, n_clusters = [], [], [], []
    t = np.arange(600, dtype=float)
    for _ in range(n):
        starts = np.sort(rng.uniform(40, 520, rng.poisson(8) + 1))
        peaks = [(s + 5 * k, 1 if k == 0 else 2) for s in starts for k in range(rng.integers(1, 4))]
        wave = 400.0 + rng.normal(0.0, 2.0, len(t))
        for at, _ in peaks:
            wave -= rng.uniform(40, 120) * np.exp(-0.5 * ((t - at) / 1.5) ** 2)
        waves.append(wave.astype(np.float32))
        times.append([float(at) for at, _ in peaks])
        tags.append([tag for _, tag in peaks])
        n_clusters.append(len(starts))
    return {
        "wf_i": ak.Array(waves),
        "sampling_rate": np.full(n, 1.5),
        "ncls": np.array(n_clusters, dtype=np.int32),
        "mom": np.full(n, 12.5),
        "time": ak.Array(times),
        "tag": ak.Array(tags),
    }


def test_full_pipeline_on_cepc_files(project: Path, prefect_api: str) -> None:
    """ingest to register on cepc files, with nothing but params.yaml changed."""
    rng = np.random.default_rng(2026)
    root = project / "data/labelled"
    root.mkdir(parents=True)
    for i in range(6):
        _write_tree(root / f"signal_pi_12.5_{i}.root", _random_cepc_branches(rng, 40))
    _use_files(project, particle="pi", chunk_size=40)
    _dvc(project, "add", "data/labelled")
    log = _dvc(project, "repro", "register")
    # register reads the baselines evaluate tuned, so evaluate runs before it.
    stages = ("ingest", "simulate", "prepare", "train_peak_finder", "encode", "evaluate")
    for stage in (*stages, "register"):
        assert f"Running stage '{stage}'" in log
    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    assert 0.0 < evaluation["peak.lstm.efficiency_x_purity"] <= 1.0
    registry = json.loads((project / "metrics/register.json").read_text())
    assert registry["alias"] == "champion"
    provenance = json.loads((project / "data/bundle/bundle.json").read_text())["provenance"]
    assert provenance["data_source"] == "files:data/labelled"
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    simulated = next(o for o in lock["simulate"]["outs"] if o["path"] == "data/simulated")
    assert provenance["data_version.data/simulated"] == simulated["md5"]
