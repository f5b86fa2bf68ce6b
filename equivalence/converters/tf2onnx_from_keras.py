"""tf2onnx's ``convert.from_keras`` on Keras 3 LSTM layers, run in ONNX Runtime.

Source row ``keras``: the Keras 3 runtime runs the case. The converter takes
that runtime's own layers for the case's spec and feeding (initial states as
inputs, the lengths as a boolean mask input, as Keras users give them), wraps
them in a functional ``keras.Model`` with the source's native weights, and
converts it; the ONNX model runs in ONNX Runtime on the runtime's own feeds.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from equivalence.case import Case
from equivalence.converters.base import Configuration, Converter, claims, requires, run_onnx
from equivalence.io_types import LSTMResult
from equivalence.spec import LSTMSpec


class Tf2OnnxFromKeras(Converter):
    """``tf2onnx.convert.from_keras`` on a functional model of the keras runtime's layers."""

    name = "tf2onnx"
    packages = ("tf2onnx", "tensorflow|tensorflow-cpu", "keras", "onnxruntime")
    imports = ("tf2onnx", "keras", "onnxruntime")
    source, target = "keras", "onnxruntime"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration("LSTM / Bidirectional(LSTM), 1-2 layers, 1-2 directions", claims=claims()),
        Configuration("initial states as inputs, 1-2 layers, 1-2 directions", claims=claims(),
                      requires=requires("initial state")),
        Configuration("sequence lengths (mask input), 1-2 layers, 1-2 directions",
                      claims=claims(), requires=requires("lengths")),
        Configuration("sequence lengths (mask input) and initial states, 1-2 layers, "
                      "1-2 directions", claims=claims(), requires=requires("lengths",
                                                                           "initial state")),
    )

    def __init__(self) -> None:
        self._models: dict[tuple[LSTMSpec, Any], Any] = {}

    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()
        if reason is None:
            from equivalence.runtimes.keras import import_keras3

            backend = import_keras3().backend.backend()
            if backend != "tensorflow":
                return f"Keras 3 backend is {backend!r}; tf2onnx needs 'tensorflow'"
        return reason

    def convert(self, config: Configuration, case: Case, native: Any) -> bytes:
        """The keras runtime's layers for the case, holding ``native``, converted to ONNX."""
        import tensorflow as tf
        import tf2onnx

        from equivalence.runtimes._keras_common import Feeding, native_arrays

        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        network, model = self._model(case.spec, Feeding.of(case.inputs))
        network.load(native_arrays(native, case.spec))
        signature = [tf.TensorSpec(i.shape, i.dtype, name=i.name) for i in model.inputs]
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature)
        return proto.SerializeToString()

    def run_converted(self, config: Configuration, case: Case, converted: Any) -> LSTMResult:
        """The ONNX model on the keras runtime's feeds; its outputs read as the runtime reads."""
        from equivalence.runtimes._keras_common import Feeding, feeds, to_result

        feeding = Feeding.of(case.inputs)
        fed = feeds(case.spec, case.inputs, feeding)
        names = _input_names(case.spec, feeding)
        outputs = run_onnx(converted, dict(zip(names, fed, strict=True)))
        return to_result(outputs, case.spec, case.inputs)

    def _model(self, spec: LSTMSpec, feeding: Any) -> tuple[Any, Any]:
        """(the keras runtime's layers, a functional model calling them), built once per key."""
        key = (spec, feeding)
        if key not in self._models:
            from equivalence.runtimes.keras import import_keras3
            from equivalence.table import entry

            keras = import_keras3()
            runtime: Any = entry(self.source).load()  # the keras runtime: it builds the layers
            network = runtime.build(spec, feeding)
            inputs = [keras.Input(shape, dtype=dtype, name=name) for name, shape, dtype
                      in _inputs(spec, feeding)]
            self._models[key] = network, keras.Model(inputs, network.forward(*inputs))
        return self._models[key]


def _inputs(spec: LSTMSpec, feeding: Any) -> list[tuple[str, tuple[Any, ...], str]]:
    """(name, shape without batch, dtype) in the order the runtime feeds them."""
    found: list[tuple[str, tuple[Any, ...], str]] = [("x", (None, spec.input_size), spec.dtype)]
    if feeding.has_mask:
        found.append(("mask", (None,), "bool"))
    if feeding.has_state:
        for layer in range(spec.layers):
            for direction in range(spec.directions):
                found += [(f"{part}{layer}_{direction}", (spec.units,), spec.dtype)
                          for part in ("h", "c")]
    return found


def _input_names(spec: LSTMSpec, feeding: Any) -> list[str]:
    return [name for name, _, _ in _inputs(spec, feeding)]
