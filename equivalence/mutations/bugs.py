"""The bugs of the mutation self-test, as code: each breaks correctly converted weights.

A bug takes ``(moved, spec, original)``: the project's correct conversion of
the source's native weights, the spec, and the source's native weights, and
returns what a buggy converter would have produced. Adapters break a
target's result instead. Single mistakes first, then compound ones (two
mistakes at once, as people make them). See :mod:`equivalence.mutations.self_test`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from equivalence.formats import onnx, tf1
from equivalence.formats._common import inverse_order, permute_gates
from equivalence.io_types import LSTMResult
from equivalence.spec import LSTMSpec

Bug = Callable[[Any, LSTMSpec, Any], Any]  # (correctly moved weights, spec, source native)


def keras_arrays(fn: Callable[[np.ndarray], np.ndarray]) -> Bug:
    return lambda moved, spec, original: [fn(a) for a in moved]


def f_slice(bias: np.ndarray, offset: float, position: int) -> np.ndarray:
    bias = np.array(bias, copy=True)
    units = bias.shape[0] // 4
    bias[position * units : (position + 1) * units] += offset
    return bias


def keras_forget_offset(moved: list, spec: LSTMSpec, original: Any) -> list:
    return [a if n % 3 != 2 else f_slice(a, -1.0, 1) for n, a in enumerate(moved)]


def tf1_forget_not_subtracted(moved: Any, spec: LSTMSpec, original: Any) -> Any:
    def fix(name: str, a: np.ndarray) -> np.ndarray:
        return f_slice(a, 1.0, 2) if name.endswith("lstm_cell/bias") else a  # f is block 2

    if isinstance(moved, dict):
        return {k: fix(k, v) for k, v in moved.items()}
    return [fix("lstm_cell/bias" if n == 1 else "", a) for n, a in enumerate(moved)]


def torch_bias_ih_only(moved: list, spec: LSTMSpec, original: dict) -> list:
    return [*moved[:2], np.asarray(original["bias_ih_l0"])]


def torch_reshaped(moved: list, spec: LSTMSpec, original: dict) -> list:
    w_ih, w_hh = (np.asarray(original[k]) for k in ("weight_ih_l0", "weight_hh_l0"))
    return [w_ih.reshape(w_ih.shape[::-1]), w_hh.reshape(w_hh.shape[::-1]), moved[2]]


def mlx_bias_ih_only(moved: dict, spec: LSTMSpec, original: dict) -> dict:
    return {**moved, "bias": np.asarray(original["bias_ih_l0"])}


def keras_to_mlx_reshaped(moved: dict, spec: LSTMSpec, original: list) -> dict:
    kernel, recurrent = (np.asarray(a) for a in original[:2])
    return {**moved, "Wx": kernel.reshape(kernel.shape[::-1]),
            "Wh": recurrent.reshape(recurrent.shape[::-1])}


def onnx_in_canonical_order(moved: Any, spec: LSTMSpec, original: Any) -> Any:
    if isinstance(moved, list):
        return [onnx_in_canonical_order(node, spec, original) for node in moved]
    back = inverse_order(onnx.GATE_ORDER)
    units = spec.units
    bias = moved["B"]
    return {
        **moved,
        "W": permute_gates(moved["W"], back, axis=1),
        "R": permute_gates(moved["R"], back, axis=1),
        "B": np.concatenate(
            [
                permute_gates(bias[:, : 4 * units], back, axis=1),
                permute_gates(bias[:, 4 * units :], back, axis=1),
            ],
            axis=1,
        ),
    }


def cudnn_as_keras(moved: list, spec: LSTMSpec, original: list) -> list:
    """Keras kernels copied into CuDNNLSTM unchanged (only the bias doubled)."""
    return [
        a if n % 3 != 2 else np.tile(0.5 * np.asarray(original[n]), 2)
        for n, a in enumerate(original)
    ]


def cudnn_first_half(moved: list, spec: LSTMSpec, original: list) -> list:
    return [*moved[:2], np.asarray(original[2])[: 4 * spec.units]]


def tf1_split_at_units(moved: list, spec: LSTMSpec, original: list) -> list:
    kernel, bias = np.asarray(original[0]), np.asarray(original[1])
    split = spec.units  # should be the input size
    permuted = permute_gates(kernel, inverse_order(tf1.GATE_ORDER), axis=1)
    folded = f_slice(permute_gates(bias, inverse_order(tf1.GATE_ORDER)), 1.0, 1)
    return [permuted[:split], permuted[split:], folded]


def bidirectional_swapped(moved: list, spec: LSTMSpec, original: Any) -> list:
    groups = [moved[k : k + 3] for k in range(0, len(moved), 3)]
    swapped = [g for k in range(0, len(groups), 2) for g in (groups[k + 1], groups[k])]
    return [a for g in swapped for a in g]


def projection_reshaped(moved: Any, spec: LSTMSpec, original: Any) -> Any:
    if isinstance(moved, list):  # the single-cell list form: the projection is last
        return [*moved[:-1], np.ascontiguousarray(moved[-1].T).reshape(moved[-1].shape)]
    out = dict(moved)
    for key, value in moved.items():
        if key.endswith("projection/kernel"):
            out[key] = np.ascontiguousarray(value.T).reshape(value.shape)
    return out


def peepholes_ifo(moved: Any, spec: LSTMSpec, original: Any) -> Any:
    nodes = moved if isinstance(moved, list) else [moved]
    fixed = []
    for node in nodes:
        rows = list(inverse_order(onnx.PEEPHOLE_ORDER))
        p = node["P"].reshape(node["P"].shape[0], 3, -1)[:, rows]
        fixed.append({**node, "P": p.reshape(node["P"].shape)})
    return fixed if isinstance(moved, list) else fixed[0]


def one_weight_off(moved: list, spec: LSTMSpec, original: Any) -> list:
    kernel = np.array(moved[0], copy=True)
    kernel[0, 2 * spec.units] += np.float32(1e-3)  # input 0 into the g gate of unit 0
    return [kernel, *moved[1:]]


def swap_h_c(result: LSTMResult) -> LSTMResult:
    if result.c is None:  # a GRU: nothing to swap
        return result
    return LSTMResult(result.outputs, result.c, result.h)


def reverse_outputs(result: LSTMResult) -> LSTMResult:
    return LSTMResult(result.outputs[:, ::-1], result.h, result.c)


# --- GRU bugs (Keras GRU(reset_after=True) arrays: kernel, recurrent_kernel, bias (2, 3H))


def gru_zr_swapped(moved: list, spec: LSTMSpec, original: Any) -> list:
    """Keras's z, r, h columns kept where the source (PyTorch) has r, z, n rows."""
    return [permute_gates(np.asarray(a), (1, 0, 2), axis=-1) for a in moved]


def gru_recurrent_bias_summed(moved: list, spec: LSTMSpec, original: Any) -> list:
    """Both biases summed into Keras's input bias row, as for an LSTM: b_hn leaves r * (...)."""
    def summed(n: int, a: np.ndarray) -> np.ndarray:
        if n % 3 != 2:
            return a
        return np.stack([a[0] + a[1], np.zeros_like(a[1])])

    return [summed(n, np.asarray(a)) for n, a in enumerate(moved)]


def gru_zr_swapped_bias_summed(moved: list, spec: LSTMSpec, original: Any) -> list:
    return gru_zr_swapped(gru_recurrent_bias_summed(moved, spec, original), spec, original)


# --- compound bugs: two mistakes at once


def tf1_unordered_forget_at_keras_f(moved: list, spec: LSTMSpec, original: list) -> list:
    """TF1 -> Keras without reordering i, j, f, o, yet forget_bias added at Keras's f slot."""
    kernel, bias = np.asarray(original[0]), np.asarray(original[1])
    return [kernel[: spec.input_size], kernel[spec.input_size :], f_slice(bias, 1.0, 1)]


def torch_fg_swapped_bias_hh_dropped(moved: list, spec: LSTMSpec, original: dict) -> list:
    """PyTorch -> Keras keeping TF1's i, j, f, o order, and bias_hh dropped instead of summed."""
    return [permute_gates(a, (0, 2, 1, 3), axis=-1)
            for a in torch_bias_ih_only(moved, spec, original)]


def onnx_unordered_float16(moved: Any, spec: LSTMSpec, original: Any) -> Any:
    """Keras -> ONNX left in i, f, g, o, and the initializers stored through float16."""
    nodes = onnx_in_canonical_order(moved, spec, original)

    def rounded(node: dict) -> dict:
        return {k: np.asarray(v).astype(np.float16).astype(np.asarray(v).dtype)
                for k, v in node.items()}

    return [rounded(n) for n in nodes] if isinstance(nodes, list) else rounded(nodes)


def cudnn_layout_kept_first_half(moved: list, spec: LSTMSpec, original: list) -> list:
    """CuDNNLSTM -> Keras: kernels copied as they are, and only the input half of the bias."""
    return [np.asarray(original[0]), np.asarray(original[1]),
            np.asarray(original[2])[: 4 * spec.units]]


def bidirectional_and_fg_swapped(moved: list, spec: LSTMSpec, original: Any) -> list:
    swapped = bidirectional_swapped(moved, spec, original)
    return [permute_gates(a, (0, 2, 1, 3), axis=-1) for a in swapped]


def float16_then_one_weight_off(moved: list, spec: LSTMSpec, original: Any) -> list:
    rounded = [a.astype(np.float16).astype(a.dtype) for a in moved]
    return one_weight_off(rounded, spec, original)


def two_weights_off(moved: list, spec: LSTMSpec, original: Any) -> list:
    recurrent = np.array(moved[1], copy=True)
    recurrent[0, spec.units] -= np.float32(2e-3)  # h 0 into the f gate of unit 0
    return one_weight_off([moved[0], recurrent, *moved[2:]], spec, original)


def tf1_recurrent_rows_first(moved: list, spec: LSTMSpec, original: Any) -> list:
    """Keras -> TF1 with the kernel stacked [recurrent; input] instead of [input; recurrent]."""
    kernel = np.asarray(moved[0])
    rows = spec.input_size
    return [np.concatenate([kernel[rows:], kernel[:rows]]), *moved[1:]]


def tf1_recurrent_rows_first_forget_kept(moved: list, spec: LSTMSpec, original: Any) -> list:
    """Keras -> TF1 stacked [recurrent; input], and forget_bias not subtracted either."""
    return tf1_forget_not_subtracted(tf1_recurrent_rows_first(moved, spec, original), spec,
                                     original)


def keras_to_torch_reshaped_bias_twice(moved: dict, spec: LSTMSpec, original: list) -> dict:
    """Keras -> PyTorch: kernels reshaped instead of transposed, the summed bias in both."""
    kernel, recurrent, bias = (np.asarray(a) for a in original)
    return {**moved, "weight_ih_l0": kernel.reshape(kernel.shape[::-1]),
            "weight_hh_l0": recurrent.reshape(recurrent.shape[::-1]),
            "bias_ih_l0": bias.copy(), "bias_hh_l0": bias.copy()}
