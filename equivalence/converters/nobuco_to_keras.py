"""nobuco's ``pytorch_to_keras`` on an ``nn.LSTM``, judged against PyTorch.

Source row ``torch``: the torch runtime runs the case. nobuco traces a call
of the module, so the converter gives it the torch runtime's ``nn.LSTM`` with
the source's native weights, wrapped to take the case's tensors
(:mod:`.torch_module`): initial states are the ``(h0, c0)`` argument,
time-major inputs are ``batch_first=False``, lengths go through
``pack_padded_sequence``. The Keras model it returns runs on the same tensors.
nobuco needs Keras 2 (TensorFlow <= 2.15) and torchvision, so it runs in the
side environment.
"""

from __future__ import annotations

from typing import Any, ClassVar

from equivalence.capabilities import LENGTHS, TIME_MAJOR
from equivalence.case import Case
from equivalence.converters import torch_module
from equivalence.converters.base import (
    SIDE,
    Configuration,
    Converter,
    claims,
    flatten,
    requires,
)
from equivalence.io_types import LSTMResult
from equivalence.known import REFUSED, Known

_PACKED = Known(
    REFUSED,
    ("nobuco cannot convert packed sequences: its nn.LSTM converter calls .dim() on the "
     "PackedSequence ('PackedSequence' object has no attribute 'dim', printed as a "
     "conversion error) and rebuilding the PackedSequence from traced tensors then "
     "fails (AssertionError); sequence lengths are not expressible"),
    signature="AssertionError",
)
_NO_LENGTHS = claims(lacks=(LENGTHS,))  # lengths: their own configuration (a known failure)


class Nobuco(Converter):
    """``nobuco.pytorch_to_keras`` with PyTorch channel order on both ends."""

    name = "nobuco"
    environment = SIDE
    packages = ("nobuco", "torch", "torchvision", "tensorflow|tensorflow-cpu", "keras")
    imports = ("torch", "nobuco")
    source, target = "torch", "tf_keras"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration("nn.LSTM, 1-2 layers, 1-2 directions", claims=_NO_LENGTHS),
        Configuration("initial states, 1-2 layers, 1-2 directions", claims=_NO_LENGTHS,
                      requires=requires("initial state")),
        Configuration("time-major (batch_first=False), 1-2 layers, 1-2 directions",
                      claims=claims(TIME_MAJOR, lacks=(LENGTHS,)),
                      requires=requires("time-major")),
        Configuration("sequence lengths (pack_padded_sequence)", claims=claims(),
                      requires=requires("lengths"), known_failure=_PACKED),
    )

    def convert(self, config: Configuration, case: Case, native: Any) -> Any:
        import nobuco

        module = torch_module.lstm_module(case.spec, native, case.inputs)
        args = torch_module.tensors(torch_module.feeds(case.spec, case.inputs))
        return nobuco.pytorch_to_keras(module, args=list(args),
                                       inputs_channel_order=nobuco.ChannelOrder.PYTORCH,
                                       outputs_channel_order=nobuco.ChannelOrder.PYTORCH)

    def run_converted(self, config: Configuration, case: Case, converted: Any) -> LSTMResult:
        fed = list(torch_module.feeds(case.spec, case.inputs).values())
        returned = converted(fed if len(fed) > 1 else fed[0])
        return torch_module.to_result(case, [t.numpy() for t in flatten(returned)])
