"""A Keras 3 functional ``Model`` for one spec, built from ``keras.layers`` only.

Owns the backend-neutral model that two runtimes need whole rather than as
layers called one by one: the Keras 3 backends run in a worker process
(:mod:`.keras_backends`, JAX and torch) and the TFLite converter, which
converts a ``keras.Model`` (:mod:`.tflite`). Nothing here names a backend.

The model's inputs are in :func:`._keras_common.feeds` order (x, [mask],
[h, c per layer and direction]) and its outputs in :func:`._keras_common.to_result`
order (the last layer's sequence, then h, c per layer and direction), so the
feeding and the result layout stay the ones the TensorFlow Keras runtimes use.
"""

from __future__ import annotations

from typing import Any

from equivalence.runtimes._keras_common import Feeding, layer_class, layer_options
from equivalence.spec import LSTMSpec

# The spec's recurrent activations as Keras 3 names them. Keras 3's "hard_sigmoid" is
# relu6(x + 3) / 6 on every backend (jax.nn.hard_sigmoid, torch's hardsigmoid, TF's relu6).
ACTIVATIONS = {"sigmoid": "sigmoid", "hard_sigmoid_keras3": "hard_sigmoid"}


def input_names(spec: LSTMSpec, feeding: Feeding) -> list[str]:
    """The model's input names, in feeding order."""
    names = ["x"]
    if feeding.has_mask:
        names.append("mask")
    if feeding.has_state:
        for layer in range(spec.layers):
            for direction in range(spec.directions):
                names += [f"{part}_{layer}_{direction}" for part in spec.state_names]
    return names


def build_model(keras: Any, spec: LSTMSpec, feeding: Feeding, batch: int | None = None) -> Any:
    """The model for ``spec``; ``batch`` fixes the batch size (TFLite needs it static)."""
    if feeding.time_major:
        raise ValueError("Keras 3 recurrent layers have no time-major path")
    names = input_names(spec, feeding)
    inputs = {name: _input(keras, spec, name, batch) for name in names}
    mask = inputs.get("mask")
    sequence, finals = inputs["x"], list[Any]()
    for layer in range(spec.layers):
        kwargs: dict[str, Any] = {}
        if mask is not None:
            kwargs["mask"] = mask
        if feeding.has_state:
            kwargs["initial_state"] = [
                inputs[f"{part}_{layer}_{direction}"]
                for direction in range(spec.directions)
                for part in spec.state_names
            ]
        # LSTM returns [sequence, h, c]; Bidirectional [sequence, h_fw, c_fw, h_bw, c_bw].
        returned = _recurrent_layer(keras, spec)(sequence, **kwargs)
        sequence, finals = returned[0], finals + list(returned[1:])
    return keras.Model([inputs[name] for name in names], [sequence, *finals])


def _input(keras: Any, spec: LSTMSpec, name: str, batch: int | None) -> Any:
    if name == "x":
        return keras.Input((None, spec.input_size), batch_size=batch, dtype=spec.dtype, name=name)
    if name == "mask":
        return keras.Input((None,), batch_size=batch, dtype="bool", name=name)
    return keras.Input((spec.units,), batch_size=batch, dtype=spec.dtype, name=name)


def _recurrent_layer(keras: Any, spec: LSTMSpec) -> Any:
    layer = layer_class(keras.layers, spec)(
        spec.units,
        **layer_options(spec, ACTIVATIONS[spec.recurrent_activation]),
        return_sequences=True,
        return_state=True,
        dtype=spec.dtype,
    )
    if spec.directions == 2:
        layer = keras.layers.Bidirectional(layer, merge_mode="concat", dtype=spec.dtype)
    return layer
