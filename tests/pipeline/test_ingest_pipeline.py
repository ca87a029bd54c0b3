"""A tiny full pipeline, ingest to register, on cepc-layout files written by the test:
nothing but ``params.yaml`` changed; then what DVC reruns after one file changes. In a
module of its own so that `make test` runs it beside the other long modules rather than
after them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from dndx.io.dataset import part_paths, read_waveform_set
from dndx.waveforms import SPLITS
from tests.conftest import dvc
from tests.labelled_files import (
    random_cepc_branches,
    use_files,
    write_hdf5,
    write_parquet,
    write_tree,
)

pytestmark = pytest.mark.pipeline

N_PER_FILE = 40
#: Formats mix in one production: ROOT, and HDF5 and Parquet as a third party writes them.
WRITERS: tuple[tuple[str, Callable[[Path, dict], Path]], ...] = (
    *((".root", write_tree),) * 4,
    (".h5", write_hdf5),
    (".parquet", write_parquet),
)


def test_full_pipeline_on_cepc_files_then_only_the_changed_data_reruns(
    project: Path, shared_dask: str
) -> None:
    """ingest to register on cepc files, with nothing but params.yaml changed."""
    rng = np.random.default_rng(2026)
    root = project / "data/labelled"
    root.mkdir(parents=True)
    written = {}
    for i, (suffix, write) in enumerate(WRITERS):
        branches = random_cepc_branches(rng, N_PER_FILE)
        written[write(root / f"signal_pi_12.5_{i}{suffix}", branches).name] = branches
    use_files(project, particle="pi", chunk_size=N_PER_FILE, files=["*"])
    _one_trial_per_scan(project)
    dvc(project, "add", "data/labelled")
    log = dvc(project, "repro", "register")
    # register reads the baselines evaluate tuned, so evaluate runs before it.
    stages = ("ingest", "simulate", "prepare", "train_peak_finder", "encode", "evaluate")
    for stage in (*stages, "register"):
        assert f"Running stage '{stage}'" in log
    files = _check_ingested(project, written)
    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    # The LSTM's peaks on the files' tagged peaks: efficiency times purity of its counts.
    true, found, matched = (
        evaluation[f"peak.lstm.{n}"] for n in ("n_true", "n_detected", "n_matched")
    )
    assert 0 < matched <= min(true, found)
    assert evaluation["peak.lstm.efficiency_x_purity"] == pytest.approx(matched**2 / (true * found))
    registry = json.loads((project / "metrics/register.json").read_text())
    assert registry["alias"] == "champion"
    # Pions at 12.5 GeV/c alone: no pair to separate, the counter is chosen and
    # registered on the per-waveform figures, and the report says so.
    assert registry["separation"]["new"] == {}
    assert "Separation power not measured" in (project / "reports/registry.md").read_text()
    provenance = json.loads((project / "data/bundle/bundle.json").read_text())["provenance"]
    assert provenance["data_source"] == "files:data/labelled"
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    simulated = next(o for o in lock["simulate"]["outs"] if o["path"] == "data/simulated")
    assert provenance["data_version.data/simulated"] == simulated["md5"]
    assert "up to date" in dvc(project, "status", "ingest", "simulate", "prepare")

    # One changed file: DVC names the tracked data and reruns the ingest; then the stage
    # that reads the ingested data is stale (DVC finds the stages after it stale once
    # its outputs change), without running the stages again to show it.
    name = files["train"][0]
    suffix, write = next(w for w in WRITERS if name.endswith(w[0]))
    write(root / name, {**written[name], "mom": np.full(N_PER_FILE, 5.0)})
    assert "data/labelled" in dvc(project, "status")
    dvc(project, "add", "data/labelled")
    assert "Running stage 'ingest'" in dvc(project, "repro", "ingest")
    status = dvc(project, "status", "prepare", "--with-deps", "--json")
    assert set(json.loads(status[status.index("{") :])) == {"simulate"}
    metrics = json.loads((project / "metrics/ingest.json").read_text())
    assert {m for split in SPLITS for m in metrics[split]["momenta_gev"]} == {5.0, 12.5}


def _check_ingested(project: Path, written: dict[str, dict]) -> dict[str, list[str]]:
    """The ingest stage's record of each split against the files ``written`` (by name);
    the names of each split's files."""
    metrics = json.loads((project / "metrics/ingest.json").read_text())
    assert metrics["source"] == "files"
    files = {split: [Path(f).name for f in metrics[split]["files"]] for split in SPLITS}
    assert sorted(name for names in files.values() for name in names) == sorted(written)
    for split in SPLITS:
        record = metrics[split]
        assert record["n_waveforms"] == N_PER_FILE * len(files[split])
        assert record["particles"] == ["pi"] and record["n_skipped"] == 0
        n_clusters = np.concatenate([written[name]["ncls"] for name in files[split]])
        assert record["mean_n_clusters"] == pytest.approx(n_clusters.mean())
        parts = part_paths(project / "data/simulated" / split)
        ids = np.concatenate([read_waveform_set(p).info["waveform_id"] for p in parts])
        assert len(set(ids.tolist())) == len(ids) == record["n_waveforms"]
    return files


def _one_trial_per_scan(project: Path) -> None:
    """Scans of one trial: test_pipeline.py's trained project covers scans of several
    and what is kept of them; here the files' path through every stage is tested."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for stage, name in (("train_peak_finder", "lstm_units"), ("train_cluster_counter", "filters")):
        scan = params[stage]["scan"]
        scan.update(n_trials=1, space={name: scan["space"][name][:1]})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
