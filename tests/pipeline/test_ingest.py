"""The ingest stage through real DVC running real Prefect flows on a real Dask cluster:
the dndx layout, bad inputs, files outside the project. The cepc layout in three formats,
and what DVC reruns after a changed file, are test_ingest_pipeline.py's."""

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
from dndx.errors import InputError
from dndx.io.dataset import part_paths, read_waveform_set
from dndx.io.ingestion import split_files
from dndx.io.labelled import LabelledLayout, read_labelled
from flows.cli import main
from tests.conftest import dvc
from tests.labelled_files import (
    PEAKS,
    cepc_branches,
    use_files,
    write_tree,
)

pytestmark = pytest.mark.pipeline

#: The ``data.splits`` of three files signal_0.root to signal_2.root.
ONE_FILE_PER_SPLIT = {
    "train": ["signal_0.root"],
    "validation": ["signal_1.root"],
    "test": ["signal_2.root"],
}


def _cepc_files(root: Path, n_files: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    return [write_tree(root / f"signal_{i}.root", cepc_branches()) for i in range(n_files)]


def test_dndx_layout_round_trip_through_ingest(project: Path, shared_dask: str) -> None:
    root = project / "data/labelled"
    for split in ("train", "validation", "test"):
        written = root / split / "sim.root"
        written.parent.mkdir(parents=True, exist_ok=True)
        assert main(["data", "write", str(written), "--layout", "dndx", "--waveforms", "8"]) == 0
    use_files(
        project,
        layout="dndx",
        files=[],
        splits={"train": ["train"], "validation": ["validation"], "test": ["test"]},
    )
    dvc(project, "repro", "simulate")
    parts = [read_waveform_set(p) for p in part_paths(project / "data/simulated/train")]
    assert [len(p) for p in parts] == [3, 3, 2]
    data = parts[0]
    assert set(data.info["particle"]) <= {"mu", "pi", "K"}
    assert "rise_time_ns" in data.info


def _one_bad_waveform(root: Path) -> None:
    _cepc_files(root, 3)
    tags = ak.to_list(cepc_branches()["tag"])
    tags[2] = [7]
    write_tree(root / "signal_1.root", cepc_branches(tag=ak.Array(tags)))


BAD_INPUTS = [
    (
        "missing branch",
        lambda root: write_tree(root / "signal_1.root", _without("tag")),
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
        lambda root: write_tree(
            root / "signal_0.root", cepc_branches(tag=ak.Array([[1, 2]] * len(PEAKS)))
        ),
        "no usable waveform",
    ),
]


def _without(name: str) -> dict:
    return {k: v for k, v in cepc_branches().items() if k != name}


@pytest.mark.parametrize(
    ("spoil", "named"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_stops_ingest_naming_it(
    project: Path, shared_dask: str, spoil: Any, named: str
) -> None:
    root = project / "data/labelled"
    _cepc_files(root, 3)
    spoil(root)
    use_files(project, files=[], splits=ONE_FILE_PER_SPLIT)
    log = dvc(project, "repro", "ingest", ok=False)
    assert named in log
    assert not (project / "data/ingested").exists()
    assert not (project / "metrics/ingest.json").exists()


def test_one_bad_waveform_is_skipped_and_counted(project: Path, shared_dask: str) -> None:
    _one_bad_waveform(project / "data/labelled")
    use_files(project, files=[], splits=ONE_FILE_PER_SPLIT)
    dvc(project, "repro", "ingest")
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
    write_tree(store / "signal_0.root", cepc_branches())
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    # DVC wants the target's parent to exist, and a fresh clone has no data/.
    (repo / "data").mkdir()
    dvc(repo, "import-url", str(store), "data/labelled")
    imported = repo / "data/labelled/signal_0.root"
    assert imported.read_bytes() == (store / "signal_0.root").read_bytes()
    write_tree(store / "signal_0.root", cepc_branches(mom=np.full(len(PEAKS), 5.0)))
    assert "data/labelled.dvc" in dvc(repo, "status")
    dvc(repo, "update", "data/labelled.dvc")
    assert imported.read_bytes() == (store / "signal_0.root").read_bytes()
    updated = read_labelled(imported, LabelledLayout("cepc"), 0, len(PEAKS), 15)
    assert updated.data.info["momentum_gev"].tolist() == [5.0] * len(PEAKS)
