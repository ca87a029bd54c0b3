"""What a built model costs at inference: its multiply-adds per example, and ONNX
Runtime's time per example on one CPU thread (:func:`inference_cost`).

The count covers the weight matrices, the arithmetic that dominates both
models: an LSTM's four gates at every step, a convolution's kernel at every
output position, a dense layer's matrix. Biases, activations, an LSTM cell's
element-wise products and pooling are left out: they are a few percent of
the total, and counting them would tie the figure to one runtime's kernels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dndx.chain.onnx import COUNTER_BATCH, PEAK_FINDER_BATCH, time_per_example_us
from dndx.errors import DndxError
from dndx.training.scan import COST_COLUMNS
from models.export import export_onnx

__all__ = ["COST_EXAMPLES", "COST_REPEATS", "inference_cost", "multiply_adds"]

#: Validation examples, and timed passes over them, behind a trial's ONNX Runtime
#: time: enough for a stable median, a few seconds at most per trial.
COST_EXAMPLES = {"peak_finder": 1024, "cluster_counter": 256}
COST_REPEATS = 5


def _positions(shape: tuple[int | None, ...]) -> int:
    """Positions a layer repeats its matrix over: every axis but batch and features."""
    return math.prod(int(n) for n in shape[1:-1] if n is not None)


def _layer_multiply_adds(layer: keras.layers.Layer) -> int:
    in_shape = tuple(layer.input.shape)
    out_shape = tuple(layer.output.shape)
    features, units = int(in_shape[-1]), int(out_shape[-1])
    if isinstance(layer, keras.layers.LSTM):
        steps = int(in_shape[1])
        return steps * 4 * units * (features + units)
    if isinstance(layer, keras.layers.Dense):
        return _positions(in_shape) * features * units
    if isinstance(layer, keras.layers.Conv1D):
        kernel_size = int(layer.kernel_size[0])
        return _positions(out_shape) * kernel_size * (features // layer.groups) * units
    raise DndxError(
        f"layer {layer.name!r} ({type(layer).__name__}) has weights but no multiply-add "
        "count: expected LSTM, Dense or Conv1D"
    )


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of ``model``'s weight matrices for one example.

    Layers without weights (input, dropout, pooling, concatenation) count
    zero; a weighted layer of a kind not counted here is an error, so that
    the count never silently leaves out a layer.

    Args:
        model: a built functional Keras model whose inputs have fixed shapes
            apart from the batch axis.

    Returns:
        Multiply-adds per example (one window, or one waveform).

    Raises:
        DndxError: a layer with weights is not an LSTM, Dense or Conv1D.
    """
    return sum(_layer_multiply_adds(layer) for layer in model.layers if layer.weights)


def inference_cost(
    model: Any, inputs: np.ndarray, examples_per_waveform: float, trial_dir: Path, opset: int
) -> tuple[dict[str, float], dict[str, float]]:
    """What a trial's model costs per waveform at inference: its multiply-adds
    (deterministic, a metric) and ONNX Runtime's time on one thread (a measurement
    of this worker's machine, a resource).

    The model is exported as ``register`` exports it (ONNX ``opset``), to
    ``trial_dir/model.onnx``, and timed on the first :data:`COST_EXAMPLES` of
    ``inputs``, ``(n, *input_shape)``, in the batches :mod:`dndx.chain.onnx` uses.
    ``examples_per_waveform`` is the number of model inputs one waveform makes: mean
    candidates for the peak finder, 1 for the counter.
    """
    batch = {"peak_finder": PEAK_FINDER_BATCH, "cluster_counter": COUNTER_BATCH}[model.name]
    path = export_onnx(model, trial_dir / "model.onnx", opset)
    microseconds = time_per_example_us(
        path, model.inputs[0].name, inputs[: COST_EXAMPLES[model.name]], batch, COST_REPEATS
    )
    onnx_time, macs = COST_COLUMNS
    return (
        {macs: float(multiply_adds(model) * examples_per_waveform)},
        {onnx_time: microseconds * examples_per_waveform},
    )
