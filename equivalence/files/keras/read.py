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
* ``GRU`` layers and ``RNN`` over ``GRUCell`` cells the same way, from the model config
  (read with ``cell="gru"`` and the config's ``reset_after``; a GRU stacks on GRUs of
  the same variant only); ``CuDNNGRU`` layers too (format ``cudnn``, 6H biases,
  ``reset_after=True``).
* weights-only files (Keras 3 ``.weights.h5``, legacy ``save_weights``): no config, so
  the cell is told from the shapes (:func:`_gates`). The recurrent kernel is (H, 4H) for
  an LSTM and (H, 3H) for a GRU, its rows fixing H, so the two cannot be confused (a
  4H' = 3H column count alone could: 12 columns are an LSTM of 3 or a GRU of 4). A GRU's
  bias then says its variant: (2, 3H) ``reset_after=True``, (3H,) ``reset_after=False``;
  a GRU without bias, or with a bias of neither shape, is refused by name (the weights do
  not say which function it computes), as is H = 0 (both cells fit).

Which Keras wrote the file decides what ``"hard_sigmoid"`` means: tf_keras's
clip(0.2x+0.5) (``keras_version`` 2.x) or Keras 3's clip(x/6+0.5).

Writing is :mod:`equivalence.files.keras.write`.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.errors import ConversionError
from equivalence.files._base import FileFormatError, FoundLSTM
from equivalence.files.keras.config import KerasLayer, arrange, config_layers, major_version, text
from equivalence.files.keras.states import has_signature, mark
from equivalence.files.limits import (
    MAX_JSON_BYTES,
    H5Guard,
    file_size,
    load_json,
    open_zip,
    read_member,
    shown,
)

PARTS = ("kernel", "recurrent_kernel", "bias")


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
            layers = config_layers(config, 3,
                                    lambda name: _k3_layer_cells(weights, name, guard),
                                    x_only=has_signature(config))
    except FileFormatError:
        raise
    except (OSError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise FileFormatError(path, f"unreadable .keras content ({type(exc).__name__}: {exc})"
                              ) from exc
    found = _found(layers, path, "Keras 3 .keras model", "keras_zip")
    mark(found, config)  # a --with-states model runs whole in verify
    return found


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
        config = load_json(text(attrs["model_config"]), path, "model_config")
        if not isinstance(config, dict):
            raise FileFormatError(path, "model_config is not a JSON object")
        weights = root["model_weights"]
        version = guard.attrs(weights).get("keras_version", attrs.get("keras_version", "2"))
        major = major_version(version)
        layers = config_layers(config, major,
                                lambda name: _legacy_layer_cells(weights, name, guard))
        return _found(layers, path, f"legacy Keras {major} HDF5 model", "keras_h5")
    if "layer_names" in attrs:  # legacy save_weights: no config, order from layer_names
        major = major_version(attrs.get("keras_version", "2"))
        return _found(_legacy_weights_only(root, major, guard, attrs["layer_names"]), path,
                      f"legacy Keras {major} HDF5 weights")
    if "layers" in root:
        return _found(_k3_weights_only(root, guard), path, "Keras 3 .weights.h5")
    raise FileFormatError(path, "an HDF5 file without Keras weights (no model_config, "
                                "layer_names or layers/ group)")


# ---------------------------------------------------------------- weights in the h5


def _legacy_layer_cells(group: Any, name: str, guard: H5Guard) -> list[dict[str, np.ndarray]]:
    """Cells of a legacy layer group, in weight_names order (forward before backward)."""
    layer = group[name]
    cells: dict[str, dict[str, np.ndarray]] = {}
    for weight_name in [text(n) for n in guard.attrs(layer).get("weight_names", [])]:
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
        if variables is not None and text(guard.attrs(variables).get("name", "")) == name:
            return group
    return None


# ---------------------------------------------------------------- weights-only files


def _shape_layer(name: str, cells: list[dict[str, np.ndarray]], major: int,
                 gates: int = 4) -> KerasLayer:
    """A layer known only from its weights: an LSTM's bias length says LSTM (4H) or
    CuDNNLSTM (8H); a GRU's (``gates`` 3) bias shape says its ``reset_after``."""
    units = cells[0]["recurrent_kernel"].shape[0]
    fmt = "cudnn" if gates == 4 and "bias" in cells[0] and (
        cells[0]["bias"].shape[:1] == (8 * units,)) else "keras"
    directions = 2 if len(cells) == 2 and name.startswith("bidirectional") else 1
    label = "GRU" if gates == 3 else "CuDNNLSTM" if fmt == "cudnn" else "LSTM"
    layer = KerasLayer(name, label, fmt, directions, [])
    if directions == 2:
        layer.label = f"Bidirectional({layer.label})"
    layer.notes.append("no model config in the file: tanh/sigmoid assumed, stacking inferred "
                       "from the layer order and shapes")
    if gates == 3:
        _gru_variant(layer, cells, units)
    if layer.problem is None:
        layer.cells = arrange(cells, layer)
    return layer


def _gru_variant(layer: KerasLayer, cells: list[dict[str, np.ndarray]], units: int) -> None:
    """A weights-only GRU's reset_after, from its biases' shape; a problem when they do not
    say it (no bias: either variant fits) or fit neither."""
    layer.cell = "gru"
    variants = {(2, 3 * units): True, (3 * units,): False}
    shapes = [tuple(c["bias"].shape) for c in cells if "bias" in c]
    if len(shapes) < len(cells):
        layer.notes.append("use_bias=False: no bias in the file")
        layer.problem = ("a GRU without biases (use_bias=False): its reset_after, which "
                         "changes the function, is not in the weights; save the whole model "
                         "(.keras or .h5) instead")
        return
    for shape in shapes:
        if shape not in variants:
            hint = " (a CuDNNGRU's 6H bias: not read)" if shape == (6 * units,) else ""
            layer.problem = (f"GRU bias of shape {shape}{hint}, expected {(2, 3 * units)} "
                             f"(reset_after=True) or {(3 * units,)} (reset_after=False) "
                             f"for H={units}")
            return
    if len(set(shapes)) > 1:
        layer.problem = f"GRU directions with different bias shapes {shapes}"
        return
    layer.reset_after = variants[shapes[0]]
    layer.label = layer.label.replace("GRU", f"GRU(reset_after={layer.reset_after})")
    layer.notes.append(f"a GRU: (H, 3H) recurrent kernel; reset_after={layer.reset_after} "
                       f"from its {shapes[0]} bias")


def _gates(cells: list[dict[str, np.ndarray]]) -> int | None:
    """4 (LSTM) or 3 (GRU) when every cell's recurrent kernel is (H, 4H) or (H, 3H) alike,
    H > 0; None for anything else (not a recurrent layer the spec holds)."""
    counts = set()
    for cell in cells:
        recurrent = cell.get("recurrent_kernel")
        if "kernel" not in cell or recurrent is None or recurrent.ndim != 2:
            return None
        rows, columns = recurrent.shape
        counts.add(columns // rows if rows and columns % rows == 0 else None)
    return counts.pop() if len(counts) == 1 and counts <= {3, 4} else None


def _zero_units(cells: list[dict[str, np.ndarray]]) -> bool:
    """A (0, 0) recurrent kernel: an LSTM and a GRU of H = 0 alike."""
    return any(getattr(c.get("recurrent_kernel"), "shape", None) == (0, 0) for c in cells)


def _weights_layer(name: str, cells: list[dict[str, np.ndarray]], major: int
                   ) -> KerasLayer | None:
    """The LSTM or GRU a weights-only layer's cells are, or None (another layer)."""
    if cells and _zero_units(cells):
        return KerasLayer(name, "LSTM or GRU", "keras", 1, [], problem=(
            "a (0, 0) recurrent kernel: H=0 fits an LSTM and a GRU alike"))
    gates = _gates(cells) if cells else None
    return None if gates is None else _shape_layer(name, cells, major, gates)


def _legacy_weights_only(root: Any, major: int, guard: H5Guard, layer_names: Any
                         ) -> list[KerasLayer]:
    found, previous = [], None
    for name in [text(n) for n in layer_names]:
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
        layer = _weights_layer(name, cells, major)
        if layer is not None:
            layer.inbound = previous
            found.append(layer)
        previous = name
    return found


def _k3_weights_only(root: Any, guard: H5Guard) -> list[KerasLayer]:
    """Keras 3 weights without config: layer groups are named by class, not ordered across classes.

    Layers of one class are ordered by their numeric suffix; they are stacked
    only when the file holds nothing but LSTMs of that one class.
    """
    layers = root["layers"]
    keys = sorted(layers, key=_natural)
    found, others = [], []
    for key in keys:
        cells = _k3_cells(layers[key], guard)
        layer = _weights_layer(key, cells, 3)
        if layer is not None:
            variables = layers[key].get("vars")
            layer.name = (key if variables is None
                          else text(guard.attrs(variables).get("name", key)))
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


def _stackable(lower: KerasLayer, upper: KerasLayer) -> bool:
    if lower.problem or upper.problem or upper.inbound != lower.name:
        return False
    if not (lower.return_sequences and lower.concat):
        return False
    def kind(layer: KerasLayer) -> tuple:
        return (layer.format, layer.directions, layer.recurrent_activation, layer.activation,
                layer.cell, layer.reset_after)

    same = kind(lower) == kind(upper)
    units = lower.cells[-1][0]["recurrent_kernel"].shape[0]
    upper_in = upper.cells[0][0]["kernel"].shape[0]
    return same and units == upper.cells[0][0]["recurrent_kernel"].shape[0] and (
        upper_in == lower.directions * units)


def _refuse_cycles(layers: list[KerasLayer]) -> None:
    """An LSTM fed by its own output, directly or through others, is no model Keras could
    build; refused before any chain is walked (walking it would never end)."""
    inbound = {layer.name: layer.inbound for layer in layers}
    acyclic: set[str] = set()
    for start in inbound:
        path: set[str] = set()
        name: str | None = start
        while name is not None and name in inbound and name not in acyclic:
            if name in path:
                raise ConversionError(f"layer {shown(name)} is fed by its own output (a "
                                      "cycle): not a model Keras could build")
            path.add(name)
            name = inbound[name]
        acyclic.update(path)


def _stacks(layers: list[KerasLayer]) -> list[list[KerasLayer]]:
    """Group layers into maximal chains; a layer feeding two LSTMs starts no stack."""
    _refuse_cycles(layers)
    successors: dict[str, list[KerasLayer]] = {}
    for layer in layers:
        if layer.inbound is not None:
            successors.setdefault(layer.inbound, []).append(layer)
    stacks: list[list[KerasLayer]] = []
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


def _entry(chain: list[KerasLayer], path: Path, kind: str, runner: str | None) -> FoundLSTM:
    first, top = chain[0], chain[-1]
    native = [cell[part] for layer in chain for spec_layer in layer.cells
              for cell in spec_layer for part in PARTS]
    options: dict[str, Any] = {"directions": first.directions}
    if first.cell == "gru":
        options.update(cell="gru", reset_after=first.reset_after)
    if first.format == "keras":
        options["recurrent_activation"] = first.recurrent_activation
        if first.activation != "tanh":
            options["activation"] = first.activation
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
        biases = f"two ({6 if first.cell == 'gru' else 8}H: input + recurrent)"
    elif any("use_bias=False" in n for n in notes):
        biases = "none (use_bias=False)"
    elif first.cell == "gru":
        biases = "two ((2, 3H): input, recurrent)" if first.reset_after else "one (3H)"
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


def _found(layers: list[KerasLayer], path: Path, kind: str, runner: str | None = None
           ) -> list[FoundLSTM]:
    found = []
    for chain in _stacks(layers):
        entry = _entry(chain, path, kind, runner)
        if len(chain) > 1:
            parts = tuple(_entry([layer], path, kind, runner) for layer in chain)
            entry = FoundLSTM(**{**entry.__dict__, "parts": parts})
        found.append(entry)
    return found
