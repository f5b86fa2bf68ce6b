"""``convert --to keras --with-states`` (a ``.keras`` only): the written Keras 3 functional
model takes the initial states and a mask as inputs and returns the final states, so a
decoder step can be ported.

The signature, Keras's own conventions (batch first, one tensor per state, in the order a
layer's ``initial_state`` takes them and ``return_state=True`` returns them):

* inputs ``[input, mask, <states of layer 0>, <states of layer 1>, ...]``: ``input``
  (batch, time, I) float; ``mask`` (batch, time) bool, True inside each sequence (all True
  for full lengths: it is what a ``Masking`` layer would pass); a layer's states are
  ``h0_k, c0_k`` (batch, H), or for a bidirectional layer ``h0_k_forward, c0_k_forward,
  h0_k_backward, c0_k_backward`` (the order ``Bidirectional(initial_state=...)`` takes);
* outputs ``[output, <states of layer 0>, <states of layer 1>, ...]``: ``output``
  (batch, time, D*H), zero at masked steps; each layer's states as that layer returns them
  (``h, c`` or ``h_forward, c_forward, h_backward, c_backward``), (batch, H) each, the state
  at each sequence's last valid step.

Each layer is called as ``layer(x, mask=mask, initial_state=[...])``; a unidirectional
layer has ``zero_output_for_mask=True`` (a Bidirectional sets it itself), so padded steps
give zeros as torch's packed sequences do.

``--verify`` of such a file runs the whole model (:func:`signature_side`): every layer is
rebuilt from its config (:func:`equivalence.files.keras.run.rebuild`, never code from the
file), then called as the file's ``inbound_nodes`` wire it (which input is its x, its mask,
each of its initial states), and the outputs are taken as ``output_layers`` names them. A
model that wires ``h0`` into a ``c`` slot computes another function, and verify says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.errors import ConversionError
from equivalence.files._base import FoundLSTM
from equivalence.files.keras import run as layer_by_layer
from equivalence.files.limits import shown
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec

FIXED_INPUTS = ("input", "mask")
CALL_KWARGS = {"mask", "initial_state"}  # what a layer call may take besides its x


def state_names(spec: LSTMSpec, prefix: str = "") -> list[str]:
    """The state tensors of every layer, in Keras's order (``prefix`` "0": the inputs)."""
    sides = [""] if spec.directions == 1 else ["_forward", "_backward"]
    return [f"{role}{prefix}_{k}{side}" for k in range(spec.layers) for side in sides
            for role in ("h", "c")]


def input_names(spec: LSTMSpec) -> list[str]:
    return [*FIXED_INPUTS, *state_names(spec, "0")]


def has_signature(config: dict[str, Any]) -> bool:
    """Whether a model config's inputs are a --with-states signature (the state names are
    checked against the spec when it runs)."""
    inner = config.get("config")
    inputs = _names(inner.get("input_layers")) if isinstance(inner, dict) else []
    return tuple(inputs[:2]) == FIXED_INPUTS and len(inputs) > 2 and all(
        isinstance(name, str) and name.startswith(("h0_", "c0_")) for name in inputs[2:])


def _names(entries: Any) -> list[Any]:
    if not isinstance(entries, list):
        return []
    return [e[0] if isinstance(e, list) and e else None for e in entries]


def mark(found: list[FoundLSTM], config: dict[str, Any]) -> None:
    """Give the entry holding every LSTM of a signature model the model config, so verify
    runs the whole model (a member picked alone runs as its layer)."""
    if not has_signature(config):
        return
    every = {layer["name"] for item in found for layer in (item.definition or [])}
    for item in found:
        if item.definition and {layer["name"] for layer in item.definition} == every:
            item.definition[0]["model"] = config


# ---------------------------------------------------------------- writing


def build_model(spec: LSTMSpec, native: list[np.ndarray], names: list[str],
                hard_sigmoid: bool) -> Any:
    """The functional model of the module docstring for ``spec``, weights set."""
    from equivalence.runtimes.keras import import_keras3

    keras = import_keras3()
    x = keras.Input((None, spec.input_size), dtype=spec.dtype, name="input")
    mask = keras.Input((None,), dtype="bool", name="mask")
    states = [keras.Input((spec.units,), dtype=spec.dtype, name=name)
              for name in state_names(spec, "0")]
    per_layer = 2 * spec.directions
    sequence: Any = x
    returned: list[Any] = []  # every layer's final states (Keras tensors), in order
    for k, name in enumerate(names):
        layer = _layer(keras, spec, name, hard_sigmoid)
        results = layer(sequence, mask=mask,
                        initial_state=states[k * per_layer:(k + 1) * per_layer])
        sequence, returned = results[0], returned + list(results[1:])
    model = keras.Model([x, mask, *states], [sequence, *returned], name="converted_lstm")
    model.set_weights([np.asarray(a) for a in native])
    return model


def _layer(keras: Any, spec: LSTMSpec, name: str, hard_sigmoid: bool) -> Any:
    lstm = keras.layers.LSTM(
        spec.units, return_sequences=True, return_state=True,
        recurrent_activation="hard_sigmoid" if hard_sigmoid else "sigmoid",
        activation=spec.activation, dtype=spec.dtype, zero_output_for_mask=True,
        name=name if spec.directions == 1 else None)
    if spec.directions == 2:
        return keras.layers.Bidirectional(lstm, name=name, dtype=spec.dtype)
    return lstm


def usage(path: Any, spec: LSTMSpec) -> str:
    """The line printed after writing: how to call the model."""
    states = ", ".join(state_names(spec, "0"))
    return (f'model = keras.models.load_model("{path}")  # [input (batch, time, '
            f"{spec.input_size}), mask (batch, time) bool, {states} (batch, {spec.units})] "
            f"-> [output (batch, time, {spec.directions * spec.units}), "
            f"{', '.join(state_names(spec))}]")


# ---------------------------------------------------------------- verify: the whole model


def runner(found: FoundLSTM, spec: LSTMSpec, options: dict[str, Any]) -> Any:
    """The verify side of a Keras file: the whole model where it was written
    ``--with-states`` (h0/c0 in), else its LSTM layers rebuilt one by one."""
    if found.definition[0]["major"] >= 3 and "model" in found.definition[0]:
        return signature_side(found, spec)
    return layer_by_layer.runner(found, spec, options)


def signature_side(found: FoundLSTM, spec: LSTMSpec) -> Any:
    """A verify side that runs the whole written model through its state signature."""
    from equivalence.files.runners import Side, SideAbilities

    config = found.definition[0]["model"]
    inner = config.get("config", {})
    wanted = input_names(spec)
    if _names(inner.get("input_layers")) != wanted:
        raise ConversionError(f"the model's inputs are {_names(inner.get('input_layers'))}, "
                              f"expected {wanted} for {spec.layers} layer(s), "
                              f"{spec.directions} direction(s)")
    from equivalence.runtimes.keras import import_keras3

    layers_module = import_keras3().layers
    built = {}
    for layer in found.definition:
        _check_returns(layer["config"])
        built[layer["name"]] = layer_by_layer.rebuild(layers_module, layer, spec.dtype)
        if layer["config"].get("class_name") == "LSTM":  # a Bidirectional forces it itself
            built[layer["name"]].zero_output_for_mask = bool(
                layer["config"].get("config", {}).get("zero_output_for_mask", False))
    try:
        graph = _graph(inner, built)
        outputs = _outputs(inner, 1 + 2 * spec.layers * spec.directions)
    except (AttributeError, TypeError) as exc:  # a config of other shapes than Keras writes
        raise ConversionError(f"the model's layer graph is malformed ({exc})") from exc

    def run(inputs: LSTMInputs) -> LSTMResult:
        return _run(graph, outputs, built, spec, inputs)

    label = (f"the whole model {found.source} in Keras 3, its layers rebuilt from their "
             f"config and called as its graph wires them, fed {', '.join(wanted[:2])}, "
             "h0, c0")
    return Side(label, run, SideAbilities(initial_state=True, lengths=True), name="keras")


def _check_returns(config: dict[str, Any]) -> None:
    """The rebuilt layer returns the sequence and the states and concatenates directions;
    the file's layer must too, or its outputs would be other tensors."""
    conf = config.get("config", {})
    inner = conf.get("layer", {}).get("config", {}) if config.get(
        "class_name") == "Bidirectional" else conf
    for key in ("return_sequences", "return_state"):
        if inner.get(key) is not True:
            raise ConversionError(f"layer {shown(conf.get('name'))}: {key}="
                                  f"{inner.get(key)!r}, expected True in a --with-states model")
    if config.get("class_name") == "Bidirectional" and conf.get("merge_mode",
                                                                "concat") != "concat":
        raise ConversionError(f"layer {shown(conf.get('name'))}: merge_mode="
                              f"{conf.get('merge_mode')!r}, expected 'concat'")


def _graph(inner: dict[str, Any], built: dict[str, Any]) -> list[tuple[str, Any, dict]]:
    """(layer, x source, {kwarg: source(s)}) per call, in the config's (topological) order."""
    calls = []
    for cfg in inner.get("layers", []):
        cls, name = cfg.get("class_name"), cfg.get("name", cfg.get("config", {}).get("name"))
        if cls == "InputLayer":
            continue
        if name not in built:
            raise ConversionError(f"layer {shown(name)} ({shown(cls)}) is not run in a "
                                  "--with-states model (only its LSTM layers are)")
        nodes = cfg.get("inbound_nodes")
        if not isinstance(nodes, list) or len(nodes) != 1 or not isinstance(nodes[0], dict):
            raise ConversionError(f"layer {shown(name)}: {_count(nodes)} call(s), expected 1")
        args, kwargs = nodes[0].get("args"), nodes[0].get("kwargs") or {}
        if not isinstance(args, list) or len(args) != 1 or not isinstance(kwargs, dict):
            raise ConversionError(f"layer {shown(name)}: called with {_count(args)} "
                                  "positional input(s), expected 1 (its x)")
        extra = set(kwargs) - CALL_KWARGS
        if extra:
            raise ConversionError(f"layer {shown(name)}: called with {sorted(extra)}, "
                                  f"expected only {sorted(CALL_KWARGS)}")
        sources = {key: _source(value, name) for key, value in kwargs.items()}
        calls.append((name, _source(args[0], name), sources))
    return calls


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def _source(value: Any, layer: str, nested: bool = True) -> Any:
    """A (layer, node, tensor) history, or a flat list of them (initial_state), from a
    serialized call argument."""
    if isinstance(value, list) and nested:
        return [_source(item, layer, nested=False) for item in value]
    history = value.get("config", {}).get("keras_history") if isinstance(value, dict) else None
    if not (isinstance(history, list) and len(history) >= 3):
        raise ConversionError(f"layer {shown(layer)}: an argument that is not a tensor "
                              f"({str(value)[:60]})")
    if not (isinstance(history[0], str) and all(isinstance(i, int) for i in history[1:3])):
        raise ConversionError(f"layer {shown(layer)}: a tensor named {str(history)[:60]}")
    return tuple(history[:3])


def _outputs(inner: dict[str, Any], count: int) -> list[tuple]:
    entries = inner.get("output_layers")
    if not isinstance(entries, list) or len(entries) != count:
        raise ConversionError(f"the model returns {_count(entries)} tensor(s), expected "
                              f"{count} (the output, then h and c of each layer and direction)")
    return [_source({"config": {"keras_history": e}}, "output_layers") for e in entries]


def _run(graph: list[tuple[str, Any, dict]], outputs: list[tuple], built: dict[str, Any],
         spec: LSTMSpec, inputs: LSTMInputs) -> LSTMResult:
    dtype = inputs.x.dtype
    shape = (spec.layers, spec.directions, inputs.batch, spec.units)
    h0 = np.zeros(shape, dtype) if inputs.h0 is None else inputs.h0
    c0 = np.zeros(shape, dtype) if inputs.c0 is None else inputs.c0
    values: dict[tuple, Any] = {("input", 0, 0): inputs.x, ("mask", 0, 0): inputs.valid_mask()}
    names = state_names(spec, "0")
    for k in range(spec.layers):
        for d in range(spec.directions):
            row = 2 * (k * spec.directions + d)
            values[(names[row], 0, 0)], values[(names[row + 1], 0, 0)] = h0[k, d], c0[k, d]

    def value(source: Any) -> Any:
        if isinstance(source, list):
            return [value(item) for item in source]
        if source not in values:
            raise ConversionError(f"a layer takes {source}, which nothing before it makes")
        return values[source]

    for name, x, kwargs in graph:
        results = built[name](value(x), **{key: value(src) for key, src in kwargs.items()})
        for index, result in enumerate(results):
            values[(name, 0, index)] = np.asarray(result)
    got = [value(source) for source in outputs]
    return LSTMResult(got[0], np.stack(got[1::2]).reshape(shape),
                      np.stack(got[2::2]).reshape(shape))
