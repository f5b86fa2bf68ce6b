"""CoreML ``gru`` layers: read as ONNX GRU nodes (``linear_before_reset=0``) and held to the
GRU equations CoreML documents in ``NeuralNetwork.proto``; what it cannot say is refused by
name. Files are built here from protobuf wire bytes, and (with coremltools at hand) by
coremltools' own ``NeuralNetworkBuilder.add_gru``."""

from __future__ import annotations

import struct
import subprocess

import numpy as np
import pytest

pytest.importorskip("onnx", reason="CoreML layers are read as ONNX nodes")

from equivalence import reference
from equivalence.files.coreml.model import read_coreml
from tests.coreml_wire import coremltools_python, floats, key, message
from tests.file_helpers import leftovers, run_cli

pytestmark = pytest.mark.cpu

# GRULayerParams field numbers (coremltools' NeuralNetwork.proto) per gate: W, R, b.
GATE_FIELDS = {"z": (30, 50, 70), "r": (31, 51, 71), "o": (32, 52, 72)}
ACTIVATION_FIELDS = {"sigmoid": 40, "tanh": 30, "ReLU": 10, "sigmoidHard": 41}
GRU_LAYER = 410


def fixed32(number: int, value: float) -> bytes:
    return key(number, 5) + struct.pack("<f", value)


def activation(name: str, alpha: float | None = None, beta: float | None = None) -> bytes:
    params = b"" if alpha is None else fixed32(1, alpha) + fixed32(2, beta or 0.0)
    return message((ACTIVATION_FIELDS[name], params))


def random_gru(rng: np.random.Generator, size_in: int, units: int) -> dict[str, np.ndarray]:
    out = {}
    for gate in "zro":
        out[f"W_{gate}"] = rng.normal(0, 0.6, (units, size_in)).astype(np.float32)
        out[f"R_{gate}"] = rng.normal(0, 0.6, (units, units)).astype(np.float32)
        out[f"b_{gate}"] = rng.normal(0, 0.6, units).astype(np.float32)
    return out


def gru_layer(size_in: int, units: int, weights: dict[str, np.ndarray],
              activations: tuple[bytes, bytes] | None = None, bias: bool = True,
              **flags: int) -> bytes:
    acts = activations or (activation("sigmoid"), activation("tanh"))
    parts: list[tuple[int, bytes | int]] = [(1, size_in), (2, units), (10, acts[0]),
                                            (10, acts[1]), (15, 1), (20, int(bias))]
    for gate, numbers in GATE_FIELDS.items():
        for prefix, number in zip("WRb", numbers, strict=True):
            if prefix != "b" or bias:
                parts.append((number, floats(weights[f"{prefix}_{gate}"])))
    numbers = {"reverseInput": 100}
    parts += [(numbers[k], v) for k, v in flags.items()]
    return message(*parts)


def network(*layers: tuple[str, int, bytes]) -> bytes:
    """A neuralNetwork Model of (name, layer-type field, params) layers, chained x -> y."""
    encoded = [(1, message((1, name.encode()), (2, b"x"), (3, b"y"), (kind, params)))
               for name, kind, params in layers]
    return message((1, 4), (2, b""), (500, message(*encoded)))


def coreml_gru(w: dict[str, np.ndarray], x: np.ndarray, f=None, g=np.tanh) -> np.ndarray:
    """CoreML's GRU as GRULayerParams' comment writes it, the [-50, 50] clip included:
    z, r = f(...), o = g(W_o x + R_o (h * r) + b_o), h = (1 - z) * o + z * h. x (T, I)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    f = f or (lambda v: 1 / (1 + np.exp(-v)))
    h = np.zeros(w["b_z"].shape[0])
    out = []
    for x_t in x.astype(np.float64):
        z = f(np.clip(w["W_z"] @ x_t + w["R_z"] @ h + w["b_z"], -50, 50))
        r = f(np.clip(w["W_r"] @ x_t + w["R_r"] @ h + w["b_r"], -50, 50))
        o = g(np.clip(w["W_o"] @ x_t + w["R_o"] @ (h * r) + w["b_o"], -50, 50))
        h = (1 - z) * o + z * h
        out.append(h)
    return np.stack(out)


def hard_sigmoid(alpha: float):
    return lambda v: np.clip(alpha * v + 0.5, 0.0, 1.0)


def ours(path, x: np.ndarray) -> np.ndarray:
    (found,) = read_coreml(path)
    return reference.run(found.canonical(), x[None]).outputs[0]


@pytest.mark.parametrize(("f_bytes", "g_name", "f_fn", "g_fn", "recurrent"), [
    (activation("sigmoid"), "tanh", None, np.tanh, "sigmoid"),
    (activation("sigmoidHard", 0.2, 0.5), "tanh", hard_sigmoid(0.2), np.tanh,
     "hard_sigmoid_tf_keras"),
    (activation("sigmoidHard", 1 / 6, 0.5), "sigmoid", hard_sigmoid(1 / 6),
     lambda v: 1 / (1 + np.exp(-v)), "hard_sigmoid_keras3"),
], ids=["sigmoid-tanh", "tf_keras-hard-sigmoid", "keras3-hard-sigmoid-g-sigmoid"])
def test_read_weights_compute_coremls_documented_gru(tmp_path, f_bytes, g_name, f_fn, g_fn,
                                                      recurrent):
    rng = np.random.default_rng(21)
    weights = random_gru(rng, 3, 4)
    path = tmp_path / "gru.mlmodel"
    path.write_bytes(network(("gru", GRU_LAYER,
                              gru_layer(3, 4, weights, (f_bytes, activation(g_name))))))
    (found,) = read_coreml(path)
    spec = found.canonical().spec
    assert (spec.cell, spec.reset_after, spec.directions) == ("gru", False, 1)
    assert (spec.recurrent_activation, spec.activation) == (recurrent, g_name)
    x = rng.normal(size=(7, 3))
    np.testing.assert_allclose(ours(path, x), coreml_gru(weights, x, f_fn, g_fn), atol=1e-12)


def test_a_gru_without_biases_reads_zero_biases(tmp_path):
    rng = np.random.default_rng(22)
    weights = random_gru(rng, 2, 3)
    path = tmp_path / "nobias.mlmodel"
    path.write_bytes(network(("gru", GRU_LAYER, gru_layer(2, 3, weights, bias=False))))
    unbiased = {k: (np.zeros_like(v) if k.startswith("b_") else v) for k, v in weights.items()}
    x = rng.normal(size=(5, 2))
    np.testing.assert_allclose(ours(path, x), coreml_gru(unbiased, x), atol=1e-12)


def test_the_check_can_fail_swapped_gates_and_the_other_variant(tmp_path):
    """Update and reset fields swapped in the file, or the reset applied after R_o (ONNX
    linear_before_reset=1): both are off CoreML's equations by far more than the 1e-12 above."""
    rng = np.random.default_rng(23)
    weights = random_gru(rng, 3, 4)
    swapped = {**weights, **{f"{p}_z": weights[f"{p}_r"] for p in "WRb"},
               **{f"{p}_r": weights[f"{p}_z"] for p in "WRb"}}
    path = tmp_path / "swapped.mlmodel"
    path.write_bytes(network(("gru", GRU_LAYER, gru_layer(3, 4, swapped))))
    x = rng.normal(size=(7, 3))
    assert np.abs(ours(path, x) - coreml_gru(weights, x)).max() > 1e-2
    path.write_bytes(network(("gru", GRU_LAYER, gru_layer(3, 4, weights))))
    (found,) = read_coreml(path)
    canonical = found.canonical()
    after = type(canonical)(canonical.spec.replace(reset_after=True), canonical.cells)
    other = reference.run(after, x[None]).outputs[0]
    assert np.abs(other - coreml_gru(weights, x)).max() > 1e-3


def test_inspect_lists_a_gru_and_convert_verifies_against_keras(tmp_path, capsys):
    rng = np.random.default_rng(24)
    path = tmp_path / "gru.mlmodel"
    path.write_bytes(network(("enc", GRU_LAYER, gru_layer(3, 4, random_gru(rng, 3, 4)))))
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0, err
    row = next(line.split() for line in out.splitlines() if line.startswith("enc"))
    assert row[2:8] == ["GRU", "(reset_after=False)", "1", "1", "3", "4"], out
    assert "linear_before_reset=0" in out and "gru layer" in out
    output = tmp_path / "enc.keras"
    code, out, err = run_cli(capsys, "convert", path, "--to", "keras", "-o", output, "--verify")
    assert code == 0, err
    assert "verify: PASSED" in out and output.exists()


def test_torch_refuses_coremls_reset_before_variant_by_name(tmp_path, capsys):
    rng = np.random.default_rng(25)
    path = tmp_path / "gru.mlmodel"
    path.write_bytes(network(("gru", GRU_LAYER, gru_layer(3, 4, random_gru(rng, 3, 4)))))
    code, _, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", tmp_path / "g.pt")
    assert code == 2 and "reset_after=False" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gru.mlmodel"]


def refused_layers() -> dict[str, tuple[bytes, str]]:
    rng = np.random.default_rng(26)
    weights = random_gru(rng, 3, 4)
    relu = (activation("sigmoid"), activation("ReLU"))
    unset = (activation("sigmoidHard"), activation("tanh"))
    return {
        "g ReLU": (gru_layer(3, 4, weights, relu), "g ReLU is not read"),
        "sigmoidHard without parameters": (gru_layer(3, 4, weights, unset),
                                           "sigmoidHard with alpha 0, beta 0"),
        "reverseInput": (gru_layer(3, 4, weights, reverseInput=1), "reverseInput is set"),
    }


@pytest.mark.parametrize("case", sorted(refused_layers()))
def test_what_the_canonical_form_cannot_say_is_refused_by_name(tmp_path, capsys, case):
    layer, reason = refused_layers()[case]
    path = tmp_path / "m.mlmodel"
    path.write_bytes(network(("gru", GRU_LAYER, layer)))
    code, out, err = run_cli(capsys, "inspect", path)  # listed, with why it is not read
    assert "gru" in out and reason in out + err, (out, err)
    code, _, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "o.onnx")
    assert code == 2 and reason in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlmodel"]


def hostile_files() -> dict[str, tuple[bytes, str]]:
    rng = np.random.default_rng(27)
    weights = random_gru(rng, 3, 4)
    short = {**weights, "R_o": weights["R_o"][:, :3]}
    lstm_like = message((1, 3), (2, 4))
    return {
        "a recursion matrix one column short": (
            network(("gru", GRU_LAYER, gru_layer(3, 4, short))),
            "expected shape (4, 4)"),
        "declared sizes beyond the bytes": (
            network(("gru", GRU_LAYER, gru_layer(10**9, 10**9, weights))), "CoreML"),
        "a GRU and an LSTM of one name": (
            network(("same", GRU_LAYER, gru_layer(3, 4, weights)), ("same", 420, lstm_like)),
            "1 LSTM, 1 GRU found, two layers named"),
        "one activation": (
            network(("gru", GRU_LAYER, message((1, 3), (2, 4), (10, activation("sigmoid"))))),
            "a GRU has two"),
    }


@pytest.mark.parametrize("case", sorted(hostile_files()))
def test_hostile_gru_files_exit_2_with_one_message_and_nothing_written(tmp_path, capsys, case):
    data, reason = hostile_files()[case]
    path = tmp_path / "m.mlmodel"
    path.write_bytes(data)
    code, out, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "o.onnx")
    assert code == 2 and reason in err and "Traceback" not in err, (case, out, err)
    assert len(out) + len(err) < 20_000
    assert path.read_bytes() == data and leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlmodel"]


# coremltools' own builder writes the file (an interpreter with coremltools; skipped without).
BUILD = """
import sys, numpy as np
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder
w = dict(np.load(sys.argv[1]))
builder = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("y", None)])
builder.add_gru("gru", [w["R_z"], w["R_r"], w["R_o"]], [w["W_z"], w["W_r"], w["W_o"]],
                [w["b_z"], w["b_r"], w["b_o"]], 4, 3, ["x"], ["y"],
                inner_activation=sys.argv[3], output_all=True)
open(sys.argv[2], "wb").write(builder.spec.SerializeToString())
"""


def built_by_coremltools(tmp_path, weights, inner: str):
    saved, path = tmp_path / "w.npz", tmp_path / f"{inner}.mlmodel"
    np.savez(saved, **weights)
    done = subprocess.run([coremltools_python(), "-c", BUILD, str(saved), str(path), inner],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return path


def test_a_gru_coremltools_builds_computes_coremls_equations(tmp_path):
    rng = np.random.default_rng(28)
    weights = random_gru(rng, 3, 4)
    path = built_by_coremltools(tmp_path, weights, "SIGMOID")
    x = rng.normal(size=(6, 3))
    np.testing.assert_allclose(ours(path, x), coreml_gru(weights, x), atol=1e-12)


def test_coremltools_default_hard_sigmoid_without_parameters_is_refused(tmp_path):
    """add_gru's default inner activation writes an empty ActivationSigmoidHard (alpha and
    beta 0); what CoreML computes for it is not documented, so the layer is not read."""
    path = built_by_coremltools(tmp_path, random_gru(np.random.default_rng(29), 3, 4),
                                "SIGMOID_HARD")
    (found,) = read_coreml(path)
    assert found.problem and "sigmoidHard with alpha 0, beta 0" in found.problem
