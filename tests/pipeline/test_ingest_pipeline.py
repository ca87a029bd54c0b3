"""A tiny full pipeline, ingest to register, on cepc-layout files written by the test:
nothing but ``params.yaml`` changed. In a module of its own so that `make test` runs it
beside the other long modules rather than after them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import dvc
from tests.labelled_files import random_cepc_branches, use_files, write_tree

pytestmark = pytest.mark.pipeline


def test_full_pipeline_on_cepc_files(project: Path, shared_dask: str) -> None:
    """ingest to register on cepc files, with nothing but params.yaml changed."""
    rng = np.random.default_rng(2026)
    root = project / "data/labelled"
    root.mkdir(parents=True)
    for i in range(6):
        write_tree(root / f"signal_pi_12.5_{i}.root", random_cepc_branches(rng, 40))
    use_files(project, particle="pi", chunk_size=40)
    _one_trial_per_scan(project)
    dvc(project, "add", "data/labelled")
    log = dvc(project, "repro", "register")
    # register reads the baselines evaluate tuned, so evaluate runs before it.
    stages = ("ingest", "simulate", "prepare", "train_peak_finder", "encode", "evaluate")
    for stage in (*stages, "register"):
        assert f"Running stage '{stage}'" in log
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


def _one_trial_per_scan(project: Path) -> None:
    """Scans of one trial: test_pipeline.py's trained project covers scans of several
    and what is kept of them; here the files' path through every stage is tested."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for stage, name in (("train_peak_finder", "lstm_units"), ("train_cluster_counter", "filters")):
        scan = params[stage]["scan"]
        scan.update(n_trials=1, space={name: scan["space"][name][:1]})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
