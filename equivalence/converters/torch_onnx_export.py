"""``torch.onnx.export`` of an ``nn.LSTM``, run in ONNX Runtime, judged against PyTorch.

Source row ``torch``: the torch runtime runs the case. The converter builds
the same ``nn.LSTM`` with the source's native weights (:mod:`.torch_module`),
exports it (the default dynamo exporter, or the TorchScript one) and the ONNX
model runs in ONNX Runtime. Each example is a new export: the weights are
baked into the ONNX file, which is what is under test.
"""

from __future__ import annotations

import importlib
import io
import logging
from typing import Any, ClassVar

from equivalence.capabilities import LENGTHS, TIME_MAJOR
from equivalence.case import Case
from equivalence.converters import torch_module
from equivalence.converters.base import (
    Configuration,
    Converter,
    claims,
    requires,
    run_onnx,
)
from equivalence.io_types import LSTMResult
from equivalence.known import REFUSED, Known

_DYNAMIC_TIME_BUG = Known(
    REFUSED,
    (
        "torch.onnx.export(dynamo=True) fixes nn.LSTM's time dimension to the example "
        "input's length although dynamic_shapes marks it dynamic: torch.export raises "
        "'Constraints violated (time)', torch.onnx catches that and re-exports with its "
        "suggested fix (time = 4) without a word, so the ONNX model's x is declared with "
        "T=4 and ONNX Runtime refuses other lengths"
    ),
    signature="Got invalid dimensions",
)
_PACKED_DYNAMO = Known(
    REFUSED,
    (
        "sequence lengths are not expressible with the default (dynamo) exporter: "
        "torch.export cannot trace pack_padded_sequence/pad_packed_sequence, so export "
        "fails (TorchExportError); the TorchScript exporter maps them to sequence_lens"
    ),
    signature="TorchExportError",
)
_DYNAMO_NO_LENGTHS = claims(TIME_MAJOR, lacks=(LENGTHS,))  # lengths: their own configuration
_SHAPE = f"B={torch_module.EXPORT_SHAPE[0]} T={torch_module.EXPORT_SHAPE[1]}"
_TORCHSCRIPT = (("dynamo", False),)
_OUTPUTS = ("y", "h", "c")


class TorchOnnxExport(Converter):
    """``torch.onnx.export`` (dynamo and TorchScript exporters) run in ONNX Runtime."""

    name = "torch.onnx.export"
    packages = ("torch", "onnxscript", "onnx", "onnxruntime")
    imports = ("torch", "onnx", "onnxruntime", "onnxscript")
    source, target = "torch", "onnxruntime"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration("dynamo exporter (default), 1-2 layers, 1-2 directions",
                      claims=_DYNAMO_NO_LENGTHS),
        Configuration("dynamo exporter, initial states as inputs, 1-2 layers, 1-2 directions",
                      claims=_DYNAMO_NO_LENGTHS, requires=requires("initial state")),
        Configuration(f"dynamo exporter, dynamic batch and time (dynamic_shapes), exported at "
                      f"{_SHAPE}, 1-2 layers, 1-2 directions", claims=_DYNAMO_NO_LENGTHS,
                      options=(("dynamic", True),), known_failure=_DYNAMIC_TIME_BUG),
        Configuration("dynamo exporter, sequence lengths (pack_padded_sequence)",
                      claims=claims(), requires=requires("lengths"),
                      known_failure=_PACKED_DYNAMO),
        Configuration("TorchScript exporter (dynamo=False), initial states, 1-2 layers, "
                      "1-2 directions", claims=claims(TIME_MAJOR),
                      requires=requires("initial state"), options=_TORCHSCRIPT),
        Configuration("TorchScript exporter, sequence lengths (pack_padded_sequence -> "
                      "sequence_lens), 1-2 layers, 1-2 directions",
                      claims=claims(TIME_MAJOR), requires=requires("lengths"),
                      options=_TORCHSCRIPT),
        Configuration(f"TorchScript exporter, dynamic batch and time (dynamic_axes), exported "
                      f"at {_SHAPE}, 1-2 layers, 1-2 directions", claims=claims(TIME_MAJOR),
                      options=(*_TORCHSCRIPT, ("dynamic", True))),
    )

    def convert(self, config: Configuration, case: Case, native: Any) -> bytes:
        """Export the source's ``nn.LSTM`` (on the case's inputs, or an example of them)."""
        module = torch_module.lstm_module(case.spec, native, case.inputs)
        dynamic = bool(config.option("dynamic"))
        example = torch_module.example_inputs(case) if dynamic else case.inputs
        fed = torch_module.feeds(case.spec, example)
        return _export(module, fed, dynamo=config.option("dynamo", True), dynamic=dynamic,
                       time_major=case.inputs.time_major)

    def run_converted(self, config: Configuration, case: Case, converted: Any) -> LSTMResult:
        outputs = run_onnx(converted, torch_module.feeds(case.spec, case.inputs))
        return torch_module.to_result(case, outputs)


def _export(module: Any, example: dict[str, Any], *, dynamo: bool, dynamic: bool,
            time_major: bool) -> bytes:
    """Export ``module`` on the example inputs; the serialized ONNX model."""
    torch: Any = importlib.import_module("torch")
    names = list(example)
    args = torch_module.tensors(example)
    batch_axis, time_axis = (1, 0) if time_major else (0, 1)
    if dynamo:
        options: dict[str, Any] = {}
        if dynamic:
            batch, steps = torch.export.Dim("batch"), torch.export.Dim("time")
            axes = {"x": {batch_axis: batch, time_axis: steps}, "h0": {1: batch},
                    "c0": {1: batch}, "lengths": {0: batch}}
            options["dynamic_shapes"] = tuple(axes[n] for n in names)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(module, args, dynamo=True, input_names=names,
                                    output_names=list(_OUTPUTS), verbose=False, **options)
        return bytes(program.model_proto.SerializeToString())
    buffer = io.BytesIO()
    dims = {"x": {batch_axis: "batch", time_axis: "time"}, "y": {batch_axis: "batch",
            time_axis: "time"}, "h0": {1: "batch"}, "c0": {1: "batch"}, "lengths": {0: "batch"},
            "h": {1: "batch"}, "c": {1: "batch"}}
    dynamic_axes = {n: dims[n] for n in [*names, *_OUTPUTS]} if dynamic else None
    torch.onnx.export(module, args, buffer, dynamo=False, input_names=names,
                      output_names=list(_OUTPUTS), dynamic_axes=dynamic_axes)
    return buffer.getvalue()
