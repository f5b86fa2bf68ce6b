"""OpenCV's dnn module ignores the ONNX LSTM ``sequence_lens`` input.

Runtime: opencv-python-headless 5.1.0.95 (cv2 5.1.0, default backend, CPU), x86_64 Linux.
Grid cell: opencv / sequence lengths.
Upstream: not reported upstream (searched opencv/opencv issues for LSTM sequence_lens,
2026-12-02). Issue ready to file:

    Title: dnn (ONNX): LSTM `sequence_lens` input is ignored (Y not zero past a
    sequence's end, Y_h/Y_c the full-length state)

    Versions: OpenCV 5.1.0 (opencv-python-headless 5.1.0.95, PyPI), onnx 1.23.2,
    opset 14, x86_64 Linux, default backend and target.

    Steps: run this script. It builds one LSTM node (hidden_size=3, X (T=3, B=2, I=2),
    sequence_lens input fed [1, 3], W/R/B as initializers, initial_h/initial_c inputs),
    runs it with cv2.dnn and compares with the ONNX spec equations in float64 numpy.

    Expected: batch entry 0 stops after one step: Y[1:, :, 0] is 0 and Y_h/Y_c[:, 0]
    are its state after step 0 (ONNX Runtime 1.32.0 agrees with the equations to 1e-7).

    Actual: every entry runs all 3 steps: the outputs equal those of the node without
    sequence_lens (max abs diff about 0.9); no error or warning.

Exits 1 while the bug reproduces, 0 once fixed, 2 when cv2 is missing or refuses.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    import cv2
    import onnx
    from onnx import helper, numpy_helper
except ImportError as exc:
    print(f"not installed: {exc}")
    sys.exit(2)

CELLS = [("opencv", "sequence lengths")]
TOLERANCE = 1e-4  # a float32 engine against the float64 reference; the bugs are ~0.1 to 2
IN, H, T, B = 2, 3, 3, 2  # input size, hidden size, time steps, batch
STATE_SCALE = 1.0  # initial states N(0, 1)


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


def make_model(weights: dict, *, lens: bool = False, peepholes: bool = False,
               dynamic: bool = False, dtype=np.float32, **attributes) -> bytes:
    """One LSTM node: X, [sequence_lens L], h0, c0 in; W, R, B[, P] initializers.

    ``dynamic``: time and batch are symbolic dimensions (as exported models have them).
    """
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    t, b = ("time", "batch") if dynamic else (T, B)
    inputs = [helper.make_tensor_value_info("X", elem, [t, b, IN])]
    if lens:
        inputs.append(helper.make_tensor_value_info("L", onnx.TensorProto.INT32, [b]))
    inputs += [helper.make_tensor_value_info(n, elem, [1, b, H]) for n in ("h0", "c0")]
    outputs = [helper.make_tensor_value_info("Y", elem, [t, 1, b, H])]
    outputs += [helper.make_tensor_value_info(n, elem, [1, b, H]) for n in ("Y_h", "Y_c")]
    names = ["X", "W", "R", "B", "L" if lens else "", "h0", "c0", "P" if peepholes else ""]
    while not names[-1]:
        names.pop()
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], hidden_size=H, **attributes)
    initializers = [numpy_helper.from_array(v.astype(dtype), k) for k, v in weights.items()
                    if k != "P" or peepholes]
    graph = helper.make_graph([node], "lstm", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def draw() -> tuple[dict, dict]:
    """Weights and inputs, N(0, 1) float32: large enough that a wrong equation shows."""
    rng = np.random.default_rng(0)
    shapes = {"W": (1, 4 * H, IN), "R": (1, 4 * H, H), "B": (1, 8 * H), "P": (1, 3 * H)}
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    shapes = {"X": (T, B, IN), "h0": (1, B, H), "c0": (1, B, H)}
    feeds = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    feeds["h0"], feeds["c0"] = feeds["h0"] * STATE_SCALE, feeds["c0"] * STATE_SCALE
    return weights, feeds | {"L": np.array([1, T][:B], np.int32)}


def max_abs_diff(expected, actual) -> float:
    if len(actual) != len(expected) or any(
            np.shape(a) != e.shape for e, a in zip(expected, actual, strict=True)):
        print(f"  shapes {[np.shape(a) for a in actual]}, expected {[e.shape for e in expected]}")
        return float("inf")
    return max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True))


def run_opencv(model: bytes, feeds: dict) -> list:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(model, np.uint8))
    for value in onnx.load_from_string(model).graph.input:
        net.setInput(np.ascontiguousarray(feeds[value.name]), value.name)
    return list(net.forward(["Y", "Y_h", "Y_c"]))


RUNS = {f"OpenCV {cv2.__version__}": run_opencv}

CASES = {  # name -> (graph attributes, the reference's semantics)
    "control": ({}, {}),
    "sequence_lens=[1, 3]": ({"lens": True}, {}),
}


def main() -> int:
    """Each case in each run; the control (no attribute) must match for the finding to count."""
    weights, feeds = draw()
    reproduced = False
    for label, run in RUNS.items():
        for name, (attributes, semantics) in CASES.items():
            model = make_model(weights, **attributes)
            try:
                actual = run(model, feeds)
            except Exception as exc:  # a refusal is not this finding
                print(f"{label} refused {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                return 2
            expected = lstm(feeds["X"], weights["W"], weights["R"], weights["B"], feeds["h0"],
                            feeds["c0"], p=weights["P"] if attributes.get("peepholes") else None,
                            lens=feeds["L"] if attributes.get("lens") else None, **semantics)
            diff = max_abs_diff(expected, actual)
            print(f"{label}: {name}: max abs diff {diff:.3g} (tolerance {TOLERANCE:g})")
            if name == "control" and diff > TOLERANCE:
                print("the control is off too: not this finding")
                return 2
            reproduced |= name != "control" and diff > TOLERANCE
    print("REPRODUCED" if reproduced else "FIXED: update equivalence/known.py, findings/README.md")
    return 1 if reproduced else 0


if __name__ == "__main__":
    sys.exit(main())
