"""The target files of ``params.yaml``: found, opened and checked before any work.

A target is named by globs under a directory (``target.root``) with ``dndx
infer``'s reader options; every problem stops the run with one line naming the
file (or the glob) and what is wrong: a root that is not a directory, a glob
matching no file, a file that cannot be read or holds no waveform, a reader
option no file's format takes, a stored sampling rate other than
``target.sampling_rate_ghz``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from dndx.config import TargetConfig
from dndx.errors import InputError
from dndx.io.readers import (
    LOCATION_KEYS,
    WaveformSource,
    count_waveforms,
    detect_format,
    find_rate_column,
    resolve_source,
    stored_rates,
)

__all__ = ["target_paths", "target_sources"]


def target_paths(cfg: TargetConfig, project_dir: Path) -> list[Path]:
    """The files ``cfg.files`` match under ``cfg.root`` (relative to ``project_dir``),
    sorted, each once.

    Raises:
        InputError: the root is not a directory; a glob matches no file.
    """
    root = project_dir / cfg.root
    if not root.is_dir():
        raise InputError(
            f"target.root {cfg.root}: not a directory (expected the target files' one)"
        )
    paths: list[Path] = []
    for pattern in cfg.files:
        matched = sorted(path for path in root.glob(pattern) if path.is_file())
        if not matched:
            raise InputError(f"target.files {pattern!r}: matches no file under {cfg.root}")
        paths += [path for path in matched if path not in paths]
    return paths


def target_sources(cfg: TargetConfig, project_dir: Path) -> list[WaveformSource]:
    """Every target file as a resolved source, its rate column found.

    Raises:
        InputError: as :func:`target_paths`; a file cannot be read, holds no
            waveform, or stores a sampling rate other than
            ``cfg.sampling_rate_ghz``; a reader option applies to no file.
    """
    paths = target_paths(cfg, project_dir)
    formats = {path: cfg.format or detect_format(path) for path in paths}
    for fmt, keys in LOCATION_KEYS.items():
        for key in keys:
            if getattr(cfg, key) and fmt not in formats.values():
                raise InputError(
                    f"target.{key} {getattr(cfg, key)!r}: applies to {fmt} files, and no "
                    f"target file is one ({', '.join(sorted(set(formats.values())))})"
                )
    sources = []
    for path, fmt in formats.items():
        locations = {key: getattr(cfg, key) or None for key in LOCATION_KEYS[fmt]}
        source = resolve_source(WaveformSource(path, fmt, **locations))
        if count_waveforms(source) == 0:
            raise InputError(f"{path}: holds no waveforms; a target file needs some to profile")
        source = replace(source, rate_column=find_rate_column(source))
        if source.rate_column is not None:
            rates = np.unique(stored_rates(source))
            if (rates != cfg.sampling_rate_ghz).any():
                listed = ", ".join(f"{rate:g}" for rate in rates[:5])
                raise InputError(
                    f"{path}: sampling-rate column {source.rate_column!r} holds {listed} GS/s, "
                    f"which contradicts target.sampling_rate_ghz {cfg.sampling_rate_ghz:g}"
                )
        sources.append(source)
    return sources
