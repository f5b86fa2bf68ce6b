"""ONNX Runtime: an ONNX graph of ``LSTM`` (or ``GRU``) nodes run by the CPU execution provider.

Owns building the graph for a spec (one ``LSTM`` node per layer, a ``GRU`` node
for a GRU spec, time-major ``layout=0``), feeding native ``onnx`` weights to it,
and normalizing the result to the contract of :mod:`equivalence.io_types`.

The weights are graph inputs, not initializers, and the batch and time
dimensions are symbolic, so one session serves every example of a spec;
a new set of weights only changes the feeds.

Facts this module relies on (verified against onnxruntime 1.32, CPU):

* ``clip`` bounds the four gate pre-activations (i, o, f and the cell
  candidate, peephole terms included) before their activations; it touches
  neither the cell state nor the ``tanh(c)`` in ``h = o * tanh(c)``.
* With ``sequence_lens``, Y is zero past each length, Y_h/Y_c are the state
  at the last valid step, and the reverse direction runs over the valid part
  only, its Y in original time order.
* The LSTM kernel is float32 only: float64 fails at run time ("does not
  support double yet"); float16 graphs run because ORT inserts Casts to
  float32 around the node; bfloat16 has no kernel; ``layout=1`` is refused.
* The GRU kernel (GRU-14) runs both ``linear_before_reset`` values, ``clip``,
  ``activations`` and ``sequence_lens`` as the LSTM's; float32 only, the same
  way (tests/test_gru_onnx.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from equivalence.formats import onnx_activations
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Row, Runtime
from equivalence.spec import LSTMSpec

# LSTM-14 / GRU-14 semantics (opset 22 only adds bfloat16 types, which ORT's CPU kernel lacks).
OPSET = 17
# IR 8 / opset 17 load in every ONNX Runtime from 1.14 on: the version matrix found that
# ORT 1.17 refuses IR 10 ("max supported IR version: 9"). The LSTM op is LSTM-14 either way.
IR_VERSION = 8
_BATCH, _TIME = "batch", "time"


class OnnxRuntime(Runtime):
    """ONNX ``LSTM`` (``GRU``) nodes in onnxruntime's CPU execution provider."""

    module: ClassVar[str] = "onnxruntime"
    requires: ClassVar[tuple[str, ...]] = ("onnx",)  # the graph is built with onnx.helper

    def __init__(self, entry: Row) -> None:
        super().__init__(entry)
        self._sessions: dict[tuple[LSTMSpec, bool, bool], Any] = {}

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        """Feed ``native`` ONNX weights and ``inputs`` to a cached session for ``spec``."""
        layers = layer_weights(native)
        has_state = inputs.h0 is not None
        has_lengths = inputs.lengths is not None
        session = self._session(spec, has_state, has_lengths)
        feeds = _feeds(spec, layers, inputs, has_state)
        outputs = session.run(None, feeds)
        return _result(spec, outputs, inputs)

    def _session(self, spec: LSTMSpec, has_state: bool, has_lengths: bool) -> Any:
        key = (spec, has_state, has_lengths)
        if key not in self._sessions:
            import onnxruntime

            model = build_model(spec, has_state=has_state, has_lengths=has_lengths)
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3  # errors only: ORT warns about its own inserted Casts
            self._sessions[key] = onnxruntime.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[key]


def build_model(spec: LSTMSpec, *, has_state: bool, has_lengths: bool) -> Any:
    """The ONNX model for ``spec``: X (time, batch, I) in; per layer W/R/B[/P] as inputs.

    Outputs: ``Y`` of the top layer (T, D, B, H), then ``Y_h_{k}``, ``Y_c_{k}``
    (D, B, H) for every layer k (``Y_h_{k}`` only for a GRU, which has no c).
    """
    from onnx import TensorProto, helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(spec.dtype))
    graph_inputs = [helper.make_tensor_value_info("X", elem, [_TIME, _BATCH, spec.input_size])]
    if has_lengths:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                          [_BATCH]))
    nodes: list[Any] = []
    initializers: list[Any] = []
    layer_input = "X"
    for layer in range(spec.layers):
        graph_inputs += _layer_inputs(spec, layer, elem, has_state)
        nodes.append(_recurrent_node(spec, layer, layer_input, has_state, has_lengths))
        if layer + 1 < spec.layers:
            layer_input = _flatten_directions(layer, nodes, initializers)
    graph_outputs = [helper.make_tensor_value_info(f"Y_{spec.layers - 1}", elem, None)]
    for layer in range(spec.layers):
        graph_outputs += [helper.make_tensor_value_info(f"{name}_{layer}", elem, None)
                          for name in state_outputs(spec)]
    graph = helper.make_graph(nodes, "equivalence_lstm", graph_inputs, graph_outputs,
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def _layer_inputs(spec: LSTMSpec, layer: int, elem: int, has_state: bool) -> list[Any]:
    from onnx import helper

    shapes: dict[str, tuple[int | str, ...]] = dict(_weight_shapes(spec, layer))
    if has_state:
        for name in initial_state_inputs(spec):
            shapes[name] = (spec.directions, _BATCH, spec.units)
    return [helper.make_tensor_value_info(f"{name}_{layer}", elem, list(shape))
            for name, shape in shapes.items()]


def _recurrent_node(spec: LSTMSpec, layer: int, x: str, has_state: bool, has_lengths: bool
                    ) -> Any:
    """One LSTM node (a GRU node for a GRU spec); optional inputs named positionally
    ('' = absent). A GRU node has no initial_c, no P and no Y_c."""
    from onnx import helper

    gru = spec.cell == "gru"
    names = [x, f"W_{layer}", f"R_{layer}", f"B_{layer}",
             "sequence_lens" if has_lengths else "",
             f"initial_h_{layer}" if has_state else ""]
    if not gru:
        names += [f"initial_c_{layer}" if has_state else "",
                  f"P_{layer}" if spec.peepholes else ""]
    while names[-1] == "":
        names.pop()
    attributes: dict[str, Any] = {"hidden_size": spec.units, "direction": _direction(spec),
                                  "layout": 0}
    if gru:
        attributes["linear_before_reset"] = int(spec.reset_after)
    else:
        attributes["input_forget"] = int(spec.input_forget)
    if spec.gate_clip is not None:
        attributes["clip"] = float(spec.gate_clip)
    # The cell activation (g = h) and any gate activation, as a file writer sets them.
    attributes.update(onnx_activations.write(spec))
    outputs = [f"Y_{layer}", f"Y_h_{layer}"] + ([] if gru else [f"Y_c_{layer}"])
    return helper.make_node("GRU" if gru else "LSTM", names, outputs,
                            name=f"{spec.cell}_{layer}", **attributes)


def state_outputs(spec: LSTMSpec) -> tuple[str, ...]:
    """The per-layer state outputs of a node: Y_h and Y_c (an LSTM), Y_h (a GRU)."""
    return ("Y_h",) if spec.cell == "gru" else ("Y_h", "Y_c")


def initial_state_inputs(spec: LSTMSpec) -> tuple[str, ...]:
    """The per-layer initial-state inputs: initial_h and initial_c, initial_h for a GRU."""
    return ("initial_h",) if spec.cell == "gru" else ("initial_h", "initial_c")


def _direction(spec: LSTMSpec) -> str:
    if spec.directions == 2:
        return "bidirectional"
    return "reverse" if spec.reverse else "forward"


def _flatten_directions(layer: int, nodes: list[Any], initializers: list[Any]) -> str:
    """Y (T, D, B, H) -> (T, B, D*H), forward features first: the next layer's X."""
    from onnx import TensorProto, helper

    if not initializers:
        # Reshape's 0 copies a dimension, so one shape serves every batch and time.
        initializers.append(helper.make_tensor("keep_time_batch", TensorProto.INT64,
                                               [3], [0, 0, -1]))
    transposed, flat = f"Y_{layer}_tbdh", f"X_{layer + 1}"
    nodes.append(helper.make_node("Transpose", [f"Y_{layer}"], [transposed], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Reshape", [transposed, "keep_time_batch"], [flat]))
    return flat


def _weight_shapes(spec: LSTMSpec, layer: int) -> dict[str, tuple[int, ...]]:
    units, directions, gates = spec.units, spec.directions, spec.gate_count
    shapes = {
        "W": (directions, gates * units, spec.layer_input_size(layer)),
        "R": (directions, gates * units, units),
        "B": (directions, 2 * gates * units),
    }
    if spec.peepholes:
        shapes["P"] = (directions, 3 * units)
    return shapes


def layer_weights(native: Any) -> list[Mapping[str, Any]]:
    """Native weights (a dict for one layer, a list of dicts for a stack) as a per-layer list."""
    return [native] if isinstance(native, Mapping) else list(native)


def _feeds(
    spec: LSTMSpec, layers: list[Mapping[str, Any]], inputs: LSTMInputs, has_state: bool
) -> dict[str, np.ndarray]:
    dtype = np.dtype(spec.dtype)
    feeds = {"X": np.ascontiguousarray(np.swapaxes(inputs.x, 0, 1), dtype=dtype)}
    if inputs.lengths is not None:
        feeds["sequence_lens"] = np.asarray(inputs.lengths, dtype=np.int32)
    for layer, weights in enumerate(layers):
        for name, array in weights.items():
            feeds[f"{name}_{layer}"] = np.ascontiguousarray(array, dtype=dtype)
    if has_state:
        states = {"initial_h": inputs.h0, "initial_c": inputs.c0}
        for layer in range(spec.layers):
            for name in initial_state_inputs(spec):
                state = np.asarray(states[name])[layer]
                feeds[f"{name}_{layer}"] = np.ascontiguousarray(state, dtype=dtype)
    return feeds


def _result(spec: LSTMSpec, outputs: list[np.ndarray], inputs: LSTMInputs) -> LSTMResult:
    """Y (T, D, B, H) -> (B, T, D*H); per-layer Y_h/Y_c (D, B, H) -> (L, D, B, H)."""
    top, states = outputs[0], outputs[1:]
    batch, steps = inputs.batch, inputs.steps
    flat = top.transpose(2, 0, 1, 3).reshape(batch, steps, spec.directions * spec.units)
    if spec.cell == "gru":  # Y_h only: no c
        return LSTMResult(outputs=np.ascontiguousarray(flat), h=np.stack(states), c=None)
    return LSTMResult(
        outputs=np.ascontiguousarray(flat),
        h=np.stack(states[0::2]),
        c=np.stack(states[1::2]),
    )
