"""nobuco cannot convert an nn.LSTM on a packed sequence (sequence lengths).

Converter: nobuco 0.17.0 (with torch 2.14.1, torchvision 0.29.1, tensorflow-cpu 2.15.1,
keras 2.15.0: the project's side environment, ``tox -e thirdparty``; not in the main
venv, so this script exits 2 there).
Third-party known failure: nobuco / "AssertionError"
(equivalence/converters/nobuco_to_keras.py, the sequence lengths configuration).
Upstream: not reported upstream (searched for nobuco PackedSequence / LSTM,
2026-12-02). Issue ready to file (AlexanderLutsenko/nobuco):

    Title: nn.LSTM with pack_padded_sequence: conversion fails (PackedSequence has
    no attribute 'dim', then AssertionError)

    Versions: nobuco 0.17.0, torch 2.14.1, tensorflow-cpu 2.15.1, keras 2.15.0,
    Python 3.11, Linux x86_64.

    Steps: run this script: a batch-first nn.LSTM(2, 3) between
    pack_padded_sequence(enforce_sorted=False) and pad_packed_sequence, converted with
    nobuco.pytorch_to_keras(module, args=[x, lengths], inputs_channel_order=PYTORCH,
    outputs_channel_order=PYTORCH).

    Expected: a Keras model whose outputs for lengths [3, 1] match the LSTM equations
    (zero output past each length, the state at each sequence's end), or a clear
    "not supported" error.

    Actual: the nn.LSTM converter calls .dim() on the PackedSequence ("'PackedSequence'
    object has no attribute 'dim'", printed as a conversion error), then rebuilding the
    PackedSequence from traced tensors raises AssertionError ("Expected data to be a
    list or tuple of length 2").

Once it converts, the Keras model runs on [x, lengths] and is compared with the LSTM
equations in float64 numpy. Exits 1 while the bug reproduces, 0 once fixed, 2 when nobuco
is missing.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    import nobuco
    import torch
except ImportError as exc:
    print(f"not installed: {exc}")
    sys.exit(2)

KNOWN_FAILURES = [("nobuco", "AssertionError")]
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
    torch.manual_seed(0)
    module = PackedLstm().eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 2)).astype(np.float32)  # B=2, T=3
    lengths = np.array([3, 1])
    args = [torch.from_numpy(x), torch.from_numpy(lengths)]
    order = nobuco.ChannelOrder.PYTORCH
    try:
        keras_model = nobuco.pytorch_to_keras(module, args=args, inputs_channel_order=order,
                                              outputs_channel_order=order)
    except AssertionError as exc:  # the bug
        print(f"nobuco: conversion raised AssertionError: {exc}; max abs diff: none")
        print("REPRODUCED")
        return 1
    actual = [np.asarray(o) for o in keras_model([x, lengths])]
    diff = max_abs_diff(reference(module.lstm, x, lengths), actual)
    print(f"nobuco: converted; lengths [3, 1]: max abs diff {diff:.3g} "
          f"(tolerance {TOLERANCE:g})")
    print("REPRODUCED" if diff > TOLERANCE else
          "FIXED: update its Known and findings/README.md")
    return 1 if diff > TOLERANCE else 0


if __name__ == "__main__":
    sys.exit(main())
