"""DVC stage ``evaluate``: models and classical baselines side by side on the test set.

Reads the chosen models' outputs (the peak finder's scores, the CNN applied
here to its encoded input) and the truth; tunes the baselines on validation;
writes the DVC metrics file, the figures and the Markdown report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from dndx.config import PARAMS_PATH, Params, load_params
from dndx.encoding import COUNTER_INPUT_FILE
from flows.runtime import ensure_prefect_api
from tasks.encoding import read_score_threshold
from tasks.evaluation import (
    draw_plots,
    load_split,
    predict_counts,
    score_test,
    tune_on_validation,
    write_metrics,
    write_report,
)

__all__ = ["evaluate", "main"]

DATA_DIR = Path("data")
METRICS_PATH = Path("metrics/evaluate.json")
REPORT_PATH = Path("reports/evaluation.md")
PLOTS_DIR = Path("reports/plots")


@flow(name="evaluate", log_prints=True)
def evaluate(
    params: Params,
    data_dir: Path = DATA_DIR,
    metrics_path: Path = METRICS_PATH,
    report_path: Path = REPORT_PATH,
    plots_dir: Path = PLOTS_DIR,
) -> dict[str, Any]:
    """Evaluate on the test split; write and return the flat metrics."""
    logger = get_run_logger()
    cfg = params.evaluate
    tolerance = params.prepare.match_tolerance_samples
    threshold = read_score_threshold(data_dir / "models/peak_finder/selection.json")
    validation = load_split.submit(params.prepare, "validation", data_dir)
    test = load_split.submit(params.prepare, "test", data_dir)
    cnn = predict_counts.submit(
        data_dir / "models/cluster_counter/model.keras",
        data_dir / "counter_inputs/test" / COUNTER_INPUT_FILE,
    )
    tuning = tune_on_validation(validation.result(), tolerance, cfg)
    evaluation = score_test(test.result(), tuning, cnn.result(), threshold, tolerance, cfg)
    plots = draw_plots(evaluation, test.result(), plots_dir)
    write_report(evaluation, plots, report_path)
    metrics = write_metrics(evaluation, metrics_path)
    for check in evaluation.targets:
        logger.info(
            "target %-28s %s: %.4f %s %g",
            check.name,
            "met" if check.passed else "NOT met",
            check.value,
            check.comparison,
            check.limit,
        )
    return metrics


def main(params_path: str | Path = PARAMS_PATH) -> None:
    """Entry point of the DVC stage: ``python -m flows.evaluate``."""
    params = load_params(params_path)
    ensure_prefect_api()
    evaluate(params)


if __name__ == "__main__":
    main()
