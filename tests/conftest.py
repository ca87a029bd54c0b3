"""Shared fixtures: tiny configurations and a throw-away copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_PARAMS = ROOT / "tests" / "data" / "params-tiny.yaml"
PROJECT_FILES = ("dndx", "flows", "tasks", "models", "dvc.yaml", ".dvcignore", "pyproject.toml")


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's scripts (dvc, dndx, python) first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def tiny_params(**overrides: dict) -> dict:
    """``params.yaml`` with the tiny test sizes (and ``overrides``) applied, as a mapping."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for updates in (yaml.safe_load(TINY_PARAMS.read_text()), overrides):
        for section, values in updates.items():
            params.setdefault(section, {}).update(values)
    return params


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh git + DVC repository holding the project's code and tiny params."""
    repo = tmp_path / "project"
    repo.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        subprocess.run(command, cwd=repo, check=True, env=venv_env())
    return repo
