"""DVC stage ``demo``: the registered champions on a new file, as a physicist would use them.

A new set of waveforms is simulated (another seed, the demo's sampling rate and
polarity, none of it seen in training), written as a ROOT file in the CEPC
layout (tree ``sim``, branch ``wf_i``), and run through the inference flow with
``models:/peak-finder@champion`` and ``models:/cluster-counter@champion``.
The counts are compared with the truth that the file itself does not carry.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.io.dataset import write_root_waveforms
from dndx.paths import DEMO_DIR, metrics_file
from dndx.scoring.metrics import counting_metrics
from dndx.simulation.generator import simulate_range
from dndx.storage import atomic_file
from flows.infer import infer
from flows.runtime import ensure_prefect_api, project_root

__all__ = ["main", "run_demo"]


@flow(name="demo", log_prints=True)
def run_demo(params: Params, root: Path) -> dict[str, float]:
    """Simulate the demo file under the project ``root``, run the champions on it,
    score against truth."""
    logger = get_run_logger()
    cfg = params.register
    n = cfg.demo_waveforms
    sim = dataclasses.replace(
        params.simulate,
        seed=params.simulate.seed + 1,
        n_test=n,
        block_size=n,
        chunk_size=n,
        sampling_rates_ghz=(cfg.demo_sampling_rate_ghz,),
        polarities=(cfg.demo_polarity,),
    )
    data = simulate_range(sim, "test", 0, n)
    root_file = root / DEMO_DIR / "beam_test.root"
    write_root_waveforms(data.adc, root_file)
    polarity = "negative" if cfg.demo_polarity < 0 else "positive"
    logger.info(
        "demo file %s: %d waveforms at %g GS/s, %s polarity",
        root_file, n, cfg.demo_sampling_rate_ghz, polarity,
    )  # fmt: skip
    report = infer(
        [str(root_file)],
        str(root / DEMO_DIR / "results.parquet"),
        tree="sim",
        branch="wf_i",
        sampling_rate_ghz=cfg.demo_sampling_rate_ghz,
        polarity="auto",
        workers=params.dask.n_workers,
        overwrite=True,  # the stage's own output, which DVC regenerates
    )
    results = pd.read_parquet(report.out)
    counted = results[results["status"] == "ok"]
    truth = data.info["n_clusters"].to_numpy()[counted["event"].to_numpy()]
    scores = counting_metrics(counted["n_clusters"].to_numpy(), truth)
    summary = {
        "n_waveforms": report.n_waveforms,
        "n_counted": len(counted),
        "waveforms_per_second": report.waveforms_per_second,
        **{k: scores[k] for k in ("relative_bias", "rms_over_sqrt_n", "linearity_slope")},
    }
    with atomic_file(root / metrics_file("demo")) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(report.summary.read_text())
    logger.info(
        "demo against truth: bias %+.1f %%, RMS/sqrt(N) %.3f, slope %.3f",
        100 * summary["relative_bias"], summary["rms_over_sqrt_n"], summary["linearity_slope"],
    )  # fmt: skip
    return summary


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.demo``."""
    params = load_params(params_path)
    ensure_prefect_api()
    run_demo(params, project_root(params_path))


if __name__ == "__main__":
    main()
