"""Keras 3 / tf_keras ``LSTM`` and ``LSTMCell`` weights.

Native form: a flat list, three arrays per LSTM (``kernel`` (in, 4H),
``recurrent_kernel`` (H, 4H), ``bias`` (4H)), layers bottom-up, a
``Bidirectional`` layer giving forward then backward: exactly
``model.get_weights()`` of a stack of (Bidirectional) LSTM layers.
Gate order i f g o in columns; one bias (the canonical biases are summed).

A Keras ``GRU`` (``cell="gru"``) has the same three arrays with 3H columns in
gate order z r h (canonical r z n: z and r trade places). Its bias says the
variant: ``reset_after=True`` (Keras's default) keeps both biases as a (2, 3H)
array, [input, recurrent]; ``reset_after=False`` has one (3H,) bias, the two
canonical biases summed (exact there: the candidate's recurrent bias sits
outside r * (...)). The reader takes ``reset_after`` and checks the bias's shape
against it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.formats import _common as c
from equivalence.spec import ACTIVATIONS, LSTMSpec

NAME = "keras"
SUPPORTED = frozenset(
    {
        "stacked layers",
        "bidirectional",
        "recurrent_activation=hard_sigmoid_tf_keras",
        "recurrent_activation=hard_sigmoid_keras3",
        "cell=gru",
        "reset_after=False",
    }
    # LSTM(activation=...): the spec travels beside the arrays, as the gate activation does.
    | {f"activation={name}" for name in ACTIVATIONS}
)
PER_LSTM = 3
GRU_GATE_ORDER = (1, 0, 2)  # Keras z r h; canonical r z n (its own inverse)


def field_name(index: int, layer: int, direction: int, directions: int) -> str:
    """A readable name for array ``index`` of the flat list."""
    part = ("kernel", "recurrent_kernel", "bias")[index % PER_LSTM]
    side = ("", " forward", " backward")[direction + 1 if directions == 2 else 0]
    return f"weights[{index}] (layer {layer}{side} {part})"


def read_groups(native: Any, directions: int, bias_factor: int, cell: str = "lstm",
                reset_after: bool = True, fmt: str = NAME) -> tuple[LSTMSpec, list]:
    """Validate the flat list and return the inferred spec and its 3-array groups.

    ``bias_factor`` 2 is a cuDNN bias (8H, a CuDNNGRU's 6H); a GRU's bias is (2, 3H)
    with ``reset_after`` and (3H,) without."""
    items = c.expect_sequence(native, f"{fmt} weights")  # fmt: the format being read
    directions = c.check_directions(directions)
    layers = c.check_layer_count(len(items), PER_LSTM, directions, "weights")
    names = [field_name(n, *divmod(n // PER_LSTM, directions), directions)
             for n in range(len(items))]
    arrays = [c.as_weight(a, name) for name, a in zip(names, items, strict=True)]
    gates = 3 if cell == "gru" else 4
    c.expect_ndim(arrays[0], field_name(0, 0, 0, directions), 2, f"(I, {gates}H)")
    input_size = arrays[0].shape[0]
    units = c.gate_units(arrays[0], field_name(0, 0, 0, directions), axis=1, gates=gates)
    dtype = c.common_dtype(zip(names, arrays, strict=True))
    spec = LSTMSpec(input_size, units, layers, directions, dtype=dtype, cell=cell,
                    reset_after=reset_after)
    bias_shape, why = _bias_shape(spec, bias_factor)
    groups = []
    for n in range(layers * directions):
        layer, direction = divmod(n, directions)
        expected = [(spec.layer_input_size(layer), gates * units), (units, gates * units),
                    bias_shape]
        for k, shape in enumerate(expected):
            index = PER_LSTM * n + k
            c.expect_shape(arrays[index], field_name(index, layer, direction, directions), shape,
                           why if k == 2 else "")
        groups.append(arrays[PER_LSTM * n : PER_LSTM * (n + 1)])
    return spec, groups


def _bias_shape(spec: LSTMSpec, bias_factor: int) -> tuple[tuple[int, ...], str]:
    """The bias shape this spec's layer has, and why (for the error message)."""
    h = spec.units
    if spec.cell != "gru":
        return (bias_factor * 4 * h,), ""
    if bias_factor == 2:
        return (6 * h,), "CuDNNGRU keeps the input then the recurrent biases"
    if spec.reset_after:
        return (2, 3 * h), "GRU(reset_after=True) keeps [input, recurrent] biases"
    return (3 * h,), "GRU(reset_after=False) has one bias"


def to_canonical(
    native: Any, *, directions: int = 1, recurrent_activation: str = "sigmoid",
    activation: str = "tanh", cell: str = "lstm", reset_after: bool = True,
) -> LSTMWeights:
    """Keras weights -> canonical. ``directions=2`` reads a Bidirectional layout;
    ``activation`` is the layer's ``activation=`` (the arrays do not carry it);
    ``cell="gru"`` reads ``GRU`` layers made with ``reset_after``."""
    cell = c.known_cell(cell, NAME, SUPPORTED)
    spec, groups = read_groups(native, directions, 1, cell, bool(reset_after))
    spec = spec.replace(recurrent_activation=recurrent_activation, activation=activation)
    order = c.inverse_order(GRU_GATE_ORDER) if cell == "gru" else None
    cells = [_cell(kernel, recurrent, bias, order) for kernel, recurrent, bias in groups]
    return c.build(spec, cells)


def _cell(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray,
          order: list[int] | None) -> CellWeights:
    """One layer-direction's arrays -> canonical (``order`` reorders a GRU's gates)."""
    b_input, b_recurrent = (bias[0], bias[1]) if bias.ndim == 2 else (bias, np.zeros_like(bias))
    fields = {"w_input": kernel.T, "w_recurrent": recurrent.T, "b_input": b_input,
              "b_recurrent": b_recurrent}
    if order is not None:
        fields = {k: c.permute_gates(v, order) for k, v in fields.items()}
    return CellWeights(**{k: np.array(v, copy=True) for k, v in fields.items()})


def from_canonical(weights: LSTMWeights) -> list[np.ndarray]:
    """Canonical -> Keras flat list (biases summed, forget offset folded)."""
    spec = weights.spec
    c.refuse_features(spec, NAME, SUPPORTED)
    weights = weights.with_folded_forget_bias()
    native: list[np.ndarray] = []
    for _layer, _direction, cell in weights.iter_cells():
        native += [c.copy_out(a) for a in _native_cell(cell, spec)]
    return native


def _native_cell(cell: CellWeights, spec: LSTMSpec) -> tuple[np.ndarray, ...]:
    """kernel, recurrent_kernel, bias of one layer-direction."""
    if spec.cell != "gru":
        return cell.w_input.T, cell.w_recurrent.T, cell.bias()

    def keras(a: np.ndarray) -> np.ndarray:
        return c.permute_gates(a, GRU_GATE_ORDER)

    # reset_after=False: b_hn is outside r * (...), so one summed bias is the same network
    bias = (np.stack([keras(cell.b_input), keras(cell.b_recurrent)]) if spec.reset_after
            else keras(cell.bias()))
    return keras(cell.w_input).T, keras(cell.w_recurrent).T, bias
