"""onnx2torch has no converter for the ONNX LSTM operator.

Converter: onnx2torch 1.5.15 (with torch 2.14.1, torchvision 0.29.1, onnx 1.17.0: the
project's side environment, ``tox -e thirdparty``; not in the main venv).
Third-party known failure: onnx2torch / "NotImplementedError"
(equivalence/converters/onnx2torch_convert.py, all three configurations).
Upstream: https://github.com/ENOT-AutoDL/onnx2torch/issues/136 (open: "Can we increase
the function of rnn structures such as lstm"); a converter is proposed in
https://github.com/ENOT-AutoDL/onnx2torch/pull/256 (open).

One forward LSTM node (I=2, H=3, weights as initializers, initial_h/initial_c inputs):
onnx2torch.convert raises NotImplementedError ("Converter is not implemented
(OperationDescription(domain='', operation_type='LSTM', version=14))"). Once it converts,
the torch module runs on X, h0, c0 and is compared with the ONNX spec equations in
float64. Exits 1 while the bug reproduces, 0 once fixed, 2 when onnx2torch is missing.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    import onnx
    import onnx2torch
    import torch
    from onnx import helper, numpy_helper
except ImportError as exc:
    print(f"not installed: {exc}")
    sys.exit(2)

KNOWN_FAILURES = [("onnx2torch", "NotImplementedError")]
TOLERANCE = 1e-4  # float32 against the float64 equations
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


def make_model(weights: dict) -> onnx.ModelProto:
    """One LSTM node: X, h0, c0 in; W, R, B initializers; Y, Y_h, Y_c out."""
    f32 = onnx.TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", f32, [T, B, IN])]
    inputs += [helper.make_tensor_value_info(n, f32, [1, B, H]) for n in ("h0", "c0")]
    outputs = [helper.make_tensor_value_info("Y", f32, [T, 1, B, H])]
    outputs += [helper.make_tensor_value_info(n, f32, [1, B, H]) for n in ("Y_h", "Y_c")]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"],
                            hidden_size=H)
    initializers = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph([node], "lstm", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model


def max_abs_diff(expected, actual) -> float:
    if len(actual) != len(expected) or any(
            np.shape(a) != e.shape for e, a in zip(expected, actual, strict=True)):
        print(f"  shapes {[np.shape(a) for a in actual]}, expected {[e.shape for e in expected]}")
        return float("inf")
    return max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True))


def main() -> int:
    rng = np.random.default_rng(0)
    shapes = {"W": (1, 4 * H, IN), "R": (1, 4 * H, H), "B": (1, 8 * H)}
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    shapes = {"X": (T, B, IN), "h0": (1, B, H), "c0": (1, B, H)}
    feeds = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    version = f"onnx2torch {getattr(onnx2torch, '__version__', '?')}"
    try:
        module = onnx2torch.convert(make_model(weights))
    except NotImplementedError as exc:  # the bug
        print(f"{version}: convert raised NotImplementedError: {exc}; max abs diff: none")
        print("REPRODUCED")
        return 1
    with torch.no_grad():
        outputs = module(*(torch.from_numpy(feeds[n]) for n in ("X", "h0", "c0")))
    actual = [o.numpy() for o in outputs]
    expected = lstm(feeds["X"], weights["W"], weights["R"], weights["B"], feeds["h0"],
                    feeds["c0"])
    diff = max_abs_diff(expected, actual)
    print(f"{version}: converted; max abs diff {diff:.3g} (tolerance {TOLERANCE:g})")
    print("REPRODUCED" if diff > TOLERANCE else
          "FIXED: update its Known and findings/README.md")
    return 1 if diff > TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())
