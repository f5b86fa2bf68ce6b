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
    | {f"activation={name}" for name in ACTIVATIONS})
GATE_ORDER = (0, 3, 1, 2)  # ONNX block k is canonical block GATE_ORDER[k]: i o f c
PEEPHOLE_ORDER = (0, 2, 1)  # ONNX P is i o f; canonical rows are i f o


def _nodes(native: Any) -> list[Mapping[str, Any]]:
    if isinstance(native, Mapping):
        return [_with_default_bias(native, 0)]
    items = c.expect_sequence(native, f"{NAME} weights")
    if not items:
        raise c.ShapeError(f"{NAME} weights", "0 nodes", "at least 1 node")
    return [_with_default_bias(c.expect_mapping(item, f"{NAME} weights[{k}]"), k)
            for k, item in enumerate(items)]


def _with_default_bias(node: Mapping[str, Any], layer: int) -> Mapping[str, Any]:
    """ONNX's ``B`` input is optional: an absent one is zeros (D, 8H), as the operator says."""
    if "B" in node or "W" not in node:
        return node
    w = c.as_weight(node["W"], f"layer {layer} W")
    c.expect_ndim(w, f"layer {layer} W", 3, "(D, 4H, I)")
    return {**node, "B": np.zeros((w.shape[0], 2 * w.shape[1]), w.dtype)}


def _infer_spec(nodes: list[Mapping[str, Any]], clip: float | None, reverse: bool,
                input_forget: bool) -> LSTMSpec:
    c.check_keys(nodes[0], ("W", "R", "B"), ("P",), f"{NAME} layer 0")
    w = c.as_weight(nodes[0]["W"], "layer 0 W")
    c.expect_ndim(w, "layer 0 W", 3, "(D, 4H, I)")
    if w.shape[0] not in (1, 2):
        raise c.ShapeError("layer 0 W", w.shape, "(D, 4H, I) with D in (1, 2)")
    units = c.gate_units(w, "layer 0 W", axis=1)
    return LSTMSpec(w.shape[2], units, len(nodes), w.shape[0], peepholes="P" in nodes[0],
                    gate_clip=clip, reverse=reverse, input_forget=input_forget)


def _node_shapes(spec: LSTMSpec, layer: int) -> dict[str, tuple[int, ...]]:
    d, units = spec.directions, spec.units
    shapes = {
        "W": (d, 4 * units, spec.layer_input_size(layer)),
        "R": (d, 4 * units, units),
        "B": (d, 8 * units),
    }
    if spec.peepholes:
        shapes["P"] = (d, 3 * units)
    return shapes


def to_canonical(
    native: Any, *, clip: float | None = None, reverse: bool = False, input_forget: bool = False,
    activation: str = "tanh",
) -> LSTMWeights:
    """ONNX node weights -> canonical; the options are the nodes' attributes.

    ``clip`` is the clip attribute, ``reverse`` means ``direction="reverse"``
    (D must be 1), ``input_forget`` means ``input_forget=1``, ``activation`` the cell
    activation g = h of ``activations``.
    """
    nodes = _nodes(native)
    spec = _infer_spec(nodes, clip, reverse, input_forget).replace(activation=activation)
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
    cells = [_cell(node, d, spec.units) for node in arrays for d in range(spec.directions)]
    return c.build(spec, cells)


def _cell(node: dict[str, np.ndarray], d: int, units: int) -> CellWeights:
    back = c.inverse_order(GATE_ORDER)
    bias = node["B"][d]
    peephole = None
    if "P" in node:
        peephole = node["P"][d].reshape(3, units)[list(c.inverse_order(PEEPHOLE_ORDER))]
    return CellWeights(
        w_input=c.permute_gates(node["W"][d], back),
        w_recurrent=c.permute_gates(node["R"][d], back),
        b_input=c.permute_gates(bias[: 4 * units], back),
        b_recurrent=c.permute_gates(bias[4 * units :], back),
        peephole=peephole,
    )


def from_canonical(weights: LSTMWeights) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
    """Canonical -> a dict (one layer) or a list of dicts (one per layer)."""
    c.refuse_features(weights.spec, NAME, SUPPORTED)
    weights = weights.with_folded_forget_bias()
    nodes = [_node(per_direction) for per_direction in weights.cells]
    return nodes[0] if len(nodes) == 1 else nodes


def _node(per_direction: tuple[CellWeights, ...]) -> dict[str, np.ndarray]:
    node = {
        "W": np.stack([c.permute_gates(cell.w_input, GATE_ORDER) for cell in per_direction]),
        "R": np.stack([c.permute_gates(cell.w_recurrent, GATE_ORDER) for cell in per_direction]),
        "B": np.stack(
            [
                np.concatenate(
                    [
                        c.permute_gates(cell.b_input, GATE_ORDER),
                        c.permute_gates(cell.b_recurrent, GATE_ORDER),
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
