"""Figures of the evaluation, drawn from arrays and tables and written as PNG.

Each function draws one figure on its own Agg canvas with matplotlib's object
API (no pyplot and no global backend, so figures can be drawn from any thread
or worker) and writes it atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from numpy.typing import ArrayLike, NDArray

from dndx.storage import atomic_file

__all__ = [
    "LABELS",
    "plot_counting_by_bin",
    "plot_linearity",
    "plot_peak_scores_by_bin",
    "plot_residuals",
    "plot_roc",
    "plot_score_distributions",
    "plot_separation",
    "plot_training_curves",
    "save_figure",
]

#: How each method is named on the figures and in the report.
LABELS: dict[str, str] = {
    "lstm": "LSTM",
    "d2": "D2 baseline",
    "candidates": "all candidates",
    "cnn": "CNN",
    "lstm_clusterization": "LSTM + time clusterization",
    "d2_clusterization": "D2 + time clusterization",
    "truth_clusterization": "perfect peaks + time clusterization",
    "truth": "true count (Poisson limit)",
    "dedx": "dE/dx, truncated mean",
}

_MAX_CURVE_POINTS = 2000


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG at ``path``, atomically; return ``path``."""
    path = Path(path)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _thin(n: int) -> NDArray[np.int64]:
    """Indices of at most ``_MAX_CURVE_POINTS`` points of an ``n``-point curve, ends kept."""
    if n <= _MAX_CURVE_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, _MAX_CURVE_POINTS).astype(np.int64))


def plot_roc(
    fpr: ArrayLike,
    tpr: ArrayLike,
    auc: float,
    working_point: tuple[float, float],
    path: str | Path,
) -> Path:
    """The ROC curve with the working point marked, false-positive rate on a log axis."""
    x, y = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    keep = _thin(len(x))
    figure = _figure(5.5, 4.5)
    ax = figure.subplots()
    ax.plot(x[keep], y[keep], label=f"LSTM (AUC = {auc:.4f})")
    ax.plot(*working_point, "o", color="C3", label="working point")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (noise candidates called peaks)")
    ax.set_ylabel("true-positive rate (signal candidates found)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return save_figure(figure, path)


def plot_score_distributions(
    probability: ArrayLike, labels: ArrayLike, threshold: float, path: str | Path
) -> Path:
    """Peak-finder scores of signal and noise candidates, log counts, threshold marked."""
    values = np.asarray(probability, dtype=float)
    positive = np.asarray(labels).astype(bool)
    bins = np.linspace(0.0, 1.0, 51).tolist()
    figure = _figure(5.5, 4.0)
    ax = figure.subplots()
    ax.hist(values[~positive], bins=bins, histtype="step", label=f"noise ({(~positive).sum()})")
    ax.hist(values[positive], bins=bins, histtype="step", label=f"signal ({positive.sum()})")
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("peak-finder probability")
    ax.set_ylabel("candidates")
    ax.legend()
    return save_figure(figure, path)


def _bin_centres(table: pd.DataFrame, name: str) -> NDArray[np.float64]:
    return 0.5 * (table[f"{name}_low"].to_numpy() + table[f"{name}_high"].to_numpy())


def plot_peak_scores_by_bin(
    tables: Mapping[str, pd.DataFrame], bin_name: str, xlabel: str, path: str | Path
) -> Path:
    """Efficiency, purity and their product per bin, one line per peak finder.

    Args:
        tables: per finder, a table with ``{bin_name}_low``, ``{bin_name}_high``,
            ``efficiency``, ``purity`` and ``efficiency_x_purity``.
        bin_name: the binned quantity's column prefix.
        xlabel: the axis label.
        path: the PNG written.
    """
    scores = ("efficiency", "purity", "efficiency_x_purity")
    figure = _figure(13, 3.8)
    axes = figure.subplots(1, len(scores), sharex=True)
    for ax, score in zip(axes, scores, strict=True):
        for name, table in tables.items():
            ax.plot(_bin_centres(table, bin_name), table[score], "o-", label=_label(name))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(score.replace("_x_", " × "))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend()
    return save_figure(figure, path)


def _per_n_mean(
    n_true: NDArray[np.int64], n_rec: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """The distinct true counts, the mean reconstructed count and its standard error."""
    values, inverse, counts = np.unique(n_true, return_inverse=True, return_counts=True)
    mean = np.bincount(inverse, weights=n_rec) / counts
    square = np.bincount(inverse, weights=n_rec**2) / counts
    spread = np.sqrt(np.maximum(square - mean**2, 0.0))
    return values, mean, spread / np.sqrt(counts)


def _linearity_panel(
    ax: Axes, name: str, n_true: NDArray[np.int64], n_rec: NDArray[np.float64]
) -> None:
    ax.plot(n_true, n_rec, ".", alpha=0.3, markersize=3, color="C0", label="cells")
    values, mean, error = _per_n_mean(n_true, n_rec)
    ax.errorbar(values, mean, yerr=error, fmt="o", color="C3", markersize=3, label="mean per N")
    top = float(max(n_true.max(initial=1), np.nanmax(n_rec, initial=1.0)))
    ax.plot([0, top], [0, top], "k--", linewidth=1, label="y = x")
    ax.set_title(_label(name))
    ax.set_xlabel("N_true (primary clusters)")
    ax.grid(alpha=0.3)


def plot_linearity(n_true: ArrayLike, n_rec: Mapping[str, ArrayLike], path: str | Path) -> Path:
    """N_rec against N_true, one panel per counter, with y = x and the mean per N."""
    true = np.asarray(n_true).astype(np.int64)
    figure = _figure(4.5 * len(n_rec), 4.2)
    axes = np.atleast_1d(figure.subplots(1, len(n_rec), sharey=True))
    for ax, (name, rec) in zip(axes, n_rec.items(), strict=True):
        _linearity_panel(ax, name, true, np.asarray(rec, dtype=float))
    axes[0].set_ylabel("N_rec")
    axes[0].legend(loc="upper left")
    return save_figure(figure, path)


def plot_residuals(n_true: ArrayLike, n_rec: Mapping[str, ArrayLike], path: str | Path) -> Path:
    """Distributions of N_rec − N_true, one line per counter."""
    true = np.asarray(n_true, dtype=float)
    residuals = {name: np.asarray(rec, dtype=float) - true for name, rec in n_rec.items()}
    reach = max((float(np.nanmax(np.abs(r), initial=1.0)) for r in residuals.values()), default=1)
    bins = np.arange(-np.ceil(reach) - 0.5, np.ceil(reach) + 1.0, 1.0).tolist()
    figure = _figure(6, 4.2)
    ax = figure.subplots()
    for name, residual in residuals.items():
        rms = float(np.sqrt(np.mean(residual**2))) if len(residual) else float("nan")
        label = f"{_label(name)}: mean {residual.mean():+.2f}, RMS {rms:.2f}"
        ax.hist(residual, bins=bins, histtype="step", label=label)
    ax.axvline(0.0, color="k", linewidth=1)
    ax.set_ylim(top=1.4 * ax.get_ylim()[1])  # room for the legend
    ax.set_xlabel("N_rec − N_true")
    ax.set_ylabel("cells")
    ax.legend(fontsize="small")
    return save_figure(figure, path)


def plot_counting_by_bin(tables: Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """RMS(N_rec − N_true) / sqrt(N) per momentum bin, one panel per particle.

    Args:
        tables: per counter, :func:`dndx.scoring.metrics.counting_table`.
        path: the PNG written.
    """
    first = next(iter(tables.values()))
    particles = sorted({str(p) for table in tables.values() for p in table["particle"]})
    figure = _figure(4.5 * max(len(particles), 1), 4.0)
    axes = np.atleast_1d(figure.subplots(1, max(len(particles), 1), sharey=True))
    for ax, particle in zip(axes, particles, strict=False):
        for name, table in tables.items():
            rows = table[table["particle"] == particle]
            centre = np.sqrt(rows["momentum_gev_low"] * rows["momentum_gev_high"])
            ax.plot(centre, rows["rms_over_sqrt_n"], "o-", label=_label(name))
        edges = sorted({*first["momentum_gev_low"], *first["momentum_gev_high"]})
        ax.set_xscale("log")
        ax.set_xticks(edges, [f"{e:g}" for e in edges])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(particle)
        ax.set_xlabel("momentum [GeV/c]")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("RMS(N_rec − N_true) / sqrt(N)")
    axes[0].legend(fontsize="small")
    return save_figure(figure, path)


def plot_separation(
    table: pd.DataFrame, reference: str, title: str, target: float | None, path: str | Path
) -> Path:
    """Separation power against momentum for one particle pair, every method with
    its statistical error bars: S beside the limit, and S over the limit.

    Args:
        table: rows of :func:`dndx.scoring.separation.separation_table` for one pair.
        reference: the method of the limit, drawn as a black line.
        title: the pair, e.g. "π / K".
        target: a required S / S_limit, drawn as a dashed line (None: none).
        path: the PNG written.
    """
    figure = _figure(11, 4.2)
    power_ax, ratio_ax = figure.subplots(1, 2, sharex=True)
    methods = list(dict.fromkeys(table["method"]))
    spacing = 1.0 + 0.012 * (np.arange(len(methods)) - (len(methods) - 1) / 2)
    for method, shift in zip(methods, spacing, strict=True):
        rows = table[table["method"] == method].sort_values("momentum_gev")
        momentum = rows["momentum_gev"].to_numpy() * (1.0 if method == reference else shift)
        style = {"color": "k", "marker": "s", "linewidth": 2} if method == reference else {}
        power_ax.errorbar(
            momentum,
            rows["separation"],
            yerr=rows["separation_error"],
            capsize=2,
            label=_label(method),
            **({"marker": "o"} | style),
        )
        if method != reference:
            ratio_ax.errorbar(
                momentum, rows["ratio"], yerr=rows["ratio_error"], marker="o", capsize=2
            )
        else:
            ratio_ax.plot(momentum, rows["ratio"], color="k", linewidth=2)
    if target is not None:
        ratio_ax.axhline(target, color="k", linestyle="--", linewidth=1, label="target")
        ratio_ax.legend(fontsize="small")
    momenta = sorted(set(table["momentum_gev"]))
    for ax in (power_ax, ratio_ax):
        ax.set_xscale("log")
        ax.set_xticks(momenta, [f"{m:g}" for m in momenta])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("momentum [GeV/c]")
        ax.grid(alpha=0.3)
    power_ax.set_ylabel(f"separation power S ({title})")
    power_ax.set_ylim(bottom=0.0)
    power_ax.legend(fontsize="small")
    ratio_ax.set_ylabel("S / S_Poisson")
    ratio_ax.set_ylim(0.0, 1.15)
    return save_figure(figure, path)


def plot_training_curves(history: pd.DataFrame, path: str | Path) -> Path:
    """Loss and the validation metrics of one training run against epoch."""
    metrics = [c for c in history.columns if c.startswith("val_") and c != "val_loss"]
    figure = _figure(10, 3.8)
    loss_ax, metric_ax = figure.subplots(1, 2)
    for column in ("loss", "val_loss"):
        loss_ax.plot(history["epoch"], history[column], marker=".", label=column)
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_title("loss")
    loss_ax.legend()
    for column in metrics:
        metric_ax.plot(history["epoch"], history[column], marker=".", label=column)
    metric_ax.set_xlabel("epoch")
    metric_ax.set_title("validation metrics")
    metric_ax.legend(fontsize="x-small")
    return save_figure(figure, path)
