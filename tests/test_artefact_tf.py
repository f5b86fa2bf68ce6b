"""Compare sides for TF SavedModel directories and LiteRT flatbuffers, on real exports.

Every artefact is built once per module by the framework that deploys it: a Keras 3
``LSTM(return_sequences=True, return_state=True)`` exported with ``model.export`` (to a
SavedModel, and to LiteRT), a ``tf.saved_model.save`` of a module whose state outputs
have no telling names, and a tf_keras LSTM through ``TFLiteConverter`` (the one
conversion in TF 2.21 that emits a fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.cpu

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from equivalence.artefacts.litert import litert_side  # noqa: E402
from equivalence.artefacts.savedmodel import savedmodel_side  # noqa: E402
from equivalence.artefacts.side import Feed, Refused  # noqa: E402
from equivalence.convert import to_canonical  # noqa: E402
from equivalence.errors import ConversionError  # noqa: E402

BATCH, STEPS, INPUT, UNITS = 2, 5, 3, 4
CLOSE = 1e-5


def _keras3() -> Any:
    import keras

    if keras.backend.backend() != "tensorflow" or not keras.__version__.startswith("3"):
        pytest.skip(f"needs Keras 3 on TensorFlow, found {keras.__version__} on "
                    f"{keras.backend.backend()}")
    return keras


def _random_bias(layer: Any, seed: int) -> None:
    # the default zero bias would let a swapped bias slot pass the weight checks
    kernel, recurrent, bias = layer.get_weights()
    rng = np.random.default_rng(seed)
    layer.set_weights([kernel, recurrent, rng.standard_normal(bias.shape).astype(np.float32)])


@pytest.fixture(scope="module")
def keras_model() -> Any:
    keras = _keras3()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, INPUT), name="seq")
    lstm = keras.layers.LSTM(UNITS, return_sequences=True, return_state=True)
    model = keras.Model(inputs, lstm(inputs))
    _random_bias(lstm, 1)
    return model


@pytest.fixture(scope="module")
def exported(keras_model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import tensorflow as tf

    root = tmp_path_factory.mktemp("tf_artefacts")
    paths = {"savedmodel": root / "savedmodel", "litert": root / "fixed.tflite",
             "litert_default": root / "default.tflite", "module": root / "module"}
    keras_model.export(paths["savedmodel"], verbose=False)
    keras_model.export(paths["litert"], format="litert", verbose=False, input_signature=[
        tf.TensorSpec((BATCH, STEPS, INPUT), tf.float32, name="seq")])
    keras_model.export(paths["litert_default"], format="litert", verbose=False)
    module = tf.Module()
    module.model = keras_model

    @tf.function(input_signature=[tf.TensorSpec((None, STEPS, INPUT), tf.float32)])
    def serve(x: Any) -> dict[str, Any]:
        y, first, second = keras_model(x)
        return {"sequence": y, "state_a": first, "state_b": second}

    tf.saved_model.save(module, str(paths["module"]), signatures={"serving_default": serve})
    return paths


@pytest.fixture(scope="module")
def fused(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tf_keras LSTM converted to a fused UNIDIRECTIONAL_SEQUENCE_LSTM flatbuffer."""
    tf_keras = pytest.importorskip("tf_keras")
    import tensorflow as tf

    tf_keras.utils.set_random_seed(2)
    inputs = tf_keras.Input((STEPS, INPUT), batch_size=BATCH, name="seq")
    lstm = tf_keras.layers.LSTM(UNITS, return_sequences=True)
    model = tf_keras.Model(inputs, lstm(inputs))
    _random_bias(lstm, 3)
    path = tmp_path_factory.mktemp("tf_fused") / "fused.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return model, path


@pytest.fixture(scope="module")
def with_states(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A Keras 3 model taking its initial states as inputs, exported to a SavedModel."""
    keras = _keras3()
    keras.utils.set_random_seed(4)
    x = keras.Input((None, INPUT), name="x")
    h0, c0 = keras.Input((UNITS,), name="h0"), keras.Input((UNITS,), name="c0")
    lstm = keras.layers.LSTM(UNITS, return_sequences=True, return_state=True)
    model = keras.Model([x, h0, c0], lstm(x, initial_state=[h0, c0]))
    path = tmp_path_factory.mktemp("tf_states") / "savedmodel"
    model.export(path, verbose=False)
    return model, path


@pytest.fixture(scope="module")
def fused_bidirectional(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tf_keras Bidirectional LSTM: two fused ops, the backward one behind a REVERSE_V2."""
    tf_keras = pytest.importorskip("tf_keras")
    import tensorflow as tf

    tf_keras.utils.set_random_seed(5)
    inputs = tf_keras.Input((STEPS, INPUT), batch_size=BATCH, name="seq")
    layer = tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(UNITS, return_sequences=True))
    model = tf_keras.Model(inputs, layer(inputs))
    path = tmp_path_factory.mktemp("tf_fused_bi") / "bidirectional.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return model, path


def _feed(batch: int = BATCH, steps: int = STEPS, seed: int = 0) -> Feed:
    rng = np.random.default_rng(seed)
    return Feed(rng.standard_normal((batch, steps, INPUT)).astype(np.float32))


def _expected(model: Any, feed: Feed) -> list[np.ndarray]:
    return [np.asarray(a) for a in model(feed.x)]


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


@pytest.mark.parametrize("batch", [BATCH, 3])
def test_savedmodel_side_runs_as_the_keras_model(keras_model, exported, batch):
    side = savedmodel_side(exported["savedmodel"])
    assert side.kind == "TF SavedModel" and "serving_default" in side.label
    assert side.names == {"x": "seq", "y": "output_0", "h": "output_1", "c": "output_2"}
    assert side.takes == frozenset() and side.returns == {"y", "h", "c"}
    assert (side.fixed_batch, side.fixed_steps) == (None, STEPS)  # Input((T, I)) fixes T
    assert (side.shape.input_size, side.shape.units, side.shape.state_rows) == (INPUT, UNITS, 1)
    feed = _feed(batch)
    got, (y, h, c) = side.run(feed), _expected(keras_model, feed)
    assert got.h.shape == (1, batch, UNITS)  # Keras's (B, H) as the Feed's (rows, B, H)
    assert max(_diff(got.y, y), _diff(got.h[0], h), _diff(got.c[0], c)) < CLOSE


def test_savedmodel_weights_are_the_layers(keras_model, exported):
    side = savedmodel_side(exported["savedmodel"])
    expected = to_canonical(keras_model.layers[1].get_weights(), "keras")
    assert side.weights is not None, side.notes
    for name, array in expected.cells[0][0].arrays().items():
        np.testing.assert_array_equal(side.weights.cells[0][0].arrays()[name], array)


def test_savedmodel_other_steps_are_refused_not_wrong(exported):
    # TF runs a 7-step feed through the 5-step signature and returns 5 steps: refused
    side = savedmodel_side(exported["savedmodel"])
    with pytest.raises(Refused, match="7 steps"):
        side.run(_feed(steps=7))


def test_a_map_swapping_h_and_c_returns_swapped_states(keras_model, exported):
    # must fail: the side does what --map says, so the states come back swapped
    side = savedmodel_side(exported["savedmodel"], mapping={"h": "output_2", "c": "output_1"})
    feed = _feed()
    got, (_, h, c) = side.run(feed), _expected(keras_model, feed)
    assert _diff(got.h[0], c) < CLOSE and _diff(got.c[0], h) < CLOSE
    assert _diff(got.h[0], h) > 1e-3


def test_states_without_telling_names_need_a_map(keras_model, exported):
    with pytest.raises(ConversionError, match="--map-a/--map-b"):
        savedmodel_side(exported["module"])
    side = savedmodel_side(exported["module"], mapping={"h": "state_a", "c": "state_b"})
    assert side.names["y"] == "sequence"
    feed = _feed(3)
    got, (y, h, c) = side.run(feed), _expected(keras_model, feed)
    assert max(_diff(got.y, y), _diff(got.h[0], h), _diff(got.c[0], c)) < CLOSE


def test_bad_savedmodel_paths_and_maps_are_refused_by_name(exported, tmp_path):
    with pytest.raises(ConversionError, match=r"no saved_model\.pb"):
        savedmodel_side(tmp_path)
    with pytest.raises(ConversionError, match="'nope' not found"):
        savedmodel_side(exported["savedmodel"], signature="nope")
    with pytest.raises(ConversionError, match="no output named 'h_n'"):
        savedmodel_side(exported["savedmodel"], mapping={"h": "h_n"})


def test_state_inputs_are_found_by_name_and_fed(with_states):
    model, path = with_states
    side = savedmodel_side(path)
    assert side.takes == {"h0", "c0"} and (side.names["h0"], side.names["c0"]) == ("h0", "c0")
    assert (side.fixed_batch, side.fixed_steps) == (None, None)
    rng = np.random.default_rng(6)
    h0, c0 = (rng.standard_normal((1, 3, UNITS)).astype(np.float32) for _ in range(2))
    feed = Feed(_feed(3, 7).x, h0, c0)
    got, (y, h, c) = side.run(feed), [np.asarray(a) for a in model([feed.x, h0[0], c0[0]])]
    assert max(_diff(got.y, y), _diff(got.h[0], h), _diff(got.c[0], c)) < CLOSE
    zeros = side.run(Feed(feed.x))  # no states fed: zeros, as the Keras layer's default
    y0 = np.asarray(model([feed.x, 0 * h0[0], 0 * c0[0]])[0])
    assert _diff(zeros.y, y0) < CLOSE
    with pytest.raises(Refused, match="one state row"):
        side.run(Feed(feed.x, np.concatenate([h0, h0]), np.concatenate([c0, c0])))


def test_litert_side_runs_as_the_keras_model(keras_model, exported):
    side = litert_side(exported["litert"])
    assert side.kind == "LiteRT flatbuffer"
    assert side.names == {"x": "seq", "y": "output_0", "h": "output_1", "c": "output_2"}
    assert (side.fixed_batch, side.fixed_steps) == (BATCH, STEPS)
    feed = _feed()
    got, (y, h, c) = side.run(feed), _expected(keras_model, feed)
    assert max(_diff(got.y, y), _diff(got.h[0], h), _diff(got.c[0], c)) < CLOSE
    # Keras 3 converts to a WHILE loop, no fused op: no weights, and the note says so
    assert side.weights is None and any("no fused" in n for n in side.notes)


@pytest.mark.parametrize(("batch", "steps", "axis"), [(3, STEPS, "axis 0"), (BATCH, 7, "axis 1"),
                                                      (BATCH, 1, "axis 1")])
def test_litert_other_shapes_are_refused_not_wrong(exported, batch, steps, axis):
    # the interpreter's own (non-strict) resize would run 7 steps as 5: refused first
    side = litert_side(exported["litert"])
    with pytest.raises(Refused, match=axis):
        side.run(_feed(batch, steps))


def test_keras_default_litert_export_needs_flex_ops_and_is_refused(exported):
    # model.export(format="litert") with a dynamic batch emits Flex TensorList ops
    side = litert_side(exported["litert_default"])
    assert any("cannot prepare" in n for n in side.notes) and side.weights is None
    with pytest.raises(Refused, match="Select TensorFlow op"):
        side.run(_feed())


def test_fused_op_weights_are_the_layers(fused):
    model, path = fused
    side = litert_side(path)
    assert side.returns == {"y"} and (side.fixed_batch, side.fixed_steps) == (BATCH, STEPS)
    feed = _feed()
    assert _diff(side.run(feed).y, np.asarray(model(feed.x))) < CLOSE
    assert side.weights is not None, side.notes
    expected = to_canonical(model.get_weights(), "keras")
    for name, array in expected.cells[0][0].arrays().items():
        np.testing.assert_array_equal(side.weights.cells[0][0].arrays()[name], array)
    assert side.weights.spec.cell_clip == 10.0  # the converter's fused op clips c at 10


def test_fused_bidirectional_pairs_are_read_forward_first(fused_bidirectional):
    model, path = fused_bidirectional
    side = litert_side(path)
    feed = _feed()
    assert _diff(side.run(feed).y, np.asarray(model(feed.x))) < CLOSE
    assert side.weights is not None and side.weights.spec.directions == 2, side.notes
    expected = to_canonical(model.get_weights(), "keras", directions=2)
    for direction in (0, 1):
        want, got = expected.cells[0][direction], side.weights.cells[0][direction]
        for name, array in want.arrays().items():
            np.testing.assert_array_equal(got.arrays()[name], array)


def test_a_gate_swap_in_the_flatbuffer_shows_in_the_weights(fused, tmp_path):
    # must fail: swap the input and forget gates' input weights in the file's buffers
    model, path = fused
    swapped = tmp_path / "swapped.tflite"
    swapped.write_bytes(_swap_inputs(path.read_bytes(), 1, 2))
    side = litert_side(swapped)
    assert side.weights is not None, side.notes
    expected = to_canonical(model.get_weights(), "keras").cells[0][0].w_input
    got = side.weights.cells[0][0].w_input
    assert not np.allclose(got, expected)
    np.testing.assert_array_equal(got[:UNITS], expected[UNITS:2 * UNITS])
    feed = _feed()
    assert _diff(side.run(feed).y, np.asarray(model(feed.x))) > 1e-3


def _swap_inputs(content: bytes, first: int, second: int) -> bytes:
    """The flatbuffer with the constant data of the fused op's two input slots swapped."""
    from equivalence.artefacts.litert import _schema

    schema = _schema()
    model = schema.Model.GetRootAsModel(content, 0)
    graph = model.Subgraphs(0)
    op = graph.Operators(0)
    spans = []
    for slot in (first, second):
        buffer = model.Buffers(graph.Tensors(op.Inputs(slot)).Buffer())
        start = buffer._tab.Vector(buffer._tab.Offset(4))  # the data vector's first byte
        spans.append((start, start + buffer.DataLength()))
    (a, b), (c, d) = spans
    data = bytearray(content)
    data[a:b], data[c:d] = content[c:d], content[a:b]
    return bytes(data)


def test_roles_by_names_then_shapes_then_position():
    from equivalence.artefacts.ports import Port, assign_inputs, assign_outputs

    def names(roles: dict) -> dict:
        return {role: port.name for role, port in roles.items()}

    # tf_keras names outputs by layer: lstm, lstm_1, lstm_2 is Keras's [y, h, c]
    keras2 = [Port("lstm_2", (2, 4)), Port("lstm", (2, 5, 4)), Port("lstm_1", (2, 4))]
    assert names(assign_outputs(keras2, {})) == {"y": "lstm", "h": "lstm_1", "c": "lstm_2"}
    # names beat positions: state_c first and state_h second are still c and h
    named = [Port("y", (None, None, 4)), Port("state_c_0", (None, 4)), Port("state_h_1", (None, 4))]
    assert names(assign_outputs(named, {})) == {"y": "y", "h": "state_h_1", "c": "state_c_0"}
    # inputs: the int vector is lengths, the (B, T, I) one x, the states by name
    ins = [Port("c0", (None, 4)), Port("seq_lengths", (None,), "int32"),
           Port("x", (None, None, 3)), Port("h0", (None, 4))]
    assert names(assign_inputs(ins, {})) == {"x": "x", "h0": "h0", "c0": "c0",
                                            "lengths": "seq_lengths"}
    # must fail: two (B, H) inputs with no telling names or positions
    with pytest.raises(ConversionError, match="--map-a/--map-b"):
        assign_inputs([Port("a", (None, 5, 3)), Port("s", (None, 4)), Port("t", (None, 4))], {})
    mapped = assign_inputs([Port("a", (None, 5, 3)), Port("s", (None, 4)), Port("t", (None, 4))],
                           {"h0": "t", "c0": "s"})
    assert names(mapped) == {"x": "a", "h0": "t", "c0": "s"}


def test_a_flatbuffer_without_a_signature_runs_by_its_tensors(keras_model, exported, tmp_path):
    # older converters wrote no SignatureDef: roles from tensor names, shapes and output index
    flatbuffers = pytest.importorskip("flatbuffers")
    from equivalence.artefacts.litert import _schema

    model = _schema().ModelT.InitFromPackedBuf(bytearray(exported["litert"].read_bytes()), 0)
    model.signatureDefs = None
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "unsigned.tflite"
    path.write_bytes(bytes(builder.Output()))
    side = litert_side(path)
    assert "signature" not in side.label and side.names["x"] == "serving_default_seq:0"
    feed = _feed()
    got, (y, h, c) = side.run(feed), _expected(keras_model, feed)
    assert max(_diff(got.y, y), _diff(got.h[0], h), _diff(got.c[0], c)) < CLOSE
    with pytest.raises(Refused, match="axis 1"):
        side.run(_feed(steps=7))
