"""Keras 3 ``model.export`` of an LSTM model, in every format it writes, probed as deployed.

The model is functional: ``Input((T or None, I))`` into the keras runtime's own
layers for the case's spec (``LSTM(return_sequences=True, return_state=True)``,
``Bidirectional`` with concat for two directions, one layer per spec layer,
each returning its states), holding the case's native weights. Keras returns
per-layer, per-direction states as separate (B, H) tensors; the model carries
them as users who deploy a stateful encoder do, and so compare can read them:

* one row (1 layer, 1 direction): inputs ``x``, ``h0``, ``c0`` (B, H) and
  outputs ``y``, ``h``, ``c`` (B, H), exactly the layer's own signature;
* more rows: ``h0``/``c0`` (rows, B, H) sliced per row inside the model, and
  the final states stacked to (rows, B, H), rows layer by layer, forward first.

Configurations, one per format Keras 3 writes on the TensorFlow backend
(``"torch"`` needs the torch backend), each with an explicit ``input_signature``
(Keras's default one takes every input's axis 0 as a dynamic batch, which would
lose stacked states' rows) and the model called once first (Keras's ONNX export
refuses a model never called):

* ``tf_saved_model``, ``onnx`` (tf2onnx's ``from_function``), ``openvino``
  (``ov.convert_model`` of the traced function, then ``ov.serialize``: f32
  weights): batch and time dynamic;
* ``litert, fixed batch``: batch 2, time dynamic; the converter fuses the LSTM
  into ``UNIDIRECTIONAL_SEQUENCE_LSTM``. A dynamic batch is not claimed: TF's
  converter then keeps the while loop with Flex TensorList ops, which the
  interpreter refuses (tensorflow#58668);
* ``litert, fixed shapes``: batch 2 and 4 steps;
* each but the last again with ``lengths`` (B,) int32, made the layers' mask inside
  the model (and y zeroed past each length, the contract's padding).

Artefacts compare's readers do not take as one LSTM are run through their named
ports instead: OpenVINO IRs of a Keras LSTM hold its Loop (no LSTMSequence); tf2onnx
writes one LSTM node per Keras layer (2 layers: two "stacks") and leaves a masked
LSTM as a Loop of elementwise ops.

Keras's export guard for recurrent layers (keras#23058: a ``ValueError`` for an
RNN with a dynamic time axis, because the TorchScript ONNX export "silently"
fixed the time length) sits in the torch backend's ONNX branch only; this
process runs the TensorFlow backend, where it never fires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from equivalence import capabilities
from equivalence.case import Case
from equivalence.converters.base import Configuration, claims
from equivalence.converters.exporter import Exporter, fixed_shape_refusals
from equivalence.converters.torch_module import EXPORT_SHAPE
from equivalence.errors import ConversionError
from equivalence.files._base import FileFormatError
from equivalence.known import BY_DESIGN, Known
from equivalence.spec import LSTMSpec

SAVED_MODEL, ONNX, OPENVINO = "tf_saved_model", "onnx (tf2onnx)", "openvino"
LITERT, LITERT_FIXED = "litert, fixed batch", "litert, fixed shapes"
_CLAIMS = claims(lacks=(capabilities.LENGTHS,))  # the model takes no lengths input
LENGTHS = ("lengths", True)
# What compare's ONNX reader says of tf2onnx's graphs it cannot read as one LSTM stack
# (the whole graph still runs): one LSTM node per Keras layer, Squeeze/Transpose between
# (2 layers); a masked LSTM left as its Loop of elementwise ops (no LSTM node at all).
_ONNX_UNREAD = ("stacks found", "not an LSTM node")
_FIXED_WHY = "input_signature fixed batch 2 and 4 steps"
_BATCH_WHY = "input_signature fixed batch 2 (a dynamic batch needs Flex ops)"


class KerasExport(Exporter):
    name = "keras model.export"
    packages = ("keras", "tensorflow|tensorflow-cpu", "tf2onnx", "openvino", "ai-edge-litert")
    imports = ("keras", "tensorflow")
    source = "keras"
    target = "keras"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration(SAVED_MODEL, _CLAIMS, options=(("format", "tf_saved_model"),)),
        Configuration(ONNX, _CLAIMS, options=(("format", "onnx"),)),
        Configuration(OPENVINO, _CLAIMS, options=(("format", "openvino"),)),
        Configuration(LITERT, _CLAIMS, options=(("format", "litert"), ("batch", True))),
        Configuration(LITERT_FIXED, _CLAIMS, options=(("format", "litert"), ("fixed", True))),
        *(Configuration(f"{name}, lengths (mask)", claims(), options=(*options, LENGTHS))
          for name, options in ((SAVED_MODEL, (("format", "tf_saved_model"),)),
                                (ONNX, (("format", "onnx"),)),
                                (OPENVINO, (("format", "openvino"),)),
                                (LITERT, (("format", "litert"), ("batch", True)))))
    )
    expected: ClassVar[dict[tuple[str, str], Known]] = {
        **fixed_shape_refusals(LITERT_FIXED, _FIXED_WHY),
        **{(config, probe): Known("refused", _BATCH_WHY, upstream=BY_DESIGN)
           for config in (LITERT, f"{LITERT}, lengths (mask)")
           for probe in ("batch 1", "larger batch")},
    }
    not_claimed = ("litert with a dynamic batch: TF's converter keeps the LSTM's while loop "
                   "with Flex TensorList ops (FlexTensorListReserve/SetItem/Stack), which "
                   "the ai-edge-litert interpreter refuses without the Flex delegate "
                   "(tensorflow#58668)")
    _FILES: ClassVar[dict[str, str]] = {"tf_saved_model": "saved_model", "onnx": "model.onnx",
                                        "openvino": "model.xml", "litert": "model.tflite"}

    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()
        if reason is None:
            from equivalence.runtimes.keras import import_keras3

            backend = import_keras3().backend.backend()
            if backend != "tensorflow":
                return f"Keras 3 backend is {backend!r}; these exports need 'tensorflow'"
        return reason

    def export(self, config: Configuration, case: Case, native: Any, folder: Path) -> Path:
        fmt = config.option("format")
        model = keras_model(case.spec, native, lengths=bool(config.option("lengths")))
        path = folder / self._FILES[fmt]
        # Always a signature: Keras's default one takes every input's axis 0 as the batch
        # and leaves it dynamic, so stacked (rows, B, H) states would lose their rows.
        batch = EXPORT_SHAPE[0] if config.option("fixed") or config.option("batch") else None
        steps = EXPORT_SHAPE[1] if config.option("fixed") else None
        call_once(model)  # Keras's ONNX export refuses a model never called
        model.export(str(path), format=fmt, verbose=False,
                     input_signature=signature(model, batch=batch, steps=steps))
        return path

    def open_artefact(self, path: Path) -> Any:
        """OpenVINO IRs of a Keras LSTM hold a TensorIterator/Loop, not the LSTMSequence
        compare's IR reader needs: run those through their ports (f32 hint) instead."""
        if path.suffix == ".xml":
            return openvino_ported_side(path)
        try:
            return super().open_artefact(path)
        except (ConversionError, FileFormatError) as exc:
            if not any(text in str(exc) for text in _ONNX_UNREAD):
                raise
            return onnxruntime_ported_side(path)


def keras_model(spec: LSTMSpec, native: Any, *, lengths: bool = False) -> Any:
    """The functional model (x, [lengths], h0, c0) -> (y, h, c) on the keras runtime's
    layers; ``lengths`` (B,) int32 becomes the layers' mask, and y is zero past each
    sequence's length (the contract's padding: a forward LSTM repeats its last output)."""
    from equivalence.runtimes._keras_common import Feeding, native_arrays
    from equivalence.runtimes.keras import import_keras3
    from equivalence.table import entry

    keras = import_keras3()
    runtime: Any = entry("keras").load()
    network = runtime.build(spec, Feeding(has_state=True, has_mask=lengths))
    network.load(native_arrays(native, spec))
    rows = spec.layers * spec.directions
    state = (None, spec.units) if rows == 1 else (rows, None, spec.units)
    x = keras.Input(batch_shape=(None, None, spec.input_size), name="x", dtype=spec.dtype)
    h0, c0 = (keras.Input(batch_shape=state, name=n, dtype=spec.dtype) for n in ("h0", "c0"))
    inputs = {"x": x, "h0": h0, "c0": c0}
    per_row = [h0, c0] if rows == 1 else [t for k in range(rows) for t in (h0[k], c0[k])]
    mask = []
    if lengths:
        inputs["lengths"] = keras.Input(batch_shape=(None,), name="lengths", dtype="int32")
        mask = [_length_mask()(x, inputs["lengths"])]
    y, *finals = network.forward(x, *mask, *per_row)
    if lengths:
        y = keras.ops.where(mask[0][:, :, None], y, keras.ops.zeros_like(y))
    if rows == 1:
        h, c = finals
    else:
        h, c = keras.ops.stack(finals[0::2], axis=0), keras.ops.stack(finals[1::2], axis=0)
    return keras.Model(inputs, {"y": y, "h": h, "c": c})


def _length_mask() -> Any:
    """A layer: (x (B, T, I), lengths (B,)) -> the (B, T) mask of valid steps."""
    from equivalence.runtimes.keras import import_keras3

    keras = import_keras3()

    class LengthMask(keras.layers.Layer):  # type: ignore[name-defined]
        def call(self, x: Any, lengths: Any) -> Any:
            steps = keras.ops.arange(keras.ops.shape(x)[1], dtype="int32")
            return steps[None, :] < lengths[:, None]

        def compute_output_shape(self, x_shape: Any, lengths_shape: Any) -> Any:
            return (x_shape[0], x_shape[1])

    return LengthMask(dtype="int32")


def call_once(model: Any) -> None:
    """Run the model on zeros (batch 2, 4 steps): Keras's ONNX export needs it called."""
    import numpy as np

    batch, steps = EXPORT_SHAPE
    zeros = {}
    for tensor in model.inputs:
        shape = [batch if d is None else d for d in tensor.shape]
        if tensor.name == "x":
            shape[1] = steps
        dtype = np.int32 if tensor.name == "lengths" else np.float32
        zeros[tensor.name] = np.full(shape, steps if tensor.name == "lengths" else 0, dtype)
    model(zeros)


def signature(model: Any, *, batch: int | None, steps: int | None) -> list[Any]:
    """The model's input specs with batch ``batch`` and time ``steps`` (None: dynamic)."""
    import tensorflow as tf

    specs = {}
    for tensor in model.inputs:
        shape = list(tensor.shape)
        if tensor.name == "x":
            shape[:2] = [batch, steps]
        elif tensor.name == "lengths":
            shape = [batch]
        else:
            shape[-2] = batch  # (B, H) or (rows, B, H)
        specs[tensor.name] = tf.TensorSpec(shape, tensor.dtype, name=tensor.name)
    return [specs]


def openvino_ported_side(path: Path) -> Any:
    """An OpenVINO IR run through its named inputs and outputs in the CPU plugin at f32."""
    import numpy as np

    from equivalence.artefacts.ports import Port, ported_side
    from equivalence.runtimes.openvino import _core

    core = _core()
    model = core.read_model(str(path))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def port(node: Any) -> Port:
        shape = node.get_partial_shape()
        dims = tuple(None if d.is_dynamic else d.get_length() for d in shape)
        return Port(node.get_any_name(), dims, "float32")

    inputs = [port(p) for p in model.inputs]
    outputs = [port(p) for p in model.outputs]

    def invoke(fed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        returned = compiled.create_infer_request().infer(fed)
        return {key.get_any_name(): np.asarray(value) for key, value in returned.items()}

    import openvino

    return ported_side(str(path), "OpenVINO IR (Keras export)",
                       f"OpenVINO {openvino.__version__} CPU, f32 precision", inputs, outputs,
                       invoke, {})


def onnxruntime_ported_side(path: Path) -> Any:
    """A whole ONNX model run through its named inputs and outputs in ONNX Runtime (CPU)."""
    import numpy as np
    import onnxruntime

    from equivalence.artefacts.ports import Port, ported_side

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])

    def port(node: Any) -> Port:
        dtype = {"float": "float32", "double": "float64"}.get(node.type[7:-1], node.type[7:-1])
        return Port(node.name, tuple(d if isinstance(d, int) else None for d in node.shape),
                    dtype)  # node.type: "tensor(float)", "tensor(int32)"

    outputs = [port(p) for p in session.get_outputs()]

    def invoke(fed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        returned = session.run([p.name for p in outputs], fed)
        return dict(zip([p.name for p in outputs], returned, strict=True))

    return ported_side(str(path), "ONNX model (Keras export)",
                       f"onnxruntime {onnxruntime.__version__} CPU",
                       [port(p) for p in session.get_inputs()], outputs, invoke, {})
