"""Keras files: Keras 3 ``.keras`` and ``.weights.h5``, legacy Keras 2 HDF5 (model or weights).

Reading uses h5py (and zipfile) directly, never Keras's loaders: a legacy file
naming ``CuDNNLSTM`` layers cannot be loaded by Keras 3 at all, and by tf_keras
only with a GPU-less conversion it does silently. Found in a file:

* ``LSTM`` and ``CuDNNLSTM`` layers, ``Bidirectional`` around either,
  ``RNN(LSTMCell)`` and ``RNN(StackedRNNCells([LSTMCell, ...]))``;
* stacks: LSTM layers feeding each other directly, or through dropout layers
  only (identity at inference), with equal sizes and directions, become one
  multi-layer LSTM (a scenario-1 ``CuDNNLSTM, Dropout, CuDNNLSTM`` converts as
  a whole); each member stays selectable by its own layer name.

Which Keras wrote the file decides what ``"hard_sigmoid"`` means: tf_keras's
clip(0.2x+0.5) (``keras_version`` 2.x) or Keras 3's clip(x/6+0.5).

Writing: ``.keras`` (Keras 3 model: input (batch, time, I) -> the top
layer's output sequence), ``.weights.h5`` (the same model's weights), ``.h5``
(the same network as a tf_keras HDF5 model).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..canonical import LSTMWeights
from ..errors import UnsupportedFeatureError
from ..formats import get as get_format
from ._base import FileFormatError, FoundLSTM, atomic_output
from .limits import MAX_JSON_BYTES, H5Guard, file_size, load_json, open_zip, read_member

LSTM_CLASSES = {"LSTM": "keras", "CuDNNLSTM": "cudnn"}
# Layers that are the identity at inference, so LSTMs around them still form one stack.
PASS_THROUGH = {"Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
                "ActivityRegularization"}
PARTS = ("kernel", "recurrent_kernel", "bias")


@dataclass
class _Layer:
    """One Keras layer holding LSTM weights: one or more spec layers of ``directions`` cells."""

    name: str
    label: str  # e.g. "Bidirectional(CuDNNLSTM)"
    format: str
    directions: int
    cells: list[list[dict[str, np.ndarray]]]  # [spec layer][direction] -> part -> array
    recurrent_activation: str = "sigmoid"
    return_sequences: bool = True
    concat: bool = True
    inbound: str | None = None
    notes: list[str] = field(default_factory=list)
    problem: str | None = None
    config: dict[str, Any] | None = None  # the layer's own config, for running it as configured
    major: int = 3  # the Keras that wrote it


# ---------------------------------------------------------------- entry points


def read_keras_zip(path: Path) -> list[FoundLSTM]:
    """A Keras 3 ``.keras`` archive: config.json plus model.weights.h5."""
    import h5py

    with open_zip(path, ".keras archive") as archive:
        config = load_json(read_member(archive, "config.json", path, MAX_JSON_BYTES), path,
                           "config.json")
        data = read_member(archive, "model.weights.h5", path)
    if not isinstance(config, dict):
        raise FileFormatError(path, "config.json is not a JSON object")
    try:
        with h5py.File(io.BytesIO(data), "r") as weights:
            guard = H5Guard(weights, path, len(data))
            layers = _config_layers(config, 3,
                                    lambda name: _k3_layer_cells(weights, name, guard))
    except FileFormatError:
        raise
    except (OSError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise FileFormatError(path, f"unreadable .keras content ({type(exc).__name__}: {exc})"
                              ) from exc
    return _found(layers, path, "Keras 3 .keras model", "keras_zip")


def read_keras_h5(path: Path) -> list[FoundLSTM]:
    """Any Keras HDF5 file: legacy model, legacy weights, or Keras 3 ``.weights.h5``."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(path, f"corrupted or truncated HDF5 file ({exc})") from exc
    try:
        with handle as root:
            return _read_h5(root, path, H5Guard(root, path, file_size(path)))
    except FileFormatError:
        raise
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise FileFormatError(path, f"unreadable Keras HDF5 content ({type(exc).__name__}: {exc})"
                              ) from exc


def _read_h5(root: Any, path: Path, guard: H5Guard) -> list[FoundLSTM]:
    attrs = guard.attrs(root)
    if "model_config" in attrs:  # legacy whole-model file (tf_keras, or Keras 3's legacy .h5)
        config = load_json(_text(attrs["model_config"]), path, "model_config")
        if not isinstance(config, dict):
            raise FileFormatError(path, "model_config is not a JSON object")
        weights = root["model_weights"]
        version = guard.attrs(weights).get("keras_version", attrs.get("keras_version", "2"))
        major = _major(version)
        layers = _config_layers(config, major,
                                lambda name: _legacy_layer_cells(weights, name, guard))
        return _found(layers, path, f"legacy Keras {major} HDF5 model", "keras_h5")
    if "layer_names" in attrs:  # legacy save_weights: no config, order from layer_names
        major = _major(attrs.get("keras_version", "2"))
        return _found(_legacy_weights_only(root, major, guard, attrs["layer_names"]), path,
                      f"legacy Keras {major} HDF5 weights")
    if "layers" in root:
        return _found(_k3_weights_only(root, guard), path, "Keras 3 .weights.h5")
    raise FileFormatError(path, "an HDF5 file without Keras weights (no model_config, "
                                "layer_names or layers/ group)")


# ---------------------------------------------------------------- config


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _major(version: Any) -> int:
    match = re.match(r"\s*(\d+)", _text(version))
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


def _model_layers(config: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """(layer configs, is_sequential) of a model config (Keras 2 or 3)."""
    inner = config.get("config", {})
    layers = inner.get("layers", inner if isinstance(inner, list) else [])
    return list(layers), config.get("class_name") == "Sequential"


def _config_layers(config: dict[str, Any], major: int, cells_of: Callable) -> list[_Layer]:
    layer_configs, sequential = _model_layers(config)
    found, previous = [], None
    passes: dict[str, str | None] = {}  # functional pass-through layers -> the layer they pass on
    for cfg in layer_configs:
        cls, name = cfg.get("class_name"), cfg.get("config", {}).get("name", cfg.get("name"))
        if cls == "InputLayer":
            continue
        inbound = previous if sequential else _inbound(cfg, passes)
        layer = _describe(cfg, major)
        if layer is not None:
            layer.inbound, layer.config, layer.major = inbound, cfg, major
            try:
                layer.cells = _arrange(cells_of(name), layer)
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


def _inbound(cfg: dict[str, Any], passes: dict[str, str | None]) -> str | None:
    """The layer feeding a functional layer (through pass-through layers), if it is one tensor."""
    nodes = cfg.get("inbound_nodes") or []
    if len(nodes) != 1:
        return None
    histories = _histories(nodes[0])
    if len(histories) != 1 or histories[0][2] != 0:
        return None  # several inputs (e.g. initial states from elsewhere) or a state output
    name: str | None = histories[0][0]
    while name is not None and name in passes:
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


def _describe(cfg: dict[str, Any], major: int) -> _Layer | None:
    """A _Layer (without weights) for an LSTM-holding layer config; None for other layers."""
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
    layer = _Layer(name, label, fmt, 1, [])
    layer.return_sequences = bool(conf.get("return_sequences", False))
    activations = set()
    for cell in cell_configs:
        c = cell.get("config", {})
        if fmt == "keras":
            if str(c.get("activation", "tanh")).lower() != "tanh":
                layer.problem = f"activation {c.get('activation')!r} (only tanh LSTMs convert)"
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
    if conf.get("go_backwards"):
        layer.problem = "go_backwards=True on a single direction (a reversed LSTM)"
    if len({c.get("config", {}).get("units") for c in cell_configs}) > 1:
        layer.problem = "stacked cells of different sizes (one spec needs equal units)"
    return layer


def _problem(name: str, label: str, fmt: str, problem: str) -> _Layer:
    return _Layer(name, label, fmt, 1, [], problem=problem)


def _cell_configs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The LSTM cell configs of a layer config: itself for LSTM/CuDNNLSTM, the RNN's cells."""
    cls, conf = cfg.get("class_name"), cfg.get("config", {})
    if cls in LSTM_CLASSES:
        return [cfg]
    if cls != "RNN":
        return []
    cell = conf.get("cell", {})
    if cell.get("class_name") == "LSTMCell":
        return [cell]
    if cell.get("class_name") == "StackedRNNCells":
        cells = cell.get("config", {}).get("cells", [])
        if cells and all(c.get("class_name") == "LSTMCell" for c in cells):
            return list(cells)
    return []


# ---------------------------------------------------------------- weights in the h5


def _legacy_layer_cells(group: Any, name: str, guard: H5Guard) -> list[dict[str, np.ndarray]]:
    """Cells of a legacy layer group, in weight_names order (forward before backward)."""
    layer = group[name]
    cells: dict[str, dict[str, np.ndarray]] = {}
    for weight_name in [_text(n) for n in guard.attrs(layer).get("weight_names", [])]:
        cell_path, _, part = weight_name.rpartition("/")
        part = part.split(":")[0]
        if part not in PARTS:
            raise ValueError(f"weight {weight_name!r} is not a kernel, recurrent_kernel or bias")
        cells.setdefault(cell_path, {})[part] = guard.dataset(layer[weight_name])
    return list(cells.values())


def _natural(name: str) -> tuple[str, int]:
    match = re.match(r"(.*?)(?:_(\d+))?$", name)
    return (match.group(1), int(match.group(2) or 0)) if match else (name, 0)


def _k3_vars(group: Any, guard: H5Guard) -> dict[str, np.ndarray]:
    variables = group["vars"]
    arrays = [guard.dataset(variables[k]) for k in sorted(variables, key=int)]
    if len(arrays) not in (2, 3):
        raise ValueError(f"{group.name}: {len(arrays)} variables, expected 2 or 3")
    return dict(zip(PARTS if len(arrays) == 3 else PARTS[:2], arrays, strict=True))


def _k3_cells(group: Any, guard: H5Guard, depth: int = 0) -> list[dict[str, np.ndarray]]:
    """Cells under a Keras 3 layer group: Bidirectional forward first, stacked cells in order."""
    if depth > 32:
        raise ValueError(f"{group.name}: layer groups nested more than 32 deep")
    if "forward_layer" in group:
        return (_k3_cells(group["forward_layer"], guard, depth + 1)
                + _k3_cells(group["backward_layer"], guard, depth + 1))
    if "cell" in group:
        return _k3_cells(group["cell"], guard, depth + 1)
    if "cells" in group:
        cells = group["cells"]
        return [c for key in sorted(cells, key=_natural)
                for c in _k3_cells(cells[key], guard, depth + 1)]
    if "vars" in group and len(group["vars"]):
        return [_k3_vars(group, guard)]
    return []


def _k3_layer_cells(root: Any, name: str, guard: H5Guard) -> list[dict[str, np.ndarray]]:
    """Cells of the layer called ``name`` (groups are named by class; vars/@name is the name)."""
    group = _k3_find(root, name, guard)
    if group is None:
        raise KeyError(f"no weights group for layer {name!r}")
    return _k3_cells(group, guard)


def _k3_find(root: Any, name: str, guard: H5Guard) -> Any:
    layers = root.get("layers")
    if layers is None:
        return None
    for key in layers:
        group = layers[key]
        variables = group.get("vars")
        if variables is not None and _text(guard.attrs(variables).get("name", "")) == name:
            return group
    return None


def _arrange(cells: list[dict[str, np.ndarray]], layer: _Layer) -> list[list[dict]]:
    """Flat cell list -> [spec layer][direction]; missing biases become zeros."""
    for cell in cells:
        if "kernel" not in cell or "recurrent_kernel" not in cell:
            raise ValueError(f"a cell lacks its kernels (found {sorted(cell)})")
        if "bias" not in cell:
            factor = 8 if layer.format == "cudnn" else 4
            cell["bias"] = np.zeros(factor * cell["recurrent_kernel"].shape[0],
                                    cell["recurrent_kernel"].dtype)
    d = layer.directions
    if not cells or len(cells) % d:
        raise ValueError(f"{len(cells)} cells for {d} direction(s)")
    return [cells[k : k + d] for k in range(0, len(cells), d)]


# ---------------------------------------------------------------- weights-only files


def _shape_layer(name: str, cells: list[dict[str, np.ndarray]], major: int) -> _Layer:
    """A layer known only from its weights: bias length says LSTM (4H) or CuDNNLSTM (8H)."""
    units = cells[0]["recurrent_kernel"].shape[0]
    fmt = "cudnn" if "bias" in cells[0] and cells[0]["bias"].shape[0] == 8 * units else "keras"
    directions = 2 if len(cells) == 2 and name.startswith("bidirectional") else 1
    layer = _Layer(name, "CuDNNLSTM" if fmt == "cudnn" else "LSTM", fmt, directions, [])
    if directions == 2:
        layer.label = f"Bidirectional({layer.label})"
    layer.notes.append("no model config in the file: tanh/sigmoid assumed, stacking inferred "
                       "from the layer order and shapes")
    layer.cells = _arrange(cells, layer)
    return layer


def _is_lstm_cells(cells: list[dict[str, np.ndarray]]) -> bool:
    return bool(cells) and all(
        "kernel" in c and "recurrent_kernel" in c and c["recurrent_kernel"].ndim == 2
        and c["recurrent_kernel"].shape[1] == 4 * c["recurrent_kernel"].shape[0]
        for c in cells
    )


def _legacy_weights_only(root: Any, major: int, guard: H5Guard, layer_names: Any
                         ) -> list[_Layer]:
    found, previous = [], None
    for name in [_text(n) for n in layer_names]:
        names = list(guard.attrs(root[name]).get("weight_names", []))
        if not names:  # weightless: dropout passes its input on, anything else breaks stacks
            previous = previous if name.startswith(("dropout", "spatial_dropout")) else name
            continue
        try:
            cells = _legacy_layer_cells(root, name, guard)
        except FileFormatError:
            raise
        except (KeyError, ValueError):
            cells = []
        if _is_lstm_cells(cells):
            layer = _shape_layer(name, cells, major)
            layer.inbound = previous
            found.append(layer)
        previous = name
    return found


def _k3_weights_only(root: Any, guard: H5Guard) -> list[_Layer]:
    """Keras 3 weights without config: layer groups are named by class, not ordered across classes.

    Layers of one class are ordered by their numeric suffix; they are stacked
    only when the file holds nothing but LSTMs of that one class.
    """
    layers = root["layers"]
    keys = sorted(layers, key=_natural)
    found, others = [], []
    for key in keys:
        cells = _k3_cells(layers[key], guard)
        if _is_lstm_cells(cells):
            variables = layers[key].get("vars")
            layer = _shape_layer(key, cells, 3)
            layer.name = (key if variables is None
                          else _text(guard.attrs(variables).get("name", key)))
            found.append((key, layer))
        elif cells:
            others.append(key)
    classes = {_natural(key)[0] for key, _ in found}
    previous = None
    for _key, layer in found:
        layer.inbound = previous if not others and len(classes) == 1 else None
        previous = layer.name
    return [layer for _, layer in found]


# ---------------------------------------------------------------- stacks


def _stackable(lower: _Layer, upper: _Layer) -> bool:
    if lower.problem or upper.problem or upper.inbound != lower.name:
        return False
    if not (lower.return_sequences and lower.concat):
        return False
    same = (lower.format, lower.directions, lower.recurrent_activation) == (
        upper.format, upper.directions, upper.recurrent_activation)
    units = lower.cells[-1][0]["recurrent_kernel"].shape[0]
    upper_in = upper.cells[0][0]["kernel"].shape[0]
    return same and units == upper.cells[0][0]["recurrent_kernel"].shape[0] and (
        upper_in == lower.directions * units)


def _stacks(layers: list[_Layer]) -> list[list[_Layer]]:
    """Group layers into maximal chains; a layer feeding two LSTMs starts no stack."""
    successors: dict[str, list[_Layer]] = {}
    for layer in layers:
        if layer.inbound is not None:
            successors.setdefault(layer.inbound, []).append(layer)
    stacks: list[list[_Layer]] = []
    placed: set[int] = set()
    for layer in layers:
        if id(layer) in placed:
            continue
        chain = [layer]
        while True:
            nxt = successors.get(chain[-1].name, [])
            if len(nxt) != 1 or not _stackable(chain[-1], nxt[0]):
                break
            chain.append(nxt[0])
        placed.update(id(item) for item in chain)
        stacks.append(chain)
    return stacks


def _entry(chain: list[_Layer], path: Path, kind: str, runner: str | None) -> FoundLSTM:
    first, top = chain[0], chain[-1]
    native = [cell[part] for layer in chain for spec_layer in layer.cells
              for cell in spec_layer for part in PARTS]
    options: dict[str, Any] = {"directions": first.directions}
    if first.format == "keras":
        options["recurrent_activation"] = first.recurrent_activation
    notes = [n for layer in chain for n in layer.notes]
    if first.format == "keras" and first.recurrent_activation != "sigmoid":
        formula = {"hard_sigmoid_tf_keras": "clip(0.2x+0.5, 0, 1), tf_keras",
                   "hard_sigmoid_keras3": "clip(x/6+0.5, 0, 1), Keras 3"}
        notes.append(f"recurrent_activation=hard_sigmoid "
                     f"({formula[first.recurrent_activation]})")
    labels = ", ".join(f"{layer.name}: {layer.label}" for layer in chain)
    if len(chain) > 1:
        notes.insert(0, f"stack of {labels}")
    if not top.return_sequences:
        notes.append(f"{top.name} returns only its last step (return_sequences=False); "
                     "the converted network returns the whole sequence")
    problem = next((f"{layer.name}: {layer.problem}" for layer in chain if layer.problem), None)
    if first.format == "cudnn":
        biases = "two (8H: input + recurrent)"
    elif any("use_bias=False" in n for n in notes):
        biases = "none (use_bias=False)"
    else:
        biases = "one (4H)"
    runs = runner is not None and first.format == "keras" and all(
        layer.config is not None for layer in chain)
    definition = [{"name": layer.name, "config": layer.config, "major": layer.major,
                   "cells": layer.cells} for layer in chain] if runs else None
    return FoundLSTM(
        name="+".join(layer.name for layer in chain),
        format=first.format,
        native=native if problem is None else [],
        source=str(path),
        kind=f"{kind}, {first.label}",
        read_options=options,
        biases=biases,
        notes=tuple(dict.fromkeys(notes)),
        problem=problem,
        runner=runner if runs else None,
        definition=definition,
    )


def _found(layers: list[_Layer], path: Path, kind: str, runner: str | None = None
           ) -> list[FoundLSTM]:
    found = []
    for chain in _stacks(layers):
        entry = _entry(chain, path, kind, runner)
        if len(chain) > 1:
            parts = tuple(_entry([layer], path, kind, runner) for layer in chain)
            entry = FoundLSTM(**{**entry.__dict__, "parts": parts})
        found.append(entry)
    return found


# ---------------------------------------------------------------- writing


def keras_output_kind(path: Path) -> str:
    """'keras' (.keras), 'weights' (.weights.h5) or 'tf_keras_h5' (.h5)."""
    name = path.name
    if name.endswith(".keras"):
        return "keras"
    if name.endswith(".weights.h5"):
        return "weights"
    if name.endswith(".h5"):
        return "tf_keras_h5"
    raise FileFormatError(path, "a keras output must end in .keras (Keras 3 model), "
                                ".weights.h5 (its weights) or .h5 (tf_keras HDF5 model)")


def _layer_names(spec: Any) -> list[str]:
    base = "bidirectional" if spec.directions == 2 else "lstm"
    return [base if k == 0 else f"{base}_{k}" for k in range(spec.layers)]


def model_code(weights: LSTMWeights, flavour: str) -> str:
    """The Python that builds the written network (printed, so users can rebuild it)."""
    spec = weights.spec
    act = "" if spec.recurrent_activation == "sigmoid" else ', recurrent_activation="hard_sigmoid"'
    module = "keras" if flavour != "tf_keras_h5" else "tf_keras"
    lines = [f"{module}.Sequential([{module}.Input((None, {spec.input_size})),"]
    for _ in range(spec.layers):
        lstm = f"{module}.layers.LSTM({spec.units}, return_sequences=True{act})"
        if spec.directions == 2:
            lstm = f"{module}.layers.Bidirectional({lstm})"
        lines.append(f"    {lstm},")
    lines.append("])")
    return "\n".join(lines)


def write_keras(path: Path, weights: LSTMWeights, job: Any) -> list[str]:
    """Write ``weights`` as ``path``'s ending asks; return lines to print."""
    flavour = keras_output_kind(path)
    spec = weights.spec
    wanted = "hard_sigmoid_tf_keras" if flavour == "tf_keras_h5" else "hard_sigmoid_keras3"
    if spec.recurrent_activation not in ("sigmoid", wanted):
        target = "tf_keras (.h5)" if flavour == "tf_keras_h5" else "Keras 3 (.keras/.weights.h5)"
        other = ".keras" if flavour == "tf_keras_h5" else ".h5"
        raise UnsupportedFeatureError(
            target, f"recurrent_activation={spec.recurrent_activation}",
            f"its hard_sigmoid is a different function; write {other} instead")
    native = get_format("keras").from_canonical(weights)
    with atomic_output(path, job.replace) as temporary:
        if flavour == "tf_keras_h5":
            _save_tf_keras(spec, native, temporary)
        else:
            model = build_keras3(spec, native)
            if flavour == "keras":
                model.save(temporary)
            else:
                model.save_weights(temporary)
    what = {"keras": "Keras 3 model", "weights": "Keras 3 weights",
            "tf_keras_h5": "tf_keras HDF5 model"}[flavour]
    lines = [f"wrote {path} ({what})"]
    if flavour == "keras":
        lines.append(f'model = keras.models.load_model("{path}")  '
                     f"# (batch, time, {spec.input_size}) -> (batch, time, "
                     f"{spec.directions * spec.units})")
    else:
        lines.append("the network it fits:\n" + model_code(weights, flavour))
    return lines


def build_keras3(spec: Any, native: list[np.ndarray]) -> Any:
    """The Keras 3 Sequential of (Bidirectional) LSTMs for ``spec``, weights set."""
    from ..runtimes.keras import import_keras3

    keras = import_keras3()
    act = "hard_sigmoid" if spec.recurrent_activation == "hard_sigmoid_keras3" else "sigmoid"
    layers: list[Any] = [keras.Input((None, spec.input_size), dtype=spec.dtype)]
    for name in _layer_names(spec):
        lstm = keras.layers.LSTM(spec.units, return_sequences=True, recurrent_activation=act,
                                 dtype=spec.dtype, name=name if spec.directions == 1 else None)
        if spec.directions == 2:
            lstm = keras.layers.Bidirectional(lstm, name=name, dtype=spec.dtype)
        layers.append(lstm)
    model = keras.Sequential(layers, name="converted_lstm")
    model.set_weights([np.asarray(a) for a in native])
    return model


def _save_tf_keras(spec: Any, native: list[np.ndarray], path: Path) -> None:
    import tf_keras

    act = "hard_sigmoid" if spec.recurrent_activation == "hard_sigmoid_tf_keras" else "sigmoid"
    layers: list[Any] = [tf_keras.layers.InputLayer((None, spec.input_size), dtype=spec.dtype)]
    for name in _layer_names(spec):
        lstm = tf_keras.layers.LSTM(spec.units, return_sequences=True, recurrent_activation=act,
                                    dtype=spec.dtype, name=name if spec.directions == 1 else None)
        if spec.directions == 2:
            lstm = tf_keras.layers.Bidirectional(lstm, name=name)
        layers.append(lstm)
    model = tf_keras.Sequential(layers, name="converted_lstm")
    model.set_weights([np.asarray(a) for a in native])
    with warnings.catch_warnings():  # "HDF5 is legacy": asked for on purpose
        warnings.simplefilter("ignore", UserWarning)
        model.save(os.fspath(path), save_format="h5")
