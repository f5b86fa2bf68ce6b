"""NeoML ``Lstm`` layer weights.

Native form for one layer and direction: ``{input_weights (4H, I),
recurrent_weights (4H, H), input_free_term (4H), recurrent_free_term (4H)}``
with gate blocks in NeoML's order g f i o ("main, forget, input, reset"), as
plain (4H, ...) matrices (the runtime reshapes them into NeoML's 7-D blobs).
A stack is a list over layers of ``[forward]`` or ``[forward, backward]``
dicts; the backward one belongs to an ``Lstm(reverse_seq=True)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.formats import _common as c
from equivalence.spec import LSTMSpec

NAME = "neoml"
SUPPORTED = frozenset({"stacked layers", "bidirectional"})
GATE_ORDER = (2, 1, 0, 3)  # NeoML block k is canonical block GATE_ORDER[k]: g f i o
KEYS = ("input_weights", "recurrent_weights", "input_free_term", "recurrent_free_term")
FIELDS = ("w_input", "w_recurrent", "b_input", "b_recurrent")


def to_canonical(native: Any) -> LSTMWeights:
    """NeoML weights -> canonical."""
    layers = c.layer_grid(native, f"{NAME} weights")
    first = layers[0][0]
    c.check_keys(first, KEYS, (), f"{NAME} layer 0")
    w = c.as_weight(first["input_weights"], "layer 0 input_weights")
    c.expect_ndim(w, "layer 0 input_weights", 2, "(4H, I)")
    spec = LSTMSpec(
        w.shape[1], c.gate_units(w, "layer 0 input_weights", 0), len(layers), len(layers[0])
    )
    back = c.inverse_order(GATE_ORDER)
    cells, dtypes = [], []
    for k, per_direction in enumerate(layers):
        shapes = dict(zip(KEYS, _shapes(spec, k), strict=True))
        for j, item in enumerate(per_direction):
            where = f"layer {k}" + ("" if spec.directions == 1 else (" forward", " backward")[j])
            c.check_keys(item, KEYS, (), f"{NAME} {where}")
            read = {key: c.as_weight(item[key], f"{where} {key}") for key in KEYS}
            for key in KEYS:
                c.expect_shape(read[key], f"{where} {key}", shapes[key])
            dtypes += [(f"{where} {key}", array) for key, array in read.items()]
            cells.append(
                CellWeights(
                    **{
                        f: c.permute_gates(read[key], back)
                        for f, key in zip(FIELDS, KEYS, strict=True)
                    }
                )
            )
    return c.build(spec.replace(dtype=c.common_dtype(dtypes)), cells)


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
    return c.write_grid(weights, NAME, SUPPORTED, _write_cell)


def _write_cell(cell: CellWeights) -> dict[str, np.ndarray]:
    return {key: c.permute_gates(getattr(cell, f), GATE_ORDER)
            for f, key in zip(FIELDS, KEYS, strict=True)}
