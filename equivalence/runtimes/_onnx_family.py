"""What the runtimes that consume ONNX ``LSTM`` (and ``GRU``) graphs share: graphs, feeds, results.

Owns the ONNX-level interface of those runtimes: :meth:`OnnxModelRuntime.run_onnx`
runs serialized model bytes on feeds (the conformance grid uses it to probe
attributes the spec cannot express), :func:`probe_model` builds the graph of
:func:`equivalence.runtimes.onnxruntime.build_model` with such attributes set
(``direction="reverse"``, ``input_forget``, ``layout=1``, ``activations``), and
:func:`feeds`/:func:`result` translate between the contract and the graph.

A subclass only compiles bytes into a callable (:meth:`OnnxModelRuntime.compile`);
compiled models are cached here by the model's bytes (and the feed shapes for
runtimes that compile per shape), and the weights are graph inputs, so a new
example's weights only change the feeds.

A GRU spec gets ``GRU`` nodes (``linear_before_reset`` from ``spec.reset_after``),
``initial_h`` inputs only and ``Y``, ``Y_h`` outputs; its result has no c.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Runtime, zero_padding
from equivalence.runtimes.onnxruntime import initial_state_inputs
from equivalence.spec import LSTMSpec

Feeds = Mapping[str, np.ndarray]
Compiled = Callable[[Feeds], list[np.ndarray]]

# ONNX HardSigmoid is max(0, min(1, alpha*x + beta)): the spec's hard sigmoids are two of them.
_STATE_INPUTS = ("X", "initial_h_0", "initial_c_0")  # the inputs layout=1 makes batch-first


class OnnxModelRuntime(Runtime):
    """A runtime that runs the ONNX graph of ``onnxruntime.build_model`` in another engine.

    ``always_state``: feed explicit zero initial states when the caller gave
    none (for an engine that mishandles the ONNX default); ``always_state_cells``
    the same for those cells only. ``per_shape``:
    the engine compiles for concrete input shapes, so the cache key includes
    them.
    """

    requires: ClassVar[tuple[str, ...]] = ("onnx",)  # the graph is built with onnx.helper
    always_state: ClassVar[bool] = False
    always_state_cells: ClassVar[frozenset[str]] = frozenset()
    per_shape: ClassVar[bool] = False

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        self._compiled: dict[tuple[bytes, tuple[tuple[int, ...], ...]], Compiled] = {}
        self._models: dict[tuple[LSTMSpec, bool, bool], bytes] = {}

    @abc.abstractmethod
    def compile(self, model: bytes, feeds: Feeds) -> Compiled:
        """Load serialized ONNX ``model`` (``feeds`` are the first inputs it will get)."""

    def run_onnx(self, model: bytes, feeds: Feeds) -> list[np.ndarray]:
        """Run serialized ONNX ``model`` on ``feeds``; outputs in graph order."""
        shapes = tuple(np.shape(feeds[k]) for k in sorted(feeds)) if self.per_shape else ()
        key = (hashlib.sha256(model).digest(), shapes)
        if key not in self._compiled:
            self._compiled[key] = self.compile(model, feeds)
        return [np.asarray(out) for out in self._compiled[key](feeds)]

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        has_state = (self.always_state or spec.cell in self.always_state_cells
                     or inputs.h0 is not None)
        model = self._model(spec, has_state, inputs.lengths is not None)
        outputs = self.run_onnx(model, feeds(spec, native, inputs, has_state=has_state))
        return result(spec, outputs, inputs)

    def _model(self, spec: LSTMSpec, has_state: bool, has_lengths: bool) -> bytes:
        key = (spec, has_state, has_lengths)
        if key not in self._models:
            self._models[key] = probe_model(spec, has_state=has_state, has_lengths=has_lengths)
        return self._models[key]


def probe_model(
    spec: LSTMSpec,
    *,
    has_state: bool,
    has_lengths: bool,
    direction: str | None = None,
    input_forget: bool = False,
    layout: int = 0,
) -> bytes:
    """Serialized ``build_model`` graph for ``spec``, with ONNX attributes the spec lacks.

    ``spec.recurrent_activation`` and ``spec.activation`` become the ``activations``
    attribute (ONNX ``HardSigmoid`` for the hard sigmoids). ``direction`` replaces the
    unidirectional nodes' ``"forward"``; ``layout=1`` makes X, the initial
    states and the outputs batch-first (one layer only: the graph's flattening
    between layers is time-major).
    """
    from equivalence.errors import SpecError
    from equivalence.formats import onnx_activations
    from equivalence.runtimes.onnxruntime import build_model

    if layout == 1 and spec.layers > 1:
        raise SpecError(f"layout=1 probe: {spec.layers} layers, expected 1")
    model = build_model(spec.replace(recurrent_activation="sigmoid"),
                        has_state=has_state, has_lengths=has_lengths)
    for node in model.graph.node:
        if node.op_type in ("LSTM", "GRU"):
            _set_attributes(node, spec, direction, input_forget, layout,
                            onnx_activations.write(spec))
    if layout == 1:
        _batch_first_inputs(model)
    _declare_output_shapes(model, spec, layout)
    return bytes(model.SerializeToString())


def _set_attributes(
    node: Any, spec: LSTMSpec, direction: str | None, input_forget: bool, layout: int,
    activations: dict[str, Any],
) -> None:
    from onnx import helper

    values: dict[str, Any] = {"layout": layout}
    if node.op_type == "LSTM":  # a GRU node has no input_forget attribute
        values["input_forget"] = int(input_forget or spec.input_forget)
    if direction is not None and spec.directions == 1:
        values["direction"] = direction
    # f (HardSigmoid for the hard sigmoids), g (= h for an LSTM) the cell activation,
    # alpha/beta in order.
    values.update(activations)
    kept = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(k, v) for k, v in values.items()])


def _batch_first_inputs(model: Any) -> None:
    """Swap the first two dimensions of X and the initial states (layout=1 shapes)."""
    for value in model.graph.input:
        if value.name in _STATE_INPUTS:
            dims = value.type.tensor_type.shape.dim
            first, second = (_dim_value(d) for d in dims[:2])
            for dim, new in ((dims[0], second), (dims[1], first)):
                dim.Clear()
                if isinstance(new, str):
                    dim.dim_param = new
                else:
                    dim.dim_value = new


def _declare_output_shapes(model: Any, spec: LSTMSpec, layout: int) -> None:
    """Give Y, Y_h (and Y_c) their ONNX shapes (OpenCV's importer needs them declared)."""
    from onnx import helper

    d, h = spec.directions, spec.units
    y = ("batch", "time", d, h) if layout == 1 else ("time", d, "batch", h)
    state = ("batch", d, h) if layout == 1 else (d, "batch", h)
    declared = []
    for output in model.graph.output:
        shape = y if output.name.startswith("Y_") and output.name[2:].isdigit() else state
        elem = output.type.tensor_type.elem_type
        declared.append(helper.make_tensor_value_info(output.name, elem, list(shape)))
    del model.graph.output[:]
    model.graph.output.extend(declared)


def _dim_value(dim: Any) -> int | str:
    return dim.dim_param if dim.HasField("dim_param") else int(dim.dim_value)


def layers_of(native: Any) -> list[Mapping[str, Any]]:
    """ONNX native weights (a dict for one layer, a list of dicts for a stack) as a list."""
    return [native] if isinstance(native, Mapping) else list(native)


def feeds(
    spec: LSTMSpec, native: Any, inputs: LSTMInputs, *, has_state: bool, layout: int = 0
) -> dict[str, np.ndarray]:
    """Graph inputs of :func:`probe_model` for ``inputs`` (zeros for absent initial states)."""
    dtype = np.dtype(spec.dtype)
    x = inputs.x if layout == 1 else np.swapaxes(inputs.x, 0, 1)
    fed = {"X": np.ascontiguousarray(x, dtype=dtype)}
    if inputs.lengths is not None:
        fed["sequence_lens"] = np.asarray(inputs.lengths, dtype=np.int32)
    for layer, weights in enumerate(layers_of(native)):
        for name, array in weights.items():
            fed[f"{name}_{layer}"] = np.ascontiguousarray(array, dtype=dtype)
    if has_state:
        shape = (spec.layers, spec.directions, inputs.batch)
        h0 = np.zeros((*shape, spec.units)) if inputs.h0 is None else inputs.h0
        c0 = np.zeros((*shape, spec.units)) if inputs.c0 is None else inputs.c0
        names = initial_state_inputs(spec)
        for layer in range(spec.layers):
            states = (("initial_h", h0[layer]), ("initial_c", c0[layer]))[:len(names)]
            for name, state in states:
                state = np.swapaxes(state, 0, 1) if layout == 1 else state
                fed[f"{name}_{layer}"] = np.ascontiguousarray(state, dtype=dtype)
    return fed


def result(
    spec: LSTMSpec, outputs: Sequence[np.ndarray], inputs: LSTMInputs, *, layout: int = 0
) -> LSTMResult:
    """Graph outputs -> contract: Y (T, D, B, H) -> (B, T, D*H), Y_h/Y_c -> (L, D, B, H).

    An output of an unexpected shape is passed on unchanged, so the comparison
    reports the shape instead of this function raising. A GRU's outputs are Y and
    the Y_h of each layer; its result has c None.
    """
    batch, steps, directions = inputs.batch, inputs.steps, spec.directions
    top, states = outputs[0], [np.asarray(s) for s in outputs[1:]]
    y_shape = (batch, steps, directions) if layout == 1 else (steps, directions, batch)
    state_shape = (batch, directions) if layout == 1 else (directions, batch)
    if top.shape[:3] == y_shape:
        top = top if layout == 1 else top.transpose(2, 0, 1, 3)
        top = zero_padding(top.reshape(batch, steps, -1), inputs)
    gru = spec.cell == "gru"
    if all(s.shape[:2] == state_shape for s in states):
        states = [np.swapaxes(s, 0, 1) if layout == 1 else s for s in states]
        if gru:
            return LSTMResult(np.ascontiguousarray(top), np.stack(states), None)
        return LSTMResult(np.ascontiguousarray(top), np.stack(states[0::2]),
                          np.stack(states[1::2]))
    if gru:
        return LSTMResult(top, np.asarray(states[0]), None)
    return LSTMResult(top, np.asarray(states[0]), np.asarray(states[1]))


class OnnxRuntimeSessions(OnnxModelRuntime):
    """ONNX Runtime's CPU provider behind :meth:`OnnxModelRuntime.run_onnx`.

    The ``onnxruntime`` row's own class has no ONNX-level entry point; the
    conformance grid probes that row through this one (same graph, same
    provider).
    """

    module: ClassVar[str] = "onnxruntime"

    def compile(self, model: bytes, feeds: Feeds) -> Compiled:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4  # fatal only: probes make ORT log the errors it raises
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return lambda fed: session.run(None, dict(fed))
