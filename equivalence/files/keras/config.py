"""Keras model configs: which layers of a saved Keras model hold LSTM weights, and how.

Reads the model config (a ``.keras`` archive's ``config.json`` or a legacy HDF5
file's ``model_config``) into :class:`KerasLayer` records: LSTM and CuDNNLSTM
layers (and GRU layers, with their ``reset_after``, and CuDNNGRU ones, always
``reset_after=True``), Bidirectional around either, RNN
over LSTMCell or GRUCell or StackedRNNCells of them,
with each layer's inbound layer (through pass-through layers such as Dropout)
and what the spec cannot hold, named. The weights themselves are read by
:mod:`equivalence.files.keras.read`, which owns the file formats.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from equivalence.errors import ConversionError, brief
from equivalence.files._base import FileFormatError
from equivalence.files.limits import shown
from equivalence.spec import ACTIVATIONS

LSTM_CLASSES = {"LSTM": "keras", "CuDNNLSTM": "cudnn", "GRU": "keras", "CuDNNGRU": "cudnn"}
CELL_CLASSES = {"LSTMCell": "lstm", "GRUCell": "gru"}
# read with cell="gru" and the config's reset_after (a CuDNNGRU config has none: True)
GRU_LAYERS = {"GRU", "GRUCell", "CuDNNGRU"}
# Layers that are the identity at inference, so LSTMs around them still form one stack.
PASS_THROUGH = {"Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
                "ActivityRegularization"}


@dataclass
class KerasLayer:
    """One Keras layer holding LSTM weights: one or more spec layers of ``directions`` cells."""

    name: str
    label: str  # e.g. "Bidirectional(CuDNNLSTM)"
    format: str
    directions: int
    cells: list[list[dict[str, np.ndarray]]]  # [spec layer][direction] -> part -> array
    recurrent_activation: str = "sigmoid"
    activation: str = "tanh"  # the cell/output activation, LSTM(activation=)
    return_sequences: bool = True
    concat: bool = True
    inbound: str | None = None
    notes: list[str] = field(default_factory=list)
    problem: str | None = None
    config: dict[str, Any] | None = None  # the layer's own config, for running it as configured
    major: int = 3  # the Keras that wrote it
    cell: str = "lstm"  # "gru" for GRU / RNN(GRUCell) layers
    reset_after: bool = True  # a GRU's GRU(reset_after=...)




def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def major_version(version: Any) -> int:
    match = re.match(r"\s*(\d+)", text(version))
    return int(match.group(1)) if match else 2


def _activation(value: Any, major: int) -> str | None:
    """The spec's recurrent_activation for a config value, or None when not representable."""
    name = value if isinstance(value, str) else (value or {}).get("class_name", str(value))
    name = str(name).lower()
    if name == "sigmoid":
        return "sigmoid"
    if name == "hard_sigmoid":
        return "hard_sigmoid_keras3" if major >= 3 else "hard_sigmoid_tf_keras"
    return None


def _cell_activation(value: Any) -> str | None:
    """The spec's activation for a config value (a name or a serialized object), or None."""
    if isinstance(value, dict):  # Keras 3: {"class_name": "function", "config": "relu", ...}
        inner = value.get("config")
        value = inner if isinstance(inner, str) else value.get("class_name")
    if not isinstance(value, str):
        return None
    return value.lower() if value.lower() in ACTIVATIONS else None


def _model_layers(config: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """(layer configs, is_sequential) of a model config (Keras 2 or 3)."""
    inner = config.get("config", {})
    layers = inner.get("layers", inner if isinstance(inner, list) else [])
    return list(layers), config.get("class_name") == "Sequential"


def config_layers(config: dict[str, Any], major: int, cells_of: Callable,
                  x_only: bool = False) -> list[KerasLayer]:
    """The LSTM-holding layers of a model config; ``x_only``: a layer's inbound is the layer
    making its x alone (a --with-states model, whose states come from its own inputs)."""
    layer_configs, sequential = _model_layers(config)
    found, previous = [], None
    passes: dict[str, str | None] = {}  # functional pass-through layers -> the layer they pass on
    for cfg in layer_configs:
        cls, name = cfg.get("class_name"), cfg.get("config", {}).get("name", cfg.get("name"))
        if cls == "InputLayer":
            continue
        inbound = previous if sequential else _inbound(cfg, passes, x_only)
        layer = _describe(cfg, major)
        if layer is not None:
            layer.inbound, layer.config, layer.major = inbound, cfg, major
            try:
                layer.cells = arrange(cells_of(name), layer)
            except FileFormatError:
                raise
            except (KeyError, ValueError) as exc:
                layer.problem = f"weights not found or malformed in the file ({exc})"
            found.append(layer)
        # Dropout and friends pass their input's name on, so stacks see through them.
        previous = inbound if cls in PASS_THROUGH else name
        if cls in PASS_THROUGH:
            passes[name] = inbound
    return found


def _inbound(cfg: dict[str, Any], passes: dict[str, str | None], x_only: bool = False
             ) -> str | None:
    """The layer feeding a functional layer (through pass-through layers), if it is one tensor
    (``x_only``: the tensor of its first positional argument)."""
    nodes = cfg.get("inbound_nodes") or []
    if len(nodes) != 1:
        return None
    node = nodes[0]
    if x_only and isinstance(node, dict) and isinstance(node.get("args"), list):
        node = node["args"][:1]
    histories = _histories(node)
    if len(histories) != 1 or histories[0][2] != 0:
        return None  # several inputs (e.g. initial states from elsewhere) or a state output
    name: str | None = histories[0][0]
    seen: set[str] = set()
    while name is not None and name in passes:
        if name in seen:  # pass-through layers feeding each other: a cycle, never a model
            raise ConversionError(f"layers feed each other in a cycle (through "
                                  f"{shown(name)}): not a model Keras could build")
        seen.add(name)
        name = passes[name]
    return name


def _histories(node: Any) -> list[tuple[str, int, int]]:
    """(layer, node, tensor) of every tensor a call took (Keras 3 keras_history or Keras 2)."""
    if isinstance(node, dict):
        if "keras_history" in node:
            name, index, tensor = node["keras_history"][:3]
            return [(name, index, tensor)]
        return [h for value in node.values() for h in _histories(value)]
    if isinstance(node, list):
        if len(node) >= 3 and isinstance(node[0], str) and isinstance(node[1], int):
            return [(node[0], node[1], node[2])]
        return [h for value in node for h in _histories(value)]
    return []


def _describe(cfg: dict[str, Any], major: int) -> KerasLayer | None:
    """A KerasLayer (without weights) for an LSTM-holding layer config; None for other layers."""
    cls, conf = cfg.get("class_name"), cfg.get("config", {})
    name = conf.get("name", cfg.get("name", "?"))
    if cls == "Bidirectional":
        inner = conf.get("layer", {})
        layer = _describe(inner, major)
        if layer is None or layer.directions != 1 or len(_cell_configs(inner)) != 1:
            return None if layer is None else _problem(name, "Bidirectional", layer.format,
                                                       "Bidirectional over a cell stack")
        layer.name, layer.label, layer.directions = name, f"Bidirectional({layer.label})", 2
        layer.concat = conf.get("merge_mode", "concat") == "concat"
        if not layer.concat:
            layer.notes.append(f"merge_mode={conf.get('merge_mode')!r}: the converted network "
                               "concatenates the two directions instead")
        return layer
    cell_configs = _cell_configs(cfg)
    if not cell_configs:
        return None
    fmt = LSTM_CLASSES.get(str(cls), "keras")
    cell_names = "+".join(c["class_name"] for c in cell_configs)
    label = cls if cls in LSTM_CLASSES else f"RNN({cell_names})"
    layer = KerasLayer(name, label, fmt, 1, [])
    kinds = {c.get("class_name") in GRU_LAYERS for c in cell_configs}
    if kinds == {True}:
        layer.cell = "gru"
        flags = {bool(c.get("config", {}).get("reset_after", True)) for c in cell_configs}
        layer.reset_after = flags == {True}
        if len(flags) > 1:
            layer.problem = "stacked GRU cells with different reset_after"
    elif len(kinds) > 1:
        layer.problem = "a stack mixing LSTM and GRU cells"
    layer.return_sequences = bool(conf.get("return_sequences", False))
    activations, cell_activations = set(), set()
    for cell in cell_configs:
        c = cell.get("config", {})
        if fmt == "keras":
            cell_act = _cell_activation(c.get("activation", "tanh"))
            if cell_act is None:
                layer.problem = (f"activation {brief(c.get('activation'))} "
                                 f"(the spec knows {', '.join(ACTIVATIONS)})")
            cell_activations.add(cell_act)
            act = _activation(c.get("recurrent_activation", "sigmoid"), major)
            if act is None:
                layer.problem = (f"recurrent_activation {c.get('recurrent_activation')!r} "
                                 "(only sigmoid and hard_sigmoid convert)")
            activations.add(act)
        if c.get("use_bias", True) is False:
            layer.notes.append("use_bias=False: biases written as zeros")
    if len(activations) > 1:
        layer.problem = "cells with different recurrent activations"
    layer.recurrent_activation = next(iter(activations), "sigmoid") or "sigmoid"
    if len(cell_activations) > 1:
        layer.problem = "cells with different activations"
    layer.activation = next(iter(cell_activations), "tanh") or "tanh"
    if conf.get("go_backwards"):
        layer.problem = "go_backwards=True on a single direction (a reversed LSTM)"
    if len({c.get("config", {}).get("units") for c in cell_configs}) > 1:
        layer.problem = "stacked cells of different sizes (one spec needs equal units)"
    return layer


def _problem(name: str, label: str, fmt: str, problem: str) -> KerasLayer:
    return KerasLayer(name, label, fmt, 1, [], problem=problem)


def _cell_configs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The LSTM cell configs of a layer config: itself for LSTM/CuDNNLSTM, the RNN's cells."""
    cls, conf = cfg.get("class_name"), cfg.get("config", {})
    if cls in LSTM_CLASSES:
        return [cfg]
    if cls != "RNN":
        return []
    cell = conf.get("cell", {})
    if cell.get("class_name") in CELL_CLASSES:
        return [cell]
    if cell.get("class_name") == "StackedRNNCells":
        cells = cell.get("config", {}).get("cells", [])
        if cells and all(c.get("class_name") in CELL_CLASSES for c in cells):
            return list(cells)
    return []


def arrange(cells: list[dict[str, np.ndarray]], layer: KerasLayer) -> list[list[dict]]:
    """Flat cell list -> [spec layer][direction]; missing biases become zeros."""
    for cell in cells:
        if "kernel" not in cell or "recurrent_kernel" not in cell:
            raise ValueError(f"a cell lacks its kernels (found {sorted(cell)})")
        if "bias" not in cell:
            cell["bias"] = np.zeros(_bias_shape(layer, cell["recurrent_kernel"].shape[0]),
                                    cell["recurrent_kernel"].dtype)
    d = layer.directions
    if not cells or len(cells) % d:
        raise ValueError(f"{len(cells)} cells for {d} direction(s)")
    return [cells[k : k + d] for k in range(0, len(cells), d)]


def _bias_shape(layer: KerasLayer, units: int) -> tuple[int, ...]:
    """The bias a layer of this kind holds (zeros stand in for a use_bias=False one)."""
    cudnn = layer.format == "cudnn"
    if layer.cell != "gru":
        return ((8 if cudnn else 4) * units,)
    if cudnn:
        return (6 * units,)
    return (2, 3 * units) if layer.reset_after else (3 * units,)
