"""Keras 3 / tf_keras ``LSTM`` and ``LSTMCell`` weights.

Native form: a flat list, three arrays per LSTM (``kernel`` (in, 4H),
``recurrent_kernel`` (H, 4H), ``bias`` (4H)), layers bottom-up, a
``Bidirectional`` layer giving forward then backward: exactly
``model.get_weights()`` of a stack of (Bidirectional) LSTM layers.
Gate order i f g o in columns; one bias (the canonical biases are summed).
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
    }
    # LSTM(activation=...): the spec travels beside the arrays, as the gate activation does.
    | {f"activation={name}" for name in ACTIVATIONS}
)
PER_LSTM = 3


def field_name(index: int, layer: int, direction: int, directions: int) -> str:
    """A readable name for array ``index`` of the flat list."""
    part = ("kernel", "recurrent_kernel", "bias")[index % PER_LSTM]
    side = ("", " forward", " backward")[direction + 1 if directions == 2 else 0]
    return f"weights[{index}] (layer {layer}{side} {part})"


def read_groups(native: Any, directions: int, bias_factor: int) -> tuple[LSTMSpec, list]:
    """Validate the flat list and return the inferred spec and its 3-array groups."""
    items = c.expect_sequence(native, f"{NAME} weights")
    directions = c.check_directions(directions)
    layers = c.check_layer_count(len(items), PER_LSTM, directions, "weights")
    names = [field_name(n, *divmod(n // PER_LSTM, directions), directions)
             for n in range(len(items))]
    arrays = [c.as_weight(a, name) for name, a in zip(names, items, strict=True)]
    c.expect_ndim(arrays[0], field_name(0, 0, 0, directions), 2, "(I, 4H)")
    input_size = arrays[0].shape[0]
    units = c.gate_units(arrays[0], field_name(0, 0, 0, directions), axis=1)
    dtype = c.common_dtype(zip(names, arrays, strict=True))
    spec = LSTMSpec(input_size, units, layers, directions, dtype=dtype)
    groups = []
    for n in range(layers * directions):
        layer, direction = divmod(n, directions)
        expected = [
            (spec.layer_input_size(layer), 4 * units),
            (units, 4 * units),
            (bias_factor * 4 * units,),
        ]
        for k, shape in enumerate(expected):
            index = PER_LSTM * n + k
            c.expect_shape(arrays[index], field_name(index, layer, direction, directions), shape)
        groups.append(arrays[PER_LSTM * n : PER_LSTM * (n + 1)])
    return spec, groups


def to_canonical(
    native: Any, *, directions: int = 1, recurrent_activation: str = "sigmoid",
    activation: str = "tanh",
) -> LSTMWeights:
    """Keras weights -> canonical. ``directions=2`` reads a Bidirectional layout;
    ``activation`` is the layer's ``activation=`` (the arrays do not carry it)."""
    spec, groups = read_groups(native, directions, bias_factor=1)
    spec = spec.replace(recurrent_activation=recurrent_activation, activation=activation)
    cells = [
        CellWeights(
            w_input=kernel.T.copy(),
            w_recurrent=recurrent.T.copy(),
            b_input=bias.copy(),
            b_recurrent=np.zeros_like(bias),
        )
        for kernel, recurrent, bias in groups
    ]
    return c.build(spec, cells)


def from_canonical(weights: LSTMWeights) -> list[np.ndarray]:
    """Canonical -> Keras flat list (biases summed, forget offset folded)."""
    c.refuse_features(weights.spec, NAME, SUPPORTED)
    weights = weights.with_folded_forget_bias()
    native: list[np.ndarray] = []
    for _layer, _direction, cell in weights.iter_cells():
        native += [
            c.copy_out(cell.w_input.T),
            c.copy_out(cell.w_recurrent.T),
            c.copy_out(cell.bias()),
        ]
    return native
