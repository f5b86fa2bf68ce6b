"""A Keras 3 LSTM or GRU converted by ``TFLiteConverter`` and run in the TFLite interpreter.

Owns converting a spec's Keras model (TensorFlow backend, this process; see
:mod:`._keras_model`) to a ``.tflite`` flatbuffer, putting the example's
weights into it, running it in the interpreter (``ai_edge_litert``'s when it
is installed, else ``tf.lite.Interpreter``), and saying which ops the
converter emitted (:meth:`TFLiteRuntime.emitted_ops`,
:meth:`TFLiteRuntime.lstm_kernel`): a fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``
/ ``BIDIRECTIONAL_SEQUENCE_LSTM`` or a ``WHILE`` loop.

Why weights are patched into a converted flatbuffer rather than converted
per example: TFLite bakes weights in as constant buffers, and one conversion
costs 1-4 s. So each (spec, feeding, batch) is converted once with *marker*
weights, every float32 value distinct and exact (1024 + k/8192, which no
LSTM graph constant is), and each constant buffer is traced back to the
weights it holds: a buffer made only of markers is a copy (transposed,
split, gathered: any permutation) of weight elements, recorded as byte offset
plus source indices. An example then writes its own weights into a copy of
those bytes: the converter's graph exactly, with the example's constants.
When the converter computed anything from the weights (a buffer mixing
markers with other values, or a weight element found nowhere) the shape
falls back to one conversion per example. The interpreter is new per example:
its default XNNPACK delegate packs constant weights once, so changing them
under a live interpreter would silently run the old ones.

The converter needs a static batch (``TensorListReserve`` wants a static
element shape) but takes a dynamic number of steps, so the batch is part of
the conversion key and the interpreter resizes the time axis.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from equivalence.errors import ConversionError
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes._keras_common import Feeding, feeds, native_arrays, to_result
from equivalence.runtimes._keras_model import build_model, input_names
from equivalence.runtimes.base import Runtime
from equivalence.spec import LSTMSpec

FUSED_LSTM_OPS = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM")
_MARKER_BASE, _MARKER_STEP = 1024.0, 1.0 / 8192  # float32 is exact on [1024, 2048) in these steps
_MARKER_LIMIT = 1 << 23  # markers that fit below 2048
_FLOAT32 = 0  # TensorType.FLOAT32 in the TFLite schema
_CACHE_SIZE = 64


@dataclass(frozen=True)
class WeightSlot:
    """One constant buffer of the flatbuffer that is a copy of weight elements."""

    offset: int  # byte offset of the buffer's data in the flatbuffer
    sources: np.ndarray  # index into the flattened weight list of each float32 element


@dataclass(frozen=True)
class Converted:
    """One conversion: the flatbuffer and where the weights sit in it.

    ``slots`` is None when the weights could not be traced (convert per example).
    """

    content: bytes
    slots: tuple[WeightSlot, ...] | None
    ops: tuple[str, ...]

    def with_weights(self, weights: list[np.ndarray]) -> bytes:
        """The flatbuffer with ``weights`` written over the marker weights."""
        assert self.slots is not None
        flat = np.concatenate([np.ravel(w) for w in weights]).astype(np.float32)
        patched = bytearray(self.content)
        for slot in self.slots:
            data = flat[slot.sources].tobytes()
            patched[slot.offset:slot.offset + len(data)] = data
        return bytes(patched)


class TFLiteRuntime(Runtime):
    """Keras 3 ``LSTM``/``Bidirectional`` -> ``TFLiteConverter.from_keras_model`` -> interpreter."""

    module: ClassVar[str] = "tensorflow"
    requires: ClassVar[tuple[str, ...]] = ("keras",)

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        self._converted: OrderedDict[tuple[LSTMSpec, Feeding, int], Converted] = OrderedDict()
        self.conversions = 0  # converter runs so far (the expensive step)

    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()
        if reason is not None:
            return reason
        from equivalence.runtimes.keras import import_keras3

        keras = import_keras3()
        if str(keras.__version__).split(".")[0] != "3":
            return f"keras {keras.__version__} is not Keras 3 (this runtime needs Keras 3)"
        if keras.backend.backend() != "tensorflow":
            return f"Keras 3 backend is {keras.backend.backend()!r} here; the converter needs TF"
        return None

    def version(self) -> str:
        import tensorflow as tf

        name, module = _interpreter_module()
        interpreter = getattr(module, "__version__", None) or _distribution_version(name)
        return f"tensorflow {tf.__version__}, interpreter {name} {interpreter}"

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        feeding = Feeding.of(inputs)
        weights = native_arrays(native, spec)
        converted = self.converted(spec, feeding, inputs.batch)
        if converted.slots is not None:
            content = converted.with_weights(weights)
        else:
            content = self.convert(spec, feeding, inputs.batch, weights).content
        fed = dict(zip(input_names(spec, feeding), feeds(spec, inputs, feeding), strict=True))
        return to_result(_invoke(content, fed), spec, inputs)

    def converted(self, spec: LSTMSpec, feeding: Feeding, batch: int) -> Converted:
        """The conversion for this shape, with marker weights (cached)."""
        key = (spec, feeding, batch)
        if key in self._converted:
            self._converted.move_to_end(key)
            return self._converted[key]
        marked = _markers(spec)
        converted = self.convert(spec, feeding, batch, marked)
        slots = _weight_slots(converted.content, sum(w.size for w in marked))
        self._converted[key] = Converted(converted.content, slots, converted.ops)
        while len(self._converted) > _CACHE_SIZE:
            self._converted.popitem(last=False)
        return self._converted[key]

    def emitted_ops(self, spec: LSTMSpec, inputs: LSTMInputs | None = None) -> tuple[str, ...]:
        """The op names of the converted model, all subgraphs (loop bodies included), sorted."""
        feeding = Feeding.of(inputs) if inputs is not None else Feeding(False, False)
        return self.converted(spec, feeding, inputs.batch if inputs is not None else 1).ops

    def lstm_kernel(self, spec: LSTMSpec, inputs: LSTMInputs | None = None) -> str:
        """What runs the recurrence: a fused LSTM op's name, ``"WHILE"``, or ``"unrolled"``."""
        ops = self.emitted_ops(spec, inputs)
        fused = [op for op in FUSED_LSTM_OPS if op in ops]
        if fused:
            return fused[0]
        return "WHILE" if "WHILE" in ops else "unrolled"

    def convert(
        self, spec: LSTMSpec, feeding: Feeding, batch: int, weights: list[np.ndarray]
    ) -> Converted:
        """Convert the spec's Keras model holding ``weights`` (no cache, no weight tracing)."""
        import tensorflow as tf

        from equivalence.runtimes.keras import import_keras3

        keras = import_keras3()
        with tf.device("/CPU:0"):
            model = build_model(keras, spec, feeding, batch=batch)
            model.set_weights(weights)
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            # the Keras export prints "Saved artifact at ..." for every conversion
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    content = converter.convert()
                except Exception as exc:
                    # The converter's own error type is kept (a converter failing on a spec
                    # the row claims is a failure, not a refusal of bad input); the note says
                    # which conversion it was.
                    if hasattr(exc, "add_note"):
                        exc.add_note(f"converting {spec} at batch {batch}, {feeding}")
                    raise
        self.conversions += 1
        return Converted(content, None, _op_names(content))


def _markers(spec: LSTMSpec) -> list[np.ndarray]:
    """Keras-format weights whose float32 elements are all distinct and exact."""
    shapes = []
    for layer in range(spec.layers):
        for _ in range(spec.directions):
            width, columns = spec.layer_input_size(layer), spec.gate_count * spec.units
            # a GRU with reset_after keeps its two biases as a (2, 3H) array
            bias = (2, columns) if spec.cell == "gru" and spec.reset_after else (columns,)
            shapes += [(width, columns), (spec.units, columns), bias]
    total = sum(int(np.prod(shape)) for shape in shapes)
    if total > _MARKER_LIMIT:
        raise ConversionError(f"tflite: {total} weights, more than {_MARKER_LIMIT} to trace")
    values = (_MARKER_BASE + np.arange(total) * _MARKER_STEP).astype(np.float32)
    arrays, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        arrays.append(values[start:start + size].reshape(shape))
        start += size
    return arrays


def _schema() -> Any:
    try:
        return importlib.import_module("ai_edge_litert.schema_py_generated")
    except ImportError:
        return importlib.import_module("tensorflow.lite.python.schema_py_generated")


def _weight_slots(content: bytes, total: int) -> tuple[WeightSlot, ...] | None:
    """Where each weight element sits in ``content`` (converted with markers), or None."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(content, 0)
    float_buffers = _float32_buffers(model)
    slots, seen = [], np.zeros(total, dtype=bool)
    for index in sorted(float_buffers):
        buffer = model.Buffers(index)
        if buffer.DataLength() == 0:
            continue
        table = buffer._tab
        offset = table.Vector(table.Offset(4))  # start of the `data` vector's bytes
        values = np.frombuffer(content, np.float32, buffer.DataLength() // 4, offset)
        is_marker = (values >= _MARKER_BASE) & (values < 2 * _MARKER_BASE)
        if not is_marker.any():
            if np.any(np.abs(values) >= _MARKER_BASE / 2):
                return None  # a large constant: possibly computed from the weights
            continue
        if not is_marker.all():
            return None  # weights mixed with something else: not a plain copy
        sources = np.rint((values.astype(np.float64) - _MARKER_BASE) / _MARKER_STEP).astype(int)
        if np.any(sources >= total):
            return None
        seen[sources] = True
        slots.append(WeightSlot(offset, sources))
    return tuple(slots) if seen.all() else None


def _float32_buffers(model: Any) -> set[int]:
    """Indices of buffers that back float32 tensors (in any subgraph)."""
    found = set()
    for graph_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(graph_index)
        for tensor_index in range(graph.TensorsLength()):
            tensor = graph.Tensors(tensor_index)
            if tensor.Type() == _FLOAT32:
                found.add(tensor.Buffer())
    return found


def _op_names(content: bytes) -> tuple[str, ...]:
    """Sorted names of the ops in every subgraph of a flatbuffer."""
    schema = _schema()
    names = {
        value: name for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    model = schema.Model.GetRootAsModel(content, 0)
    found = set()
    for graph_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(graph_index)
        for op_index in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(op_index).OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if code.CustomCode():
                found.add(f"CUSTOM:{code.CustomCode().decode()}")
            else:
                found.add(names.get(builtin, f"BUILTIN_{builtin}"))
    return tuple(sorted(found))


def _interpreter_module() -> tuple[str, Any]:
    """``ai_edge_litert.interpreter`` when installed, else TensorFlow's ``tf.lite``."""
    try:
        return "ai-edge-litert", importlib.import_module("ai_edge_litert.interpreter")
    except ImportError:
        import tensorflow as tf

        return "tf.lite", tf.lite


def _distribution_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _invoke(content: bytes, fed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the model's default signature; outputs in the Keras model's order."""
    _, module = _interpreter_module()
    interpreter = module.Interpreter(model_content=content)
    returned = interpreter.get_signature_runner()(**fed)
    # The Keras model's outputs come back as output_0, output_1, ... (sort numerically).
    names = sorted(returned, key=lambda name: int(name.rsplit("_", 1)[1]))
    return [np.asarray(returned[name]) for name in names]
