"""What the front-end fit (``dndx.domain.fit``) recovers on the shifted domains of
``benchmarks/domain.py``, from each domain's profile alone, with the ``target.fit``
settings of ``params.yaml``.

Per domain: the target is ``--n-target`` waveforms of the domain (another seed than
the fit's); the fit runs as the ``profile`` stage runs it (one process here, the
candidates one after another). Reported: the ranges that made the target beside the
fitted ones, the distance to the target's profile of the ``simulate`` section and of
the fit, the target's verdict against each as a training domain, the settings
simulated and the seconds taken. The models are not retrained here: how much of the
gap a retrained pair closes is not measured yet.

    python -m benchmarks.target_fit [--n-target 2000]

Writes ``benchmarks/results/target_fit.json`` and ``benchmarks/results/target_fit.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.domain import DOMAINS, RESULTS
from benchmarks.machine import cpu_model
from dndx.config import load_params
from dndx.domain.fit import Setting, apply_fit, fit_front_end, simulate_profile
from dndx.domain.profile import DomainProfile, TrainingDomain, judge
from dndx.reporting.tables import markdown_table

_TARGET_SEED = 99


def fit_domain(name: str, n_target: int) -> dict[str, Any]:
    """The fit on domain ``name``'s profile, and what it found."""
    params = load_params()
    fit, domain = params.target.fit, params.domain
    threshold = params.prepare.candidates.candidate_threshold_sigma
    target_cfg = dataclasses.replace(params.simulate, **DOMAINS[name])
    target = simulate_profile(
        target_cfg, np.random.default_rng(_TARGET_SEED), n_target, domain, threshold
    )

    def profiles(settings: Sequence[Setting]) -> list[DomainProfile]:
        return [
            simulate_profile(
                apply_fit(params.simulate, s),
                np.random.default_rng(fit.seed),
                fit.n_waveforms,
                domain,
                threshold,
            )
            for s in settings
        ]

    started = time.perf_counter()
    setting, matched, trials = fit_front_end(target, params.simulate, fit, domain, profiles)
    seconds = time.perf_counter() - started
    nominal = profiles([{}])[0]
    return {
        "domain": name,
        "truth": {k: str(getattr(target_cfg, k)) for k in fit.candidates},
        "fitted": {k: str(v) for k, v in setting.items()},
        "start_distance": trials[0].distance,
        "distance": min(t.distance for t in trials),
        "verdict_against_simulate": judge(target, TrainingDomain(nominal, domain)).verdict,
        "verdict_against_fit": judge(target, TrainingDomain(matched, domain)).verdict,
        "n_settings": len(trials),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    """Fit every domain and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-target", type=int, default=2000, help="target waveforms a domain")
    args = parser.parse_args()
    rows = [fit_domain(name, args.n_target) for name in DOMAINS]
    record = {"cpu": cpu_model(), "n_target": args.n_target, "domains": rows}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / "target_fit"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    table = markdown_table(
        ["domain", "range", "made the target", "fitted"],
        [
            [row["domain"], f"`{k}`", row["truth"][k], row["fitted"][k]]
            for row in rows
            for k in row["truth"]
        ],
    )
    distances = markdown_table(
        ["domain", "distance: simulate", "fitted", "verdict: simulate", "fitted", "settings", "s"],
        [
            [
                row["domain"],
                f"{row['start_distance']:.3g}",
                f"{row['distance']:.3g}",
                row["verdict_against_simulate"],
                row["verdict_against_fit"],
                str(row["n_settings"]),
                f"{row['seconds']:.0f}",
            ]
            for row in rows
        ],
    )
    stem.with_suffix(".md").write_text(
        f"Front-end fit on the shifted domains (`python -m benchmarks.target_fit`), "
        f"{args.n_target} target waveforms a domain, {record['cpu']}, one process:\n\n"
        f"{table}\n\n{distances}\n"
    )
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
