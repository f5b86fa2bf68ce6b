"""OpenVINO mishandles ONNX LSTM ``layout=1`` (batch-first X, states and outputs).

Runtime: openvino 2026.4.1 (PyPI), CPU plugin, x86_64 Linux; with
INFERENCE_PRECISION_HINT=f32 (grid row openvino) and with the default precision (row
openvino_default).
Grid cells: openvino / layout=1, openvino_default / layout=1.
Upstream: https://github.com/openvinotoolkit/openvino/issues/37820 (open): "ONNX RNN /
LSTM / GRU with layout=1 (opset 14+) are silently mis-processed by the ONNX frontend
(layout attribute ignored)", reported on 2026.1.0; still so on 2026.4.1.

One LSTM node with layout=1 (X (batch, time, 2) with symbolic batch and time, fed B=2,
T=3; W/R/B initializers), with and without
initial-state inputs, against the ONNX spec equations in float64. With initial states
Y comes back empty (shape (0, 1, 1, 3)); without them, Y and Y_h come back in other
shapes (X is read as time-major). The layout=0 node is the control. With the plugin's
own thread count instead of INFERENCE_NUM_THREADS=1, the with-states case raises at
inference ("Can not clone with new dims") instead.
Exits 1 while the bug reproduces, 0 once fixed, 2 when openvino is missing or refuses.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    import onnx
    import openvino
    from onnx import helper, numpy_helper
except ImportError as exc:
    print(f"not installed: {exc}")
    sys.exit(2)

CELLS = [("openvino", "layout=1"), ("openvino_default", "layout=1")]
TOLERANCE = 1e-4  # a float32 engine against the float64 reference
IN, H, T, B = 2, 3, 3, 2  # input size, hidden size, time steps, batch


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm(x, w, r, b, h, c, *, p=None, clip=None, input_forget=False, reverse=False,
         lens=None, f=sigmoid, g=np.tanh, hh=np.tanh):
    """ONNX LSTM, one direction, layout 0, float64: Y (T, 1, B, H), Y_h and Y_c (1, B, H)."""
    x, w, r, b, h, c = (np.asarray(a, np.float64) for a in (x, w[0], r[0], b[0], h[0], c[0]))
    steps, size = x.shape[0], h.shape[-1]
    pi, po, pf = np.split(np.zeros(3 * size) if p is None else np.asarray(p, np.float64)[0], 3)
    lens = np.full(x.shape[1], steps) if lens is None else np.asarray(lens)
    cut = (lambda z: z) if clip is None else (lambda z: np.clip(z, -clip, clip))
    y = np.zeros((steps, 1, *h.shape))
    for t in (reversed(range(steps)) if reverse else range(steps)):
        zi, zo, zf, zc = np.split(x[t] @ w.T + h @ r.T + b[:4 * size] + b[4 * size:], 4, -1)
        i = f(cut(zi + pi * c))
        forget = 1 - i if input_forget else f(cut(zf + pf * c))
        c_new = forget * c + i * g(cut(zc))
        h_new = f(cut(zo + po * c_new)) * hh(c_new)
        live = (t < lens)[:, None]  # sequence_lens: padded steps keep the state, Y is 0
        h, c = np.where(live, h_new, h), np.where(live, c_new, c)
        y[t, 0] = np.where(live, h_new, 0)
    return y, h[None], c[None]


def make_model(weights: dict, *, layout: int, state: bool) -> bytes:
    """One LSTM node, X[, h0, c0] in (batch-first when ``layout`` is 1); W, R, B initializers."""
    f32 = onnx.TensorProto.FLOAT
    t, b = "time", "batch"  # symbolic, as exported (fixed ones fail to read: a refusal)
    x, s, y = ([b, t, IN], [b, 1, H], [b, t, 1, H]) if layout else \
        ([t, b, IN], [1, b, H], [t, 1, b, H])
    inputs = [helper.make_tensor_value_info("X", f32, x)]
    inputs += [helper.make_tensor_value_info(n, f32, s) for n in ("h0", "c0") if state]
    outputs = [helper.make_tensor_value_info("Y", f32, y)]
    outputs += [helper.make_tensor_value_info(n, f32, s) for n in ("Y_h", "Y_c")]
    names = ["X", "W", "R", "B", "", "h0", "c0"] if state else ["X", "W", "R", "B"]
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], hidden_size=H, layout=layout)
    initializers = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph([node], "lstm", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def max_abs_diff(expected, actual) -> float:
    if len(actual) != len(expected) or any(
            np.shape(a) != e.shape for e, a in zip(expected, actual, strict=True)):
        print(f"  shapes {[np.shape(a) for a in actual]}, expected {[e.shape for e in expected]}")
        return float("inf")
    return max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True))


def run_openvino(model: bytes, feeds: dict, hint: str | None) -> list:
    """CPU plugin; ``hint`` the INFERENCE_PRECISION_HINT (None: the plugin's default)."""
    core = openvino.Core()
    # one thread, as the grid's rows run (layout=1 with initial states raises instead of
    # returning an empty Y when the plugin picks its own thread count)
    config: dict = {"INFERENCE_NUM_THREADS": 1}
    config |= {"INFERENCE_PRECISION_HINT": hint} if hint else {}
    compiled = core.compile_model(core.read_model(model), "CPU", config)
    # feed the inputs the compiled model has, as a deployment does
    fed = {port.get_any_name(): feeds[port.get_any_name()] for port in compiled.inputs}
    outputs = compiled.create_infer_request().infer(fed)
    return [outputs[port] for port in compiled.outputs]


_VERSION = openvino.__version__.split("-")[0]
RUNS = {f"OpenVINO {_VERSION} CPU, f32 hint (row openvino)":
        lambda m, f: run_openvino(m, f, "f32")}
# The plugin's default precision is bf16 on CPUs with AVX512-BF16 or AMX: there even the
# layout=0 control misses the f32 tolerance (about 4e-3), so the default-precision run is
# judged only where that default is f32 (the f32 row carries the finding everywhere).
_DEFAULT = str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
if "f32" in _DEFAULT or "float32" in _DEFAULT:
    RUNS[f"OpenVINO {_VERSION} CPU, default precision (row openvino_default)"] = (
        lambda m, f: run_openvino(m, f, None))
else:
    print(f"OpenVINO {_VERSION} CPU default precision is {_DEFAULT} here: the row "
          "openvino_default is not judged by this script on this CPU")


def main() -> int:
    rng = np.random.default_rng(0)
    shapes = {"W": (1, 4 * H, IN), "R": (1, 4 * H, H), "B": (1, 8 * H)}
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    x = rng.normal(size=(T, B, IN)).astype(np.float32)
    h0, c0 = (rng.normal(size=(1, B, H)).astype(np.float32) for _ in range(2))
    reproduced = False
    for label, run in RUNS.items():
        for layout, state, batch in ((0, True, B), (1, True, B), (1, False, B)):
            zero = np.zeros_like(h0[:, :batch])
            xs, h, c = x[:, :batch], h0[:, :batch], c0[:, :batch]
            y, y_h, y_c = lstm(xs, weights["W"], weights["R"], weights["B"],
                               h if state else zero, c if state else zero)
            feeds = {"X": xs, "h0": h, "c0": c}
            expected = [y, y_h, y_c]
            if layout:  # batch-first: X (B, T, I), states (B, 1, H), Y (B, T, 1, H)
                feeds = {k: np.ascontiguousarray(v.swapaxes(0, 1)) for k, v in feeds.items()}
                expected = [y.transpose(2, 0, 1, 3), y_h.swapaxes(0, 1), y_c.swapaxes(0, 1)]
            name = f"layout={layout}, B={batch}, {'with' if state else 'without'} initial states"
            try:
                actual = run(make_model(weights, layout=layout, state=state), feeds)
            except Exception as exc:  # a refusal is not this finding
                print(f"{label} refused {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                return 2
            diff = max_abs_diff(expected, actual)
            print(f"{label}: {name}: max abs diff {diff:.3g} (tolerance {TOLERANCE:g})")
            if layout == 0 and diff > TOLERANCE:
                print("the control is off too: not this finding")
                return 2
            reproduced |= layout == 1 and diff > TOLERANCE
    print("REPRODUCED" if reproduced else "FIXED: update equivalence/known.py, findings/README.md")
    return 1 if reproduced else 0


if __name__ == "__main__":
    sys.exit(main())
