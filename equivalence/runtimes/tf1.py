"""The TF1 runtime: ``LSTMCell`` and ``GRUCell`` graphs run by ``tf.compat.v1.nn.dynamic_rnn``.

This module owns building a TF1-style graph for a spec, loading ``tf1`` native
weights into it by variable name (a dict name -> array, or for a single cell the
``LSTMCell.get_weights()`` list), and normalizing what the graph returns to the
contract of :mod:`equivalence.io_types`. A GRU spec builds ``GRUCell`` s (reset_after=False,
its only variant) in the same scopes; its state is h alone, so no c is fed or fetched.

Each graph lives in its own ``tf.Graph`` and ``tf.compat.v1.Session``, so it
runs in graph mode while eager Keras keeps working in the same process.

With Keras 3 installed, ``tf.compat.v1.nn.rnn_cell`` raises ("not available with
Keras 3") unless ``TF_USE_LEGACY_KERAS`` was set before TensorFlow was imported.
The module that flag routes it to is tf_keras's
``tf_keras.api._v1.keras.__internal__.legacy.rnn_cell``, so the cells are taken
from there directly; TensorFlow's own frozen copy
(``tensorflow.python.keras.layers.legacy_rnn.rnn_cell_impl``) is the fallback.
``dynamic_rnn`` and ``bidirectional_dynamic_rnn`` are plain TensorFlow.

Graphs are cached per spec and feature flags (batch and time are dynamic
dimensions, so they are not part of the key). A cached graph has one
placeholder per variable and one grouped assign op, and is finalized, so a call
only runs the assign op and then the outputs: it never adds nodes.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from equivalence.errors import ConversionError, MissingKeyError, ShapeError, UnexpectedKeyError
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Row, Runtime
from equivalence.spec import LSTMSpec

_CELL_MODULES = (
    "tf_keras.api._v1.keras.__internal__.legacy.rnn_cell",
    "tensorflow.python.keras.layers.legacy_rnn.rnn_cell_impl",
)
DEFAULT_FORGET_BIAS = 1.0


@dataclass(frozen=True)
class _GraphKey:
    """Everything that changes the graph's structure (batch and time do not)."""

    spec: LSTMSpec
    has_state: bool
    has_lengths: bool
    time_major: bool
    forget_bias: float


@dataclass
class _BuiltGraph:
    """A finalized graph, its session and the tensors a call feeds and fetches."""

    session: Any
    x: Any
    lengths: Any
    h0: Any
    c0: Any
    weight_inputs: dict[str, Any]
    weight_shapes: dict[str, tuple[int, ...]]
    assign: Any
    fetches: tuple[Any, ...]  # outputs, h, and c for an LSTM

    def close(self) -> None:
        self.session.close()


def cell_module() -> Any:
    """The module holding TF1's ``LSTMCell``, ``MultiRNNCell`` and ``LSTMStateTuple``."""
    errors = []
    for name in _CELL_MODULES:
        try:
            return importlib.import_module(name)
        except Exception as exc:  # any import failure: try the next home of the cells
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    raise ImportError("TF1 LSTMCell not importable; tried " + "; ".join(errors))


class TF1Runtime(Runtime):
    """TF1 ``LSTMCell`` or ``GRUCell`` (``MultiRNNCell`` when stacked) in a graph and session.

    Bidirectional specs run one ``bidirectional_dynamic_rnn`` per layer whose
    concatenated ``[fw, bw]`` output feeds the next layer, under the scopes of
    contrib's ``stack_bidirectional_dynamic_rnn`` when there is more than one layer.
    """

    module = "tensorflow"

    def __init__(self, entry: Row, cache_size: int = 64) -> None:
        """``cache_size`` graphs are kept (least recently used evicted); 0 rebuilds per call."""
        super().__init__(entry)
        self.cache_size = cache_size
        self._graphs: OrderedDict[_GraphKey, _BuiltGraph] = OrderedDict()

    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()
        if reason is not None:
            return reason
        try:
            cell_module()
        except ImportError as exc:
            return str(exc)
        return None

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        """Build or reuse the graph for ``spec``, assign ``native`` by name, run ``inputs``."""
        key = _graph_key(spec, inputs, options)
        built = self._graphs.pop(key, None) or _build_graph(key)
        try:
            _assign_weights(built, key, native)
            return _run_graph(built, key, inputs)
        finally:
            self._keep(key, built)

    def clear_cache(self) -> None:
        """Close every cached session."""
        while self._graphs:
            self._graphs.popitem()[1].close()

    def _keep(self, key: _GraphKey, built: _BuiltGraph) -> None:
        if self.cache_size <= 0:
            built.close()
            return
        self._graphs[key] = built
        while len(self._graphs) > self.cache_size:
            self._graphs.popitem(last=False)[1].close()


def _graph_key(spec: LSTMSpec, inputs: LSTMInputs, format_options: dict[str, Any]) -> _GraphKey:
    return _GraphKey(
        spec=spec,
        has_state=inputs.h0 is not None,
        has_lengths=inputs.lengths is not None,
        time_major=bool(inputs.time_major),
        forget_bias=float(format_options.get("forget_bias", DEFAULT_FORGET_BIAS)),
    )


def _build_graph(key: _GraphKey) -> _BuiltGraph:
    import tensorflow as tf

    spec = key.spec
    dtype = tf.as_dtype(spec.dtype)
    graph = tf.Graph()
    # The cells and dynamic_rnn warn that they are deprecated on every build.
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = tf.compat.v1.placeholder(dtype, [None, None, spec.input_size], name="x")
        lengths = (
            tf.compat.v1.placeholder(tf.int32, [None], name="lengths") if key.has_lengths else None
        )
        h0 = c0 = None
        gru = spec.cell == "gru"
        if key.has_state:
            layers, dirs = spec.layers, spec.directions
            h0 = tf.compat.v1.placeholder(dtype, [layers, dirs, None, spec.output_size], "h0")
            if not gru:
                c0 = tf.compat.v1.placeholder(dtype, [layers, dirs, None, spec.units], "c0")
        stack = _bidirectional_stack if spec.directions == 2 else _unidirectional_stack
        outputs, hs, cs = stack(tf, key, x, lengths, h0, c0)
        # (L, D, B, X): one fetch per state kind, already in the contract's layout.
        fetches = [outputs] + [tf.stack([tf.stack(per_layer) for per_layer in states])
                               for states in ((hs,) if gru else (hs, cs))]
        weight_inputs, weight_shapes, assign = _weight_assigners(tf)
    graph.finalize()
    return _BuiltGraph(
        session=tf.compat.v1.Session(graph=graph),
        x=x,
        lengths=lengths,
        h0=h0,
        c0=c0,
        weight_inputs=weight_inputs,
        weight_shapes=weight_shapes,
        assign=assign,
        fetches=tuple(fetches),
    )


def _new_cell(rnn_cell: Any, key: _GraphKey) -> Any:
    spec = key.spec
    if spec.cell == "gru":  # no forget_bias, clips, peepholes or projection: the spec has none
        activation = None if spec.activation == "tanh" else spec.activation
        return rnn_cell.GRUCell(spec.units, activation=activation, dtype=spec.dtype)
    return rnn_cell.LSTMCell(
        spec.units,
        use_peepholes=spec.peepholes,
        cell_clip=spec.cell_clip,
        num_proj=spec.projection_size,
        proj_clip=spec.projection_clip,
        forget_bias=key.forget_bias,
        # None keeps TF1's own tf.tanh; any other name goes through Keras's activations.get,
        # which LSTMCell applies to the candidate j and to c before the output gate.
        activation=None if spec.activation == "tanh" else spec.activation,
        dtype=spec.dtype,
    )


def _initial_state(rnn_cell: Any, h0: Any, c0: Any, layer: int, direction: int) -> Any:
    if h0 is None:
        return None
    if c0 is None:  # a GRU: its state is h itself
        return h0[layer, direction]
    # TF1 orders a state (c, h); the contract orders (h, c).
    return rnn_cell.LSTMStateTuple(c0[layer, direction], h0[layer, direction])


def _unidirectional_stack(tf: Any, key: _GraphKey, x: Any, lengths: Any, h0: Any, c0: Any):
    """One ``dynamic_rnn``: scope ``rnn/lstm_cell`` or ``rnn/multi_rnn_cell/cell_k/lstm_cell``."""
    rnn_cell = cell_module()
    layers = key.spec.layers
    cells = [_new_cell(rnn_cell, key) for _ in range(layers)]
    states = [_initial_state(rnn_cell, h0, c0, k, 0) for k in range(layers)]
    if layers == 1:
        cell, initial = cells[0], states[0]
    else:
        cell = rnn_cell.MultiRNNCell(cells)
        initial = None if h0 is None else tuple(states)
    outputs, final = tf.compat.v1.nn.dynamic_rnn(
        cell,
        x,
        sequence_length=lengths,
        initial_state=initial,
        dtype=x.dtype,
        time_major=key.time_major,
    )
    finals = [final] if layers == 1 else list(final)
    return outputs, [[_h(s)] for s in finals], [[_c(s)] for s in finals]


def _h(state: Any) -> Any:
    """A cell's final h: an LSTMStateTuple's h, or a GRU's state itself."""
    return getattr(state, "h", state)


def _c(state: Any) -> Any:
    return getattr(state, "c", None)


def _bidirectional_stack(tf: Any, key: _GraphKey, x: Any, lengths: Any, h0: Any, c0: Any):
    """One ``bidirectional_dynamic_rnn`` per layer.

    Scopes: ``bidirectional_rnn/{fw,bw}/lstm_cell`` for one layer, else
    ``stack_bidirectional_rnn/cell_k/bidirectional_rnn/{fw,bw}/lstm_cell``
    (contrib's ``stack_bidirectional_dynamic_rnn``, gone from TF 2).
    """
    rnn_cell = cell_module()
    layers = key.spec.layers
    outer = (
        tf.compat.v1.variable_scope("stack_bidirectional_rnn")
        if layers > 1
        else contextlib.nullcontext()
    )
    layer_input, hs, cs = x, [], []
    with outer:
        for k in range(layers):
            scope = (
                tf.compat.v1.variable_scope(f"cell_{k}") if layers > 1 else contextlib.nullcontext()
            )
            with scope:
                (out_fw, out_bw), (fw, bw) = tf.compat.v1.nn.bidirectional_dynamic_rnn(
                    _new_cell(rnn_cell, key),
                    _new_cell(rnn_cell, key),
                    layer_input,
                    sequence_length=lengths,
                    initial_state_fw=_initial_state(rnn_cell, h0, c0, k, 0),
                    initial_state_bw=_initial_state(rnn_cell, h0, c0, k, 1),
                    dtype=x.dtype,
                    time_major=key.time_major,
                )
            layer_input = tf.concat([out_fw, out_bw], axis=-1)
            hs.append([_h(fw), _h(bw)])
            cs.append([_c(fw), _c(bw)])
    return layer_input, hs, cs


def _weight_assigners(tf: Any):
    """A placeholder per variable (keyed by name without ``:0``) and one grouped assign."""
    inputs, shapes, assigns = {}, {}, []
    for variable in tf.compat.v1.global_variables():
        name = variable.name.removesuffix(":0")
        shape = tuple(variable.shape.as_list())
        placeholder = tf.compat.v1.placeholder(variable.dtype.base_dtype, shape)
        inputs[name], shapes[name] = placeholder, shape
        assigns.append(variable.assign(placeholder, read_value=False))
    return inputs, shapes, tf.group(*assigns)


def _as_variables(built: _BuiltGraph, key: _GraphKey, native: Any) -> Mapping[str, Any]:
    """The native weights as a name -> array mapping.

    A single cell's list form is ``LSTMCell.get_weights()``: the cell's variables in
    creation order (kernel, bias, w_f_diag, w_i_diag, w_o_diag, projection/kernel; a
    GRUCell's gates/kernel, gates/bias, candidate/kernel, candidate/bias), the order
    ``weight_inputs`` was filled in.
    """
    if isinstance(native, Mapping):
        return native
    single = key.spec.layers == 1 and key.spec.directions == 1
    if not single or not isinstance(native, (list, tuple)):
        expected = "a dict of variable name -> array" + (" or a list" if single else "")
        raise ConversionError(f"tf1 weights: {type(native).__name__}, expected {expected}")
    names = list(built.weight_inputs)
    if len(native) != len(names):
        cell = "GRUCell" if key.spec.cell == "gru" else "LSTMCell"
        raise ShapeError("tf1 weights", f"{len(native)} arrays", f"{len(names)} arrays",
                         f"{cell}.get_weights() order: " + ", ".join(names))
    return dict(zip(names, native, strict=True))


def _assign_weights(built: _BuiltGraph, key: _GraphKey, native: Any) -> None:
    native = _as_variables(built, key, native)
    expected = set(built.weight_inputs)
    missing = sorted(expected - set(native))
    if missing:
        raise MissingKeyError(
            f"tf1 weights: missing variables {missing}; this spec's graph has {sorted(expected)}"
        )
    extra = sorted(set(native) - expected)
    if extra:
        raise UnexpectedKeyError(
            f"tf1 weights: unexpected variables {extra}; this spec's graph has {sorted(expected)}"
        )
    feed = {}
    for name, placeholder in built.weight_inputs.items():
        array = np.asarray(native[name])
        if array.shape != built.weight_shapes[name]:
            raise ShapeError(f"tf1 weights[{name!r}]", array.shape, built.weight_shapes[name])
        feed[placeholder] = array.astype(placeholder.dtype.as_numpy_dtype, copy=False)
    built.session.run(built.assign, feed)


def _run_graph(built: _BuiltGraph, key: _GraphKey, inputs: LSTMInputs) -> LSTMResult:
    spec = key.spec
    dtype = np.dtype(spec.dtype)
    x = np.asarray(inputs.x, dtype=dtype)
    # The graph's time-major path is fed (T, B, I) and returns (T, B, D*O).
    feed = {built.x: x.transpose(1, 0, 2) if key.time_major else x}
    if key.has_lengths:
        feed[built.lengths] = np.asarray(inputs.lengths, dtype=np.int32)
    if key.has_state:
        feed[built.h0] = np.asarray(inputs.h0, dtype)
        if built.c0 is not None:
            feed[built.c0] = np.asarray(inputs.c0, dtype)
    outputs, h, *c = built.session.run(built.fetches, feed)
    if key.time_major:
        outputs = outputs.transpose(1, 0, 2)
    return LSTMResult(outputs=outputs, h=h, c=c[0] if c else None)
