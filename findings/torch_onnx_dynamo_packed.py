"""torch.onnx.export(dynamo=True) cannot export an nn.LSTM on a packed sequence.

Converter: torch 2.13.0+cpu ``torch.onnx.export(..., dynamo=True)`` (onnxscript 0.7.2,
onnx 1.23.2); a model it exports would run in onnxruntime 1.32.0 (CPU).
Third-party known failure: torch.onnx.export / "TorchExportError"
(equivalence/converters/torch_onnx_export.py, the sequence lengths configuration).

A batch-first nn.LSTM(2, 3) between pack_padded_sequence and pad_packed_sequence: the
dynamo exporter raises TorchExportError (step 1/3, torch.export), so sequence lengths
cannot be expressed; the TorchScript exporter (dynamo=False) maps them to sequence_lens.
Upstream: https://github.com/pytorch/pytorch/issues/171978 (open: "torch.export fails on
models using pack_padded_sequence with LSTM") and
https://github.com/pytorch/pytorch/issues/112044 (open: pack_padded_sequence /
pad_packed_sequence support in dynamo).

Once the export succeeds, the model runs in ONNX Runtime on lengths [3, 1] and is
compared with the LSTM equations in float64 numpy. Exits 1 while the export fails (or
the model is wrong), 0 once it matches, 2 when torch/onnxruntime are missing.
"""

from __future__ import annotations

import logging
import sys
import warnings

import numpy as np

try:
    import onnxruntime
    import torch
except ImportError as exc:
    print(f"not installed: {exc}")
    sys.exit(2)

KNOWN_FAILURES = [("torch.onnx.export", "TorchExportError")]
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


class PackedLstm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(2, 3, batch_first=True)

    def forward(self, x, lengths):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                         enforce_sorted=False)
        y, (h, c) = self.lstm(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True,
                                                      total_length=x.shape[1])
        return y, h, c


def main() -> int:
    warnings.filterwarnings("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.manual_seed(0)
    module = PackedLstm().eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 2)).astype(np.float32)  # B=2, T=3
    lengths = np.array([3, 1])
    try:
        program = torch.onnx.export(module, (torch.from_numpy(x), torch.from_numpy(lengths)),
                                    dynamo=True, input_names=["x", "lengths"], verbose=False)
    except Exception as exc:  # the export failing is the bug
        print(f"torch {torch.__version__}: export raised {type(exc).__name__}: "
              f"{str(exc).splitlines()[0]}; max abs diff: none (no model)")
        print("REPRODUCED")
        return 1
    session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    fed = dict(zip(names, [x, lengths], strict=False))
    diff = max_abs_diff(reference(module.lstm, x, lengths), session.run(None, fed))
    print(f"torch {torch.__version__}: exported; lengths [3, 1]: max abs diff {diff:.3g} "
          f"(tolerance {TOLERANCE:g})")
    print("REPRODUCED" if diff > TOLERANCE else
          "FIXED: update its Known and findings/README.md")
    return 1 if diff > TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())
