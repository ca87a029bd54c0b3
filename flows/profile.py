"""DVC stage ``profile``: the target files' domain profile, and the simulator's front end
fitted to it (:mod:`dndx.domain.fit`), for ``simulate`` and ``tracks`` to train on.

With ``target.files: []`` (the default) it writes a "no target" result and starts no
Dask cluster: the simulation stays the ``simulate`` section's, byte for byte. With
files, every candidate setting of a pass is simulated and profiled as one Dask task.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from prefect import flow, get_run_logger

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.domain.fit import Setting, TargetFit, fit_front_end, fit_report
from dndx.domain.profile import DomainProfile, plot_domain
from dndx.domain.target import target_sources
from dndx.errors import DndxError
from dndx.io.readers import WaveformSource
from dndx.paths import TARGET_DIR, TARGET_FIT_PATH
from dndx.storage import atomic_directory
from flows.runtime import dask_task_runner, project_root
from tasks.domain import profile_setting, profile_target

__all__ = ["main", "profile"]

NO_TARGET = "no target files (target.files is empty)"


def _named_from(path: Path, root: Path) -> str:
    """``path`` as the lineage records it: from the project ``root`` when inside it."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _write(fit: TargetFit, params: Params, out_dir: Path) -> None:
    with atomic_directory(out_dir) as tmp:
        fit.save(tmp / TARGET_FIT_PATH.name)
        report = tmp / TARGET_FIT_PATH.name
        report.with_suffix(".md").write_text("\n".join(fit_report(fit, params.simulate)))
        if fit.target is not None:
            plot_domain(fit.target, fit.matched, report.with_suffix(".png"))


@flow(name="profile", log_prints=True)
def profile(params: Params, sources: list[WaveformSource], root: Path) -> TargetFit:
    """Profile the target files ``sources`` and fit the front end to them into
    ``data/target`` of the project ``root``; the fit names the files from the root."""
    logger = get_run_logger()
    cfg = params.target
    threshold = params.prepare.candidates.candidate_threshold_sigma
    target = profile_target(sources, cfg.sampling_rate_ghz, params.domain, threshold)
    logger.info("target: %d files, %d waveforms profiled", len(sources), target.n_waveforms)

    def profiles(settings: Sequence[Setting]) -> list[DomainProfile]:
        futures = [
            profile_setting.submit(params.simulate, s, cfg.fit, params.domain, threshold)
            for s in settings
        ]
        return [future.result() for future in futures]

    setting, matched, trials = fit_front_end(
        target, params.simulate, cfg.fit, params.domain, profiles
    )
    files = tuple(_named_from(Path(source.path), root) for source in sources)
    fit = TargetFit.found(files, cfg.sampling_rate_ghz, target, setting, matched, trials)
    _write(fit, params, root / TARGET_DIR)
    logger.info(
        "target fit: distance %.3g -> %.3g over %d settings: %s",
        fit.start_distance,
        fit.distance,
        len(trials),
        fit.setting,
    )
    return fit


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.profile``."""
    params = load_params(params_path)
    root = project_root(params_path)
    if not params.target.files:
        _write(TargetFit.none(NO_TARGET), params, root / TARGET_DIR)
        return
    try:
        sources = target_sources(params.target, root)
    except DndxError as error:
        # The user's files: one line, before Prefect starts, as dndx infer says it.
        print(f"dndx: error: {error}", file=sys.stderr)
        sys.exit(2)
    profile.with_options(task_runner=dask_task_runner(params.dask))(params, sources, root)


if __name__ == "__main__":
    main()
