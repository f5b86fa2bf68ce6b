"""onnx2tf silently miscomputes a stacked (2-layer) LSTM whose batch equals its hidden size.

Converter: onnx2tf 1.29.24 (PyPI, installed --no-deps beside TensorFlow 2.21.0, onnx
1.23.2), run with ``keep_shape_absolutely_input_names=["input", "h0", "c0"]`` (without
it onnx2tf transposes h0/c0 as NCW tensors and refuses them) and ``not_use_onnxsim=True``
(the bug is onnx2tf's own: the exporter row, which lets onnxsim run, shows it too, and
skipping onnxsim's three child processes halves the script's time); the float32 TFLite it
writes runs in ai-edge-litert 2.3.0.
Exporter: ``onnx2tf`` / ``fixed shapes, 2 layers, batch = hidden`` / the ``exported
shape``, ``initial states`` and ``streaming`` probes (EXPECTED_PROBES): the torch.onnx
export of a 2-layer ``nn.LSTM`` at batch 2 with hidden size 2 is this graph.
Upstream: not reported upstream (searched PINTO0309/onnx2tf issues for LSTM, stacked,
layers, initial state, 2026-12-02). Issue ready to file:

    Title: [LSTM] 2-layer LSTM (torch.onnx export) silently wrong when batch == hidden_size

    onnx2tf 1.29.24, TensorFlow 2.21.0, onnx 1.23.2, Linux x86_64.

    Steps: run this script. It builds the graph torch.onnx.export writes for a batch-first
    2-layer nn.LSTM with h0/c0 inputs (Transpose, Slice of h0/c0 per layer, two LSTM
    nodes, Squeeze, Concat of Y_h/Y_c), input size 3, converts it with
    keep_shape_absolutely_input_names=["input", "h0", "c0"] and not_use_onnxsim=True
    (with onnxsim the result is the same), runs the float32 TFLite and compares with the
    ONNX LSTM equations in float64 numpy.

    Expected: agreement to 1e-5 (ONNX Runtime agrees to 1e-7), at any batch.

    Actual: with batch 2 and hidden size 2, output/h_n/c_n are off by about 0.1 to 0.5;
    -cotof reports "Unmatched" too. The same graph at batch 3 (hidden 2) matches, as do
    one-layer graphs and batch != hidden.

Exits 1 while the bug reproduces, 0 once fixed, 2 when onnx2tf is missing or refuses.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import numpy as np

try:
    import onnx
    import onnx2tf
    from ai_edge_litert.interpreter import Interpreter
    from onnx import helper, numpy_helper
except ImportError as exc:
    print(f"not installed: {exc}")
    sys.exit(2)

CELLS: list = []  # not a grid cell: a converter's
EXPECTED_PROBES = [("onnx2tf", "fixed shapes, 2 layers, batch = hidden", "exported shape"),
                   ("onnx2tf", "fixed shapes, 2 layers, batch = hidden", "initial states"),
                   ("onnx2tf", "fixed shapes, 2 layers, batch = hidden", "streaming")]
TOLERANCE = 1e-4  # a float32 engine against the float64 reference; the bug is ~0.1 to 0.5
IN, H, T, LAYERS = 3, 2, 4, 2  # input size, hidden size, time steps, layers


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_layer(x, w, r, b, h, c):
    """ONNX LSTM (gates i o f c), one direction, float64: x (T, B, I) -> y (T, B, H), h, c."""
    x, w, r, b, h, c = (np.asarray(a, np.float64) for a in (x, w, r, b, h, c))
    ys = []
    for t in range(x.shape[0]):
        zi, zo, zf, zc = np.split(x[t] @ w.T + h @ r.T + b[:4 * H] + b[4 * H:], 4, -1)
        c = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zc)
        h = sigmoid(zo) * np.tanh(c)
        ys.append(h)
    return np.stack(ys), h, c


def reference(weights, x, h0, c0):
    """The 2-layer network on batch-first x: output (B, T, H), h_n and c_n (2, B, H)."""
    y, hs, cs = np.swapaxes(x, 0, 1), [], []
    for k in range(LAYERS):
        y, h, c = lstm_layer(y, weights[f"W{k}"][0], weights[f"R{k}"][0],
                             weights[f"B{k}"][0], h0[k], c0[k])
        hs.append(h)
        cs.append(c)
    return np.swapaxes(y, 0, 1), np.stack(hs), np.stack(cs)


def make_model(weights: dict, batch: int) -> onnx.ModelProto:
    """The graph torch.onnx.export (TorchScript) writes for a batch-first 2-layer nn.LSTM."""
    f32 = onnx.TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("input", f32, [batch, T, IN])]
    inputs += [helper.make_tensor_value_info(n, f32, [LAYERS, batch, H]) for n in ("h0", "c0")]
    outputs = [helper.make_tensor_value_info("output", f32, [batch, T, H])]
    outputs += [helper.make_tensor_value_info(n, f32, [LAYERS, batch, H])
                for n in ("h_n", "c_n")]
    consts = {f"s{k}": np.array([k], np.int64) for k in range(LAYERS + 1)}
    consts["axis0"], consts["axis1"] = np.array([0], np.int64), np.array([1], np.int64)
    nodes = [helper.make_node("Transpose", ["input"], ["x0"], perm=[1, 0, 2])]
    for k in range(LAYERS):
        for s in ("h0", "c0"):
            nodes.append(helper.make_node("Slice", [s, f"s{k}", f"s{k + 1}", "axis0"],
                                          [f"{s}_{k}"]))
        nodes.append(helper.make_node("LSTM", [f"x{k}", f"W{k}", f"R{k}", f"B{k}", "",
                                               f"h0_{k}", f"c0_{k}"],
                                      [f"Y{k}", f"Yh{k}", f"Yc{k}"], hidden_size=H))
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", "axis1"], [f"x{k + 1}"]))
    nodes.append(helper.make_node("Transpose", [f"x{LAYERS}"], ["output"], perm=[1, 0, 2]))
    nodes.append(helper.make_node("Concat", [f"Yh{k}" for k in range(LAYERS)], ["h_n"], axis=0))
    nodes.append(helper.make_node("Concat", [f"Yc{k}" for k in range(LAYERS)], ["c_n"], axis=0))
    initializers = [numpy_helper.from_array(v, k) for k, v in {**weights, **consts}.items()]
    graph = helper.make_graph(nodes, "lstm2", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model


def draw(batch: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    weights = {}
    for k in range(LAYERS):
        size = IN if k == 0 else H
        weights |= {f"W{k}": rng.normal(size=(1, 4 * H, size)), f"R{k}": rng.normal(
            size=(1, 4 * H, H)), f"B{k}": rng.normal(size=(1, 8 * H))}
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    shapes = {"input": (batch, T, IN), "h0": (LAYERS, batch, H), "c0": (LAYERS, batch, H)}
    return weights, {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


def run_onnx2tf(model: onnx.ModelProto, feeds: dict, folder: Path) -> list:
    source = folder / "lstm2.onnx"
    onnx.save(model, str(source))
    with contextlib.redirect_stdout(io.StringIO()):
        onnx2tf.convert(input_onnx_file_path=str(source), output_folder_path=str(folder / "tf"),
                        keep_shape_absolutely_input_names=["input", "h0", "c0"],
                        output_signaturedefs=True, verbosity="error", not_use_onnxsim=True)
    runner = Interpreter(model_path=str(folder / "tf" / "lstm2_float32.tflite")
                         ).get_signature_runner()
    returned = runner(**feeds)
    # the signature's outputs are named after the ONNX outputs (or output_0..2, in order)
    names = ("output", "h_n", "c_n")
    if set(names) <= set(returned):
        return [returned[n] for n in names]
    return [returned[k] for k in sorted(returned)]


def max_abs_diff(expected, actual) -> float:
    if [np.shape(a) for a in actual] != [e.shape for e in expected]:
        print(f"  shapes {[np.shape(a) for a in actual]}, expected {[e.shape for e in expected]}")
        return float("inf")
    return max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True))


def main() -> int:
    diffs = {}
    for batch in (H, H + 1):  # batch == hidden (the bug), then the control
        weights, feeds = draw(batch)
        expected = reference(weights, feeds["input"], feeds["h0"], feeds["c0"])
        with tempfile.TemporaryDirectory() as folder:
            try:
                actual = run_onnx2tf(make_model(weights, batch), feeds, Path(folder))
            except Exception as exc:  # onnx2tf refusing the graph: not this finding
                print(f"onnx2tf refused batch {batch}: {type(exc).__name__}: {exc}"[:300])
                return 2
        diffs[batch] = max_abs_diff(expected, actual)
        print(f"onnx2tf {onnx2tf.__version__} float32 TFLite, 2 layers, hidden {H}, "
              f"batch {batch}: max abs diff {diffs[batch]:.3g}")
    return 1 if diffs[H] > TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())
