"""madmom ``GRULayer``s mapped onto ONNX ``GRU`` node weights (pure numpy).

Owns the GRU half of :mod:`equivalence.files.madmom`: which gates a layer has, how they
map, and what is refused. madmom 0.17's ``GRULayer.activate`` (``madmom/ml/nn/layers.py``)
computes, per frame (row vectors, ``x @ W``)::

    r = gate_fn(x Wr + br + h_prev Rr)                 (reset_gate, a Gate)
    u = gate_fn(x Wu + bu + h_prev Ru)                 (update_gate)
    c = cell_fn(x Wc + bc + r * (h_prev Rc))           (cell, a GRUCell: no recurrent bias)
    h = u * c + (1 - u) * h_prev

The reset gate scales ``h_prev Rc`` after the matmul: ONNX ``linear_before_reset=1``
(reset_after=True) with a zero recurrent candidate bias. madmom's ``u`` weighs the new
candidate, where ONNX's (and PyTorch's) ``z`` weighs the old state: z = 1 - u =
sigmoid(-(x Wu + bu + h_prev Ru)) for a sigmoid gate, so the z block is the update
gate's weights and bias negated (negation is exact). A gate function other than sigmoid
has no such z, and is refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GATES = ("update_gate", "reset_gate", "cell")  # ONNX GRU's z r h
GATE_FNS = ("update_gate", "reset_gate")
SIGN = {"update_gate": -1.0, "reset_gate": 1.0, "cell": 1.0}  # z = 1 - u: u's block negated


def semantics(gate_fns: set[str], cell_fns: set[str]) -> tuple[str | None, dict[str, Any]]:
    """A reason the layer cannot be converted (by name), and spec fields it sets."""
    if gate_fns != {"sigmoid"}:
        return (f"gate activation {', '.join(sorted(gate_fns))} (only sigmoid is read: "
                "madmom's u is 1 - z only for a sigmoid)"), {}
    if len(cell_fns) != 1:
        return f"cell activations {', '.join(sorted(cell_fns))} differ between directions", {}
    cell_fn = next(iter(cell_fns))
    return None, ({} if cell_fn == "tanh" else {"activation": cell_fn})


def node(arrays: list[dict[str, dict[str, np.ndarray]]], units: int) -> dict[str, np.ndarray]:
    """W (D, 3H, I), R (D, 3H, H), B (D, 6H) in ONNX's z r h order from each direction's
    gates (shapes already checked): the update gate negated, the recurrent half of B zero."""
    def blocks(gates: dict[str, dict[str, np.ndarray]], key: str) -> np.ndarray:
        return np.concatenate([SIGN[g] * gates[g][key].T for g in GATES])

    dtype = arrays[0]["cell"]["weights"].dtype
    w = np.stack([blocks(g, "weights") for g in arrays])
    r = np.stack([blocks(g, "recurrent_weights") for g in arrays])
    b = np.stack([np.concatenate([SIGN[k] * g[k]["bias"].reshape(units) for k in GATES]
                                 + [np.zeros(3 * units, dtype)]) for g in arrays])
    return {"W": w.astype(dtype), "R": r.astype(dtype), "B": b.astype(dtype)}
