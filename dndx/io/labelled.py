"""Labelled waveform files: other people's productions with their truth, read
into the :class:`~dndx.waveforms.WaveformSet` that ``prepare`` labels.

Two layouts map a file's branches (ROOT), columns (Parquet) or datasets (HDF5)
onto dndx's truth:

``cepc``
    The public CEPC cluster-counting layout (arXiv:2402.16493, DOI
    10.57760/sciencedb.16322): tree ``sim``, one entry per waveform with
    ``wf_i`` (the samples), ``sampling_rate``, ``ncls`` (primary clusters, the
    counter's target), ``mom`` (GeV/c) and two lists of equal length, ``time``
    (where the waveform has a peak) and ``tag`` (0 background, 1 primary
    peak, 2 secondary peak); optional ``height`` (the waveform's height at
    ``time``), the merge weight of peaks closer than the resolving time. The
    files do not state their units: the time unit (``samples``, the published
    description's index into ``wf_i``, or ``ns``) and the sampling-rate unit
    (``ghz`` or ``ns_per_sample``) are settings, checked against the waveforms themselves.
``dndx``
    dndx's own truth as the simulator writes it: tree ``dndx``, ``adc``,
    ``sampling_rate_ghz``, ``n_clusters``, ``momentum_gev``, ``particle_pdg``
    (the particle's PDG code; ROOT trees hold no strings),
    and per electron ``electron_time_ns`` (arrival, ns from the window
    start), ``electron_cluster``, ``electron_primary`` and
    ``electron_amplitude_adc``. Every other number per entry is kept as
    per-waveform truth (the simulator's ``rise_time_ns``, ``noise_fraction``...).

Every name can be replaced through :class:`LabelledLayout`'s ``names``.

An HDF5 file holds one dataset per branch name, in a group named like the
tree (``sim``, ``dndx``) or, when the file has no such group, at its root;
every dataset has one entry per waveform along its first axis. Numbers per
entry are 1-D datasets; lists per entry (waveform samples, peak times, tags,
electrons) are either 2-D datasets ``(n_waveforms, length)`` when all entries
have the same length, as the unlabelled reader (:mod:`dndx.io.readers`) reads
waveforms, or 1-D variable-length datasets (``h5py.vlen_dtype``) when they
differ.

Tagged peaks (tag 1 or 2) become the "electrons" of the returned set, at
their peak time with ``primary = tag == 1`` and ``height`` (or 1) as the merge
weight; ``peak_delay_ns`` 0 in the info tells ``prepare`` that the times are
already pulse maxima. So a candidate is signal when it matches a tagged peak
one to one, the same rule as for simulated data, and the counter's target is
``ncls``.

Problems of a whole file (missing branch, unreadable, a unit setting the
data contradicts) raise :class:`~dndx.errors.InputError` naming the file, the
entry and the setting. So does a label no waveform can have, naming the
file, entry, branch and value: a NaN, negative or fractional count, a count
other than the peaks tagged 1, a NaN or infinite peak time, height or
amplitude, a peak time outside the waveform; ``data check`` and ``ingest``
refuse the file rather than train on it. Problems of one waveform's samples
or structure (NaN samples, too short, a ``time``/``tag`` length mismatch, a
tag outside {0, 1, 2}) skip that waveform, with the reason, in
:attr:`LabelledChunk.skipped`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dndx.chain.preprocessing import validate_rows
from dndx.config import PARTICLE_MASSES_GEV
from dndx.errors import InputError
from dndx.io.hdf5 import Hdf5Table
from dndx.io.parquet import ParquetTable
from dndx.io.root import RootTable
from dndx.io.source import Table, detect_format, missing_file
from dndx.ragged import Ragged
from dndx.waveforms import WaveformSet

__all__ = [
    "DEFAULT_NAMES",
    "LAYOUTS",
    "PDG_CODES",
    "FileSummary",
    "LabelledChunk",
    "LabelledLayout",
    "count_entries",
    "read_labelled",
    "summarise_file",
]

#: The layouts :func:`read_labelled` reads.
LAYOUTS: tuple[str, ...] = ("cepc", "dndx")

#: Each layout's role -> branch (column) name; ``None`` means optional.
DEFAULT_NAMES: dict[str, dict[str, str]] = {
    "cepc": {
        "tree": "sim",
        "waveform": "wf_i",
        "sampling_rate": "sampling_rate",
        "n_clusters": "ncls",
        "momentum": "mom",
        "time": "time",
        "tag": "tag",
        "height": "height",
    },
    "dndx": {
        "tree": "dndx",
        "waveform": "adc",
        "sampling_rate": "sampling_rate_ghz",
        "n_clusters": "n_clusters",
        "momentum": "momentum_gev",
        "particle": "particle_pdg",
        "time": "electron_time_ns",
        "cluster": "electron_cluster",
        "primary": "electron_primary",
        "amplitude": "electron_amplitude_adc",
    },
}
#: PDG Monte Carlo codes of the particles dndx knows.
PDG_CODES: dict[str, int] = {"e": 11, "mu": 13, "pi": 211, "K": 321, "p": 2212}
_PARTICLES_OF_CODES = {code: name for name, code in PDG_CODES.items()}

_REQUIRED: dict[str, tuple[str, ...]] = {
    "cepc": ("waveform", "sampling_rate", "n_clusters", "time", "tag"),
    "dndx": ("waveform", "sampling_rate", "n_clusters", "time", "cluster", "primary"),
}
_TAGS = (0, 1, 2)
# Tagged peaks "sit on pulses" when the waveform rises, in the median, this many
# noise sigmas above its baseline within a few samples of the peak times, and
# no other reading of the units puts them this many times higher.
_PULSE_SIGMA = 3.0
_PULSE_SEARCH_SAMPLES = (-2, 2)
# Units belong to the file, not to one waveform: the first this many usable
# waveforms with tagged peaks judge them (the noise of every waveform of a chunk
# would be most of the cost of reading it).
_PULSE_CHECK_WAVEFORMS = 256
_BETTER_READING = 1.5
_RATE_RANGE_GHZ = (0.05, 50.0)


@dataclass(frozen=True)
class LabelledLayout:
    """How to read one family of labelled files.

    Attributes:
        layout: one of :data:`LAYOUTS`.
        names: role -> branch (column) name, replacing the layout's
            :data:`DEFAULT_NAMES` entry by entry.
        time_unit: unit of the peak times (``cepc``): ``samples`` or ``ns``.
        sampling_rate_unit: unit of the sampling rate: ``ghz`` or ``ns_per_sample``.
        particle: the particle of every waveform, for files that do not
            store it (``""``: unknown, or read from the ``particle`` role).
    """

    layout: Literal["cepc", "dndx"]
    names: Mapping[str, str] = field(default_factory=dict)
    time_unit: Literal["samples", "ns"] = "samples"
    sampling_rate_unit: Literal["ghz", "ns_per_sample"] = "ghz"
    particle: str = ""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InputError(f"unknown layout {self.layout!r}; expected one of {list(LAYOUTS)}")
        unknown = set(self.names) - set(DEFAULT_NAMES[self.layout])
        if unknown:
            raise InputError(
                f"layout {self.layout}: unknown names {sorted(unknown)}; "
                f"the roles are {sorted(DEFAULT_NAMES[self.layout])}"
            )
        if self.particle and self.particle not in PARTICLE_MASSES_GEV:
            raise InputError(
                f"particle {self.particle!r} unknown; expected one of {list(PARTICLE_MASSES_GEV)}"
            )

    def name(self, role: str) -> str:
        """The branch (column) name of ``role``."""
        return self.names.get(role, DEFAULT_NAMES[self.layout].get(role, ""))


@dataclass(frozen=True, eq=False)
class LabelledChunk:
    """The usable waveforms of entries ``[start, stop)`` of one file.

    Attributes:
        data: the waveforms with their truth; ``info`` holds ``source_file``
            and ``entry`` besides the columns ``prepare`` reads.
        tag_counts: ``(3,)`` tags 0, 1, 2 over the usable waveforms.
        skipped: ``(entry, reason)`` of every waveform left out.
    """

    data: WaveformSet
    tag_counts: NDArray[np.int64]
    skipped: list[tuple[int, str]]


@dataclass(frozen=True)
class FileSummary:
    """What ``dndx data check`` prints about one file."""

    path: Path
    n_waveforms: int
    n_usable: int
    samples_min: int
    samples_max: int
    sampling_rates_ghz: tuple[float, ...]
    particles: tuple[str, ...]
    momenta_gev: tuple[float, ...]
    mean_n_clusters: float
    tag_counts: tuple[int, int, int]
    skipped: list[tuple[int, str]]
    problem: str = ""


def _open_table(path: Path, layout: LabelledLayout) -> Table:
    """The file's columns, by its format; closed by the caller."""
    if not path.exists():
        raise missing_file(path)
    fmt = detect_format(path)
    tree = layout.name("tree")
    if fmt == "root":
        return RootTable(path, tree, f"layout {layout.layout}, setting names.tree")
    if fmt == "parquet":
        return ParquetTable(path)
    if fmt == "hdf5":
        return Hdf5Table(path, tree, layout.name("waveform"))
    raise InputError(f"{path}: labelled {fmt} files are not read; use ROOT, HDF5 or Parquet")


def _require(path: Path, table: Table, layout: LabelledLayout) -> dict[str, str]:
    """Role -> name of every role present; a missing required one raises."""
    present = {}
    for role in DEFAULT_NAMES[layout.layout]:
        if role == "tree":
            continue
        name = layout.name(role)
        if name in table.kinds:
            present[role] = name
        elif role in _REQUIRED[layout.layout]:
            listed = ", ".join(f"{k!r} ({v})" for k, v in table.kinds.items()) or "none"
            raise InputError(
                f"{path}: no {table.noun} {name!r}{table.place} for {role!r} (layout "
                f"{layout.layout}; rename it with names.{role}); {table.nouns}: {listed}"
            )
    return present


def count_entries(path: str | Path, layout: LabelledLayout) -> int:
    """The number of entries (waveforms) of a labelled file, checking its names."""
    path = Path(path)
    with _open_table(path, layout) as table:
        _require(path, table, layout)
        return table.n_entries


def _rates_ghz(values: NDArray[np.float64], layout: LabelledLayout) -> NDArray[np.float64]:
    if layout.sampling_rate_unit == "ns_per_sample":
        with np.errstate(divide="ignore"):
            return 1.0 / values
    return values


def _ragged(array: ak.Array, dtype: type) -> Ragged:
    lengths = np.asarray(ak.num(array, axis=1), dtype=np.int64)
    return Ragged.from_lengths(np.asarray(ak.flatten(array, axis=None), dtype=dtype), lengths)


def _blank(rows: Ragged, empty: NDArray[np.bool_]) -> Ragged:
    """``rows`` with the rows where ``empty`` is True emptied, so that lists
    whose lengths disagree in those rows line up everywhere else."""
    return Ragged.from_lengths(
        rows.values[~empty[rows.row_index()]], np.where(empty, 0, rows.lengths)
    )


def read_labelled(
    path: str | Path, layout: LabelledLayout, start: int, stop: int, min_samples: int
) -> LabelledChunk:
    """Entries ``[start, stop)`` of a labelled file, checked and converted.

    Args:
        min_samples: the fewest samples a usable waveform holds (one window).

    Raises:
        InputError: the file is missing or unreadable, a required branch is
            missing, or the chunk's data contradict a unit setting.
    """
    path = Path(path)
    with _open_table(path, layout) as table:
        return _read_entries(path, table, layout, start, stop, min_samples)


def _read_entries(
    path: Path, table: Table, layout: LabelledLayout, start: int, stop: int, min_samples: int
) -> LabelledChunk:
    """Entries ``[start, stop)`` of the open ``table``, as :func:`read_labelled`."""
    roles = _require(path, table, layout)
    if not 0 <= start <= stop <= table.n_entries:
        raise InputError(
            f"{path}: entries [{start}, {stop}) requested, the file holds {table.n_entries}"
        )
    arrays = table.read_columns(list(roles.values()), start, stop)
    extra = []
    if layout.layout == "dndx":
        extra = [
            name
            for name, kind in table.kinds.items()
            if name not in roles.values()
            and kind in _SCALAR_KINDS
            # uproot's counters of jagged branches ("nadc" of "adc") are not truth.
            and name[1:] not in table.kinds
        ]
        arrays.update(table.read_columns(extra, start, stop) if extra else {})
    by_role = {role: arrays[name] for role, name in roles.items()}
    convert = _from_cepc if layout.layout == "cepc" else _from_dndx
    return convert(path, layout, by_role, {n: arrays[n] for n in extra}, start, min_samples)


_SCALAR_KINDS = frozenset(
    {"int8_t", "int16_t", "int32_t", "int64_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t"}
    | {"float", "double", "bool", "int8", "int16", "int32", "int64", "float32", "float64"}
    | {"uint8", "uint16", "uint32", "uint64"}
)


def _scalars(
    path: Path, layout: LabelledLayout, arrays: Mapping[str, ak.Array], role: str
) -> NDArray:
    values = np.asarray(arrays[role])
    if values.ndim != 1:
        raise InputError(
            f"{path}: branch {layout.name(role)!r} ({role}) holds lists, "
            "expected one number per entry"
        )
    return values


def _impossible(
    path: Path, layout: LabelledLayout, role: str, entry: int, value: Any, expected: str
) -> InputError:
    """The error of a label no waveform can have: the file, entry, branch and value."""
    return InputError(
        f"{path}: entry {entry}: {layout.name(role)!r} ({role}) holds {value!r}; "
        f"expected {expected} (check the file, or names.{role})"
    )


def _counts(
    path: Path, layout: LabelledLayout, arrays: Mapping[str, ak.Array], start: int
) -> NDArray[np.int64]:
    """The ``n_clusters`` of each entry, checked: a count is a whole number, at least 0.

    Raises:
        InputError: a NaN, negative or fractional count, naming its entry.
    """
    values = _scalars(path, layout, arrays, "n_clusters")
    if values.dtype.kind == "f":
        impossible = ~(np.isfinite(values) & (values == np.round(values))) | (values < 0)
    else:
        impossible = values < 0
    if impossible.any():
        row = int(np.flatnonzero(impossible)[0])
        raise _impossible(
            path, layout, "n_clusters", start + row, values[row].item(), "a whole number >= 0"
        )
    return values.astype(np.int64)


def _base_info(
    path: Path,
    layout: LabelledLayout,
    by_role: Mapping[str, ak.Array],
    start: int,
) -> pd.DataFrame:
    n = len(by_role["waveform"])
    rates = _rates_ghz(
        _scalars(path, layout, by_role, "sampling_rate").astype(np.float64),
        layout,
    )
    info = pd.DataFrame(
        {
            "waveform_id": np.arange(start, start + n, dtype=np.int64),
            "source_file": str(path),
            "entry": np.arange(start, start + n, dtype=np.int64),
            "n_clusters": _counts(path, layout, by_role, start),
            "sampling_rate_ghz": rates,
        }
    )
    if "momentum" in by_role:
        info["momentum_gev"] = _scalars(path, layout, by_role, "momentum").astype(np.float64)
    else:
        info["momentum_gev"] = np.nan
    if "particle" in by_role:
        codes = np.abs(_scalars(path, layout, by_role, "particle").astype(np.int64))
        info["particle"] = [_PARTICLES_OF_CODES.get(int(code), "") for code in codes]
    else:
        info["particle"] = layout.particle
    masses = info["particle"].map(PARTICLE_MASSES_GEV).astype(np.float64)
    info["beta_gamma"] = info["momentum_gev"] / masses
    bad_rate = ~((rates > _RATE_RANGE_GHZ[0]) & (rates < _RATE_RANGE_GHZ[1]))
    if bad_rate.any():
        row = int(np.flatnonzero(bad_rate)[0])
        raise InputError(
            f"{path}: entry {start + row}: sampling rate {rates[row]:g} GHz read with "
            f"sampling_rate_unit {layout.sampling_rate_unit!r} is outside "
            f"{_RATE_RANGE_GHZ[0]}-{_RATE_RANGE_GHZ[1]} GHz; check sampling_rate_unit"
        )
    return info


def _from_cepc(
    path: Path,
    layout: LabelledLayout,
    by_role: Mapping[str, ak.Array],
    extra: Mapping[str, ak.Array],
    start: int,
    min_samples: int,
) -> LabelledChunk:
    info = _base_info(path, layout, by_role, start)
    samples = _ragged(by_role["waveform"], np.float64)
    ok, reasons = validate_rows(samples, min_samples)
    problems = dict(reasons)
    times, tags, heights = _peak_lists(path, layout, by_role, ok, problems, start)
    rates = info["sampling_rate_ghz"].to_numpy()
    time_samples = (
        times.values if layout.time_unit == "samples" else times.values * rates[times.row_index()]
    )
    _check_inside(path, layout, samples, times, time_samples, ok, start)
    _check_on_pulses(path, layout, samples, times, rates, tags, ok, start)
    _check_counts(path, layout, times, tags, info["n_clusters"].to_numpy(), ok, start)
    electrons, offsets = _tagged_peaks(times, tags, heights, time_samples, rates, ok)
    keep = np.flatnonzero(ok)
    kept_info = info.iloc[keep].reset_index(drop=True)
    kept_info["peak_delay_ns"] = 0.0
    # Truth the layout does not carry: unknown, so binned metrics leave these waveforms out.
    for column in ("path_length_cm", "n_electrons", "noise_fraction", "polarity"):
        kept_info[column] = np.nan
    tag_counts = np.bincount(tags.values[ok[tags.row_index()]].clip(0, 2), minlength=3).astype(
        np.int64
    )
    skipped = sorted((start + row, reason) for row, reason in problems.items())
    return LabelledChunk(
        WaveformSet(kept_info, samples.take(keep), electrons, offsets), tag_counts, skipped
    )


def _peak_lists(
    path: Path,
    layout: LabelledLayout,
    by_role: Mapping[str, ak.Array],
    ok: NDArray[np.bool_],
    problems: dict[int, str],
    start: int,
) -> tuple[Ragged, Ragged, Ragged | None]:
    """The ``time``, ``tag`` and (where present) ``height`` lists; a waveform
    whose lists differ in length, or with a tag outside {0, 1, 2}, is marked
    not ``ok`` (in place) with its reason in ``problems``, its lists emptied.

    Raises:
        InputError: a time or height of a usable waveform is not finite.
    """
    times = _ragged(by_role["time"], np.float64)
    tags = _ragged(by_role["tag"], np.int64)
    heights = _ragged(by_role["height"], np.float64) if "height" in by_role else None
    mismatch = times.lengths != tags.lengths
    if heights is not None:
        mismatch |= heights.lengths != times.lengths
    for row in np.flatnonzero(mismatch & ok):
        problems[int(row)] = (
            f"{layout.name('time')!r} has {times.lengths[row]} entries, "
            f"{layout.name('tag')!r} {tags.lengths[row]}"
            + (f", {layout.name('height')!r} {heights.lengths[row]}" if heights is not None else "")
        )
    ok &= ~mismatch
    times, tags = _blank(times, mismatch), _blank(tags, mismatch)
    heights = _blank(heights, mismatch) if heights is not None else None
    lists = [("time", times)] + ([("height", heights)] if heights is not None else [])
    _check_finite(path, layout, lists, ok, start)
    peak_rows = times.row_index()
    flagged = np.flatnonzero(~np.isin(tags.values, _TAGS) & ok[peak_rows])
    rows_hit, first_flag = np.unique(peak_rows[flagged], return_index=True)
    for row, index in zip(rows_hit.tolist(), flagged[first_flag].tolist(), strict=True):
        problems[row] = (
            f"tag {int(tags.values[index])} at peak {index - times.offsets[row]}, "
            "expected 0, 1 or 2"
        )
    ok[rows_hit] = False
    return times, tags, heights


def _check_finite(
    path: Path,
    layout: LabelledLayout,
    lists: list[tuple[str, Ragged]],
    ok: NDArray[np.bool_],
    start: int,
) -> None:
    """Raise on the first value of ``lists`` (role, values) of a usable waveform
    that is not finite."""
    for role, values in lists:
        rows = values.row_index()
        not_finite = np.flatnonzero(~np.isfinite(values.values) & ok[rows])
        if len(not_finite):
            raise _impossible(
                path,
                layout,
                role,
                start + int(rows[not_finite[0]]),
                values.values[not_finite[0]].item(),
                "finite numbers",
            )


def _check_inside(
    path: Path,
    layout: LabelledLayout,
    samples: Ragged,
    times: Ragged,
    time_samples: NDArray[np.float64],
    ok: NDArray[np.bool_],
    start: int,
) -> None:
    """Raise when peak times (``time_samples``, in samples) fall outside their
    waveform: in most usable waveforms with peaks (a wrong unit setting), or in
    any usable one (a label no waveform can have)."""
    rows = times.row_index()
    outside = (time_samples < 0) | (time_samples >= samples.lengths[rows])
    outside_rows = np.bincount(rows[outside], minlength=len(samples)) > 0
    judged = ok & (times.lengths > 0)
    if judged.sum() and (outside_rows & judged).sum() > 0.5 * judged.sum():
        first = int(np.flatnonzero(outside_rows & judged)[0])
        raise InputError(
            f"{path}: entry {start + first}: peak times fall outside the waveform "
            f"({samples.lengths[first]} samples) in {int((outside_rows & judged).sum())} of "
            f"{int(judged.sum())} waveforms when read with time_unit {layout.time_unit!r} "
            f"and sampling_rate_unit {layout.sampling_rate_unit!r}; check time_unit"
        )
    if (outside_rows & ok).any():
        peak = int(np.flatnonzero(outside & ok[rows])[0])
        outside_row = int(rows[peak])
        raise _impossible(
            path,
            layout,
            "time",
            start + outside_row,
            times.values[peak].item(),
            f"a peak time inside the waveform's {samples.lengths[outside_row]} samples "
            f"(time_unit {layout.time_unit!r})",
        )


def _check_counts(
    path: Path,
    layout: LabelledLayout,
    times: Ragged,
    tags: Ragged,
    n_clusters: NDArray,
    ok: NDArray[np.bool_],
    start: int,
) -> None:
    """Raise when a usable waveform's ``n_clusters`` differs from its peaks tagged 1."""
    primary_tags = np.bincount(times.row_index()[tags.values == 1], minlength=len(ok))
    wrong = ok & (primary_tags != n_clusters)
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        raise InputError(
            f"{path}: entry {start + first}: {layout.name('n_clusters')!r} (n_clusters) holds "
            f"{n_clusters[first]} but {int(primary_tags[first])} peaks have tag 1 in "
            f"{layout.name('tag')!r}, in {int(wrong.sum())} of "
            f"{int(ok.sum())} waveforms; the counts must match the tags (check "
            "names.n_clusters and names.tag)"
        )


def _tagged_peaks(
    times: Ragged,
    tags: Ragged,
    heights: Ragged | None,
    time_samples: NDArray[np.float64],
    rates_ghz: NDArray[np.float64],
    ok: NDArray[np.bool_],
) -> tuple[pd.DataFrame, NDArray[np.int64]]:
    """The peaks tagged 1 or 2 of the usable waveforms as electrons, in time order
    within each waveform, and ``(n_usable + 1,)`` the offsets of each waveform's."""
    keep = np.flatnonzero(ok)
    peak_values = np.isin(tags.values, (1, 2)) & ok[times.row_index()]
    peak_rows = times.row_index()[peak_values]
    row_map = np.full(len(ok), -1, dtype=np.int64)
    row_map[keep] = np.arange(len(keep))
    peak_time_ns = time_samples[peak_values] / rates_ghz[peak_rows]
    weight = heights.values[peak_values] if heights is not None else np.ones(len(peak_rows))
    order = np.lexsort((peak_time_ns, peak_rows))
    new_rows = row_map[peak_rows[order]]
    electrons = pd.DataFrame(
        {
            "waveform": new_rows,
            "time_ns": peak_time_ns[order],
            "cluster": np.zeros(len(order), dtype=np.int32),
            "primary": (tags.values[peak_values] == 1)[order],
            "amplitude_adc": np.abs(weight[order]),
        }
    )
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(np.bincount(new_rows, minlength=len(keep)), out=offsets[1:])
    return electrons, offsets


def _noise_levels(
    samples: Ragged, rows: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(n_rows,)`` baseline (median) and noise sigma (from the MAD) of ``rows``."""
    baseline = np.zeros(len(samples))
    sigma = np.ones(len(samples))
    for row in np.unique(rows).tolist():
        wave = samples[row]
        baseline[row] = np.median(wave)
        sigma[row] = 1.4826 * np.median(np.abs(wave - baseline[row])) or 1.0
    return baseline, sigma


def _pulse_scores(
    samples: Ragged,
    noise: tuple[NDArray[np.float64], NDArray[np.float64]],
    rows: NDArray[np.int64],
    positions: NDArray[np.float64],
) -> NDArray[np.float64]:
    """``(n_peaks,)`` the largest excursion from the baseline, in noise sigmas,
    of the waveform near each peak position (samples); 0 outside the waveform."""
    baseline, sigma = noise
    at = np.rint(positions).astype(np.int64)
    lengths = samples.lengths[rows]
    near = at[:, None] + np.arange(_PULSE_SEARCH_SAMPLES[0], _PULSE_SEARCH_SAMPLES[1] + 1)
    index = samples.offsets[rows, None] + np.clip(near, 0, lengths[:, None] - 1)
    excess = np.abs(samples.values[index] - baseline[rows, None]) / sigma[rows, None]
    return np.where((at >= 0) & (at < lengths), excess.max(axis=1, initial=0.0), 0.0)


def _check_on_pulses(
    path: Path,
    layout: LabelledLayout,
    samples: Ragged,
    times: Ragged,
    rates_ghz: NDArray[np.float64],
    tags: Ragged,
    ok: NDArray[np.bool_],
    start: int,
) -> None:
    """Raise when the tagged peaks sit on pulses less well under the unit settings
    than under another reading of the units, or mostly on noise."""
    rows = times.row_index()
    tagged = np.isin(tags.values, (1, 2)) & ok[rows]
    if not tagged.any():
        return
    tagged &= rows <= np.unique(rows[tagged])[:_PULSE_CHECK_WAVEFORMS][-1]
    raw, peak_rows = times.values[tagged], rows[tagged]
    rate = rates_ghz[peak_rows]
    other_rate_unit = "ns_per_sample" if layout.sampling_rate_unit == "ghz" else "ghz"
    readings = {
        ("samples", layout.sampling_rate_unit): raw,
        ("ns", layout.sampling_rate_unit): raw * rate,
        ("ns", other_rate_unit): raw / rate,
    }
    noise = _noise_levels(samples, peak_rows)
    scores = {
        key: float(np.median(_pulse_scores(samples, noise, peak_rows, pos)))
        for key, pos in readings.items()
    }
    chosen_key = (layout.time_unit, layout.sampling_rate_unit)
    chosen = scores[chosen_key]
    best_key = max(scores, key=lambda key: scores[key])
    if chosen < _PULSE_SIGMA or scores[best_key] > _BETTER_READING * chosen:
        row = int(peak_rows[0])
        better = (
            f"; with time_unit {best_key[0]!r} and sampling_rate_unit {best_key[1]!r} it "
            f"is {scores[best_key]:.1f}"
            if best_key != chosen_key
            else ""
        )
        raise InputError(
            f"{path}: entries {start + row} on: the peaks tagged 1 or 2 do not sit on pulses "
            f"of the waveform when read with time_unit {layout.time_unit!r} and "
            f"sampling_rate_unit {layout.sampling_rate_unit!r} (median height "
            f"{chosen:.1f} noise sigmas{better}); check time_unit and sampling_rate_unit"
        )


def _from_dndx(
    path: Path,
    layout: LabelledLayout,
    by_role: Mapping[str, ak.Array],
    extra: Mapping[str, ak.Array],
    start: int,
    min_samples: int,
) -> LabelledChunk:
    info = _base_info(path, layout, by_role, start)
    for name, values in extra.items():
        info[name] = np.asarray(values)
    samples = _ragged(by_role["waveform"], np.float64)
    ok, reasons = validate_rows(samples, min_samples)
    problems = dict(reasons)
    times, clusters, primary, amplitude = _electron_lists(
        path, layout, by_role, ok, problems, start
    )
    if "rise_time_ns" not in info:
        info["peak_delay_ns"] = 0.0
    keep = np.flatnonzero(ok)
    electrons_of = np.repeat(ok, times.lengths)
    electron_rows = np.repeat(np.arange(len(keep)), times.lengths[keep])
    electrons = pd.DataFrame(
        {
            "waveform": electron_rows,
            "time_ns": times.values[electrons_of],
            "cluster": clusters.values[electrons_of].astype(np.int32),
            "primary": primary.values[electrons_of],
            "amplitude_adc": amplitude.values[electrons_of],
        }
    )
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(times.lengths[keep], out=offsets[1:])
    n_primary = int(primary.values[electrons_of].sum())
    tag_counts = np.array([0, n_primary, int(electrons_of.sum()) - n_primary], dtype=np.int64)
    skipped = sorted((start + row, reason) for row, reason in problems.items())
    return LabelledChunk(
        WaveformSet(info.iloc[keep].reset_index(drop=True), samples.take(keep), electrons, offsets),
        tag_counts,
        skipped,
    )


def _electron_lists(
    path: Path,
    layout: LabelledLayout,
    by_role: Mapping[str, ak.Array],
    ok: NDArray[np.bool_],
    problems: dict[int, str],
    start: int,
) -> tuple[Ragged, Ragged, Ragged, Ragged]:
    """The ``time``, ``cluster``, ``primary`` and ``amplitude`` (1 where absent)
    electron lists; a waveform whose lists differ in length is marked not ``ok``
    (in place) with its reason in ``problems``, its lists emptied.

    Raises:
        InputError: a time or amplitude of a usable waveform is not finite.
    """
    times = _ragged(by_role["time"], np.float64)
    clusters = _ragged(by_role["cluster"], np.int64)
    primary = _ragged(by_role["primary"], np.bool_)
    amplitude = (
        _ragged(by_role["amplitude"], np.float64)
        if "amplitude" in by_role
        else Ragged(np.ones(len(times.values)), times.offsets)
    )
    mismatch = (
        (clusters.lengths != times.lengths)
        | (primary.lengths != times.lengths)
        | (amplitude.lengths != times.lengths)
    )
    for row in np.flatnonzero(mismatch & ok):
        problems[int(row)] = "the electron lists differ in length"
    ok &= ~mismatch
    times, clusters = _blank(times, mismatch), _blank(clusters, mismatch)
    primary, amplitude = _blank(primary, mismatch), _blank(amplitude, mismatch)
    _check_finite(path, layout, [("time", times), ("amplitude", amplitude)], ok, start)
    return times, clusters, primary, amplitude


def summarise_file(
    path: str | Path, layout: LabelledLayout, min_samples: int, chunk_size: int = 10_000
) -> FileSummary:
    """Read a whole labelled file chunk by chunk and summarise it; a problem of the
    file ends the reading and is returned in ``problem`` rather than raised."""
    path = Path(path)
    n_entries = 0
    parts: list[LabelledChunk] = []
    lengths: list[NDArray[np.int64]] = []
    problem = ""
    try:
        # One opening for the whole file: the chunks are read from the same table.
        with _open_table(path, layout) as table:
            _require(path, table, layout)
            n_entries = table.n_entries
            for first in range(0, n_entries, chunk_size):
                stop = min(first + chunk_size, n_entries)
                chunk = _read_entries(path, table, layout, first, stop, min_samples)
                parts.append(chunk)
                lengths.append(chunk.data.adc.lengths)
        if n_entries == 0:
            problem = f"{path}: holds no waveforms"
    except InputError as error:
        problem = str(error)
    infos = [p.data.info for p in parts if len(p.data)]
    info = pd.concat(infos, ignore_index=True) if infos else pd.DataFrame()
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    skipped = [s for p in parts for s in p.skipped]
    if not problem and skipped:
        entry, reason = skipped[0]
        problem = f"{path}: entry {entry}: {reason}"
    tags = sum((p.tag_counts for p in parts), np.zeros(3, np.int64))
    return FileSummary(
        path=path,
        n_waveforms=n_entries,
        n_usable=len(info),
        samples_min=int(all_lengths.min()) if len(all_lengths) else 0,
        samples_max=int(all_lengths.max()) if len(all_lengths) else 0,
        sampling_rates_ghz=tuple(sorted(info["sampling_rate_ghz"].unique().tolist()))
        if len(info)
        else (),
        particles=tuple(sorted(p for p in info["particle"].unique() if p)) if len(info) else (),
        momenta_gev=tuple(sorted(info["momentum_gev"].dropna().round(3).unique().tolist()))
        if len(info)
        else (),
        mean_n_clusters=float(info["n_clusters"].mean()) if len(info) else float("nan"),
        tag_counts=(int(tags[0]), int(tags[1]), int(tags[2])),
        skipped=skipped,
        problem=problem,
    )
