"""Run a Keras file's LSTM layers as the file configures them (the ``--verify`` side of a
``.keras``/``.h5`` model).

Each layer is rebuilt from its own config in the file, by the Keras that wrote
it (Keras 3, or tf_keras for a Keras 2 file): ``LSTM``, ``RNN(LSTMCell)``,
``RNN(StackedRNNCells)``, their GRU twins (with ``reset_after``), ``Bidirectional``
(with its own ``backward_layer``
when the file has one), with the file's ``go_backwards``, ``time_major``,
``use_bias`` and activations, and the file's arrays set in the layer's order.
Only these keys are taken from the config; initializers, regularizers and
constraints (which could name code, and do not change a trained layer's
function) are left out, so nothing in the file is deserialized as code. What
the layer returns is widened without changing the recurrence: the whole
sequence and the states (``return_sequences``/``return_state``), and a
Bidirectional's two directions side by side (``merge_mode="concat"``). A mask
from the verify lengths is passed, as a ``Masking``/``Embedding(mask_zero)``
layer would pass it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from equivalence.errors import ConversionError
from equivalence.files._base import FoundLSTM
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec

LAYER_KEYS = ("units", "activation", "recurrent_activation", "use_bias", "go_backwards",
              "time_major")
CELL_KEYS = ("units", "activation", "recurrent_activation", "use_bias")


def _name(value: Any, default: str) -> str:
    """An activation's name from a config value (a string or a serialized object)."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        inner = value.get("config")
        return str(inner if isinstance(inner, str) else value.get("class_name", default))
    raise ConversionError(f"activation {str(value)[:60]} is not a name")


def _options(config: dict[str, Any], keys: tuple[str, ...], dtype: str) -> dict[str, Any]:
    options = {k: config[k] for k in keys if k in config}
    for key, default in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        options[key] = _name(config.get(key), default)
    options["dtype"] = dtype
    if not isinstance(options.get("units"), int):
        raise ConversionError(f"units {options.get('units')!r} is not an int")
    return options


def _cell(layers: Any, config: dict[str, Any], dtype: str) -> Any:
    cls = config.get("class_name")
    if cls not in ("LSTMCell", "GRUCell"):
        raise ConversionError(f"cell {cls!r} is not an LSTMCell or a GRUCell")
    return getattr(layers, cls)(**_options(config.get("config", {}), _keys(cls, CELL_KEYS),
                                           dtype))


def _keys(cls: Any, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The config keys taken: a GRU's reset_after too."""
    return keys + (("reset_after",) if cls in ("GRU", "GRUCell") else ())


def _recurrent(layers: Any, config: dict[str, Any], dtype: str) -> Any:
    """An LSTM or RNN(cells) layer from its config, returning sequences and states."""
    cls, conf = config.get("class_name"), config.get("config", {})
    wide = {"return_sequences": True, "return_state": True}
    if cls in ("LSTM", "GRU"):
        return getattr(layers, cls)(**_options(conf, _keys(cls, LAYER_KEYS), dtype), **wide)
    if cls == "RNN":
        cell = conf.get("cell", {})
        if cell.get("class_name") == "StackedRNNCells":
            built = layers.StackedRNNCells([_cell(layers, c, dtype)
                                            for c in cell.get("config", {}).get("cells", [])])
        else:
            built = _cell(layers, cell, dtype)
        extra = {k: conf[k] for k in ("go_backwards", "time_major") if k in conf}
        return layers.RNN(built, dtype=dtype, **extra, **wide)
    raise ConversionError(f"layer class {cls!r} is not run here")


def build_layer(layers: Any, config: dict[str, Any], dtype: str) -> Any:
    """The file's layer, rebuilt from the config keys the module docstring lists."""
    if config.get("class_name") == "Bidirectional":
        conf = config.get("config", {})
        forward = _recurrent(layers, conf.get("layer", {}), dtype)
        backward = conf.get("backward_layer")
        extra = {"backward_layer": _recurrent(layers, backward, dtype)} if backward else {}
        return layers.Bidirectional(forward, merge_mode="concat", dtype=dtype, **extra)
    return _recurrent(layers, config, dtype)


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [item for part in value for item in _flat(part)]
    return [value]


def _arrays(layer: dict[str, Any]) -> list[np.ndarray]:
    """The file's arrays in the layer's weight order; biases only where the config uses one."""
    config = layer["config"]
    uses_bias = _bias_flags(config)
    arrays = []
    cells = [cell for spec_layer in layer["cells"] for cell in spec_layer]
    for cell, bias in zip(cells, uses_bias * (len(cells) // max(1, len(uses_bias))),
                          strict=False):
        arrays += [cell["kernel"], cell["recurrent_kernel"]] + ([cell["bias"]] if bias else [])
    return arrays


def _bias_flags(config: dict[str, Any]) -> list[bool]:
    conf = config.get("config", {})
    if config.get("class_name") == "Bidirectional":
        return _bias_flags(conf.get("layer", {})) + _bias_flags(
            conf.get("backward_layer") or conf.get("layer", {}))
    if config.get("class_name") == "RNN":
        cell = conf.get("cell", {})
        cells = (cell.get("config", {}).get("cells", [])
                 if cell.get("class_name") == "StackedRNNCells" else [cell])
        return [bool(c.get("config", {}).get("use_bias", True)) for c in cells]
    return [bool(conf.get("use_bias", True))]


def runner(found: FoundLSTM, spec: LSTMSpec, options: dict[str, Any]) -> Any:
    """A verify side running the file's layers (see the module docstring)."""
    from equivalence.files.runners import Side, SideAbilities

    major = found.definition[0]["major"]
    if major >= 3:
        from equivalence.runtimes.keras import import_keras3

        layers_module = import_keras3().layers
        as_state: Callable[[np.ndarray], Any] = np.asarray
    else:
        import tensorflow as tf
        import tf_keras

        layers_module = tf_keras.layers
        # tf_keras's Bidirectional asks whether an initial state is a Keras tensor, and a
        # numpy array is an error there ("Expected a symbolic tensor instance"): feed tensors.
        as_state = tf.convert_to_tensor
    built = []
    for layer in found.definition:
        time_major = bool(layer["config"].get("config", {}).get("time_major", False))
        built.append((rebuild(layers_module, layer, spec.dtype), time_major,
                      len(layer["cells"])))

    def run(inputs: LSTMInputs) -> LSTMResult:
        return _run(built, spec, inputs, as_state)

    flavour = "Keras 3" if major >= 3 else "tf_keras"
    label = (f"the file's own layers {found.name!r} of {found.source}, rebuilt from their "
             f"config in {flavour}")
    return Side(label, run, SideAbilities(initial_state=True, lengths=True),
                name="keras" if major >= 3 else "tf_keras")


def rebuild(layers_module: Any, layer: dict[str, Any], dtype: str) -> Any:
    """The file's layer (``found.definition``'s entry) rebuilt from its config, built on a
    probe and given the file's arrays."""
    try:
        keras_layer = build_layer(layers_module, layer["config"], dtype)
        time_major = bool(layer["config"].get("config", {}).get("time_major", False))
        probe = np.zeros((1, 1, _input_width(layer)), dtype)
        keras_layer(probe.transpose(1, 0, 2) if time_major else probe)
        keras_layer.set_weights(_arrays(layer))
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"the file's layer {layer['name']!r} cannot be rebuilt from "
                              f"its config ({type(exc).__name__}: {exc})") from exc
    return keras_layer


def _input_width(layer: dict[str, Any]) -> int:
    return int(layer["cells"][0][0]["kernel"].shape[0])


def _run(built: list[tuple[Any, bool, int]], spec: LSTMSpec, inputs: LSTMInputs,
         as_state: Callable[[np.ndarray], Any]) -> LSTMResult:
    mask = inputs.valid_mask() if inputs.lengths is not None else None
    gru = spec.cell == "gru"  # one state per cell, h
    per_cell = 1 if gru else 2
    x, first, h_all, c_all = inputs.x, 0, [], []
    for layer, time_major, count in built:
        kwargs: dict[str, Any] = {}
        if mask is not None:
            kwargs["mask"] = mask.T if time_major else mask
        if inputs.h0 is not None and (gru or inputs.c0 is not None):
            kwargs["initial_state"] = _initial_state(inputs, range(first, first + count),
                                                     spec.directions, gru, as_state)
        feed = x.transpose(1, 0, 2) if time_major else x
        results = [np.asarray(r) for r in _flat(layer(feed, **kwargs))]
        sequence = results[0].transpose(1, 0, 2) if time_major else results[0]
        h_all += results[1::per_cell]
        c_all += results[2::2] if not gru else []
        x, first = sequence, first + count
    if mask is not None:
        x = x * mask[:, :, None]
    shape = (spec.layers, spec.directions, inputs.batch)
    c = None if gru else np.stack(c_all).reshape(*shape, -1)
    return LSTMResult(x, np.stack(h_all).reshape(*shape, -1), c)


def _initial_state(inputs: LSTMInputs, layers: range, directions: int, gru: bool,
                   as_state: Callable[[np.ndarray], Any]) -> list[Any]:
    """An RNN over stacked cells takes one state per cell ([h, c], or a GRU's h); the others
    a flat list."""
    states = [inputs.h0] + ([] if gru else [inputs.c0])
    per_cell = [[as_state(state[k, d]) for state in states if state is not None]
                for k in layers for d in range(directions)]
    if len(layers) > 1:
        return [state[0] for state in per_cell] if gru else per_cell
    return _flat(per_cell)
