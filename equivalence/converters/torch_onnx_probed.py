"""``torch.onnx.export`` of an ``nn.LSTM`` module, written to a file and probed as deployed.

The module is the torch runtime's ``nn.LSTM`` holding the case's weights, in
a wrapper whose ``forward(x, h0, c0)`` returns ``(output, h_n, c_n)``: what a
user exports to port an encoder or a decoder step. Two configurations:

* ``torchscript, dynamic axes``: the TorchScript exporter with batch and time
  marked dynamic (every probe should match);
* ``torchscript, fixed shapes``: no dynamic axes, so the graph fixes batch 2 and
  4 steps; other shapes must be *refused* by ONNX Runtime, never wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from equivalence.capabilities import LENGTHS
from equivalence.case import Case
from equivalence.converters.base import Configuration, claims
from equivalence.converters.exporter import Exporter, fixed_shape_refusals
from equivalence.converters.torch_module import EXPORT_SHAPE

_CLAIMS = claims(lacks=(LENGTHS,))  # nn.LSTM takes lengths only through packing


class TorchOnnxProbed(Exporter):
    name = "torch.onnx.export (file)"
    packages = ("torch", "onnx")
    imports = ("torch", "onnx")
    source = "torch"
    target = "onnxruntime"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration("torchscript, dynamic axes", _CLAIMS, options=(("dynamic", True),)),
        Configuration("torchscript, fixed shapes", _CLAIMS, options=(("dynamic", False),)),
    )
    expected = fixed_shape_refusals("torchscript, fixed shapes",
                                    "no dynamic axes: the graph fixes batch 2 and 4 steps")

    def export(self, config: Configuration, case: Case, native: Any, folder: Path) -> Path:
        import torch

        from equivalence.runtimes.torch import _build_module, _load_weights

        spec = case.spec
        lstm = _build_module(spec, True, "cpu")
        with torch.no_grad():
            _load_weights(lstm, native)
        module = stateful_module(lstm)
        batch, steps = EXPORT_SHAPE
        rows = spec.layers * spec.directions
        example = (torch.zeros(batch, steps, spec.input_size),
                   torch.zeros(rows, batch, spec.output_size),
                   torch.zeros(rows, batch, spec.units))
        axes = None
        if config.option("dynamic"):
            axes = {"input": {0: "batch", 1: "time"}, "h0": {1: "batch"}, "c0": {1: "batch"},
                    "output": {0: "batch", 1: "time"}, "h_n": {1: "batch"},
                    "c_n": {1: "batch"}}
        path = folder / "model.onnx"
        torch.onnx.export(module, example, str(path), dynamo=False,
                          input_names=["input", "h0", "c0"],
                          output_names=["output", "h_n", "c_n"], dynamic_axes=axes)
        return path


def stateful_module(lstm: Any) -> Any:
    """``lstm`` wrapped as users export it: forward(x, h0, c0) -> (output, h_n, c_n)."""
    import torch

    class Stateful(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = lstm

        def forward(self, x: Any, h0: Any, c0: Any) -> Any:
            y, (h, c) = self.lstm(x, (h0, c0))
            return y, h, c

    return Stateful().eval()
