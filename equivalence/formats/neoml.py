"""NeoML ``Lstm`` and ``Gru`` layer weights.

Native form for one layer and direction: ``{input_weights (4H, I),
recurrent_weights (4H, H), input_free_term (4H), recurrent_free_term (4H)}``
with gate blocks in NeoML's order g f i o ("main, forget, input, reset"), as
plain (4H, ...) matrices (the runtime reshapes them into NeoML's 7-D blobs).
A stack is a list over layers of ``[forward]`` or ``[forward, backward]``
dicts; the backward one belongs to an ``Lstm(reverse_seq=True)``.

``neoml.Dnn.Gru`` (``cell="gru"``): ``{gate_weights (2H, I+H), gate_free_term (2H),
main_weights (H, I+H), main_free_term (H)}``; the gate rows are z then r ("update,
reset"), every matrix's columns are [input, hidden]. NeoML computes the reset gate
before the matmul, n = tanh(W_n x + R_n (r * h) + b_n), with one free term per gate:
it holds ``reset_after=False`` exactly (the two biases summed, b_hn being outside
r there) and refuses ``reset_after=True`` by name (facts: tests/test_neoml_gru.py,
neoml 2.0.210). A backward GRU direction runs reversed (the runtime reverses it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.errors import ShapeError, UnsupportedFeatureError
from equivalence.formats import _common as c
from equivalence.spec import LSTMSpec

NAME = "neoml"
# Gru: the reset gate on h, before the matmul only (the registry row's reset_after=False)
SUPPORTED = frozenset({"stacked layers", "bidirectional", "cell=gru", "reset_after=False"})
GATE_ORDER = (2, 1, 0, 3)  # NeoML block k is canonical block GATE_ORDER[k]: g f i o
KEYS = ("input_weights", "recurrent_weights", "input_free_term", "recurrent_free_term")
FIELDS = ("w_input", "w_recurrent", "b_input", "b_recurrent")
GRU_KEYS = ("gate_weights", "gate_free_term", "main_weights", "main_free_term")


def to_canonical(native: Any, *, cell: str = "lstm") -> LSTMWeights:
    """NeoML weights -> canonical; ``cell="gru"`` reads ``Gru`` layers (reset_after=False)."""
    cell = c.known_cell(cell, NAME, SUPPORTED)
    layers = c.layer_grid(native, f"{NAME} weights")
    spec = (_gru_spec if cell == "gru" else _lstm_spec)(layers)
    return c.read_grid(layers, spec, _read_gru_cell if cell == "gru" else _read_lstm_cell)


def _lstm_spec(layers: list[list[Any]]) -> LSTMSpec:
    first = layers[0][0]
    c.check_keys(first, KEYS, (), f"{NAME} layer 0")
    w = c.as_weight(first["input_weights"], "layer 0 input_weights")
    c.expect_ndim(w, "layer 0 input_weights", 2, "(4H, I)")
    return LSTMSpec(
        w.shape[1], c.gate_units(w, "layer 0 input_weights", 0), len(layers), len(layers[0])
    )


def _gru_spec(layers: list[list[Any]]) -> LSTMSpec:
    """H from main_weights' rows, I from its columns (I + H)."""
    first = layers[0][0]
    c.check_keys(first, GRU_KEYS, (), f"{NAME} layer 0")
    w = c.as_weight(first["main_weights"], "layer 0 main_weights")
    c.expect_ndim(w, "layer 0 main_weights", 2, "(H, I+H)")
    units = w.shape[0]
    if w.shape[1] <= units:
        raise ShapeError("layer 0 main_weights", tuple(w.shape), f"({units}, I+{units})",
                           "the columns are [input, hidden]: at least one input column")
    return LSTMSpec(w.shape[1] - units, units, len(layers), len(layers[0]), cell="gru",
                    reset_after=False)


Named = list[tuple[str, np.ndarray]]


def _read_lstm_cell(item: Any, where: str, spec: LSTMSpec, layer: int
                    ) -> tuple[CellWeights, Named]:
    c.check_keys(item, KEYS, (), f"{NAME} {where}")
    shapes = dict(zip(KEYS, _shapes(spec, layer), strict=True))
    read = {key: c.as_weight(item[key], f"{where} {key}") for key in KEYS}
    for key in KEYS:
        c.expect_shape(read[key], f"{where} {key}", shapes[key])
    back = c.inverse_order(GATE_ORDER)
    weights = CellWeights(**{f: c.permute_gates(read[key], back)
                             for f, key in zip(FIELDS, KEYS, strict=True)})
    return weights, [(f"{where} {key}", array) for key, array in read.items()]


def _read_gru_cell(item: Any, where: str, spec: LSTMSpec, layer: int
                   ) -> tuple[CellWeights, Named]:
    """z, r rows and [input, hidden] columns -> canonical r z n; one free term per gate, so
    the recurrent biases are zero (the same network under reset_after=False)."""
    c.check_keys(item, GRU_KEYS, (), f"{NAME} {where}")
    units, width = spec.units, spec.layer_input_size(layer)
    shapes = {"gate_weights": (2 * units, width + units), "gate_free_term": (2 * units,),
              "main_weights": (units, width + units), "main_free_term": (units,)}
    read = {key: c.as_weight(item[key], f"{where} {key}") for key in GRU_KEYS}
    for key in GRU_KEYS:
        c.expect_shape(read[key], f"{where} {key}", shapes[key])
    gates, main = read["gate_weights"], read["main_weights"]
    z, r = gates[:units], gates[units:]
    rows = np.concatenate([r, z, main])  # canonical r z n, columns still [input, hidden]
    b_z, b_r = read["gate_free_term"][:units], read["gate_free_term"][units:]
    bias = np.concatenate([b_r, b_z, read["main_free_term"]])
    weights = CellWeights(w_input=rows[:, :width].copy(), w_recurrent=rows[:, width:].copy(),
                          b_input=bias, b_recurrent=np.zeros_like(bias))
    return weights, [(f"{where} {key}", array) for key, array in read.items()]


def _shapes(spec: LSTMSpec, layer: int) -> tuple[tuple[int, ...], ...]:
    units = spec.units
    return (
        (4 * units, spec.layer_input_size(layer)),
        (4 * units, units),
        (4 * units,),
        (4 * units,),
    )


def from_canonical(
    weights: LSTMWeights,
) -> dict[str, np.ndarray] | list[list[dict[str, np.ndarray]]]:
    """Canonical -> one dict (single cell) or a list of per-layer direction lists."""
    spec = weights.spec
    if spec.cell == "gru" and spec.reset_after:
        # NeoML multiplies r into h before the matmul; r * (R_n h + b_hn) has no NeoML form
        raise UnsupportedFeatureError(NAME, "reset_after=True",
                                      "NeoML's Gru applies the reset gate before the matmul")
    write = _write_gru_cell if spec.cell == "gru" else _write_cell
    return c.write_grid(weights, NAME, SUPPORTED, write)


def _write_cell(cell: CellWeights) -> dict[str, np.ndarray]:
    return {key: c.permute_gates(getattr(cell, f), GATE_ORDER)
            for f, key in zip(FIELDS, KEYS, strict=True)}


def _write_gru_cell(cell: CellWeights) -> dict[str, np.ndarray]:
    """Canonical r z n -> z r gate rows and the n main rows, columns [input, hidden]; each
    free term the two biases summed (exact for reset_after=False: b_hn is outside r)."""
    both = np.concatenate([cell.w_input, cell.w_recurrent], axis=1)
    bias = cell.b_input + cell.b_recurrent
    r, z, n = np.split(both, 3)
    b_r, b_z, b_n = np.split(bias, 3)
    return {"gate_weights": c.copy_out(np.concatenate([z, r])),
            "gate_free_term": c.copy_out(np.concatenate([b_z, b_r])),
            "main_weights": c.copy_out(n), "main_free_term": c.copy_out(b_n)}
