"""The human-readable summary of an inference run: Markdown and three figures.

Written beside the results file: the distribution of cluster counts and of
peaks per waveform, a few example waveforms with their detected peaks marked,
every waveform that was skipped and why, and for a run on tracks the spread
of dN/dx over the tracks. The summary holds no timings or
absolute temporary paths, so re-running the same command writes the same
summary. Figures are drawn on :class:`matplotlib.figure.Figure` objects, which
render PNG with Agg and touch no global pyplot state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.chain.inference import STATUSES
from dndx.reporting.tables import markdown_table
from dndx.scoring.separation import spread
from dndx.storage import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_SUFFIXES",
    "MAX_LISTED_SKIPPED",
    "ExampleWaveform",
    "choose_examples",
    "figure_paths",
    "summarise",
    "track_section",
]

#: The figures, as suffixes of the results file's stem.
FIGURE_SUFFIXES: tuple[str, ...] = (".n_clusters.png", ".n_peaks.png", ".examples.png")
#: Skipped waveforms listed one by one; more are counted.
MAX_LISTED_SKIPPED = 1000


@dataclass(frozen=True, eq=False)
class ExampleWaveform:
    """One waveform as read from its file, with what inference found in it.

    Attributes:
        source_file: the input file.
        event: entry index in the file.
        samples: ``(n_samples,)`` raw samples in input units.
        sampling_rate_ghz: the input's sampling rate.
        peak_time_ns: ``(n_peaks,)`` detected peak times from the first sample.
        n_clusters: the cluster counter's output.
        baseline: the estimated baseline in input units.
    """

    source_file: str
    event: int
    samples: NDArray[np.floating]
    sampling_rate_ghz: float
    peak_time_ns: NDArray[np.floating]
    n_clusters: float
    baseline: float


def figure_paths(stem: Path) -> list[Path]:
    """The figure files of a summary whose paths start with ``stem``.

    >>> [p.name for p in figure_paths(Path("out/results"))]
    ['results.n_clusters.png', 'results.n_peaks.png', 'results.examples.png']
    """
    return [stem.with_name(stem.name + suffix) for suffix in FIGURE_SUFFIXES]


def choose_examples(n_clusters: NDArray[np.floating], n_examples: int = 3) -> NDArray[np.int64]:
    """Positions of waveforms spread over the counts, from the 10 % to the 90 %
    point of ``n_clusters`` (all of them when there are no more than ``n_examples``).

    >>> choose_examples(np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 0.0])).tolist()
    [1, 7, 6]
    """
    n = len(n_clusters)
    if n <= n_examples:
        return np.arange(n, dtype=np.int64)
    order = np.argsort(n_clusters, kind="stable")
    picks = np.unique(np.round(np.linspace(0.1, 0.9, n_examples) * (n - 1)).astype(np.int64))
    return order[picks].astype(np.int64)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return markdown_table(header, [[_cell(v) for v in row] for row in rows]).split("\n")


def _save(figure: Figure, path: Path) -> None:
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def _figure(width: float, height: float) -> Figure:
    # Imported on first use: checking a run's output paths needs only the names.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _histogram(values: NDArray[np.floating], xlabel: str, title: str, path: Path) -> None:
    figure = _figure(6, 4)
    axes = figure.add_subplot()
    top = float(np.max(values)) if len(values) else 1.0
    width = max(1.0, np.ceil((top + 1) / 100))
    axes.hist(values, bins=np.arange(0.0, top + width + 1e-9, width) - 0.5 * (width == 1.0))
    axes.set_xlabel(xlabel)
    axes.set_ylabel("waveforms")
    axes.set_title(title)
    _save(figure, path)


def _examples_figure(examples: Sequence[ExampleWaveform], path: Path) -> None:
    figure = _figure(10, 2.6 * max(len(examples), 1))
    if not examples:
        figure.add_subplot().text(0.5, 0.5, "no waveforms", ha="center", va="center")
    for i, example in enumerate(examples):
        axes = figure.add_subplot(len(examples), 1, i + 1)
        time_ns = np.arange(len(example.samples)) / example.sampling_rate_ghz
        axes.plot(time_ns, example.samples, lw=0.6, color="0.3", label="waveform")
        axes.axhline(example.baseline, lw=0.6, ls="--", color="tab:blue", label="baseline")
        peaks = np.asarray(example.peak_time_ns, dtype=float)
        axes.plot(
            peaks,
            np.interp(peaks, time_ns, example.samples),
            "x",
            color="tab:red",
            ms=5,
            label="detected peaks",
        )
        axes.set_title(
            f"{Path(example.source_file).name}, event {example.event}: "
            f"peaks {len(peaks)}, clusters {example.n_clusters:.1f}",
            fontsize=9,
        )
        axes.set_ylabel("amplitude (input units)")
        if i == 0:
            axes.legend(fontsize=8, loc="upper right")
    if examples:
        figure.axes[-1].set_xlabel("time from the first sample (ns)")
    _save(figure, path)


def summarise(
    results: pd.DataFrame,
    examples: Sequence[ExampleWaveform],
    skipped: Sequence[tuple[str, int, str]],
    files: Sequence[str],
    stem: Path,
    run: Mapping[str, str],
    warnings: Sequence[str] = (),
    tracks: pd.DataFrame | None = None,
    domain: Sequence[str] = (),
) -> str:
    """Write the summary figures and return the summary's Markdown.

    Args:
        results: ``(n_waveforms, ...)`` one row per processed waveform with at
            least ``source_file``, ``status``, ``n_peaks``, ``n_clusters`` (NaN
            where not counted) and ``polarity``.
        examples: waveforms to draw with their detected peaks.
        skipped: ``(source_file, event, reason)`` of every skipped waveform.
        files: the input files, in order.
        stem: the figures are written to :func:`figure_paths` of ``stem``.
        run: settings of the run (inputs, models, rate...) listed at the top.
        warnings: listed first, under their own heading.
        tracks: for a run on tracks, one row per track
            (:func:`dndx.scoring.separation.counted_tracks`), summed up in a section.
        domain: Markdown lines on the inputs against the models' training
            domain (:func:`dndx.domain.profile.verdict_table`), after the settings.

    Returns:
        The Markdown text; it links the figures by file name, so it belongs in
        ``stem``'s directory.
    """
    counted = (results["status"] == "ok").to_numpy()
    n_clusters = results["n_clusters"].to_numpy(dtype=np.float64)[counted]
    n_peaks = results["n_peaks"].to_numpy(dtype=np.float64)
    cluster_png, peaks_png, examples_png = figure_paths(stem)
    _histogram(
        n_clusters, "clusters per counted waveform (counter output)", "Cluster counts", cluster_png
    )
    _histogram(n_peaks, "detected peaks per waveform", "Peaks per waveform", peaks_png)
    _examples_figure(examples, examples_png)

    lines = [f"# Inference summary: {stem.name}", ""]
    if warnings:
        lines += ["## Warnings", "", *(f"- {warning}" for warning in warnings), ""]
    lines += _table(["setting", "value"], list(run.items()))
    lines += ["", _processed_line(results, skipped), "", *([*domain, ""] if domain else [])]
    lines += _status_section(results, skipped)
    lines += _per_file_section(results, counted, skipped, files)
    lines += _counts_section(n_clusters, n_peaks[counted])
    lines += [f"![cluster counts]({cluster_png.name})", "", f"![peaks]({peaks_png.name})", ""]
    if tracks is not None:
        lines += [*track_section(tracks), ""]
    lines += _examples_section(examples, examples_png)
    lines += _skipped_section(skipped)
    return "\n".join(lines) + "\n"


def _processed_line(results: pd.DataFrame, skipped: Sequence[tuple[str, int, str]]) -> str:
    n_positive = int((results["polarity"] > 0).sum())
    n_negative = int((results["polarity"] < 0).sum())
    return (
        f"{len(results)} waveforms processed, {len(skipped)} skipped. Polarity: "
        f"{n_positive} positive, {n_negative} negative, "
        f"{len(results) - n_positive - n_negative} none (flat)."
    )


def _status_section(results: pd.DataFrame, skipped: Sequence[tuple[str, int, str]]) -> list[str]:
    by_status = results["status"].value_counts()
    return [
        "## Status",
        "",
        *_table(
            ["status", "waveforms", "meaning"],
            [
                [status, int(by_status.get(status, 0)), meaning]
                for status, meaning in STATUSES.items()
            ]
            + [["skipped", len(skipped), "not read: too short, empty, NaN or inf (listed below)"]],
        ),
    ]


def _per_file_section(
    results: pd.DataFrame,
    counted: NDArray[np.bool_],
    skipped: Sequence[tuple[str, int, str]],
    files: Sequence[str],
) -> list[str]:
    grouped = results.groupby("source_file", sort=False, observed=True)
    processed = grouped.size()
    counted_per_file = results[counted].groupby("source_file", sort=False, observed=True).size()
    clusters_mean = grouped["n_clusters"].mean()
    peaks_mean = grouped["n_peaks"].mean()
    skipped_count = pd.Series([f for f, _, _ in skipped], dtype=object).value_counts()
    rows = []
    for name in files:
        count = int(processed.get(name, 0))
        n_counted = int(counted_per_file.get(name, 0))
        rows.append(
            [
                name,
                count,
                n_counted,
                int(skipped_count.get(name, 0)),
                f"{peaks_mean[name]:.2f}" if count else "-",
                f"{clusters_mean[name]:.2f}" if n_counted else "-",
            ]
        )
    header = ["file", "processed", "counted (ok)", "skipped", "mean peaks", "mean clusters"]
    return ["", "## Per file", "", *_table(header, rows)]


def _counts_section(n_clusters: NDArray[np.float64], n_peaks: NDArray[np.float64]) -> list[str]:
    """The moments of the counted waveforms' ``(n_counted,)`` clusters and peaks."""
    lines = ["", "## Counts (waveforms with status ok)", ""]
    if len(n_clusters):
        lines += _table(
            ["quantity", "mean", "std", "median", "min", "max"],
            [
                [name, *(f"{v:.2f}" for v in _moments(values))]
                for name, values in (("clusters", n_clusters), ("peaks", n_peaks))
            ],
        )
        lines.append("")
    return lines


def _examples_section(examples: Sequence[ExampleWaveform], figure: Path) -> list[str]:
    return [
        "## Example waveforms",
        "",
        f"![examples]({figure.name})",
        "",
        *_table(
            ["file", "event", "peaks", "clusters", "peak times (ns)"],
            [
                [
                    e.source_file,
                    e.event,
                    len(e.peak_time_ns),
                    f"{e.n_clusters:.2f}",
                    ", ".join(f"{t:.1f}" for t in e.peak_time_ns),
                ]
                for e in examples
            ],
        ),
    ]


def _skipped_section(skipped: Sequence[tuple[str, int, str]]) -> list[str]:
    lines = ["", "## Skipped waveforms", ""]
    if not skipped:
        return [*lines, "None."]
    lines += _table(["file", "event", "reason"], list(skipped[:MAX_LISTED_SKIPPED]))
    if len(skipped) > MAX_LISTED_SKIPPED:
        lines += ["", f"... and {len(skipped) - MAX_LISTED_SKIPPED} more."]
    return lines


def track_section(tracks: pd.DataFrame) -> list[str]:
    """Markdown lines on the tracks of a run: how many, and the mean, spread and
    resolution of dN/dx over those with a counted path (of clusters per cell
    where the input gives no path).

    Args:
        tracks: one row per track, as :func:`dndx.scoring.separation.counted_tracks`.

    >>> tracks = pd.DataFrame({"n_cells": [3, 3, 2], "n_counted": [3, 2, 0],
    ...     "dndx_per_cm": [11.0, 13.0, np.nan], "clusters_per_cell": [11.0, 13.0, np.nan]})
    >>> print("\\n".join(track_section(tracks)))  # doctest: +NORMALIZE_WHITESPACE
    ## Tracks
    <BLANKLINE>
    3 tracks, 8 cells, 5 of them counted; 2 tracks with a counted path.
    <BLANKLINE>
    | quantity | tracks | mean | std | std / mean |
    |:--|--:|--:|--:|--:|
    | dN/dx (clusters per cm) | 2 | 12.00 | 1.41 | 0.118 |
    """
    with_path = tracks["dndx_per_cm"].notna().to_numpy()
    if with_path.any() or not tracks["clusters_per_cell"].notna().any():
        name, values = "dN/dx (clusters per cm)", tracks["dndx_per_cm"]
        described = f"{int(with_path.sum())} tracks with a counted path"
    else:
        name, values = "clusters per counted cell (no path column)", tracks["clusters_per_cell"]
        described = "no path lengths given (--path-column): clusters per cell instead of dN/dx"
    lines = [
        "## Tracks",
        "",
        f"{len(tracks)} tracks, {int(tracks['n_cells'].sum())} cells, "
        f"{int(tracks['n_counted'].sum())} of them counted; {described}.",
        "",
    ]
    finite = values.dropna().to_numpy(np.float64)
    if len(finite) < 2:
        return [*lines, f"Too few tracks with a value for a spread: {len(finite)}."]
    figures = spread(finite)
    return lines + _table(
        ["quantity", "tracks", "mean", "std", "std / mean"],
        [
            [
                name,
                figures.n_tracks,
                f"{figures.mean:.2f}",
                f"{figures.sigma:.2f}",
                f"{figures.resolution:.3f}",
            ]
        ],
    )


def _moments(values: NDArray[np.float64]) -> tuple[float, ...]:
    return (
        float(np.mean(values)),
        float(np.std(values)),
        float(np.median(values)),
        float(np.min(values)),
        float(np.max(values)),
    )
