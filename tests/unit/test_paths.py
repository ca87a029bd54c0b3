"""Every stage path named once, in ``dndx.paths``, and spelled as ``dvc.yaml`` names it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from dndx import paths
from dndx.config import PROJECT_ROOT

#: The top-level directories the stages' paths live in.
TOP_LEVEL = ("data", "metrics", "reports")
#: The names of the files inside the stages' directories.
FILE_NAMES = {getattr(paths, name) for name in paths.__all__ if name.endswith("_FILE")}


def _dvc_paths() -> set[str]:
    """Every path ``dvc.yaml`` names as a stage's dep, out, metric or plot."""
    stages: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    named = set()
    for stage in stages.values():
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                named.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return named


#: Directories no stage hands to DVC: the root of the data, and the registry's cache.
UNTRACKED = ("DATA_DIR", "REGISTRY_CACHE_DIR")


@pytest.mark.parametrize(
    "name",
    [
        name
        for name in paths.__all__
        if isinstance(getattr(paths, name), Path) and name not in UNTRACKED
    ],
)
def test_every_stage_path_is_one_dvc_yaml_names(name: str) -> None:
    path = str(getattr(paths, name))
    # The path itself, a directory holding named paths, or a file inside a named directory.
    assert any(
        named == path or named.startswith(f"{path}/") or path.startswith(f"{named}/")
        for named in _dvc_paths()
    ), path


def _literals(module: Path) -> list[str]:
    """The string constants of ``module`` that are not docstrings."""
    tree = ast.parse(module.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize(
    "package",
    [
        "flows",
        "tasks",
        "models",
        *(
            f"dndx/{p.name}"
            for p in (PROJECT_ROOT / "dndx").iterdir()
            if p.is_dir() and p.name != "__pycache__"
        ),
    ],
)
def test_no_module_spells_a_stage_path_itself(package: str) -> None:
    spelled = {
        f"{module.relative_to(PROJECT_ROOT)}: {literal!r}"
        for module in sorted((PROJECT_ROOT / package).glob("*.py"))
        for literal in _literals(module)
        if literal.startswith(tuple(f"{top}/" for top in TOP_LEVEL)) or literal in FILE_NAMES
    }
    assert not spelled, "name these in dndx.paths: " + ", ".join(sorted(spelled))
