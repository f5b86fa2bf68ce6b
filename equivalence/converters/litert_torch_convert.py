"""litert-torch (torch -> TFLite) of an ``nn.LSTM`` module, written to a ``.tflite`` and probed.

The module is the torch runtime's ``nn.LSTM`` holding the case's weights, wrapped by
:func:`~.torch_module.lstm_module` so ``forward(x, h0, c0)`` returns ``(y, h_n, c_n)``.
``litert_torch.convert(module, sample_kwargs=...)`` traces it (``torch.export``) on zero
inputs at :data:`~.torch_module.EXPORT_SHAPE`; ``export`` writes the flatbuffer, which
compare opens in the ai-edge-litert interpreter. One configuration:

* ``sample_kwargs (fixed shapes)``: the flatbuffer fixes batch 2 and 4 steps, so other
  shapes must be refused (by design).

Not claimed: dynamic shapes. ``dynamic_shapes`` with a dynamic time axis fails in
``torch.export`` (the LSTM decomposition specializes time to the sample's length:
litert-torch#1062), and a dynamic batch alone fails in the JAX lowering (``Shapes must
be 1D sequences of concrete values``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from equivalence.capabilities import LENGTHS
from equivalence.case import Case
from equivalence.converters.base import Configuration, claims
from equivalence.converters.exporter import Exporter, fixed_shape_refusals
from equivalence.converters.openvino_convert import example_feeds
from equivalence.converters.torch_module import lstm_module, tensors

FIXED = "sample_kwargs (fixed shapes)"
DYNAMIC_TIME_ISSUE = "https://github.com/google-ai-edge/litert-torch/issues/1062"
_CLAIMS = claims(lacks=(LENGTHS,))  # nn.LSTM takes lengths only through packing


class LiteRtTorch(Exporter):
    name = "litert-torch"
    packages = ("litert-torch", "torch", "ai-edge-litert")
    imports = ("litert_torch", "torch")
    source = "torch"
    target = "tflite"
    configurations: ClassVar[tuple[Configuration, ...]] = (Configuration(FIXED, _CLAIMS),)
    expected = fixed_shape_refusals(FIXED, "the samples fix batch 2 and 4 steps")
    not_claimed = (f"dynamic shapes: a dynamic time axis is specialized by torch.export "
                   f"({DYNAMIC_TIME_ISSUE}); a dynamic batch fails in the JAX lowering")

    def export(self, config: Configuration, case: Case, native: Any, folder: Path) -> Path:
        import litert_torch

        inputs, fed = example_feeds(case, lengths=False)
        module = lstm_module(case.spec, native, inputs)
        path = folder / "model.tflite"
        # keyword samples name the signature's inputs x, h0, c0 (positional ones are
        # args_0..2, which compare cannot tell apart when every dimension is small)
        litert_torch.convert(module, sample_kwargs=dict(zip(fed, tensors(fed), strict=True))
                             ).export(str(path))
        return path


def convert_dynamic_time(case: Case, native: Any, folder: Path) -> Path:
    """The conversion litert-torch#1062 is about: time marked dynamic (raises today)."""
    import litert_torch
    import torch

    inputs, fed = example_feeds(case, lengths=False)
    module = lstm_module(case.spec, native, inputs)
    time = torch.export.Dim("time", min=1, max=64)
    dims = ({1: time}, None, None)
    path = folder / "dynamic.tflite"
    litert_torch.convert(module, tensors(fed), dynamic_shapes=dims).export(str(path))
    return path
