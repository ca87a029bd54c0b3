"""Each DVC stage's code dependencies, derived from what its flow imports.

A stage runs ``python -m flows.<stage>``; every project module that command can import,
at module level or inside a function, directly or through other modules, must be one of
the stage's ``deps``, or an edit to it leaves ``dvc status`` reporting the stage up to
date. The import closure is read from the source (nothing is imported) and restricted
to the project's packages; the packages' ``__init__.py`` files count, since importing
``dndx.config`` runs ``dndx/__init__.py`` first.

``python -m flows.stage_deps`` prints every stage's derived code deps; ``--check``
exits with status 1 naming each stage whose deps differ from them; ``--write`` puts
them into ``dvc.yaml``, keeping the other deps (the data a stage reads), the comments
and the order of everything else. Stages whose command runs no project module are left
as they are.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from dndx.storage import atomic_file

__all__ = [
    "PROJECT_PACKAGES",
    "derive_deps",
    "import_closure",
    "is_code_dep",
    "main",
    "missing_deps",
    "stage_module",
]

PROJECT_PACKAGES = ("dndx", "models", "tasks", "flows")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DVC_FILE = "dvc.yaml"
_MODULE_COMMAND = re.compile(r"^\s*python3?\s+-m\s+([A-Za-z_][\w.]*)")


def stage_module(cmd: str | Sequence[str]) -> str | None:
    """The project module a stage's ``cmd`` runs with ``python -m``, or None.

    >>> stage_module("python -m flows.simulate")
    'flows.simulate'
    >>> stage_module("dvc plots show") is None
    True
    """
    commands = [cmd] if isinstance(cmd, str) else list(cmd)
    for command in commands:
        match = _MODULE_COMMAND.match(command)
        if match and match.group(1).split(".")[0] in PROJECT_PACKAGES:
            return match.group(1)
    return None


def is_code_dep(dep: object) -> bool:
    """Whether a ``deps`` entry is project code (derived here) rather than data.

    >>> is_code_dep("dndx/ragged.py"), is_code_dep("data/prepared")
    (True, False)
    """
    return isinstance(dep, str) and dep.split("/")[0] in PROJECT_PACKAGES


def _module_file(root: Path, module: str) -> Path | None:
    """The file defining project module ``module`` (a package's ``__init__.py``)."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """Every module name ``path`` (module ``module``) imports anywhere in its body,
    with ``from package import name`` giving both ``package`` and ``package.name``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` and the packages Python imports before it: ``a``, ``a.b``."""
    parts = module.split(".")
    return [".".join(parts[: end + 1]) for end in range(len(parts))]


def import_closure(root: Path, module: str) -> list[str]:
    """The project files that running ``module`` can import, as sorted paths relative
    to ``root`` (POSIX separators), ``module``'s own file included."""
    seen: set[str] = set()
    files: set[Path] = set()
    pending = _with_parents(module)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(root, name)
        if path is None:
            continue
        files.add(path)
        for imported in _imported_modules(path, name):
            pending.extend(_with_parents(imported))
    if _module_file(root, module) is None:
        raise FileNotFoundError(f"{root}: no project module {module!r} (a stage's command)")
    return sorted(path.relative_to(root).as_posix() for path in files)


def derive_deps(root: Path, stage: Mapping[str, Any]) -> list[Any] | None:
    """A stage's ``deps`` with its code part replaced by its flow's import closure:
    the other entries first, in their order, then the code files sorted; None for a
    stage that runs no project module."""
    module = stage_module(stage.get("cmd", ""))
    if module is None:
        return None
    kept = [dep for dep in stage.get("deps") or [] if not is_code_dep(dep)]
    return kept + import_closure(root, module)


def missing_deps(root: Path, stage: Mapping[str, Any]) -> list[str]:
    """The project files a stage's command imports that its ``deps`` do not list."""
    module = stage_module(stage.get("cmd", ""))
    if module is None:
        return []
    listed = {dep for dep in stage.get("deps") or [] if isinstance(dep, str)}
    return [path for path in import_closure(root, module) if path not in listed]


def _yaml() -> YAML:
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def _stale_stages(root: Path, stages: Mapping[str, Any]) -> Iterable[tuple[str, list[Any]]]:
    """``(name, derived deps)`` of each stage whose ``deps`` differ from the derived."""
    for name, stage in stages.items():
        derived = derive_deps(root, stage)
        if derived is not None and list(stage.get("deps") or []) != derived:
            yield name, derived


def _describe(name: str, stage: Mapping[str, Any], derived: list[Any]) -> str:
    listed = list(stage.get("deps") or [])
    lacking = [dep for dep in derived if dep not in listed]
    extra = [dep for dep in listed if dep not in derived]
    parts = []
    if lacking:
        parts.append(f"imports but does not list {', '.join(lacking)}")
    if extra:
        parts.append(f"lists {', '.join(extra)}, which it does not import")
    if not parts:
        parts.append("lists its code deps in another order")
    return f"{DVC_FILE}: stage {name!r} " + "; ".join(parts)


def _write(path: Path, yaml: YAML, document: Any, stale: list[tuple[str, list[Any]]]) -> None:
    """Put each stale stage's derived deps into ``document`` and save it at ``path``."""
    stages = document["stages"]
    for name, derived in stale:
        stage = stages[name]
        if "deps" in stage:
            del stage["deps"][:]
            stage["deps"].extend(derived)
        else:
            stage.insert(list(stage).index("cmd") + 1, "deps", derived)
    with atomic_file(path) as temporary, temporary.open("w") as stream:
        yaml.dump(document, stream)


def main(argv: Sequence[str] | None = None) -> int:
    """Print, check or write the code deps of every stage in ``dvc.yaml``."""
    parser = argparse.ArgumentParser(prog="python -m flows.stage_deps", description=__doc__)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1 if any stage's deps differ")
    action.add_argument("--write", action="store_true", help="update dvc.yaml in place")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="the project's root")
    args = parser.parse_args(argv)

    path = args.root / DVC_FILE
    yaml = _yaml()
    document = yaml.load(path.read_text())
    stages = document.get("stages") or {}
    stale = list(_stale_stages(args.root, stages))
    if args.check:
        for name, derived in stale:
            print(_describe(name, stages[name], derived), file=sys.stderr)
        if stale:
            print("run `python -m flows.stage_deps --write`", file=sys.stderr)
        return 1 if stale else 0
    if args.write:
        if stale:
            _write(path, yaml, document, stale)
        print(f"{path}: deps updated for {', '.join(name for name, _ in stale) or 'no stage'}")
        return 0
    for name, stage in stages.items():
        deps = derive_deps(args.root, stage)
        if deps is not None:
            print(f"{name}:")
            print("".join(f"  - {dep}\n" for dep in deps if is_code_dep(dep)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
