"""What a built model costs at inference: its multiply-adds per example.

The count covers the weight matrices, the arithmetic that dominates both
models: an LSTM's four gates at every step, a convolution's kernel at every
output position, a dense layer's matrix. Biases, activations, an LSTM cell's
element-wise products and pooling are left out: they are a few percent of
the total, and counting them would tie the figure to one runtime's kernels.
"""

from __future__ import annotations

import math

import keras

from dndx.errors import DndxError

__all__ = ["multiply_adds"]


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
