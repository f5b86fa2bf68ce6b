"""tract computes an ONNX GRU with ``direction="reverse"`` as a forward GRU.

Runtime: tract 0.23.9 (PyPI ``tract``), x86_64 Linux.
Grid cell: tract / GRU reverse.
Upstream: not reported upstream (the LSTM form is ``tract_reverse.py``, not reported
either; sonos/tract#2751 covers activations, clip and input_forget only). Issue ready to
file (with the LSTM one: the same attribute on both recurrent operators):

    Title: ONNX GRU: direction="reverse" is computed as "forward" (silently wrong outputs)

    Versions: tract 0.23.9 (PyPI wheel, x86_64 Linux), onnx 1.23.2, opset 14.

    Steps: run this script. It builds one GRU node (hidden_size=3, X of shape
    (T=3, B=2, I=2), direction="reverse", linear_before_reset 0 and 1, W/R/B as
    initializers, initial_h as an input), runs it with tract (load, into_model,
    into_runnable, run) and compares with the ONNX spec equations in float64 numpy.

    Expected: the reverse direction walks t = T-1 down to 0: Y[t] is the hidden state
    after step t and Y_h the state after t = 0 (ONNX Runtime 1.32.0 agrees with the
    equations to 2e-7).

    Actual: tract returns the forward direction's outputs, with no error or warning
    (max abs diff about 1 against the reverse equations). A bidirectional node is
    computed right.

Exits 1 while the bug reproduces, 0 once fixed, 2 when tract is missing or refuses.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

try:
    import onnx
    import tract
    from onnx import helper, numpy_helper
except ImportError as exc:
    print(f"not installed: {exc}")
    sys.exit(2)

CELLS = [("tract", "GRU reverse")]
TOLERANCE = 1e-4  # a float32 engine against the float64 reference; the bug is ~0.1 to 2
IN, H, T, B = 2, 3, 3, 2  # input size, hidden size, time steps, batch


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gru(x, w, r, b, h, *, linear_before_reset=0, reverse=False, clip=None, f=sigmoid,
        g=np.tanh):
    """ONNX GRU, one direction, layout 0, float64: Y (T, 1, B, H) and Y_h (1, B, H).

    Gates z r h in W, R and B = [Wb, Rb] (the operator spec's equations)."""
    x, w, r, b, h = (np.asarray(a, np.float64) for a in (x, w[0], r[0], b[0], h[0]))
    steps, size = x.shape[0], h.shape[-1]
    wb, rb = b[:3 * size], b[3 * size:]
    cut = (lambda z: z) if clip is None else (lambda z: np.clip(z, -clip, clip))
    y = np.zeros((steps, 1, *h.shape))
    for t in (reversed(range(steps)) if reverse else range(steps)):
        xz, xr, xh = np.split(x[t] @ w.T + wb, 3, -1)
        rz, rr, rh = np.split(r, 3)
        bz, br, bh = np.split(rb, 3)
        z = f(cut(xz + h @ rz.T + bz))
        reset = f(cut(xr + h @ rr.T + br))
        if linear_before_reset:
            candidate = g(cut(xh + reset * (h @ rh.T + bh)))
        else:
            candidate = g(cut(xh + (reset * h) @ rh.T + bh))
        h = (1 - z) * candidate + z * h
        y[t, 0] = h
    return y, h[None]


def make_model(weights: dict, **attributes) -> bytes:
    """One GRU node: X and initial_h h0 in; W, R, B initializers; Y and Y_h out."""
    elem = onnx.TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", elem, [T, B, IN]),
              helper.make_tensor_value_info("h0", elem, [1, B, H])]
    outputs = [helper.make_tensor_value_info("Y", elem, [T, 1, B, H]),
               helper.make_tensor_value_info("Y_h", elem, [1, B, H])]
    node = helper.make_node("GRU", ["X", "W", "R", "B", "", "h0"], ["Y", "Y_h"],
                            hidden_size=H, **attributes)
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    graph = helper.make_graph([node], "gru", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def draw() -> tuple[dict, dict]:
    """Weights and inputs, N(0, 1) float32: large enough that a wrong equation shows."""
    rng = np.random.default_rng(0)
    shapes = {"W": (1, 3 * H, IN), "R": (1, 3 * H, H), "B": (1, 6 * H)}
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    feeds = {k: rng.normal(size=s).astype(np.float32)
             for k, s in {"X": (T, B, IN), "h0": (1, B, H)}.items()}
    return weights, feeds


def max_abs_diff(expected, actual) -> float:
    if len(actual) != len(expected) or any(
            np.shape(a) != e.shape for e, a in zip(expected, actual, strict=True)):
        print(f"  shapes {[np.shape(a) for a in actual]}, expected {[e.shape for e in expected]}")
        return float("inf")
    return max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True))


def run_tract(model: bytes, feeds: dict) -> list:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "gru.onnx")
        with open(path, "wb") as file:
            file.write(model)
        loaded = tract.onnx().load(path)  # tract reads ONNX from a path only
    names = [loaded.input_name(k) for k in range(loaded.input_count())]
    runnable = loaded.into_model().into_runnable()
    return [out.to_numpy() for out in runnable.run([feeds[n] for n in names])]


CASES = {  # name -> (graph attributes, the reference's semantics); controls first
    "control, linear_before_reset=0": ({}, {}),
    "control, linear_before_reset=1": ({"linear_before_reset": 1}, {"linear_before_reset": 1}),
    "direction=reverse, linear_before_reset=0": ({"direction": "reverse"}, {"reverse": True}),
    "direction=reverse, linear_before_reset=1": (
        {"direction": "reverse", "linear_before_reset": 1},
        {"reverse": True, "linear_before_reset": 1}),
}


def main() -> int:
    """Each case; the controls (no attribute) must match for the finding to count, and the
    finding reproduces while every other case is off."""
    weights, feeds = draw()
    label = f"tract {tract.version()}"
    off = []
    for name, (attributes, semantics) in CASES.items():
        try:
            actual = run_tract(make_model(weights, **attributes), feeds)
        except Exception as exc:  # a refusal is not this finding
            print(f"{label} refused {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            return 2
        expected = gru(feeds["X"], weights["W"], weights["R"], weights["B"], feeds["h0"],
                       **semantics)
        diff = max_abs_diff(expected, actual)
        print(f"{label}: {name}: max abs diff {diff:.3g} (tolerance {TOLERANCE:g})")
        if name.startswith("control") and diff > TOLERANCE:
            print("the control is off too: not this finding")
            return 2
        if not name.startswith("control"):
            off.append(diff > TOLERANCE)
    reproduced = all(off)
    print("REPRODUCED" if reproduced else "FIXED: update equivalence/known.py, findings/README.md")
    return 1 if reproduced else 0


if __name__ == "__main__":
    sys.exit(main())
