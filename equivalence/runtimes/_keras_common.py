"""The LSTM and GRU builder shared by the Keras runtimes (Keras 3 and tf_keras).

Keras 3 (``keras``) and Keras 2 (``tf_keras``) expose the same layer API for
what this harness needs (``LSTM``, ``LSTMCell``, ``StackedRNNCells``, ``RNN``,
``Bidirectional``), so one builder serves both, parametrized by the imported
module. This module owns:

* how a spec becomes Keras layers (one of the three layer styles below; a GRU
  spec gets ``GRU``/``GRUCell`` with its ``reset_after``, and one state, h),
* how the flat native weight list is split over those layers,
* how inputs are fed (initial states, a boolean mask for the lengths, the
  time-major layout),
* how the layers' outputs become an :class:`LSTMResult`,
* the per-process cache of built layers and their traced ``tf.function``, so
  Hypothesis examples of a spec only set weights and run.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Row, Runtime, zero_padding
from equivalence.spec import LSTMSpec

# Layer styles: how one spec is realised with Keras layers.
LAYERS = "layers"  # one LSTM (or Bidirectional(LSTM)) layer per spec layer
CELLS = "cells"  # RNN(StackedRNNCells([LSTMCell, ...])); Bidirectional(RNN(LSTMCell)) per layer
CUDNN = "cudnn"  # one CuDNNLSTM (CuDNNGRU), or Bidirectional of it, per spec layer

ARRAYS_PER_CELL = 3  # kernel, recurrent_kernel, bias
# Weights are always overwritten: zeros skip the orthogonal initializer's QR,
# which costs build time and has no bfloat16 kernel.
ZERO_INIT = {
    "kernel_initializer": "zeros",
    "recurrent_initializer": "zeros",
    "bias_initializer": "zeros",
    "unit_forget_bias": False,
}
GRU_ZERO_INIT = {k: v for k, v in ZERO_INIT.items() if k != "unit_forget_bias"}


def layer_options(spec: LSTMSpec, recurrent_activation: str) -> dict[str, Any]:
    """The options a Keras ``LSTM``/``LSTMCell`` (``GRU``/``GRUCell``) of ``spec`` takes."""
    options: dict[str, Any] = {"activation": spec.activation,  # the spec's names are Keras's
                               "recurrent_activation": recurrent_activation}
    if spec.cell == "gru":
        return {**options, "reset_after": spec.reset_after, **GRU_ZERO_INIT}
    return {**options, **ZERO_INIT}


def layer_class(layers: Any, spec: LSTMSpec, cell: bool = False) -> Any:
    """``layers.LSTM`` or ``layers.GRU`` (their ``...Cell`` when ``cell``) for the spec's cell."""
    return getattr(layers, ("GRU" if spec.cell == "gru" else "LSTM") + ("Cell" if cell else ""))


def native_arrays(native: Any, spec: LSTMSpec) -> list[np.ndarray]:
    """The native list as numpy arrays in the spec's dtype (the contract checked the shapes)."""
    dtype = numpy_dtype(spec.dtype)
    return [np.asarray(array).astype(dtype) for array in native]


def _tensors(arrays: list[np.ndarray]) -> list[Any]:
    """Numpy -> TF tensors (tf_keras's Bidirectional rejects numpy initial states)."""
    import tensorflow as tf

    return [tf.convert_to_tensor(a) for a in arrays]


def _flatten(value: Any) -> list[Any]:
    """Flatten nested lists/tuples (StackedRNNCells returns nested states)."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


@dataclass(frozen=True)
class KerasModule:
    """The Keras flavour a runtime builds with: its ``layers`` (and CuDNNLSTM and CuDNNGRU,
    for tf_keras)."""

    layers: Any
    cudnn_lstm: Any = None
    cudnn_gru: Any = None


@dataclass(frozen=True)
class Feeding:
    """Which optional inputs a network takes, and whether it runs time-major (part of its key)."""

    has_state: bool
    has_mask: bool
    time_major: bool = False

    @classmethod
    def of(cls, inputs: LSTMInputs) -> Feeding:
        has_state = inputs.h0 is not None or inputs.c0 is not None
        return cls(has_state, inputs.lengths is not None, bool(inputs.time_major))


class KerasLSTM:
    """The layers for one spec and one :class:`Feeding`, and how to call them.

    Layers are called directly on tensors (no functional ``Model``): building a
    tf_keras functional model traces every LSTM symbolically, about 1.3 s for a
    2-layer bidirectional stack, wasted when a spec runs only a few times (the
    usual case under Hypothesis, which draws a new spec for most examples).
    Layers are built from their input shapes. Calls run eagerly until
    ``trace_after`` calls have been made, then through one ``tf.function``
    whose signature leaves batch and time unknown, so a single trace serves
    every batch size and sequence length. Eager calls start at once but cost
    8-40 ms each (1-4 layer-directions, T <= 9); a trace costs 0.09-0.35 s
    (Keras 3, cells), 0.2-0.5 s (tf_keras ``LSTM``) and up to 2.2 s (tf_keras
    ``LSTM`` with a mask: it traces its CPU and cuDNN functions for backend
    selection), and then a call, weights included, costs 1-3 ms.

    ``weight_layers`` pairs each weight-holding layer with the number of native
    arrays it takes, in native order (bottom-up, forward before backward).
    """

    def __init__(self, keras: KerasModule, spec: LSTMSpec, activation: str, style: str,
                 feeding: Feeding) -> None:
        self.keras, self.spec, self.activation, self.style = keras, spec, activation, style
        self.feeding = feeding
        self.stacked_cells = style == CELLS and spec.directions == 1
        self.weight_layers = self._stacked_cells() if self.stacked_cells else self._per_layer()
        self.calls = 0
        self._traced: Any = None
        self._build()

    def load(self, native: Sequence[Any]) -> None:
        """Assign the native flat weight list (arrays, or tensors inside a trace) to the
        variables, in order."""
        if len(native) != len(self.variables):
            raise AssertionError(f"{len(native)} weight arrays for {len(self.variables)} variables")
        for variable, value in zip(self.variables, native, strict=True):
            variable.assign(value)

    def __call__(
        self, native: list[np.ndarray], fed: list[np.ndarray], trace_after: int | None
    ) -> list[np.ndarray]:
        """Load ``native`` (the flat weight list, in native order) and run on ``fed``.

        ``fed`` is :func:`feeds`'s list; returns [outputs, h, c per layer and
        direction]. Weights and inputs go in one call: a traced network assigns
        the variables and runs in one graph execution, where ``set_weights``
        would cost one eager assign (with Keras's checks) per array.
        """
        import tensorflow as tf

        self.calls += 1
        if self._traced is None and trace_after is not None and self.calls > trace_after:
            # autograph off: forward's Python control flow is over static structure, and
            # Keras's own loops are explicit tf.while_loops; converting them cost up to 40%
            # of a trace (tf_keras LSTMs with a mask: 3.7 s -> 2.2 s for 2 x 2 layers).
            self._traced = tf.function(
                self.load_and_forward, input_signature=self._signature(), autograph=False
            )
        run = self._traced if self._traced is not None else self.load_and_forward
        return [np.asarray(t) for t in run(*_tensors([*native, *fed]))]

    def load_and_forward(self, *tensors: Any) -> list[Any]:
        """[weights in native order], x, [mask], [h, c per layer and direction] -> outputs."""
        count = len(self.variables)
        self.load(tensors[:count])
        return self.forward(*tensors[count:])

    def forward(self, *tensors: Any) -> list[Any]:
        """x, [mask], [h, c per layer and direction] -> [outputs, h, c per layer and direction]."""
        x, rest = tensors[0], list(tensors[1:])
        mask = rest.pop(0) if self.feeding.has_mask else None
        per_cell = len(self.spec.state_names)  # h, c (LSTM) or h (GRU)
        pairs = ([rest[n:n + per_cell] for n in range(0, len(rest), per_cell)]
                 if self.feeding.has_state else None)
        kwargs: dict[str, Any] = {"training": False}
        if mask is not None:
            kwargs["mask"] = mask
        if self.stacked_cells:
            if pairs is not None:
                # A GRUCell's state is one tensor, not a list: tf_keras's masked loop refuses
                # [[h1], [h2]] for a stack of them, so a GRU stack gets [h1, h2].
                cell_states = [p[0] for p in pairs] if per_cell == 1 else pairs
                kwargs["initial_state"] = (pairs[0] if self.spec.layers == 1 else cell_states)
            # States come back nested per cell ([h1, c1], [h2, c2], ...); flattened: h1 c1 h2 c2.
            return _flatten(self.weight_layers[0][0](x, **kwargs))
        sequence, per = x, self.spec.directions
        finals: list[Any] = []
        for k, (layer, _count) in enumerate(self.weight_layers):
            if pairs is not None:
                kwargs["initial_state"] = _flatten(pairs[k * per:(k + 1) * per])
            # LSTM returns [out, h, c]; Bidirectional returns [out, h_fw, c_fw, h_bw, c_bw]
            # (a GRU [out, h], [out, h_fw, h_bw]).
            returned = _flatten(layer(sequence, **kwargs))
            sequence, finals = returned[0], finals + returned[1:]
        return [sequence, *finals]

    def _signature(self) -> list[Any]:
        import tensorflow as tf

        spec = self.spec
        signature = [tf.TensorSpec(v.shape, spec.dtype) for v in self.variables]
        signature.append(tf.TensorSpec([None, None, spec.input_size], spec.dtype))
        if self.feeding.has_mask:
            signature.append(tf.TensorSpec([None, None], tf.bool))
        if self.feeding.has_state:
            count = len(spec.state_names) * spec.layers * spec.directions
            signature += [tf.TensorSpec([None, spec.units], spec.dtype)] * count
        return signature

    def _build(self) -> None:
        """Create the layers' variables from their input shapes (no call, so no trace).

        Building by shape rather than by a first call also lets CuDNNLSTM, which
        has no CPU kernel, be built and given weights on a CPU.
        """
        for k, (layer, _count) in enumerate(self.weight_layers):
            layer.build((None, None, self.spec.layer_input_size(k)))
        # set_weights's order: each layer's ``weights``, layers in native order
        self.variables = [variable for layer, _ in self.weight_layers for variable in layer.weights]

    def _per_layer(self) -> list[tuple[Any, int]]:
        """One (possibly Bidirectional) recurrent layer per spec layer."""
        spec, found = self.spec, []
        for _ in range(spec.layers):
            layer = self._recurrent_layer()
            if spec.directions == 2:
                layer = self.keras.layers.Bidirectional(
                    layer, merge_mode="concat", dtype=spec.dtype
                )
            found.append((layer, ARRAYS_PER_CELL * spec.directions))
        return found

    def _stacked_cells(self) -> list[tuple[Any, int]]:
        """RNN over StackedRNNCells (or over one LSTMCell): the whole stack is one layer."""
        spec, layers = self.spec, self.keras.layers
        cells = [self._cell() for _ in range(spec.layers)]
        cell = cells[0] if spec.layers == 1 else layers.StackedRNNCells(cells, dtype=spec.dtype)
        rnn = layers.RNN(cell, **self._rnn_options())
        return [(rnn, ARRAYS_PER_CELL * spec.layers)]

    def _rnn_options(self) -> dict[str, Any]:
        """Options of every recurrent layer; ``time_major`` only when asked (Keras 3 lacks it)."""
        options = {"return_sequences": True, "return_state": True, "dtype": self.spec.dtype}
        if self.feeding.time_major:
            options["time_major"] = True
        return options

    def _recurrent_layer(self) -> Any:
        spec, layers = self.spec, self.keras.layers
        if self.style == CUDNN and spec.cell == "gru":  # always reset_after=True
            return self.keras.cudnn_gru(spec.units, **self._rnn_options(), **GRU_ZERO_INIT)
        if self.style == CUDNN:
            return self.keras.cudnn_lstm(spec.units, **self._rnn_options(), **ZERO_INIT)
        if self.style == CELLS:
            return layers.RNN(self._cell(), **self._rnn_options())
        return layer_class(layers, spec)(
            spec.units, **layer_options(spec, self.activation), **self._rnn_options())

    def _cell(self) -> Any:
        spec = self.spec
        return layer_class(self.keras.layers, spec, cell=True)(
            spec.units, **layer_options(spec, self.activation), dtype=spec.dtype)


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype for a spec dtype name (bfloat16 comes from ml_dtypes, shipped with TF)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def feeds(spec: LSTMSpec, inputs: LSTMInputs, feeding: Feeding) -> list[np.ndarray]:
    """Layer inputs in :meth:`KerasLSTM.forward`'s order: x, [mask], [h, c per layer, direction]
    (h only for a GRU).

    Time-major layers take x as (T, B, I) and the mask as (T, B).
    """
    dtype = numpy_dtype(spec.dtype)
    x, mask = np.asarray(inputs.x, dtype=dtype), inputs.valid_mask()
    if feeding.time_major:
        x, mask = x.transpose(1, 0, 2), mask.T
    fed = [np.ascontiguousarray(x)]
    if feeding.has_mask:
        fed.append(np.ascontiguousarray(mask))
    if feeding.has_state:
        states = [np.asarray(inputs.h0, dtype)]
        if spec.cell != "gru":
            states.append(np.asarray(inputs.c0, dtype))
        for layer in range(spec.layers):
            for direction in range(spec.directions):
                fed += [state[layer, direction] for state in states]
    return fed


def to_result(flat: list[np.ndarray], spec: LSTMSpec, inputs: LSTMInputs) -> LSTMResult:
    """[outputs, h, c per layer and direction] -> the contract's LSTMResult (batch-major)."""
    outputs, finals = flat[0], flat[1:]
    if inputs.time_major:
        outputs = np.ascontiguousarray(outputs.transpose(1, 0, 2))
    per_cell = len(spec.state_names)
    expected = per_cell * spec.layers * spec.directions
    if len(finals) != expected:
        raise AssertionError(f"Keras returned {len(finals)} states, expected {expected}")
    shape = (spec.layers, spec.directions, inputs.batch, spec.units)
    h = np.stack(finals[0::per_cell]).reshape(shape)
    c = np.stack(finals[1::2]).reshape(shape) if per_cell == 2 else None
    return LSTMResult(outputs=zero_padding(outputs, inputs), h=h, c=c)


class KerasFamilyRuntime(Runtime):
    """A runtime built on one Keras flavour; subclasses choose the module and the layer style.

    ``activations`` maps the spec's recurrent activation names to the names this
    Keras understands; a spec name missing from it is not supported (the two
    Keras versions' ``"hard_sigmoid"`` are different functions).
    Built layers are cached per runtime object (the table keeps one per
    process), keyed by spec and :class:`Feeding`. ``cache=False`` builds new
    layers on every call; ``trace_after`` overrides the class's number of eager
    calls before a cached network is traced (0: trace at once, None: never).
    """

    style: ClassVar[str] = LAYERS
    activations: ClassVar[dict[str, str]] = {"sigmoid": "sigmoid"}
    # Eager calls before one trace (see KerasLSTM): a spec seen once is cheaper
    # eager; one that comes back a third time (common now that every ci check
    # draws the same cases) is worth its trace.
    default_trace_after: ClassVar[int] = 2
    cache_size: ClassVar[int] = 64

    def __init__(
        self, entry: Row, cache: bool = True, trace_after: int | str | None = "default"
    ) -> None:
        super().__init__(entry)
        self.use_cache = cache
        self.trace_after: int | None = (
            self.default_trace_after if isinstance(trace_after, str) else trace_after
        )
        self._cache: OrderedDict[tuple[LSTMSpec, Feeding], KerasLSTM] = OrderedDict()

    def keras_module(self) -> KerasModule:
        """Import the Keras flavour (lazily) and return what the builder uses."""
        return KerasModule(layers=importlib.import_module(self.module).layers)

    def build(self, spec: LSTMSpec, feeding: Feeding) -> KerasLSTM:
        """New layers for ``spec`` (uncached), with their variables created."""
        activation = self.activations[spec.recurrent_activation]
        return KerasLSTM(self.keras_module(), spec, activation, self.style, feeding)

    def network(self, spec: LSTMSpec, feeding: Feeding) -> KerasLSTM:
        """The cached layers for this spec and this feeding, built on first use."""
        if not self.use_cache:
            return self.build(spec, feeding)
        key, cache = (spec, feeding), self._cache
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        cache[key] = self.build(spec, feeding)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return cache[key]

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        weights = native_arrays(native, spec)
        feeding = Feeding.of(inputs)
        import tensorflow as tf

        # Pin the device: on a GPU machine TensorFlow would otherwise put the "CPU" runtimes
        # on the GPU too, and the cuDNN-vs-CPU comparison would compare cuDNN with itself.
        with tf.device(self.tf_device):
            network = self.network(spec, feeding)
            flat = network(weights, feeds(spec, inputs, feeding), self.trace_after)
        return to_result(flat, spec, inputs)

    @property
    def tf_device(self) -> str:
        return "/GPU:0" if self.device == "gpu" else "/CPU:0"

    def clear_cache(self) -> None:
        """Drop this runtime's cached networks."""
        self._cache.clear()
