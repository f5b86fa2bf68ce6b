"""The LSTM builder shared by the Keras runtimes (Keras 3 and tf_keras).

Keras 3 (``keras``) and Keras 2 (``tf_keras``) expose the same layer API for
what this harness needs (``LSTM``, ``LSTMCell``, ``StackedRNNCells``, ``RNN``,
``Bidirectional``, the functional ``Model``), so one builder serves both,
parametrized by the imported module. This module owns:

* how a spec becomes a functional model (one of three layer styles below),
* how the flat native weight list is split over the model's layers,
* how inputs are fed (initial states, a boolean mask for the lengths),
* how the model's flat outputs become an :class:`LSTMResult`,
* the per-process cache of built models and their traced ``tf.function``.

The model's time and batch dimensions are left unknown (``None``) and the
traced function has a fixed input signature, so one trace serves every batch
size and sequence length of a spec: Hypothesis examples only set weights and run.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import ConversionError, ShapeError, UnsupportedFeatureError
from ..io_types import LSTMInputs, LSTMResult
from ..spec import LSTMSpec
from .base import Runtime, zero_padding

# Layer styles: how one spec is realised with Keras layers.
LAYERS = "layers"  # one LSTM (or Bidirectional(LSTM)) layer per spec layer
CELLS = "cells"  # RNN(StackedRNNCells([LSTMCell, ...])); Bidirectional(RNN(LSTMCell)) per layer
CUDNN = "cudnn"  # one CuDNNLSTM (or Bidirectional(CuDNNLSTM)) per spec layer

ARRAYS_PER_CELL = 3  # kernel, recurrent_kernel, bias


@dataclass
class BuiltLSTM:
    """A built model, its traced call, and the layers that receive the weights.

    ``weight_layers`` pairs each weight-holding layer with the number of native
    arrays it takes, in native order (bottom-up, forward before backward).
    """

    model: Any
    call: Any
    weight_layers: list[tuple[Any, int]]

    def load(self, native: list[np.ndarray]) -> None:
        """Set the native flat weight list on the layers, in order."""
        start = 0
        for layer, count in self.weight_layers:
            layer.set_weights(native[start:start + count])
            start += count


def expected_shapes(spec: LSTMSpec, bias_factor: int = 4) -> list[tuple[int, ...]]:
    """Shapes of the native flat list: [kernel, recurrent_kernel, bias] per layer and direction.

    ``bias_factor`` is 4 for one bias (LSTM) and 8 for cuDNN's two biases.
    """
    units = spec.units
    shapes = []
    for layer in range(spec.layers):
        for _ in range(spec.directions):
            shapes += [
                (spec.layer_input_size(layer), 4 * units),
                (units, 4 * units),
                (bias_factor * units,),
            ]
    return shapes


def check_native(native: Any, spec: LSTMSpec, bias_factor: int = 4) -> list[np.ndarray]:
    """The native list as numpy arrays in the spec's dtype, after checking count and shapes."""
    expected = expected_shapes(spec, bias_factor)
    arrays = list(native) if isinstance(native, (list, tuple)) else None
    if arrays is None or len(arrays) != len(expected):
        found = len(arrays) if arrays is not None else type(native).__name__
        raise ConversionError(
            f"native weights: {found} arrays, expected a list of {len(expected)} "
            f"(kernel, recurrent_kernel, bias per layer and direction)"
        )
    names = ("kernel", "recurrent_kernel", "bias")
    checked = []
    for index, (array, shape) in enumerate(zip(arrays, expected)):
        array = np.asarray(array)
        if array.shape != shape:
            cell, part = divmod(index, ARRAYS_PER_CELL)
            layer, direction = divmod(cell, spec.directions)
            field = f"weights[{index}] (layer {layer}, direction {direction}, {names[part]})"
            raise ShapeError(field, array.shape, shape)
        checked.append(array.astype(spec.dtype))
    return checked


def _flatten(value: Any) -> list[Any]:
    """Flatten nested lists/tuples (StackedRNNCells returns nested states)."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


class _ModelBuilder:
    """Builds the functional model for one spec with one Keras module."""

    def __init__(self, keras: Any, spec: LSTMSpec, activation: str, style: str) -> None:
        self.keras, self.spec, self.activation, self.style = keras, spec, activation, style

    def build(self, has_state: bool, has_mask: bool) -> tuple[Any, list[tuple[Any, int]]]:
        """The model (inputs x, [mask], [states]) -> [outputs, h/c per layer and direction]."""
        spec, layers = self.spec, self.keras.layers
        x = layers.Input(batch_shape=(None, None, spec.input_size), dtype=spec.dtype)
        mask = layers.Input(batch_shape=(None, None), dtype="bool") if has_mask else None
        states = [
            [layers.Input(batch_shape=(None, spec.units), dtype=spec.dtype) for _ in range(2)]
            for _ in range(spec.layers * spec.directions)
        ] if has_state else None
        if self.style == CELLS and spec.directions == 1:
            outputs, finals, weight_layers = self._stacked_cells(x, mask, states)
        else:
            outputs, finals, weight_layers = self._per_layer(x, mask, states)
        model_inputs = [x] + ([mask] if has_mask else []) + _flatten(states or [])
        model = self.keras.Model(inputs=model_inputs, outputs=[outputs] + finals)
        return model, weight_layers

    def _per_layer(self, x: Any, mask: Any, states: Any) -> tuple[Any, list[Any], list]:
        """One (possibly Bidirectional) recurrent layer per spec layer."""
        spec, sequence, finals, weight_layers = self.spec, x, [], []
        for k in range(spec.layers):
            layer = self._recurrent_layer()
            if spec.directions == 2:
                layer = self.keras.layers.Bidirectional(
                    layer, merge_mode="concat", dtype=spec.dtype
                )
            kwargs = {}
            if mask is not None:
                kwargs["mask"] = mask
            if states is not None:
                kwargs["initial_state"] = _flatten(states[k * spec.directions:][:spec.directions])
            returned = _flatten(layer(sequence, **kwargs))
            # LSTM returns [out, h, c]; Bidirectional returns [out, h_fw, c_fw, h_bw, c_bw].
            sequence, finals = returned[0], finals + returned[1:]
            weight_layers.append((layer, ARRAYS_PER_CELL * spec.directions))
        return sequence, finals, weight_layers

    def _stacked_cells(self, x: Any, mask: Any, states: Any) -> tuple[Any, list[Any], list]:
        """RNN over StackedRNNCells (or over one LSTMCell): the whole stack is one layer."""
        spec, layers = self.spec, self.keras.layers
        cells = [self._cell() for _ in range(spec.layers)]
        cell = cells[0] if spec.layers == 1 else layers.StackedRNNCells(cells, dtype=spec.dtype)
        rnn = layers.RNN(cell, return_sequences=True, return_state=True, dtype=spec.dtype)
        kwargs = {}
        if mask is not None:
            kwargs["mask"] = mask
        if states is not None:
            kwargs["initial_state"] = states[0] if spec.layers == 1 else states
        # States come back nested per cell ([h1, c1], [h2, c2], ...); flattened: h1 c1 h2 c2.
        returned = _flatten(rnn(x, **kwargs))
        return returned[0], returned[1:], [(rnn, ARRAYS_PER_CELL * spec.layers)]

    def _recurrent_layer(self) -> Any:
        spec, layers = self.spec, self.keras.layers
        if self.style == CUDNN:
            return self.keras.cudnn_lstm(
                spec.units, return_sequences=True, return_state=True, dtype=spec.dtype
            )
        if self.style == CELLS:
            return layers.RNN(
                self._cell(), return_sequences=True, return_state=True, dtype=spec.dtype
            )
        return layers.LSTM(
            spec.units,
            activation="tanh",
            recurrent_activation=self.activation,
            return_sequences=True,
            return_state=True,
            dtype=spec.dtype,
        )

    def _cell(self) -> Any:
        return self.keras.layers.LSTMCell(
            self.spec.units,
            activation="tanh",
            recurrent_activation=self.activation,
            dtype=self.spec.dtype,
        )


@dataclass(frozen=True)
class KerasModule:
    """The Keras flavour a runtime builds with: its ``layers`` and ``Model`` (and CuDNNLSTM)."""

    layers: Any
    Model: Any
    cudnn_lstm: Any = None


def trace(model: Any) -> Any:
    """A ``tf.function`` over the model with a fixed signature: traced once for all shapes."""
    import tensorflow as tf

    signature = [tf.TensorSpec(shape=tensor.shape, dtype=tensor.dtype) for tensor in model.inputs]

    @tf.function(input_signature=signature)
    def call(*tensors: Any) -> list[Any]:
        return _flatten(model(list(tensors), training=False))

    return call


def feeds(spec: LSTMSpec, inputs: LSTMInputs, has_state: bool) -> list[np.ndarray]:
    """Model inputs in the model's order: x, [mask], [h, c per layer and direction]."""
    dtype = np.dtype(spec.dtype)
    x = np.asarray(inputs.x, dtype=dtype)
    fed = [x]
    if inputs.lengths is not None:
        fed.append(inputs.valid_mask())
    if has_state:
        shape = (spec.layers, spec.directions, inputs.batch, spec.units)
        h0 = np.zeros(shape, dtype) if inputs.h0 is None else np.asarray(inputs.h0, dtype)
        c0 = np.zeros(shape, dtype) if inputs.c0 is None else np.asarray(inputs.c0, dtype)
        for layer in range(spec.layers):
            for direction in range(spec.directions):
                fed += [h0[layer, direction], c0[layer, direction]]
    return fed


def to_result(flat: list[Any], spec: LSTMSpec, inputs: LSTMInputs) -> LSTMResult:
    """[outputs, h, c per layer and direction] -> the contract's LSTMResult."""
    arrays = [np.asarray(tensor) for tensor in flat]
    outputs, finals = arrays[0], arrays[1:]
    expected = 2 * spec.layers * spec.directions
    if len(finals) != expected:
        raise AssertionError(f"model returned {len(finals)} states, expected {expected}")
    shape = (spec.layers, spec.directions, inputs.batch, spec.units)
    h = np.stack(finals[0::2]).reshape(shape)
    c = np.stack(finals[1::2]).reshape(shape)
    return LSTMResult(outputs=zero_padding(outputs, inputs), h=h, c=c)


class KerasFamilyRuntime(Runtime):
    """A runtime built on one Keras flavour; subclasses choose the module and the layer style.

    ``activations`` maps the spec's recurrent activation names to the names this
    Keras understands; a spec name missing from it is not supported (the two
    Keras versions' ``"hard_sigmoid"`` are different functions).
    Built models are cached per process (keyed by runtime, spec and which
    optional inputs are fed); pass ``cache=False`` to rebuild on every call.
    """

    style: ClassVar[str] = LAYERS
    activations: ClassVar[dict[str, str]] = {"sigmoid": "sigmoid"}
    bias_factor: ClassVar[int] = 4
    cache_size: ClassVar[int] = 32
    _cache: ClassVar[OrderedDict] = OrderedDict()

    def __init__(self, cache: bool = True) -> None:
        self.use_cache = cache

    def keras_module(self) -> KerasModule:
        """Import the Keras flavour (lazily) and return what the builder uses."""
        keras = importlib.import_module(self.module)
        return KerasModule(layers=keras.layers, Model=keras.Model)

    def build(self, spec: LSTMSpec, has_state: bool, has_mask: bool) -> BuiltLSTM:
        """Build the model and its traced call (uncached)."""
        activation = self.activations[spec.recurrent_activation]
        builder = _ModelBuilder(self.keras_module(), spec, activation, self.style)
        model, weight_layers = builder.build(has_state, has_mask)
        return BuiltLSTM(model=model, call=trace(model), weight_layers=weight_layers)

    def built(self, spec: LSTMSpec, has_state: bool, has_mask: bool) -> BuiltLSTM:
        """The cached model for this spec and these optional inputs, built on first use."""
        if not self.use_cache:
            return self.build(spec, has_state, has_mask)
        key = (self.name, spec, has_state, has_mask)
        cache = KerasFamilyRuntime._cache
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        cache[key] = self.build(spec, has_state, has_mask)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return cache[key]

    def run(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, **format_options: Any
    ) -> LSTMResult:
        refusal = self.capabilities.refusal(spec) or self.capabilities.input_refusal(inputs)
        if refusal is not None:
            raise UnsupportedFeatureError(self.name, refusal)
        weights = check_native(native, spec, self.bias_factor)
        has_state = inputs.h0 is not None or inputs.c0 is not None
        built = self.built(spec, has_state, inputs.lengths is not None)
        built.load(weights)
        flat = built.call(*feeds(spec, inputs, has_state))
        return to_result(flat, spec, inputs)

    @classmethod
    def clear_cache(cls) -> None:
        """Drop every cached model (all Keras runtimes share one cache)."""
        KerasFamilyRuntime._cache.clear()
