"""The data stages' outputs travel through a DVC remote: push, lose everything, pull."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from tests.conftest import venv_env


def _dvc(repo: Path, api_url: str, *args: str) -> str:
    result = subprocess.run(
        ["dvc", *args],
        cwd=repo,
        env={**venv_env(), "PREFECT_API_URL": api_url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _digests(directory: Path) -> dict[str, str]:
    """SHA-256 of every file DVC tracks below ``directory`` (not git's .gitignore)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".gitignore"
    }


def test_push_then_pull_into_an_empty_checkout_restores_the_data_byte_for_byte(
    project: Path, tmp_path: Path, prefect_api: str
) -> None:
    stages = ("simulate", "prepare")
    _dvc(project, prefect_api, "repro", *stages)
    before = _digests(project / "data")
    assert any(name.startswith("simulated/") for name in before)
    assert any(name.startswith("prepared/") for name in before)

    remote = tmp_path / "remote"
    _dvc(project, prefect_api, "remote", "add", "-d", "storage", str(remote))
    _dvc(project, prefect_api, "push", *stages)
    assert any(remote.rglob("*")), "nothing was pushed"

    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    _dvc(project, prefect_api, "pull", *stages)

    assert _digests(project / "data") == before
    assert "up to date" in _dvc(project, prefect_api, "status", *stages)
    assert "in sync" in _dvc(project, prefect_api, "status", "--cloud", *stages)
