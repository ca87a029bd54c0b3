"""Where the stages' data, models, metrics and reports live, each named once.

Every path here is relative to the project root (the directory of
``params.yaml``, :func:`flows.runtime.project_root`) and is spelled as
``dvc.yaml`` names it in its stages' ``deps`` and ``outs``; a stage resolves it
from the root it is given (``root / PREPARED_DIR``), never from the working
directory.

>>> str(PEAK_FINDER_DIR / MODEL_FILE)
'data/models/peak_finder/model.keras'
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BUNDLE_DIR",
    "COUNTER_DIR",
    "COUNTER_INPUTS_DIR",
    "DATA_DIR",
    "DEMO_DIR",
    "EVALUATION_REPORT",
    "INGESTED_DIR",
    "METRICS_DIR",
    "MODELS_DIR",
    "MODEL_FILE",
    "PEAK_FINDER_DIR",
    "PEAK_FINDER_SELECTION_FILE",
    "PLOTS_DIR",
    "PREPARED_DIR",
    "REGISTRY_CACHE_DIR",
    "REGISTRY_REPORT",
    "REPORTS_DIR",
    "SCANS_DIR",
    "SCORES_FILE",
    "SELECTION_FILE",
    "SIMULATED_DIR",
    "TARGET_DIR",
    "TARGET_FIT_PATH",
    "TRACKS_DIR",
    "metrics_file",
]

DATA_DIR = Path("data")
#: Waveforms with their truth, one directory per split (``simulate``).
SIMULATED_DIR = DATA_DIR / "simulated"
#: The user's labelled files as parts (``ingest``, when ``data.source`` is files).
INGESTED_DIR = DATA_DIR / "ingested"
#: Candidates, windows and labels per split (``prepare``).
PREPARED_DIR = DATA_DIR / "prepared"
#: Multi-cell tracks per split (``tracks``).
TRACKS_DIR = DATA_DIR / "tracks"
#: The cluster counter's encoded inputs (``encode``).
COUNTER_INPUTS_DIR = DATA_DIR / "counter_inputs"
#: The chosen Keras models, one directory per model (``train_*``).
MODELS_DIR = DATA_DIR / "models"
PEAK_FINDER_DIR = MODELS_DIR / "peak_finder"
COUNTER_DIR = MODELS_DIR / "cluster_counter"
#: Every trial's model of a scan, one directory per model (``train_*``).
SCANS_DIR = DATA_DIR / "scans"
#: The exported ONNX bundle (``register``, :mod:`dndx.chain.bundle`).
BUNDLE_DIR = DATA_DIR / "bundle"
#: The champion bundle fetched from the registry (``register``).
REGISTRY_CACHE_DIR = DATA_DIR / "registry-cache"
#: The target's profile and the simulator's fit to it (``profile``, :mod:`dndx.domain.fit`).
TARGET_DIR = DATA_DIR / "target"
TARGET_FIT_PATH = TARGET_DIR / "fit.json"
#: The demo's ROOT file and results (``demo``).
DEMO_DIR = DATA_DIR / "demo"
METRICS_DIR = Path("metrics")
REPORTS_DIR = Path("reports")
PLOTS_DIR = REPORTS_DIR / "plots"
#: The reports of ``evaluate`` and ``register``.
EVALUATION_REPORT = Path("reports/evaluation.md")
REGISTRY_REPORT = Path("reports/registry.md")

#: In a model's directory: the Keras model and the scan's choice.
MODEL_FILE = "model.keras"
SELECTION_FILE = "selection.json"
#: In ``data/counter_inputs``: the selection of the peak finder that made the inputs.
PEAK_FINDER_SELECTION_FILE = "peak_finder_selection.json"
#: In ``data/counter_inputs/<split>``: the peak finder's score of every candidate.
SCORES_FILE = "scores.parquet"


def metrics_file(stage: str) -> Path:
    """The metrics a stage writes, ``metrics/<stage>.json``.

    >>> str(metrics_file("evaluate"))
    'metrics/evaluate.json'
    """
    return METRICS_DIR / f"{stage}.json"
