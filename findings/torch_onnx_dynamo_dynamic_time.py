"""torch.onnx.export(dynamo=True) fixes nn.LSTM's time dimension on a second export.

Converter: torch 2.13.0+cpu ``torch.onnx.export(..., dynamo=True, dynamic_shapes=...)``
(onnxscript 0.7.2, onnx 1.23.2), the ONNX model run in onnxruntime 1.32.0 (CPU).
Third-party known failure: torch.onnx.export / "Got invalid dimensions"
(equivalence/converters/torch_onnx_export.py, the dynamic batch and time configuration).

The same call twice, in one process, on a one-layer batch-first nn.LSTM(2, 3) exported at
B=2, T=4 with batch and time marked dynamic: the first ONNX model declares x as
(batch, time, 2) and runs at T=5; the second declares (batch, 4, 2), so ONNX Runtime
refuses T=5. Underneath, torch.export specializes the LSTM's time dimension ("Constraints
violated (time) ... Suggested fixes: time = 4"); on the second call torch.onnx applies
that fix and re-exports without a word.

Upstream: related, not this bug: https://github.com/pytorch/pytorch/issues/115092 (open,
"[pt2] Unable to trace LSTM with dynamic shapes": torch.export specializes LSTM's
sequence dimension) and https://github.com/pytorch/pytorch/issues/191855 (closed; a
manual bidirectional pattern, which notes a bare nn.LSTM works: it does, the first
time). The silent fixed-time re-export is not reported upstream. Issue ready to file:

    Title: [ONNX] dynamo export of nn.LSTM: a second export in the same process
    silently fixes the dynamic time dimension to the example's length

    Versions: torch 2.13.0+cpu, onnxscript 0.7.2, onnx 1.23.2, onnxruntime 1.32.0,
    Python 3.11, Linux x86_64.

    Steps: run this script: two identical torch.onnx.export(module, (x,), dynamo=True,
    dynamic_shapes=({0: Dim("batch"), 1: Dim("time")},)) calls; each model is run in
    ONNX Runtime at B=3, T=5 and compared with the LSTM equations in float64 numpy.

    Expected: both models declare x as (batch, time, 2) and match at T=5 (or the
    export raises, as torch.export.export does, if time cannot be dynamic).

    Actual: the first matches (max abs diff ~1e-7), though it declares its output y
    as (batch, 4, 3) (ONNX Runtime warns); the second declares x as (batch, 4, 2) and
    ONNX Runtime raises INVALID_ARGUMENT "Got invalid dimensions for input: x ...
    Got: 5 Expected: 4". No warning at export. An export of another module (an
    nn.Linear) before the first LSTM export does not trigger it.

Exits 1 while the bug reproduces, 0 once fixed, 2 when torch/onnxruntime are missing.
"""

from __future__ import annotations

import logging
import sys
import warnings

import numpy as np

try:
    import onnx
    import onnxruntime
    import torch
except ImportError as exc:
    print(f"not installed: {exc}")
    sys.exit(2)

KNOWN_FAILURES = [("torch.onnx.export", "Got invalid dimensions")]
TOLERANCE = 1e-4  # float32 against the float64 equations


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm(x, w, r, b, h, c, *, lens=None):
    """ONNX LSTM equations, one direction, time-major, float64 (Y (T, B, H), Y_h, Y_c)."""
    x, w, r, b, h, c = (np.asarray(a, np.float64) for a in (x, w, r, b, h, c))
    steps, size = x.shape[0], h.shape[-1]
    lens = np.full(x.shape[1], steps) if lens is None else np.asarray(lens)
    y = np.zeros((steps, *h.shape))
    for t in range(steps):
        zi, zo, zf, zc = np.split(x[t] @ w.T + h @ r.T + b[:4 * size] + b[4 * size:], 4, -1)
        c_new = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zc)
        h_new = sigmoid(zo) * np.tanh(c_new)
        live = (t < lens)[:, None]  # past a sequence's length: state kept, output 0
        h, c = np.where(live, h_new, h), np.where(live, c_new, c)
        y[t] = np.where(live, h_new, 0)
    return y, h, c


def onnx_weights(module) -> tuple:
    """nn.LSTM's layer 0 as ONNX W, R, B (torch gates i, f, g, o; ONNX i, o, f, c)."""
    def gates(a):
        blocks = np.split(a.detach().numpy().astype(np.float64), 4)
        return np.concatenate([blocks[k] for k in (0, 3, 1, 2)])
    bias = np.concatenate([gates(module.bias_ih_l0), gates(module.bias_hh_l0)])
    return gates(module.weight_ih_l0), gates(module.weight_hh_l0), bias


def reference(module, x, lens=None) -> list:
    """The expected (y, h, c) for batch-first ``x`` (B, T, I), zero initial state."""
    w, r, b = onnx_weights(module)
    zero = np.zeros((x.shape[0], module.hidden_size))
    y, h, c = lstm(np.swapaxes(x, 0, 1), w, r, b, zero, zero, lens=lens)
    return [np.swapaxes(y, 0, 1), h[None], c[None]]


def max_abs_diff(expected, actual) -> float:
    if len(actual) != len(expected) or any(
            np.shape(a) != e.shape for e, a in zip(expected, actual, strict=True)):
        print(f"  shapes {[np.shape(a) for a in actual]}, expected {[e.shape for e in expected]}")
        return float("inf")
    return max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True))


class Lstm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(2, 3, batch_first=True)

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        return y, h, c


def export(module) -> bytes:
    dims = ({0: torch.export.Dim("batch"), 1: torch.export.Dim("time")},)
    program = torch.onnx.export(module, (torch.randn(2, 4, 2),), dynamo=True,
                                input_names=["x"], dynamic_shapes=dims, verbose=False)
    return program.model_proto.SerializeToString()


def main() -> int:
    warnings.filterwarnings("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.manual_seed(0)
    module = Lstm().eval()
    x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)  # B=3, T=5
    expected = reference(module.lstm, x)
    reproduced = False
    for attempt in ("first", "second"):
        model = export(module)
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        x_type = onnx.load_from_string(model).graph.input[0].type.tensor_type
        declared = [d.dim_param or d.dim_value for d in x_type.shape.dim]
        try:
            diff = max_abs_diff(expected, session.run(None, {"x": x}))
            shown = f"max abs diff {diff:.3g} (tolerance {TOLERANCE:g})"
        except Exception as exc:  # ONNX Runtime refusing the length is the bug
            diff, shown = float("inf"), f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        print(f"torch {torch.__version__} {attempt} export: x declared {declared}; "
              f"at B=3, T=5: {shown}")
        reproduced |= diff > TOLERANCE
    print("REPRODUCED" if reproduced else "FIXED: update its Known and findings/README.md")
    return 1 if reproduced else 0


if __name__ == "__main__":
    sys.exit(main())
