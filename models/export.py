"""ONNX export of the Keras models, and the check that ONNX Runtime agrees.

An exported graph has the Keras model's input and output names (``window``
and ``peak_probability`` for the peak finder, ``peaks`` and ``n_clusters`` for
the cluster counter) and a dynamic first axis named ``batch``, so inference
code can feed it by name.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
from numpy.typing import NDArray

from dndx.errors import DndxError
from dndx.storage import atomic_file

__all__ = ["export_onnx", "onnx_parity"]


def _without_cudnn(layer: keras.layers.Layer) -> keras.layers.Layer:
    # A cuDNN LSTM kernel has no ONNX counterpart; the generic loop converts.
    # ``use_cudnn`` is not part of a layer's config, so it is set after the fact.
    clone = layer.__class__.from_config(layer.get_config())
    if isinstance(clone, keras.layers.LSTM):
        clone.use_cudnn = False
    return clone


def _exportable_copy(model: keras.Model) -> keras.Model:
    """A called copy of ``model`` with the same weights and no cuDNN kernels."""
    copy = keras.models.clone_model(model, clone_function=_without_cudnn)
    copy.set_weights(model.get_weights())
    # Keras refuses to export a model that was never called, e.g. one just loaded.
    copy(np.zeros((1, *model.input_shape[1:]), dtype="float32"))
    return copy


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.name == old:
            value.name = new


def _name_batch_axes(graph: onnx.GraphProto) -> None:
    for value in [*graph.input, *graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        if not first.HasField("dim_value"):
            first.dim_param = "batch"


def export_onnx(
    model: keras.Model,
    path: str | Path,
    opset: int,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model`` to ``path`` as a checked ONNX graph, atomically.

    The conversion runs on a CPU-only copy of the model, so a model trained
    with cuDNN kernels exports too. Graph inputs and outputs take the names
    of the Keras model's inputs and outputs.

    Args:
        model: a single-input, single-output Keras model, built or loaded.
        path: the ``.onnx`` file to write.
        opset: ONNX operator set version of the graph (``register.opset``).
        metadata: key-value pairs stored as the graph's ``metadata_props``.

    Returns:
        ``path``.

    Raises:
        DndxError: ``model`` has more than one input or output.
    """
    path = Path(path)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise DndxError(
            f"{path}: cannot export model {model.name!r}: expected one input and one output, "
            f"got {len(model.inputs)} and {len(model.outputs)}"
        )
    copy = _exportable_copy(model)
    with tempfile.TemporaryDirectory() as scratch:
        raw_path = Path(scratch) / "model.onnx"
        with warnings.catch_warnings():
            # tf2onnx probes ``np.object``, which NumPy answers with a FutureWarning
            # that no user of dndx can act on.
            warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
            copy.export(raw_path, format="onnx", opset_version=opset, verbose=False)
        proto = onnx.load(raw_path)

    _rename_tensor(proto.graph, proto.graph.input[0].name, model.inputs[0].name)
    _rename_tensor(proto.graph, proto.graph.output[0].name, model.output_names[0])
    _name_batch_axes(proto.graph)
    onnx.helper.set_model_props(proto, dict(metadata or {}))
    onnx.checker.check_model(proto, full_check=True)
    with atomic_file(path) as tmp:
        onnx.save(proto, tmp)
    return path


def onnx_parity(
    model: keras.Model, onnx_path: str | Path, inputs: NDArray[np.float32], atol: float
) -> float:
    """Largest absolute difference between ONNX Runtime and Keras on ``inputs``.

    Args:
        model: the Keras model that was exported.
        onnx_path: its ONNX graph, as written by :func:`export_onnx`.
        inputs: ``(n_examples, *model.input_shape[1:])`` float32.
        atol: the largest difference accepted (``register.parity_atol``).

    Returns:
        ``max |onnx - keras|`` over all outputs ``(n_examples, ...)``.

    Raises:
        DndxError: the difference exceeds ``atol``.
    """
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (onnx_outputs,) = session.run(
        None, {session.get_inputs()[0].name: np.asarray(inputs, dtype=np.float32)}
    )
    keras_outputs = model.predict(inputs, verbose=0)
    difference = float(np.max(np.abs(onnx_outputs - keras_outputs)))
    if not difference <= atol:
        raise DndxError(
            f"{onnx_path}: ONNX Runtime differs from Keras model {model.name!r} by "
            f"{difference:.3g} on {len(inputs)} inputs; expected at most atol = {atol:g}"
        )
    return difference
