"""``openvino.convert_model`` of a Keras 3 LSTM model, saved as an f32 IR and probed.

The model is :func:`~.keras_export.keras_model`'s (x, h0, c0) -> (y, h, c) on the
keras runtime's layers with the case's weights. ``convert_model`` takes the model's
SavedModel (``model.export``), ``input=`` the shapes to keep;
``ov.save_model(..., compress_to_fp16=False)`` writes f32 weights.
The IR holds the Keras while loop (a Loop/TensorIterator, no LSTMSequence), so it
is run through its ports (:func:`~.keras_export.openvino_ported_side`).

* ``dynamic shapes``: batch and time left dynamic (the Keras inputs' ``None``);
* ``static shapes``: ``input=`` fixing batch 2 and 4 steps: others must be refused;
* ``lengths (mask), dynamic shapes``: a ``lengths`` (B,) int32 input made the mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from equivalence import capabilities
from equivalence.case import Case
from equivalence.converters.base import Configuration, claims
from equivalence.converters.exporter import Exporter, fixed_shape_refusals
from equivalence.converters.keras_export import keras_model, openvino_ported_side
from equivalence.converters.torch_module import EXPORT_SHAPE

DYNAMIC, STATIC, LENGTHS = "dynamic shapes", "static shapes", "lengths (mask), dynamic shapes"
_CLAIMS = claims(lacks=(capabilities.LENGTHS,))  # the model takes no mask input


class OpenVinoFromKeras(Exporter):
    name = "openvino.convert_model (keras)"
    packages = ("openvino", "keras", "tensorflow|tensorflow-cpu")
    imports = ("openvino", "keras", "tensorflow")
    source = "keras"
    target = "openvino"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration(DYNAMIC, _CLAIMS, options=(("static", False),)),
        Configuration(STATIC, _CLAIMS, options=(("static", True),)),
        Configuration(LENGTHS, claims(), options=(("lengths", True),)),
    )
    expected = fixed_shape_refusals(STATIC, "input= fixed batch 2 and 4 steps")

    def export(self, config: Configuration, case: Case, native: Any, folder: Path) -> Path:
        import openvino

        model = keras_model(case.spec, native, lengths=bool(config.option("lengths")))
        options: dict[str, Any] = {}
        if config.option("static"):
            options["input"] = static_inputs(model)
        # From the model's SavedModel, not the model object: OpenVINO recognizes a Keras
        # model by isinstance(tf.keras.Model), which a Keras 3 model failed in a CI worker
        # whose earlier tests had loaded tf_keras ("Could not find signature of graph").
        saved = folder / "saved"
        model.export(str(saved), format="tf_saved_model", verbose=False)
        converted = openvino.convert_model(str(saved), **options)
        path = folder / "model.xml"
        openvino.save_model(converted, str(path), compress_to_fp16=False)
        return path

    def open_artefact(self, path: Path) -> Any:
        return openvino_ported_side(path)


def static_inputs(model: Any) -> dict[str, list[int]]:
    """Every input's shape with batch and time at :data:`EXPORT_SHAPE` (by input name)."""
    batch, steps = EXPORT_SHAPE
    shapes = {}
    for tensor in model.inputs:
        shape = list(tensor.shape)
        if tensor.name == "x":
            shape[:2] = [batch, steps]
        elif tensor.name == "lengths":
            shape = [batch]
        else:
            shape[-2] = batch  # (B, H) or (rows, B, H)
        shapes[tensor.name] = shape
    return shapes
