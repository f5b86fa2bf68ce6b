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

``mlx.nn.GRU`` (``cell="gru"``): ``{Wx (3H, I), Wh (3H, H), b (3H), bhn (H)}``, gates
r z n in rows (canonical order), ``b`` the input biases with the r and z recurrent
biases summed in, ``bhn`` the candidate's recurrent bias, inside r * (...): MLX's
only variant, reset_after=True (exact both ways).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.formats import _common as c
from equivalence.spec import LSTMSpec

NAME = "mlx"
SUPPORTED = frozenset({"stacked layers", "bidirectional", "cell=gru"})
KEYS = ("Wx", "Wh")
OPTIONAL = ("bias",)
GRU_OPTIONAL = ("b", "bhn")


Named = list[tuple[str, np.ndarray]]


def _read_cell(
    item: Mapping[str, Any], where: str, spec: LSTMSpec, layer: int
) -> tuple[CellWeights, Named]:
    """One cell's weights, checked, and its arrays by name (for the one-dtype check)."""
    optional = GRU_OPTIONAL if spec.cell == "gru" else OPTIONAL
    c.check_keys(item, KEYS, optional, f"{NAME} {where}")
    units, rows = spec.units, spec.gate_count * spec.units
    expected = {"Wx": (rows, spec.layer_input_size(layer)), "Wh": (rows, units),
                "bias": (rows,), "b": (rows,), "bhn": (units,)}
    read = {key: c.as_weight(item[key], f"{where} {key}") for key in (*KEYS, *optional)
            if key in item}
    for key, array in read.items():
        c.expect_shape(array, f"{where} {key}", expected[key])
    dtype = read["Wx"].dtype
    bias = read[optional[0]].copy() if optional[0] in read else np.zeros(rows, dtype)
    recurrent = np.zeros_like(bias)
    if spec.cell == "gru" and "bhn" in read:
        recurrent[2 * units:] = read["bhn"]  # b_hn; the r and z recurrent biases are in b
    cell = CellWeights(w_input=read["Wx"].copy(), w_recurrent=read["Wh"].copy(),
                       b_input=bias, b_recurrent=recurrent)
    return cell, [(f"{where} {key}", array) for key, array in read.items()]


def to_canonical(native: Any, *, cell: str = "lstm") -> LSTMWeights:
    """MLX weights -> canonical; ``cell="gru"`` reads ``nn.GRU`` parameters."""
    cell = c.known_cell(cell, NAME, SUPPORTED)
    layers = c.layer_grid(native, f"{NAME} weights")
    first = layers[0][0]
    gates = 3 if cell == "gru" else 4
    c.check_keys(first, KEYS, GRU_OPTIONAL if cell == "gru" else OPTIONAL, f"{NAME} layer 0")
    w = c.as_weight(first["Wx"], "layer 0 Wx")
    c.expect_ndim(w, "layer 0 Wx", 2, f"({gates}H, I)")
    spec = LSTMSpec(w.shape[1], c.gate_units(w, "layer 0 Wx", 0, gates=gates), len(layers),
                    len(layers[0]), cell=cell)
    return c.read_grid(layers, spec, _read_cell)


def from_canonical(
    weights: LSTMWeights,
) -> dict[str, np.ndarray] | list[list[dict[str, np.ndarray]]]:
    """Canonical -> one dict (single cell) or a list of per-layer direction lists."""
    write = _write_gru_cell if weights.spec.cell == "gru" else _write_cell
    return c.write_grid(weights, NAME, SUPPORTED, write)


def _write_cell(cell: CellWeights) -> dict[str, np.ndarray]:
    return {"Wx": c.copy_out(cell.w_input), "Wh": c.copy_out(cell.w_recurrent),
            "bias": c.copy_out(cell.bias())}


def _write_gru_cell(cell: CellWeights) -> dict[str, np.ndarray]:
    """b: every input bias plus the r and z recurrent ones; bhn: the candidate's own."""
    units = cell.w_recurrent.shape[1]
    b = cell.b_input + np.concatenate([cell.b_recurrent[:2 * units],
                                       np.zeros_like(cell.b_recurrent[2 * units:])])
    return {"Wx": c.copy_out(cell.w_input), "Wh": c.copy_out(cell.w_recurrent),
            "b": c.copy_out(b), "bhn": c.copy_out(cell.b_recurrent[2 * units:])}
