"""CoreML ``.mlmodel`` files are named as CoreML models, never as damaged ONNX: kraken's real
``blla.mlmodel`` and small CoreML messages built here from protobuf wire bytes."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the ONNX reader is the one that meets these files")

from equivalence.files.coreml.model import read_coreml
from equivalence.files.coreml.wire import WireError, top_fields
from tests.coreml_wire import coremltools_python, floats, message
from tests.field_packages import package_file
from tests.file_helpers import leftovers, run_cli

pytestmark = pytest.mark.cpu


KRAKEN = ("kraken==7.1.1", "kraken/blla.mlmodel")
# kraken's four biDirectionalLSTM layers: name -> (inputVectorSize, outputVectorSize)
KRAKEN_LSTMS = {"L_10": (256, 32), "L_11_transposed": (64, 32), "L_14_transposed": (32, 32),
                "L_15": (64, 32)}


def test_kraken_mlmodel_lists_four_bidirectional_lstms(capsys):
    path = package_file(*KRAKEN)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0, err
    assert "4 LSTM(s)" in out and "damaged" not in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:2] in
            ("L_", )}
    for name, (size_in, units) in KRAKEN_LSTMS.items():
        cell, layers, directions, i, h = rows[name][2:7]
        assert (cell, layers, directions, i, h) == ("LSTM", "1", "2", str(size_in),
                                                    str(units)), rows[name]
    assert "biDirectionalLSTM layer ('Gn_9' -> 'L_10')" in out
    assert "cellClipThreshold 50000 not carried" in out


def test_kraken_lstm_converts_to_torch_and_verifies(tmp_path, capsys):
    path = package_file(*KRAKEN)
    output = tmp_path / "l14.pt"
    code, out, err = run_cli(capsys, "convert", path, "--to", "torch", "--layer",
                             "L_14_transposed", "-o", output, "--verify")
    assert code == 0, err
    assert "verify: PASSED" in out and output.exists()


@pytest.mark.parametrize(("fields", "kind"), [
    (((1, 4), (2, b""), (500, message((1, b"")))), "neuralNetwork"),
    (((1, 7), (202, b"")), "pipeline"),
])
def test_small_coreml_messages_are_named(tmp_path, capsys, fields, kind):
    path = tmp_path / "m.mlmodel"
    path.write_bytes(message(*fields))
    code, _, err = run_cli(capsys, "inspect", path)
    assert code == 2 and f"a CoreML model (specification version {fields[0][1]}, {kind})" in err


def test_damaged_mlmodel_is_named_a_damaged_coreml_file_not_onnx(tmp_path, capsys):
    path = tmp_path / "cut.mlmodel"
    path.write_bytes(message((1, 4), (500, b"x" * 40))[:-10])  # field 500 runs past the end
    code, _, err = run_cli(capsys, "inspect", path)
    assert code == 2 and "not a well-formed CoreML model (truncated or damaged" in err, err
    assert "ONNX" not in err and "specification version" not in err


@pytest.mark.parametrize("data", [b"\x08" + b"\xff" * 11, b"\x00\x01", b"\x0b", b"\x12\x05ab"])
def test_the_wire_reader_refuses_malformed_bytes(data):
    with pytest.raises(WireError):
        top_fields(data)


# ---------------------------------------------------------------- against coremltools' own parser

# Run by an interpreter that has coremltools (it ships CoreML's proto modules): every LSTM
# layer's weight arrays as parsed by protobuf itself, saved as .npz.
DUMP = """
import sys, numpy as np
from coremltools.proto import Model_pb2
model = Model_pb2.Model()
model.ParseFromString(open(sys.argv[1], "rb").read())
out = {}
for layer in model.neuralNetwork.layers:
    kind = layer.WhichOneof("layer")
    if kind not in ("uniDirectionalLSTM", "biDirectionalLSTM"):
        continue
    params = getattr(layer, kind)
    sets = params.weightParams if kind == "biDirectionalLSTM" else [params.weightParams]
    for d, weights in enumerate(sets):
        for field, value in weights.ListFields():
            out[f"{layer.name}/{d}/{field.name}"] = np.array(value.floatValue, np.float32)
np.savez(sys.argv[2], **out)
"""
# Our ONNX-layout blocks (i o f c) and the CoreML fields each one comes from.
BLOCKS = {"W": ("inputGateWeightMatrix", "outputGateWeightMatrix", "forgetGateWeightMatrix",
                "blockInputWeightMatrix"),
          "R": ("inputGateRecursionMatrix", "outputGateRecursionMatrix",
                "forgetGateRecursionMatrix", "blockInputRecursionMatrix"),
          "B": ("inputGateBiasVector", "outputGateBiasVector", "forgetGateBiasVector",
                "blockInputBiasVector")}


def test_kraken_weights_equal_coremltools_parse(tmp_path):
    path = package_file(*KRAKEN)
    dumped = tmp_path / "coremltools.npz"
    done = subprocess.run([coremltools_python(), "-c", DUMP, str(path), str(dumped)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = dict(np.load(dumped))
    found = {f.name: f for f in read_coreml(path)}
    assert set(found) == set(KRAKEN_LSTMS)
    compared = 0
    for name, lstm in found.items():
        units = KRAKEN_LSTMS[name][1]
        for d in range(2):
            for key, fields in BLOCKS.items():
                ours = lstm.native[key][d]
                for k, field in enumerate(fields):
                    block = ours[k * units:(k + 1) * units]
                    assert np.array_equal(block.ravel(), theirs[f"{name}/{d}/{field}"]), \
                        (name, d, field)
                    compared += 1
            assert not lstm.native["B"][d][4 * units:].any()  # no recurrent bias in CoreML
    assert compared == 4 * 2 * 12 and len(theirs) == compared


# ---------------------------------------------------------------- small files built here

GATE_FIELDS = {"i": (1, 20, 40, 60), "f": (2, 21, 41, 61), "z": (3, 22, 42, None),
               "o": (4, 23, 43, 62)}
ACTIVATION_FIELDS = {"sigmoid": 40, "tanh": 30, "ReLU": 10, "linear": 5}


def weight_set(weights: dict[str, np.ndarray]) -> bytes:
    """LSTMWeightParams from {"W_i": (H, I), "R_i": (H, H), "b_i": (H,), "p_i": (H,) ...}."""
    parts = []
    for gate, numbers in GATE_FIELDS.items():
        for prefix, number in zip("WRbp", numbers, strict=True):
            if f"{prefix}_{gate}" in weights and number is not None:
                parts.append((number, floats(weights[f"{prefix}_{gate}"])))
    return message(*parts)


def random_weights(rng: np.random.Generator, size_in: int, units: int) -> dict[str, np.ndarray]:
    out = {}
    for gate in "ifzo":
        out[f"W_{gate}"] = rng.normal(0, 0.5, (units, size_in)).astype(np.float32)
        out[f"R_{gate}"] = rng.normal(0, 0.5, (units, units)).astype(np.float32)
        out[f"b_{gate}"] = rng.normal(0, 0.5, units).astype(np.float32)
        if gate != "z":
            out[f"p_{gate}"] = rng.normal(0, 0.5, units).astype(np.float32)
    return out


def lstm_model(layer: bytes, name: str = "lstm", kind: int = 420) -> bytes:
    network = message((1, message((1, name.encode()), (2, b"x"), (3, b"y"), (kind, layer))))
    return message((1, 4), (2, b""), (500, network))


def uni_layer(size_in: int, units: int, weights: bytes,
              activations: tuple[str, ...] = ("sigmoid", "tanh", "tanh"),
              **flags: int) -> bytes:
    numbers = {"sequenceOutput": 10, "hasBiasVectors": 20, "forgetBias": 30,
               "hasPeepholeVectors": 40, "coupledInputAndForgetGate": 50}
    params = message(*[(numbers[k], v) for k, v in flags.items()])
    acts = [(10, message((ACTIVATION_FIELDS[a], b""))) for a in activations]
    return message((1, size_in), (2, units), *acts, (15, params), (20, weights))


def coreml_equations(w: dict[str, np.ndarray], x: np.ndarray, forget_bias: bool
                     ) -> np.ndarray:
    """CoreML's LSTM as NeuralNetwork.proto's LSTMParams comment writes it, with
    [f, g, h] = [sigmoid, tanh, tanh], peepholes, and forgetBias (1 added to b_f); the
    [-50, 50] clip is written too. x is (T, I); returns y (T, H)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    units = w["b_i"].shape[0]

    def f(v: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-v))

    def clip(v: np.ndarray) -> np.ndarray:
        return np.clip(v, -50.0, 50.0)

    b_f = w["b_f"] + (1.0 if forget_bias else 0.0)
    y, c = np.zeros(units), np.zeros(units)
    out = []
    for x_t in x.astype(np.float64):
        i = f(clip(w["W_i"] @ x_t + w["R_i"] @ y + w["p_i"] * c + w["b_i"]))
        f_t = f(clip(w["W_f"] @ x_t + w["R_f"] @ y + w["p_f"] * c + b_f))
        z = np.tanh(clip(w["W_z"] @ x_t + w["R_z"] @ y + w["b_z"]))
        c = c * f_t + i * z
        o = f(clip(w["W_o"] @ x_t + w["R_o"] @ y + w["p_o"] * c + w["b_o"]))
        y = np.tanh(c) * o
        out.append(y)
    return np.stack(out)


def test_read_weights_compute_coremls_documented_equations(tmp_path):
    from equivalence import reference

    rng = np.random.default_rng(7)
    weights = random_weights(rng, 3, 4)
    path = tmp_path / "peep.mlmodel"
    path.write_bytes(lstm_model(uni_layer(3, 4, weight_set(weights), sequenceOutput=1,
                                          hasBiasVectors=1, forgetBias=1,
                                          hasPeepholeVectors=1)))
    (found,) = read_coreml(path)
    canonical = found.canonical()
    assert canonical.spec.peepholes and canonical.spec.directions == 1
    x = rng.normal(size=(1, 6, 3))
    ours = reference.lstm(canonical, x).outputs[0]
    np.testing.assert_allclose(ours, coreml_equations(weights, x[0], True), atol=1e-12)


def test_a_swapped_gate_is_caught_by_the_equations(tmp_path):
    """The check above can fail: input and forget gate weights swapped in the file."""
    from equivalence import reference

    rng = np.random.default_rng(8)
    weights = random_weights(rng, 3, 4)
    swapped = {**weights, "W_i": weights["W_f"], "W_f": weights["W_i"]}
    path = tmp_path / "swapped.mlmodel"
    path.write_bytes(lstm_model(uni_layer(3, 4, weight_set(swapped), hasBiasVectors=1,
                                          hasPeepholeVectors=1)))
    x = rng.normal(size=(1, 6, 3))
    ours = reference.lstm(read_coreml(path)[0].canonical(), x).outputs[0]
    assert np.abs(ours - coreml_equations(weights, x[0], False)).max() > 1e-3


def test_other_activations_are_refused_by_name(tmp_path, capsys):
    rng = np.random.default_rng(9)
    path = tmp_path / "relu.mlmodel"
    path.write_bytes(lstm_model(uni_layer(3, 4, weight_set(random_weights(rng, 3, 4)),
                                          ("sigmoid", "ReLU", "ReLU"), hasBiasVectors=1)))
    code, out, err = run_cli(capsys, "inspect", path)  # listed, with why it is not read
    assert "lstm" in out and "activations ['sigmoid', 'ReLU', 'ReLU']" in err, out + err
    output = tmp_path / "o.pt"
    code, _, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", output)
    assert code == 2 and "activations ['sigmoid', 'ReLU', 'ReLU']" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relu.mlmodel"]


def hostile_files() -> dict[str, bytes]:
    rng = np.random.default_rng(10)
    good = lstm_model(uni_layer(3, 4, weight_set(random_weights(rng, 3, 4)), hasBiasVectors=1))
    huge = uni_layer(10**9, 10**9, weight_set(random_weights(rng, 3, 4)), hasBiasVectors=1)
    short = random_weights(rng, 3, 4)
    short["W_o"] = short["W_o"][:, :2]
    return {
        "truncated": good[: len(good) - 7],
        "declared size beyond the bytes": lstm_model(huge),
        "a matrix one column short": lstm_model(uni_layer(3, 4, weight_set(short),
                                                          hasBiasVectors=1)),
        "a layer field past its message": lstm_model(b"\x0a\xff\x01"),
        "no LSTM layer": message((1, 4), (500, message((1, message((1, b"conv")))))),
    }


@pytest.mark.parametrize("case", sorted(hostile_files()))
def test_hostile_coreml_files_exit_2_bounded_and_nothing_written(tmp_path, capsys, case):
    path = tmp_path / "m.mlmodel"
    data = hostile_files()[case]
    path.write_bytes(data)
    started = time.monotonic()
    for argv in (("inspect", path), ("convert", path, "--to", "onnx", "-o", tmp_path / "o.onnx")):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, (case, out, err)
        assert len(out) + len(err) < 20_000 and "Traceback" not in err
    assert time.monotonic() - started < 10
    assert path.read_bytes() == data and leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlmodel"]


@pytest.mark.parametrize(("model_type", "kind"), [(403, "neuralNetworkClassifier"),
                                                  (303, "neuralNetworkRegressor")])
def test_classifier_and_regressor_networks_are_read(tmp_path, model_type, kind):
    rng = np.random.default_rng(11)
    layer = uni_layer(3, 4, weight_set(random_weights(rng, 3, 4)), hasBiasVectors=1)
    network = message((1, message((1, b"lstm"), (420, layer))))
    path = tmp_path / "m.mlmodel"
    path.write_bytes(message((1, 4), (model_type, network)))
    (found,) = read_coreml(path)
    assert kind in found.kind and found.canonical().spec.units == 4


def test_float16_weights_are_read_as_their_values(tmp_path):
    rng = np.random.default_rng(12)
    weights = random_weights(rng, 3, 4)
    parts = []
    for gate, numbers in GATE_FIELDS.items():
        for prefix, number in zip("WRb", numbers[:3], strict=True):
            half = weights[f"{prefix}_{gate}"].astype("<f2")
            weights[f"{prefix}_{gate}"] = half.astype(np.float32)
            parts.append((number, message((2, half.tobytes()))))
    path = tmp_path / "half.mlmodel"
    path.write_bytes(lstm_model(uni_layer(3, 4, message(*parts), hasBiasVectors=1)))
    (found,) = read_coreml(path)
    units = 4
    assert np.array_equal(found.native["W"][0][2 * units:3 * units], weights["W_f"])


def more_hostile_files() -> dict[str, bytes]:
    rng = np.random.default_rng(13)
    one = weight_set(random_weights(rng, 3, 4))
    acts = [(10, message((ACTIVATION_FIELDS[a], b""))) for a in ("sigmoid", "tanh", "tanh")]
    bi_one_set = message((1, 3), (2, 4), *acts, *[(11, a) for _, a in acts],
                         (15, message((20, 1))), (20, one))
    layer = uni_layer(3, 4, one, hasBiasVectors=1)
    two_types = message((1, message((1, b"lstm"), (420, layer), (100, b""))))
    return {"a biDirectionalLSTM with one weightParams": lstm_model(bi_one_set, kind=430),
            "a layer with two layer types": message((1, 4), (500, two_types)),
            "two model types": message((1, 4), (500, message()), (403, message()))}


@pytest.mark.parametrize("case", sorted(more_hostile_files()))
def test_ambiguous_coreml_files_are_refused(tmp_path, capsys, case):
    path = tmp_path / "m.mlmodel"
    path.write_bytes(more_hostile_files()[case])
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 2 and "CoreML" in err and "Traceback" not in err, (case, out, err)


def test_too_many_tiny_fields_are_refused_in_bounded_time(tmp_path, capsys):
    layer = message((1, b"\x50\x01" * 3))  # a layer of three isUpdatable fields
    path = tmp_path / "many.mlmodel"
    path.write_bytes(message((1, 4), (500, layer * 200_000)))
    started = time.monotonic()
    code, _, err = run_cli(capsys, "inspect", path)
    assert code == 2 and "protobuf fields walked" in err, err
    assert time.monotonic() - started < 10


def test_bidirectional_layer_follows_coremls_documented_output_order(tmp_path):
    """BiDirectionalLSTMLayerParams: output t is [yf_t, yb_(T+1-t)], yb_k the backward LSTM's
    output after x_T ... x_(T+1-k); so the second half is the backward run, reversed back."""
    from equivalence import reference

    rng = np.random.default_rng(14)
    forward, backward = random_weights(rng, 3, 4), random_weights(rng, 3, 4)
    for weights in (forward, backward):
        for gate in "ifo":
            weights[f"p_{gate}"] = np.zeros(4, np.float32)  # no peepholes in this layer
    acts = [(10, message((ACTIVATION_FIELDS[a], b""))) for a in ("sigmoid", "tanh", "tanh")]
    layer = message((1, 3), (2, 4), *acts, *[(11, a) for _, a in acts],
                    (15, message((10, 1), (20, 1))), (20, weight_set(forward)),
                    (20, weight_set(backward)))
    path = tmp_path / "bi.mlmodel"
    path.write_bytes(lstm_model(layer, kind=430))
    (found,) = read_coreml(path)
    x = rng.normal(size=(1, 5, 3))
    ours = reference.lstm(found.canonical(), x).outputs[0]
    np.testing.assert_allclose(ours[:, :4], coreml_equations(forward, x[0], False), atol=1e-12)
    np.testing.assert_allclose(ours[:, 4:], coreml_equations(backward, x[0][::-1], False)[::-1],
                               atol=1e-12)
