"""The Keras model builders and their ONNX export, on tiny configs."""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import pytest

from dndx.config import ClusterCounterModelConfig, load_params
from dndx.errors import DndxError
from dndx.training.counter_training import coarsen_bins
from models import build_cluster_counter, build_peak_finder
from models.cluster_counter import SumPooling1D, fold_calibration, serving_counter
from models.export import export_onnx, onnx_parity

WINDOW_LENGTH = 15
N_BINS = 64
N_CHANNELS = 4

PARAMS = load_params()
ATOL = PARAMS.register.parity_atol
TINY_PEAK_FINDER = dataclasses.replace(
    PARAMS.peak_finder, lstm_units=(8,), dense_units=(8,), dropout=0.0, learning_rate=1e-2
)
TINY_CLUSTER_COUNTER = dataclasses.replace(
    PARAMS.cluster_counter,
    filters=(8, 8),
    kernel_size=3,
    dense_units=(16,),
    dropout=0.0,
    learning_rate=3e-3,
)
TINY_PER_BIN_COUNTER = dataclasses.replace(TINY_CLUSTER_COUNTER, output="per_bin")


def lstm_parameters(n_inputs: int, units: int) -> int:
    return 4 * (units * (n_inputs + units) + units)


def dense_parameters(n_inputs: int, units: int) -> int:
    return n_inputs * units + units


def conv_parameters(n_inputs: int, filters: int, kernel_size: int) -> int:
    return kernel_size * n_inputs * filters + filters


def trainable_parameters(model: keras.Model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    for weight_a, weight_b in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(weight_a, weight_b)


def any_weights_differ(a: keras.Model, b: keras.Model) -> bool:
    return any(
        not np.array_equal(weight_a, weight_b)
        for weight_a, weight_b in zip(a.get_weights(), b.get_weights(), strict=True)
    )


def peak_windows(n_windows: int, n_features: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(n_windows, WINDOW_LENGTH, n_features)`` labelled by a learnable rule:
    the centre sample stands above both neighbours."""
    rng = np.random.default_rng(7)
    windows = rng.normal(size=(n_windows, WINDOW_LENGTH, n_features)).astype(np.float32)
    centre = WINDOW_LENGTH // 2
    labels = (windows[:, centre, 0] > windows[:, centre - 1, 0]) & (
        windows[:, centre, 0] > windows[:, centre + 1, 0]
    )
    return windows, labels.astype(np.float32)[:, None]


def binned_peaks(n_waveforms: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse peak trains ``(n_waveforms, N_BINS, N_CHANNELS)`` and their peak counts
    ``(n_waveforms, 1)``, from 5 to 40 peaks each."""
    rng = np.random.default_rng(11)
    peaks = np.zeros((n_waveforms, N_BINS, N_CHANNELS), dtype=np.float32)
    counts = rng.integers(5, 41, size=n_waveforms)
    for peak_train, count in zip(peaks, counts, strict=True):
        bins = rng.choice(N_BINS, size=count, replace=False)
        peak_train[bins, 0] = 1.0
        peak_train[bins, 1:] = rng.uniform(0.5, 1.5, size=(count, N_CHANNELS - 1))
    return peaks, counts.astype(np.float32)[:, None]


@pytest.mark.parametrize(
    ("lstm_units", "dense_units", "n_features"),
    [((8,), (6,), 1), ((8, 4), (6, 5), 3)],
)
def test_peak_finder_shape_and_parameter_count(
    lstm_units: tuple[int, ...], dense_units: tuple[int, ...], n_features: int
) -> None:
    cfg = dataclasses.replace(PARAMS.peak_finder, lstm_units=lstm_units, dense_units=dense_units)
    model = build_peak_finder(cfg, window_length=WINDOW_LENGTH, n_features=n_features)

    widths = [n_features, *lstm_units]
    expected = sum(lstm_parameters(n, u) for n, u in zip(widths, lstm_units, strict=False))
    widths = [lstm_units[-1], *dense_units, 1]
    expected += sum(dense_parameters(n, u) for n, u in itertools.pairwise(widths))
    assert trainable_parameters(model) == expected
    assert model.name == "peak_finder"
    assert model.input_shape == (None, WINDOW_LENGTH, n_features)
    assert model.inputs[0].name == "window"
    assert model.output_names == ["peak_probability"]
    probabilities = model.predict(np.zeros((3, WINDOW_LENGTH, n_features), np.float32), verbose=0)
    assert probabilities.shape == (3, 1)
    assert np.all((probabilities > 0) & (probabilities < 1))


@pytest.mark.parametrize(
    ("filters", "n_bins", "pools", "pooled_length"),
    [((8, 8), 64, ["pool_0", "pool_1"], 16), ((4, 4, 4), 8, ["pool_0", "pool_1"], 2)],
)
def test_cluster_counter_shape_and_parameter_count(
    filters: tuple[int, ...], n_bins: int, pools: list[str], pooled_length: int
) -> None:
    cfg = dataclasses.replace(
        PARAMS.cluster_counter, filters=filters, kernel_size=3, dense_units=(16, 8)
    )
    model = build_cluster_counter(cfg, n_bins=n_bins, n_channels=N_CHANNELS)

    widths = [N_CHANNELS, *filters]
    expected = sum(
        conv_parameters(n, f, cfg.kernel_size) for n, f in zip(widths, filters, strict=False)
    )
    widths = [2 * filters[-1], *cfg.dense_units, 1]
    expected += sum(dense_parameters(n, u) for n, u in itertools.pairwise(widths))
    assert trainable_parameters(model) == expected
    assert model.name == "cluster_counter"
    assert model.inputs[0].name == "peaks"
    assert model.output_names == ["n_clusters"]
    assert [
        layer.name for layer in model.layers if isinstance(layer, keras.layers.MaxPooling1D)
    ] == pools
    assert model.get_layer("sum_over_time").input.shape == (None, pooled_length, filters[-1])
    counts = model.predict(np.zeros((3, n_bins, N_CHANNELS), np.float32), verbose=0)
    assert counts.shape == (3, 1)


def test_per_bin_counter_sums_its_non_negative_bins_and_trains_on_both() -> None:
    peaks, counts = binned_peaks(8)
    per_bin_truth = coarsen_bins(peaks[:, :, 0].astype(np.int64), N_BINS // 4)  # two pools of 2
    model = build_cluster_counter(TINY_PER_BIN_COUNTER, n_bins=N_BINS, n_channels=N_CHANNELS)
    summing = model.get_layer("n_clusters").get_weights()
    weight = np.linspace(0.5, 1.5, len(peaks))
    for _ in range(3):
        model.train_on_batch(peaks, [counts, per_bin_truth], sample_weight=[weight, weight])

    predicted, per_bin = model.predict(peaks, verbose=0)

    assert model.output_names == ["n_clusters", "clusters_per_bin"]
    assert predicted.shape == (8, 1)
    assert per_bin.shape == per_bin_truth.shape
    # Each bin is the softplus of its step's linear unit, computed here from its input.
    step = model.get_layer("clusters_per_step")
    features = keras.Model(model.inputs, step.input).predict(peaks, verbose=0)
    kernel, bias = step.get_weights()
    linear = (features @ kernel + bias)[..., 0]
    np.testing.assert_allclose(per_bin, np.logaddexp(0.0, linear), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predicted[:, 0], per_bin.sum(axis=1), rtol=1e-5)
    for before, after in zip(summing, model.get_layer("n_clusters").get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    serving = serving_counter(model)
    assert serving.output_names == ["n_clusters"]
    np.testing.assert_array_equal(serving.predict(peaks, verbose=0), predicted)
    assert serving_counter(serving) is serving


@pytest.mark.parametrize(
    "cfg", [TINY_CLUSTER_COUNTER, TINY_PER_BIN_COUNTER], ids=["total", "per_bin"]
)
def test_a_folded_calibration_maps_the_count(cfg: ClusterCounterModelConfig) -> None:
    peaks, _ = binned_peaks(4)
    model = serving_counter(build_cluster_counter(cfg, n_bins=N_BINS, n_channels=N_CHANNELS))
    before = model.predict(peaks, verbose=0)

    fold_calibration(model, 1.25, -5.0)

    np.testing.assert_allclose(model.predict(peaks, verbose=0), 1.25 * before - 5.0, rtol=1e-5)


def test_sum_pooling_sums_over_time() -> None:
    values = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(SumPooling1D()(values)), values.sum(1))


def test_same_seed_gives_same_weights() -> None:
    cfg = dataclasses.replace(PARAMS.peak_finder, lstm_units=(8, 4), dense_units=(6,))
    assert_same_weights(build_peak_finder(cfg, seed=3), build_peak_finder(cfg, seed=3))
    assert any_weights_differ(build_peak_finder(cfg, seed=3), build_peak_finder(cfg, seed=4))
    counter_a = build_cluster_counter(
        TINY_CLUSTER_COUNTER, n_bins=N_BINS, n_channels=N_CHANNELS, seed=3
    )
    counter_b = build_cluster_counter(
        TINY_CLUSTER_COUNTER, n_bins=N_BINS, n_channels=N_CHANNELS, seed=3
    )
    assert_same_weights(counter_a, counter_b)


def test_peak_finder_overfits_one_batch() -> None:
    windows, labels = peak_windows(64)
    model = build_peak_finder(TINY_PEAK_FINDER, window_length=WINDOW_LENGTH)
    for _ in range(200):
        model.train_on_batch(windows, labels)
    metrics = model.evaluate(windows, labels, verbose=0, return_dict=True)
    assert metrics["accuracy"] >= 0.95


def test_cluster_counter_overfits_one_batch() -> None:
    peaks, counts = binned_peaks(32)
    model = build_cluster_counter(TINY_CLUSTER_COUNTER, n_bins=N_BINS, n_channels=N_CHANNELS)
    initial_mse = model.evaluate(peaks, counts, verbose=0, return_dict=True)["loss"]
    for _ in range(150):
        model.train_on_batch(peaks, counts)
    final_mse = model.evaluate(peaks, counts, verbose=0, return_dict=True)["loss"]
    assert final_mse < initial_mse / 10


@pytest.fixture(params=["peak_finder", "cluster_counter", "per_bin_counter"])
def trained_model(request: pytest.FixtureRequest) -> tuple[keras.Model, np.ndarray]:
    """A model after a few training steps, as it is saved and served, and inputs
    ``(n_examples, ...)`` for it."""
    targets: np.ndarray | list[np.ndarray]
    if request.param == "peak_finder":
        inputs, targets = peak_windows(16)
        model = build_peak_finder(TINY_PEAK_FINDER, window_length=WINDOW_LENGTH)
    elif request.param == "cluster_counter":
        inputs, targets = binned_peaks(16)
        model = build_cluster_counter(TINY_CLUSTER_COUNTER, n_bins=N_BINS, n_channels=N_CHANNELS)
    else:
        inputs, counts = binned_peaks(16)
        targets = [counts, coarsen_bins(inputs[:, :, 0].astype(np.int64), N_BINS // 4)]
        model = build_cluster_counter(TINY_PER_BIN_COUNTER, n_bins=N_BINS, n_channels=N_CHANNELS)
    for _ in range(3):
        model.train_on_batch(inputs, targets)
    return serving_counter(model) if request.param == "per_bin_counter" else model, inputs


def test_onnx_export_is_checked_named_and_agrees(
    trained_model: tuple[keras.Model, np.ndarray], tmp_path: Path
) -> None:
    model, inputs = trained_model
    metadata = {"model": model.name, "window_length": "15"}
    path = export_onnx(model, tmp_path / "model.onnx", PARAMS.register.opset, metadata=metadata)

    assert path == tmp_path / "model.onnx"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert {prop.key: prop.value for prop in proto.metadata_props} == metadata
    assert {op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")} == {
        PARAMS.register.opset
    }
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [model.inputs[0].name]
    assert [o.name for o in session.get_outputs()] == model.output_names
    assert session.get_inputs()[0].shape == ["batch", *model.input_shape[1:]]
    assert (
        onnx_parity(model, path, inputs, atol=PARAMS.register.parity_atol)
        <= PARAMS.register.parity_atol
    )


def test_onnx_export_after_keras_round_trip(
    trained_model: tuple[keras.Model, np.ndarray], tmp_path: Path
) -> None:
    model, inputs = trained_model
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")

    path = export_onnx(loaded, tmp_path / "model.onnx", PARAMS.register.opset)

    assert (
        onnx_parity(loaded, path, inputs, atol=PARAMS.register.parity_atol)
        <= PARAMS.register.parity_atol
    )
    assert (
        onnx_parity(model, path, inputs, atol=PARAMS.register.parity_atol)
        <= PARAMS.register.parity_atol
    )


def test_onnx_parity_fails_when_the_graph_is_stale(tmp_path: Path) -> None:
    inputs, _ = binned_peaks(4)
    model = build_cluster_counter(TINY_CLUSTER_COUNTER, n_bins=N_BINS, n_channels=N_CHANNELS)
    path = export_onnx(model, tmp_path / "model.onnx", PARAMS.register.opset)
    model.get_layer("n_clusters").bias.assign([1.0])

    with pytest.raises(DndxError, match="differs from Keras model 'cluster_counter'"):
        onnx_parity(model, path, inputs, ATOL)


def test_export_refuses_a_model_with_two_outputs(tmp_path: Path) -> None:
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, [keras.layers.Dense(1)(inputs), keras.layers.Dense(2)(inputs)])

    with pytest.raises(DndxError, match="expected one input and one output"):
        export_onnx(model, tmp_path / "model.onnx", PARAMS.register.opset)
    assert not (tmp_path / "model.onnx").exists()


def test_export_gives_no_numpy_warning_a_user_cannot_act_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tf2onnx defines ``np.object`` once per process, probing it first: undo that,
    # so that this export probes again whatever ran before.
    monkeypatch.delattr(np, "object", raising=False)
    model = build_cluster_counter(TINY_CLUSTER_COUNTER, N_BINS, N_CHANNELS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(model, tmp_path / "model.onnx", PARAMS.register.opset)
    assert [str(w.message) for w in caught if "np.object" in str(w.message)] == []
