"""The evaluation report a physicist reads first, as Markdown.

Models and baselines side by side in one headline table, the targets
with a pass or fail each, then the tables per drift-time bin, noise level,
particle and momentum, the particle identification along tracks (separation
power against the Poisson limit), and the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from dndx.chain.preselection import PreselectionCheck
from dndx.reporting.plots import LABELS
from dndx.reporting.tables import (
    MISSING,
    format_estimate,
    format_number,
    format_percent,
    markdown_table,
)
from dndx.scoring.evaluation import Evaluation, PeakEvaluation, TargetCheck
from dndx.scoring.metrics import LINEARITY_RANGE
from dndx.scoring.track_evaluation import TrackEvaluation

__all__ = [
    "PARTICLE_SYMBOLS",
    "pair_name",
    "render_report",
]

#: How particles are written in the report.
PARTICLE_SYMBOLS: dict[str, str] = {"pi": "π", "K": "K", "mu": "μ", "p": "p", "e": "e"}

_PASS, _FAIL = "✅", "❌"

#: The chains of the headline table: (name, peak finder, counter, kind).
_CHAINS: tuple[tuple[str, str, str, str], ...] = (
    ("LSTM → CNN", "lstm", "cnn", "model"),
    ("LSTM → time clusterization", "lstm", "lstm_clusterization", "model + classical"),
    ("D2 → time clusterization", "d2", "d2_clusterization", "baseline"),
)


_PEAK_SCORES = ("efficiency", "purity", "efficiency_x_purity", "f1")


def _headline_row(
    title: str,
    kind: str,
    peaks: Mapping[str, float] | None,
    counts: Mapping[str, float] | None,
) -> list[str]:
    """One chain's cells; dashes for the scores it has not."""
    peak_cells = [format_number(peaks[s]) for s in _PEAK_SCORES] if peaks else [MISSING] * 4
    count_cells = (
        [
            format_percent(counts["relative_bias"]),
            format_number(counts["rms_over_sqrt_n"]),
            format_number(counts["linearity_slope"]),
        ]
        if counts
        else [MISSING] * 3
    )
    return [title, kind, *peak_cells, *count_cells]


def _headline(evaluation: Evaluation) -> str:
    rows = [
        _headline_row(
            title, kind, evaluation.peaks[finder].scores, evaluation.counting[counter].scores
        )
        for title, finder, counter, kind in _CHAINS
    ]
    rows.append(
        _headline_row(
            "all candidates (ceiling of candidate finding)",
            "reference",
            evaluation.peaks["candidates"].scores,
            None,
        )
    )
    rows.append(
        _headline_row(
            "expected peaks → time clusterization (perfect peak finding)",
            "reference",
            dict.fromkeys(_PEAK_SCORES, 1.0),
            evaluation.counting["truth_clusterization"].scores,
        )
    )
    low, high = LINEARITY_RANGE
    header = [
        "peak finder → counter",
        "kind",
        "peak efficiency",
        "peak purity",
        "peak eff×purity",
        "peak F1",
        "count bias",
        "RMS / √N",
        f"slope (N = {low}–{high})",
    ]
    return markdown_table(header, rows)


def _preselection(check: PreselectionCheck) -> str:
    """What the window-spread cut drops, and what of it the peak finder would have kept.

    >>> print(_preselection(PreselectionCheck(0.87, 1000, 370, 0, 140, 1)))
    Candidates whose window spreads less than 0.870 noise σ never reach the peak finder: 370 of
    1000 test candidates (37.0 %). Scored anyway, 0 of them pass ...
    """
    if check.min_window_std_sigma <= 0:
        return (
            "Off (`prepare.candidates.min_window_std_sigma` is 0): every candidate "
            "reaches the peak finder."
        )
    share = 100 * check.n_dropped / check.n_candidates if check.n_candidates else 0.0
    return (
        f"Candidates whose window spreads less than {format_number(check.min_window_std_sigma)} "
        f"noise σ never reach the peak finder: {check.n_dropped} of {check.n_candidates} test "
        f"candidates ({format_number(share, 1)} %). Scored anyway, {check.n_dropped_accepted} "
        "of them pass the peak finder's working point (the recall the cut costs); "
        f"{check.n_dropped_signal} of the {check.n_signal} candidates matched to a true peak "
        "are among them."
    )


def _candidate_line(evaluation: Evaluation) -> str:
    c = evaluation.candidate
    s = c.scores
    rows = [
        [
            format_number(c.threshold),
            format_number(s["precision"]),
            format_number(s["recall"]),
            format_number(s["f1"]),
            format_number(s["auc"], 4),
            format_number(s["efficiency_x_purity"]),
            format_number(s["balanced_accuracy"]),
        ]
    ]
    header = [
        "threshold",
        "precision",
        "recall",
        "F1",
        "AUC",
        "eff×purity",
        "balanced accuracy",
    ]
    return markdown_table(header, rows)


def _targets(checks: Sequence[TargetCheck]) -> str:
    rows = [
        [
            _PASS if check.passed else _FAIL,
            check.description,
            format_number(check.value, 4),
            f"{'≥' if check.comparison == '>=' else '≤'} {check.limit:g}",
            f"`{check.param}`",
        ]
        for check in checks
    ]
    n_passed = sum(check.passed for check in checks)
    table = markdown_table(["", "target", "measured", "required", "set by"], rows)
    return (
        f"{n_passed} of {len(checks)} targets met. The thresholds are yours: the "
        f"`quality_gate` section of `params.yaml`.\n\n{table}"
    )


def _peak_bins(
    peaks: Mapping[str, PeakEvaluation], attribute: str, bin_name: str, title: str, digits: int
) -> str:
    tables: dict[str, pd.DataFrame] = {name: getattr(peaks[name], attribute) for name in peaks}
    lstm, d2, ceiling = tables["lstm"], tables["d2"], tables["candidates"]
    rows = []
    for i in range(len(lstm)):
        low, high = lstm[f"{bin_name}_low"].iloc[i], lstm[f"{bin_name}_high"].iloc[i]
        row = [f"{low:.{digits}f}–{high:.{digits}f}", str(int(lstm["n_true"].iloc[i]))]
        for table in (lstm, d2):
            row += [
                format_number(table[score].iloc[i])
                for score in ("efficiency", "purity", "efficiency_x_purity")
            ]
        row.append(format_number(ceiling["efficiency"].iloc[i]))
        rows.append(row)
    scores = [f"{f} {s}" for f in ("LSTM", "D2") for s in ("eff.", "purity", "eff×pur.")]
    header = [title, "expected peaks", *scores, "candidates eff. (ceiling)"]
    return markdown_table(header, rows)


def _counting_bins(evaluation: Evaluation) -> str:
    tables = {name: counting.table for name, counting in evaluation.counting.items()}
    first = next(iter(tables.values()))
    rows = []
    for i in range(len(first)):
        low, high = first["momentum_gev_low"].iloc[i], first["momentum_gev_high"].iloc[i]
        row = [str(first["particle"].iloc[i]), f"{low:g}–{high:g}", str(int(first["n"].iloc[i]))]
        for table in tables.values():
            row += [
                format_percent(table["relative_bias"].iloc[i]),
                format_number(table["rms_over_sqrt_n"].iloc[i]),
            ]
        rows.append(row)
    names = {
        "cnn": "CNN",
        "lstm_clusterization": "LSTM+TC",
        "d2_clusterization": "D2+TC",
        "truth_clusterization": "perfect peaks+TC",
    }
    header = ["particle", "p [GeV/c]", "cells"] + [
        f"{names.get(name, name)} {score}" for name in tables for score in ("bias", "RMS/√N")
    ]
    return markdown_table(header, rows)


def _tuning(evaluation: Evaluation) -> str:
    t = evaluation.tuning
    d2_best = t.d2.best
    lines = [
        f"- D2: T1 = {t.d2.t1_sigma:g} σ, T2 = {t.d2.t2:g} "
        f"(validation efficiency×purity {format_number(d2_best['efficiency_x_purity'])}).",
    ]
    for name, chosen in (
        ("LSTM peaks", t.lstm_clusterization),
        ("D2 peaks", t.d2_clusterization),
        ("expected peaks", t.truth_clusterization),
    ):
        lines.append(
            f"- Time clusterization of the {name}: window {chosen.window_ns:g} ns "
            f"+ {chosen.growth_ns_per_sqrt_ns:g} ns·√(t / ns) after the first peak."
        )
    return "\n".join(lines)


def _particle(name: str) -> str:
    return PARTICLE_SYMBOLS.get(name, name)


def pair_name(particle_a: str, particle_b: str) -> str:
    """Two particles as the report writes them.

    >>> pair_name("pi", "K")
    'π / K'
    """
    return f"{_particle(particle_a)} / {_particle(particle_b)}"


def _separation_cell(row: pd.Series) -> str:
    return format_estimate(row["separation"], row["separation_error"])


def _ratio_cell(row: pd.Series) -> str:
    return format_estimate(row["ratio"], row["ratio_error"])


def _resolution_cell(row: pd.Series) -> str:
    return f"{format_estimate(100 * row['resolution'], 100 * row['resolution_error'])} %"


def _by_momentum(
    table: pd.DataFrame,
    methods: Sequence[str],
    momenta: Sequence[float],
    cell: Callable[[pd.Series], str],
) -> list[list[str]]:
    """One row per method, one column per momentum: ``cell`` of the table's row."""
    rows = []
    for method in methods:
        of_method = table[table["method"] == method].set_index("momentum_gev")
        rows.append(
            [
                LABELS.get(method, method),
                *(cell(of_method.loc[m]) if m in of_method.index else MISSING for m in momenta),
            ]
        )
    return rows


#: What the benchmarks measured of the targets and of the counter's variants.
_WHY_TARGETS = (
    "Twenty tracks a set measure S / S_Poisson to about ±0.07. On 200 simulated tracks a "
    "set (`python -m benchmarks.separation`, `benchmarks/results/separation.json`) the counter "
    "keeps two thirds of the π/K difference of the true counts, as time clusterization of "
    "perfect peaks does: clusters within the resolving time make one pulse. D2 with time "
    "clusterization keeps about 0.6 of the limit on the simulated waveforms, so 1.6 times it "
    "would exceed the limit. The counter's variants (per-bin output, training on a flatter count "
    "distribution, a calibrated output; `python -m benchmarks.counter_variants`, "
    "`benchmarks/results/counter_variants.md`) keep no more separation than the plain "
    "regression, which is the default."
)


def _tracks_intro(tracks: TrackEvaluation) -> str:
    """What the track tables measure, on how many tracks of how much gas."""
    table = tracks.tracks
    n_sets = table.groupby(["particle", "momentum_gev"]).ngroups
    n_per_set = len(table) // max(n_sets, 1)
    metres = table["path_length_cm"].mean() / 100
    gas = f"{metres:.2f} m of gas on average" if math.isfinite(metres) else "path unknown"
    intro = (
        f"{len(table)} test tracks, {n_per_set} of each particle at each momentum, of "
        f"{table['n_cells'].mean():.0f} cells ({gas}). A track's "
        "dN/dx is the sum of its cells' counts over the sum of their path lengths (the path "
        "from the truth, as a track fit gives it); its dE/dx, the classical reference, is the "
        f"mean of the lowest {100 * tracks.keep_fraction:g} % of its cells' charge per cm. The "
        "separation power of two particles is S = |μ_a − μ_b| / ((σ_a + σ_b) / 2) over the "
        "tracks of each; the Poisson limit is S of the true cluster counts of the same tracks, "
        "and S / S_Poisson the share of it a method keeps. Errors are statistical, from the "
        "tracks (`dndx.scoring.separation`)."
    )
    n_unknown = int(table["path_length_cm"].isna().sum())
    if n_unknown:
        intro += (
            f" The data give no path length for {n_unknown} of the tracks (imported files "
            "without one): their dN/dx is clusters per cell and their dE/dx charge per cell, "
            "in the files' own charge unit where no calibration is known."
        )
    return intro


def _other_pairs(tracks: TrackEvaluation, headline: tuple[str, str]) -> list[str]:
    """S_Poisson and S / S_Poisson of every pair but ``headline``, as a titled table
    (none with a single pair)."""
    a, b = headline
    rest = tracks.separation[
        (tracks.separation["particle_a"] != a) | (tracks.separation["particle_b"] != b)
    ]
    if rest.empty:
        return []
    others = [m for m in tracks.methods if m != tracks.reference]
    rows = []
    for (pa, pb, momentum), group in rest.groupby(
        ["particle_a", "particle_b", "momentum_gev"], sort=False
    ):
        by_method = group.set_index("method")
        rows.append(
            [
                pair_name(str(pa), str(pb)),
                f"{momentum:g}",
                _separation_cell(by_method.loc[tracks.reference]),
                *(_ratio_cell(by_method.loc[m]) for m in others),
            ]
        )
    header = ["pair", "p [GeV/c]", "S_Poisson", *(LABELS.get(m, m) for m in others)]
    return ["### The other pairs: S_Poisson and S / S_Poisson", markdown_table(header, rows)]


def _tracks(tracks: TrackEvaluation) -> str:
    intro = _tracks_intro(tracks)
    if tracks.headline_pair is None:
        return intro + "\n\nOne particle only: nothing to separate."
    a, b = tracks.headline_pair
    momenta = tracks.momenta_gev
    header = ["method", *(f"{m:g} GeV/c" for m in momenta)]
    pair = tracks.pair_table(a, b)
    others = [m for m in tracks.methods if m != tracks.reference]
    methods = [tracks.reference, *others]
    resolution = tracks.resolution[tracks.resolution["particle"] == a]
    parts = [
        intro,
        "### Targets",
        _targets(tracks.targets),
        _WHY_TARGETS,
        f"### {pair_name(a, b)} separation power S",
        markdown_table(header, _by_momentum(pair, methods, momenta, _separation_cell)),
        f"### {pair_name(a, b)}: S / S_Poisson",
        markdown_table(header, _by_momentum(pair, others, momenta, _ratio_cell)),
        f"### Resolution σ / μ of the {_particle(a)} tracks",
        markdown_table(header, _by_momentum(resolution, methods, momenta, _resolution_cell)),
        *_other_pairs(tracks, (a, b)),
    ]
    return "\n\n".join(parts)


def render_report(
    evaluation: Evaluation,
    tracks: TrackEvaluation,
    preselection: PreselectionCheck,
    plots: Mapping[str, str],
) -> str:
    """The Markdown report.

    Args:
        evaluation: the result of :func:`dndx.scoring.evaluation.evaluate_split`.
        tracks: the track-level evaluation (:func:`dndx.scoring.track_evaluation.evaluate_tracks`).
        preselection: what the candidates' pre-selection drops of the test candidates.
        plots: figure title to its path relative to the report, in display order.
    """
    s = evaluation.candidate.scores
    signal_share = s["n_signal"] / s["n_candidates"] if s["n_candidates"] else math.nan
    sections = [
        "# Evaluation on the test set",
        f"{evaluation.n_waveforms} test waveforms, {int(s['n_candidates'])} peak candidates "
        f"({format_number(100 * signal_share, 1)} % signal). Peaks are matched one-to-one to the "
        "expected peaks of the truth; counts are compared with the TRUE number of primary "
        "clusters. The baselines' thresholds and windows were tuned on the validation split.",
        "## Models and baselines",
        _headline(evaluation),
        "Peak scores are against all expected peaks, including those no candidate reached "
        "(the candidates row shows that ceiling). Count bias is mean(N_rec − N_true) / "
        "mean(N_true); RMS / √N is RMS(N_rec − N_true) / √mean(N_true), in units of the Poisson "
        "fluctuation. The last row clusterizes the expected peaks of the truth, as if peak "
        "finding were perfect: its error comes from the clusterization alone (clusters arriving "
        "within the diffusion spread of each other, cluster-size fluctuations), which better "
        "peak finding cannot remove. `python -m benchmarks.limits counting` trains the CNN on "
        "such perfect peaks for the learned counterpart of this row.",
        "### LSTM on the candidates, at the working point",
        _candidate_line(evaluation),
        "### Candidate pre-selection",
        _preselection(preselection),
        "## Targets",
        _targets(evaluation.targets),
        "## Peak finding per drift-time bin",
        _peak_bins(evaluation.peaks, "by_drift_time", "drift_time_ns", "drift time [ns]", 0),
        "## Peak finding per noise level",
        _peak_bins(evaluation.peaks, "by_noise", "noise_fraction", "noise / 1 e⁻ amplitude", 3),
        "## Counting per particle and momentum",
        _counting_bins(evaluation),
        "## Particle identification along tracks",
        _tracks(tracks),
        "## Baselines tuned on validation",
        _tuning(evaluation),
        "## Figures",
        "\n\n".join(f"### {title}\n\n![{title}]({path})" for title, path in plots.items()),
    ]
    return "\n\n".join(sections) + "\n"
