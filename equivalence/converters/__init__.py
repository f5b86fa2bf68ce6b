"""Third-party LSTM converters under test, judged by the harness itself.

One module per converter, each a :class:`~.base.Converter` with the
configurations it claims:

* :mod:`.cudnn_h5`: tf_keras's legacy-.h5 ``CuDNNLSTM`` <-> ``LSTM`` weight conversion,
  and ``CuDNNGRU`` <-> ``GRU(reset_after=True)``;
* :mod:`.torch_onnx_export`: ``torch.onnx.export`` of an ``nn.LSTM``, run in ONNX Runtime;
* :mod:`.tf2onnx_from_keras`: tf2onnx's ``from_keras`` on Keras 3 LSTM layers, run in ORT;
* :mod:`.onnx2torch_convert`: onnx2torch on an ONNX graph of ``LSTM`` nodes;
* :mod:`.nobuco_to_keras`: nobuco's ``pytorch_to_keras`` on an ``nn.LSTM``.

:mod:`.base` says how an example is judged (the harness's cases,
``check_pair`` and ``Outcome``); :mod:`.runner` explores configurations, keeps
the report's ``third_party`` entries, and hands converters that need Keras 2
and torchvision (nobuco, onnx2torch) to the side environment.
"""

from equivalence.converters.base import Configuration, Converter
from equivalence.converters.runner import (
    BY_NAME,
    CONVERTERS,
    run_configuration,
    run_converter,
    run_third_party,
)

__all__ = [
    "BY_NAME",
    "CONVERTERS",
    "Configuration",
    "Converter",
    "run_configuration",
    "run_converter",
    "run_third_party",
]
