"""Every document the repository's text points to is in the repository."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import yaml

from tests.conftest import ROOT

#: ``docs/...`` paths and Markdown names, not inside a URL or a longer path.
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*[\w-]")
MARKDOWN_NAME = re.compile(r"(?<![\w./-])(?:[\w.-]+/)*[\w.-]+\.md\b")
#: `dndx infer` writes its summary beside whatever output the user names.
INFERENCE_SUMMARY_SUFFIX = ".summary.md"


def _text_files(root: Path) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    files = []
    for name in listed:
        path = root / name
        if path.is_file() and b"\0" not in path.read_bytes()[:8192]:
            files.append(path)
    return files


def _stage_outputs(root: Path) -> list[str]:
    """Every path a stage of ``dvc.yaml`` writes: Markdown there is made, not kept."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    entries = [
        entry
        for stage in stages.values()
        for kind in ("outs", "metrics", "plots")
        for entry in stage.get(kind, [])
    ]
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]


def _resolves(reference: str, source: Path, root: Path) -> bool:
    return (root / reference).exists() or (source.parent / reference).exists()


def broken_references(root: Path, files: Iterable[Path], outputs: list[str]) -> list[str]:
    """``file:line: reference`` for each reference that names no file of the repository.

    ``docs/...`` is checked everywhere; other Markdown names outside ``tests/`` (whose
    Markdown names are temporary outputs), unless a stage or ``dndx infer`` writes them.
    """
    broken = []
    for path in files:
        in_tests = path.relative_to(root).parts[0] == "tests"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            references = set(DOCS_PATH.findall(line))
            if not in_tests:
                references |= {
                    name
                    for name in MARKDOWN_NAME.findall(line)
                    if not name.endswith(INFERENCE_SUMMARY_SUFFIX)
                    and not any(name == out or name.startswith(f"{out}/") for out in outputs)
                }
            broken.extend(
                f"{path.relative_to(root)}:{number}: {reference}"
                for reference in sorted(references)
                if not _resolves(reference, path, root)
            )
    return broken


def test_every_document_the_repository_cites_exists() -> None:
    files = _text_files(ROOT)
    assert ROOT / "docs" / "physics.md" in files
    assert broken_references(ROOT, files, _stage_outputs(ROOT)) == []


def test_a_reference_to_a_missing_document_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "physics.md").write_text("# Physics\n")
    (tmp_path / "dndx").mkdir()
    source = tmp_path / "dndx" / "module.py"
    missing = "units.md"  # spelled apart so that this file cites no missing document
    source.write_text(
        '"""See docs/physics.md and docs/physics.md#metrics.\n\n'
        f"Also physics.md, docs/{missing}, reports/evaluation.md and out.summary.md.\n"
        'Online: <https://example.org/docs/README.md>."""\n'
    )
    assert broken_references(tmp_path, [source], ["reports/evaluation.md"]) == [
        f"dndx/module.py:3: docs/{missing}",
        "dndx/module.py:3: physics.md",
    ]
