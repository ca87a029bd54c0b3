"""The data stages' outputs travel through a DVC remote: push, lose everything, pull."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from tests.conftest import TrainedProject, copy_project, dvc


def _digests(directory: Path) -> dict[str, str]:
    """SHA-256 of every file DVC tracks below ``directory`` (not git's .gitignore)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".gitignore"
    }


def test_push_then_pull_into_an_empty_checkout_restores_the_data_byte_for_byte(
    trained_project: TrainedProject, tmp_path: Path
) -> None:
    project = copy_project(trained_project, tmp_path)
    outputs = {"ingest": "data/ingested", "simulate": "data/simulated", "prepare": "data/prepared"}
    before = {stage: _digests(project / out) for stage, out in outputs.items()}
    assert all(before.values())

    remote = tmp_path / "remote"
    dvc(project, "remote", "add", "-d", "storage", str(remote))
    dvc(project, "push", *outputs)
    assert any(remote.rglob("*")), "nothing was pushed"

    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    dvc(project, "pull", *outputs)

    assert {stage: _digests(project / out) for stage, out in outputs.items()} == before
    assert "up to date" in dvc(project, "status", *outputs)
    assert "in sync" in dvc(project, "status", "--cloud", *outputs)
