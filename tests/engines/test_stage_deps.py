"""Every stage's deps hold the code its flow imports, so no edit leaves a result stale."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.stage_deps import PROJECT_PACKAGES, import_closure, main, missing_deps, stage_module
from tests.conftest import ROOT, venv_env

STAGES: dict[str, Any] = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_lists_every_module_its_flow_imports(name: str) -> None:
    stage = STAGES[name]
    module = stage_module(stage["cmd"])
    assert module is not None, f"stage {name!r} runs no project module: {stage['cmd']}"
    closure = import_closure(ROOT, module)
    assert f"{module.replace('.', '/')}.py" in closure
    assert set(closure) <= set(stage.get("deps", [])), missing_deps(ROOT, stage)


def test_a_stage_that_omits_an_imported_module_is_caught() -> None:
    stage = dict(STAGES["train_peak_finder"])
    stage["deps"] = [dep for dep in stage["deps"] if dep != "models/blocks.py"]
    assert missing_deps(ROOT, stage) == ["models/blocks.py"]


def test_the_closure_follows_relative_and_function_level_imports(tmp_path: Path) -> None:
    files = {
        "dndx/__init__.py": "",
        "dndx/core.py": "import numpy\n\ndef f():\n    from . import helper\n",
        "dndx/helper.py": "from .deep import value\n",
        "dndx/deep.py": "value = 1\n",
        "dndx/unused.py": "",
        "models/__init__.py": "from models.net import build\n",
        "models/net.py": "import keras\nbuild = None\n",
        "flows/__init__.py": "",
        "flows/stage.py": "import dndx.core\nfrom models import build\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert import_closure(tmp_path, "flows.stage") == sorted(set(files) - {"dndx/unused.py"})


def _copy_code(root: Path) -> None:
    for package in PROJECT_PACKAGES:
        shutil.copytree(
            ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )


def test_write_restores_a_missing_module_and_keeps_data_deps_and_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _copy_code(tmp_path)
    original = (ROOT / "dvc.yaml").read_text()
    damaged = original.replace("      - models/blocks.py\n", "", 1)
    assert damaged != original
    (tmp_path / "dvc.yaml").write_text(damaged)

    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "does not list models/blocks.py" in capsys.readouterr().err
    assert main(["--write", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "dvc.yaml").read_text() == original
    assert main(["--check", "--root", str(tmp_path)]) == 0


def test_write_gives_a_new_stage_its_deps(tmp_path: Path) -> None:
    _copy_code(tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  # a stage added by hand, without deps\n"
        "  fresh:\n"
        "    cmd: python -m flows.prepare\n"
        "    outs:\n"
        "      - data/fresh\n"
    )
    assert main(["--write", "--root", str(tmp_path)]) == 0
    text = (tmp_path / "dvc.yaml").read_text()
    assert "  # a stage added by hand, without deps\n" in text
    stage = yaml.safe_load(text)["stages"]["fresh"]
    assert list(stage) == ["cmd", "deps", "outs"]
    assert stage["deps"] == import_closure(tmp_path, "flows.prepare")


def _outputs(stage: dict[str, Any]) -> list[str]:
    entries = [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]


def _dvc(repo: Path, *args: str) -> str:
    env = {**venv_env(), "XDG_CACHE_HOME": str(repo / ".cache")}
    result = subprocess.run(["dvc", *args], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _changed_stages(repo: Path) -> dict[str, list[str]]:
    """Each stage ``dvc status`` reports, with the deps it names as changed."""
    status = json.loads(_dvc(repo, "status", "--json"))
    return {
        name: sorted(dep for change in changes for dep in change.get("changed deps", {}))
        for name, changes in status.items()
    }


def test_editing_an_imported_module_makes_dvc_report_the_stages_that_import_it(
    project: Path,
) -> None:
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    # Stand-in outputs let DVC record every stage as run without running it.
    for stage in stages.values():
        for output in _outputs(stage):
            (project / output).parent.mkdir(parents=True, exist_ok=True)
            (project / output).write_text(f"{output} as last built\n")
    _dvc(project, "commit", "--force", "--quiet")
    assert _changed_stages(project) == {}

    # A core module and a model builder, each edited and restored in turn.
    for module, importer in (
        ("dndx/ragged.py", "simulate"),
        ("models/blocks.py", "train_peak_finder"),
    ):
        importers = {
            name
            for name, stage in stages.items()
            if module in import_closure(project, str(stage_module(stage["cmd"])))
        }
        assert importer in importers
        source = project / module
        text = source.read_text()
        source.write_text(text + "\n# an edit\n")
        assert _changed_stages(project) == {name: [module] for name in importers}

        source.write_text(text)
        assert _changed_stages(project) == {}
