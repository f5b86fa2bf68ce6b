"""NeoML ``Gru`` layers in a network file: their inner wiring checked, their weights read.

``CGruLayer::buildLayer`` (NeoML 2.0.210's ``GruLayer.cpp``) builds a recurrent
composite: [x, h] concatenated -> a fully connected layer of 2H gates (update, then
reset) -> sigmoids; r * h concatenated after x -> a fully connected layer of H ->
tanh; h' = (1 - u) * tanh(...) + u * h (an ``EltwiseNegMul`` and a ``EltwiseMul``
summed), one back link carrying h. A layer wired any other way is not read: the
``neoml`` format's ``Gru`` weights (``gate_weights`` (2H, I+H), ``gate_free_term``,
``main_weights`` (H, I+H), ``main_free_term``) mean what they mean only in that
wiring. Numpy only at import, like the rest of the family.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.files.neoml.recurrent_parts import (
    Unreadable,
    check_back_link,
    check_back_links,
    check_wiring,
    fully_connected,
)

_FC, _SIGMOID, _MUL = "FmlCnnFullyConnectedLayer", "FmlCnnSigmoidLayer", "FmlCnnEltwiseMulLayer"
_LINK, _STATE = ("CCnnBackLink", 0), ("CCnnEltwiseSumLayer", 0)
# Inner layer name -> (class, inputs), as CGruLayer::buildLayer connects them; split output 0
# is the update gate, 1 the reset gate.
WIRING = {
    "CCnnConcatObjectLayer.gates": ("FmlCnnConcatObjectLayer",
                                    [("CompositeSource.0", 0), _LINK]),
    "CCnnFullyConnectedLayer.gates": (_FC, [("CCnnConcatObjectLayer.gates", 0)]),
    "CCnnSplitChannelsLayer": ("FmlCnnSplitChannelsLayer",
                               [("CCnnFullyConnectedLayer.gates", 0)]),
    "CCnnSigmoidLayer.reset": (_SIGMOID, [("CCnnSplitChannelsLayer", 1)]),
    "CCnnEltwiseMulLayer.reset": (_MUL, [("CCnnSigmoidLayer.reset", 0), _LINK]),
    "CCnnConcatChannelsLayer": ("FmlCnnConcatChannelsLayer",
                                [("CompositeSource.0", 0), ("CCnnEltwiseMulLayer.reset", 0)]),
    "CCnnFullyConnectedLayer.main": (_FC, [("CCnnConcatChannelsLayer", 0)]),
    "CCnnTanhLayer": ("FmlCnnTanhLayer", [("CCnnFullyConnectedLayer.main", 0)]),
    "CCnnSigmoidLayer.update": (_SIGMOID, [("CCnnSplitChannelsLayer", 0)]),
    "CCnnEltwiseNegMulLayer.update": ("FmlCnnEltwiseNegMulLayer",
                                      [("CCnnSigmoidLayer.update", 0), ("CCnnTanhLayer", 0)]),
    "CCnnEltwiseMulLayer.forget": (_MUL, [("CCnnSigmoidLayer.update", 0), _LINK]),
    "CCnnEltwiseSumLayer": ("FmlCnnEltwiseSumLayer", [("CCnnEltwiseNegMulLayer.update", 0),
                                                      ("CCnnEltwiseMulLayer.forget", 0)]),
}
# fully connected layer -> (weights key, free term key, rows per unit) in the neoml format
BLOCKS = {"CCnnFullyConnectedLayer.gates": ("gate_weights", "gate_free_term", 2),
          "CCnnFullyConnectedLayer.main": ("main_weights", "main_free_term", 1)}


def read_gru(layer: Any) -> dict[str, np.ndarray]:
    """The Gru's weights in the ``neoml`` native form; Unreadable says why not."""
    if layer.fields["repeat_count"] != 1:
        raise Unreadable(f"repeat count {layer.fields['repeat_count']}: the layer runs "
                         "each sequence more than once")
    if layer.fields["output_mappings"] != [_STATE]:
        raise Unreadable(f"outputs mapped to {layer.fields['output_mappings']}, expected "
                         f"{[_STATE]}")
    inner = {item.name: item for item in layer.layers}
    found = {name: (item.cls, item.inputs) for name, item in inner.items() if name != _LINK[0]}
    check_wiring(found, WIRING, "Gru")
    # the initial state enters through the back link's second input (composite input 1)
    check_back_link(inner.get(_LINK[0]), _LINK[0], ("CompositeSource.1", 0), _STATE, "Gru")
    check_back_links([item.name for item in layer.fields["back_links"]], [_LINK[0]])
    return _cell(inner)


def _cell(inner: dict[str, Any]) -> dict[str, np.ndarray]:
    """The two fully connected layers' blobs, sizes checked against each other."""
    cell: dict[str, np.ndarray] = {}
    for name, (weights, free, per_unit) in BLOCKS.items():
        cell[weights], cell[free] = fully_connected(inner[name], name, per_unit)
    units = cell["main_weights"].shape[0]
    counts = inner["CCnnSplitChannelsLayer"].fields["output_counts"]
    if cell["gate_weights"].shape[0] != 2 * units or counts != [units]:
        raise Unreadable(f"gates {cell['gate_weights'].shape[0]} rows split {counts}, "
                         f"expected {2 * units} split [{units}] for {units} units")
    return cell
