"""ONNX ``LSTM`` operator initializers.

Native form: one dict per LSTM node, ``W`` (D, 4H, I), ``R`` (D, 4H, H),
``B`` (D, 8H) = [input biases, recurrent biases], optional ``P`` (D, 3H); a
stack is a list of such dicts (one node per layer; a single layer may be given
as the dict itself). Gate order i o f c in rows; peepholes i o f. The node's
``clip`` attribute is the spec's ``gate_clip``; ``direction="reverse"`` its
``reverse``, ``input_forget`` its ``input_forget`` and ``activations`` (g = h) its
``activation`` (attributes, which the reader takes as options and a graph or file
writer sets from the spec). ``B`` is required here (write
zeros for a node without one) so a dropped key is never mistaken for zeros.

A ``GRU`` node (``cell="gru"``) has ``W`` (D, 3H, I), ``R`` (D, 3H, H) and
``B`` (D, 6H) = [Wb, Rb], gate order z r h (canonical r z n: z and r trade
places) and no ``P``. Its ``linear_before_reset`` attribute says the variant:
1 is the spec's ``reset_after=True``, 0 (ONNX's default) ``reset_after=False``;
the weights do not say which, so the reader takes ``reset_after``. ``clip`` and
``activations`` f, g (the spec's recurrent and cell activations) as above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.formats import _common as c
from equivalence.spec import ACTIVATIONS, LSTMSpec

NAME = "onnx"
SUPPORTED = frozenset(
    {"stacked layers", "bidirectional", "reverse", "peepholes", "gate_clip", "input_forget"}
    | {f"activation={name}" for name in ACTIVATIONS} | {"cell=gru", "reset_after=False"})
GATE_ORDER = (0, 3, 1, 2)  # ONNX block k is canonical block GATE_ORDER[k]: i o f c
GRU_GATE_ORDER = (1, 0, 2)  # ONNX z r h; canonical r z n (its own inverse)
PEEPHOLE_ORDER = (0, 2, 1)  # ONNX P is i o f; canonical rows are i f o


def _gates(cell: str) -> int:
    return 3 if cell == "gru" else 4


def _nodes(native: Any, cell: str) -> list[Mapping[str, Any]]:
    if isinstance(native, Mapping):
        return [_with_default_bias(native, 0, cell)]
    items = c.expect_sequence(native, f"{NAME} weights")
    if not items:
        raise c.ShapeError(f"{NAME} weights", "0 nodes", "at least 1 node")
    return [_with_default_bias(c.expect_mapping(item, f"{NAME} weights[{k}]"), k, cell)
            for k, item in enumerate(items)]


def _with_default_bias(node: Mapping[str, Any], layer: int, cell: str) -> Mapping[str, Any]:
    """ONNX's ``B`` input is optional: an absent one is zeros (D, 2GH), as the operator says."""
    if "B" in node or "W" not in node:
        return node
    w = c.as_weight(node["W"], f"layer {layer} W")
    c.expect_ndim(w, f"layer {layer} W", 3, f"(D, {_gates(cell)}H, I)")
    return {**node, "B": np.zeros((w.shape[0], 2 * w.shape[1]), w.dtype)}


def _infer_spec(nodes: list[Mapping[str, Any]], clip: float | None, reverse: bool,
                input_forget: bool, cell: str) -> LSTMSpec:
    gates = _gates(cell)
    optional = ("P",) if cell == "lstm" else ()  # a GRU node has no peephole input
    c.check_keys(nodes[0], ("W", "R", "B"), optional, f"{NAME} layer 0")
    w = c.as_weight(nodes[0]["W"], "layer 0 W")
    c.expect_ndim(w, "layer 0 W", 3, f"(D, {gates}H, I)")
    if w.shape[0] not in (1, 2):
        raise c.ShapeError("layer 0 W", w.shape, f"(D, {gates}H, I) with D in (1, 2)")
    units = c.gate_units(w, "layer 0 W", axis=1, gates=gates)
    return LSTMSpec(w.shape[2], units, len(nodes), w.shape[0], peepholes="P" in nodes[0],
                    gate_clip=clip, reverse=reverse, input_forget=input_forget, cell=cell)


def _node_shapes(spec: LSTMSpec, layer: int) -> dict[str, tuple[int, ...]]:
    d, units, gates = spec.directions, spec.units, spec.gate_count
    shapes = {
        "W": (d, gates * units, spec.layer_input_size(layer)),
        "R": (d, gates * units, units),
        "B": (d, 2 * gates * units),
    }
    if spec.peepholes:
        shapes["P"] = (d, 3 * units)
    return shapes


def to_canonical(
    native: Any, *, clip: float | None = None, reverse: bool = False, input_forget: bool = False,
    activation: str = "tanh", cell: str = "lstm", reset_after: bool = True,
) -> LSTMWeights:
    """ONNX node weights -> canonical; the options are the nodes' attributes.

    ``clip`` is the clip attribute, ``reverse`` means ``direction="reverse"``
    (D must be 1), ``input_forget`` means ``input_forget=1``, ``activation`` the cell
    activation g = h of ``activations`` (g of a GRU's). ``cell="gru"`` reads ``GRU``
    node weights; ``reset_after`` is its ``linear_before_reset`` (True = 1).
    """
    cell = c.known_cell(cell, NAME, SUPPORTED)
    nodes = _nodes(native, cell)
    spec = _infer_spec(nodes, clip, reverse, input_forget, cell).replace(
        activation=activation, reset_after=reset_after)
    arrays = []
    for layer, node in enumerate(nodes):
        shapes = _node_shapes(spec, layer)
        c.check_keys(node, shapes, (), f"{NAME} layer {layer}")
        read = {k: c.as_weight(node[k], f"layer {layer} {k}") for k in shapes}
        for key, shape in shapes.items():
            c.expect_shape(read[key], f"layer {layer} {key}", shape)
        arrays.append(read)
    named = ((f"layer {k} {key}", a) for k, node in enumerate(arrays) for key, a in node.items())
    spec = spec.replace(dtype=c.common_dtype(named))
    cells = [_cell(node, d, spec) for node in arrays for d in range(spec.directions)]
    return c.build(spec, cells)


def _cell(node: dict[str, np.ndarray], d: int, spec: LSTMSpec) -> CellWeights:
    units = spec.units
    back = c.inverse_order(_gate_order(spec))
    bias = node["B"][d]
    split = spec.gate_count * units  # [Wb, Rb]
    peephole = None
    if "P" in node:
        peephole = node["P"][d].reshape(3, units)[list(c.inverse_order(PEEPHOLE_ORDER))]
    return CellWeights(
        w_input=c.permute_gates(node["W"][d], back),
        w_recurrent=c.permute_gates(node["R"][d], back),
        b_input=c.permute_gates(bias[:split], back),
        b_recurrent=c.permute_gates(bias[split:], back),
        peephole=peephole,
    )


def from_canonical(weights: LSTMWeights) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
    """Canonical -> a dict (one layer) or a list of dicts (one per layer)."""
    c.refuse_features(weights.spec, NAME, SUPPORTED)
    weights = weights.with_folded_forget_bias()
    order = _gate_order(weights.spec)
    nodes = [_node(per_direction, order) for per_direction in weights.cells]
    return nodes[0] if len(nodes) == 1 else nodes


def _gate_order(spec: LSTMSpec) -> tuple[int, ...]:
    return GRU_GATE_ORDER if spec.cell == "gru" else GATE_ORDER


def _node(per_direction: tuple[CellWeights, ...], order: tuple[int, ...]
          ) -> dict[str, np.ndarray]:
    node = {
        "W": np.stack([c.permute_gates(cell.w_input, order) for cell in per_direction]),
        "R": np.stack([c.permute_gates(cell.w_recurrent, order) for cell in per_direction]),
        "B": np.stack(
            [
                np.concatenate(
                    [
                        c.permute_gates(cell.b_input, order),
                        c.permute_gates(cell.b_recurrent, order),
                    ]
                )
                for cell in per_direction
            ]
        ),
    }
    peepholes = [cell.peephole for cell in per_direction if cell.peephole is not None]
    if peepholes:
        node["P"] = np.stack([p[list(PEEPHOLE_ORDER)].reshape(-1) for p in peepholes])
    return node
