"""MLX ``mlx.nn.LSTM`` weights.

Native form for one layer and direction: exactly ``dict(lstm.parameters())``,
``{Wx (4H, I), Wh (4H, H), bias (4H)}``, gate blocks i f g o in rows, ``W @ x``
orientation as PyTorch's, but one bias (the canonical biases are summed, as
for Keras). ``bias`` is absent for ``nn.LSTM(bias=False)`` and read as zeros.

MLX has no stacked or bidirectional LSTM layer: models hold a list of
``nn.LSTM`` and run a backward one on the time-reversed input. A stack here is
a list over layers of ``[forward]`` or ``[forward, backward]`` dicts, as for
neoml and flax.

Pitfalls when porting: PyTorch's two biases must be summed (``bias_ih +
bias_hh``); the kernels are *not* transposed as for Keras; ``__call__(x,
hidden, cell)`` takes h before c and returns every step's h and c, so the
final states are the last step's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.formats import _common as c
from equivalence.spec import LSTMSpec

NAME = "mlx"
SUPPORTED = frozenset({"stacked layers", "bidirectional"})
KEYS = ("Wx", "Wh")
OPTIONAL = ("bias",)


Named = list[tuple[str, np.ndarray]]


def _read_cell(
    item: Mapping[str, Any], where: str, spec: LSTMSpec, layer: int
) -> tuple[CellWeights, Named]:
    """One cell's weights, checked, and its arrays by name (for the one-dtype check)."""
    c.check_keys(item, KEYS, OPTIONAL, f"{NAME} {where}")
    units = spec.units
    expected = {"Wx": (4 * units, spec.layer_input_size(layer)), "Wh": (4 * units, units),
                "bias": (4 * units,)}
    read = {key: c.as_weight(item[key], f"{where} {key}") for key in (*KEYS, *OPTIONAL)
            if key in item}
    for key, array in read.items():
        c.expect_shape(array, f"{where} {key}", expected[key])
    bias = read["bias"].copy() if "bias" in read else np.zeros(4 * units, read["Wx"].dtype)
    cell = CellWeights(w_input=read["Wx"].copy(), w_recurrent=read["Wh"].copy(),
                       b_input=bias, b_recurrent=np.zeros_like(bias))
    return cell, [(f"{where} {key}", array) for key, array in read.items()]


def to_canonical(native: Any) -> LSTMWeights:
    """MLX weights -> canonical."""
    layers = c.layer_grid(native, f"{NAME} weights")
    first = layers[0][0]
    c.check_keys(first, KEYS, OPTIONAL, f"{NAME} layer 0")
    w = c.as_weight(first["Wx"], "layer 0 Wx")
    c.expect_ndim(w, "layer 0 Wx", 2, "(4H, I)")
    spec = LSTMSpec(w.shape[1], c.gate_units(w, "layer 0 Wx", 0), len(layers), len(layers[0]))
    cells, named = [], []
    for k, per_direction in enumerate(layers):
        for j, item in enumerate(per_direction):
            where = f"layer {k}" + ("" if spec.directions == 1 else (" forward", " backward")[j])
            cell, arrays = _read_cell(item, where, spec, k)
            cells.append(cell)
            named += arrays
    return c.build(spec.replace(dtype=c.common_dtype(named)), cells)


def from_canonical(
    weights: LSTMWeights,
) -> dict[str, np.ndarray] | list[list[dict[str, np.ndarray]]]:
    """Canonical -> one dict (single cell) or a list of per-layer direction lists."""
    return c.write_grid(weights, NAME, SUPPORTED, _write_cell)


def _write_cell(cell: CellWeights) -> dict[str, np.ndarray]:
    return {"Wx": c.copy_out(cell.w_input), "Wh": c.copy_out(cell.w_recurrent),
            "bias": c.copy_out(cell.bias())}
