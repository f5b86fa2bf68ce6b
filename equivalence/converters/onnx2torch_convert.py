"""onnx2torch's ``convert`` on ONNX graphs of ``LSTM`` nodes, run in PyTorch.

Source row ``onnxruntime``: ONNX Runtime runs the case on the runtime's own
graph (:func:`equivalence.runtimes.onnxruntime.build_model`). The converter
takes that graph with the source's native weights as initializers (how ONNX
files carry them) and converts it to a torch module, which runs on the same
feeds; its outputs are read as the runtime reads ONNX Runtime's. Needs
torchvision, so it runs in the side environment.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from equivalence.capabilities import INITIAL_STATE, LENGTHS
from equivalence.case import Case
from equivalence.converters.base import (
    SIDE,
    Configuration,
    Converter,
    claims,
    requires,
)
from equivalence.io_types import LSTMResult
from equivalence.known import REFUSED, Known
from equivalence.runtimes.base import zero_padding

_NO_LSTM = Known(
    REFUSED,
    ("onnx2torch has no converter for the ONNX LSTM operator: convert() raises "
     "NotImplementedError for every LSTM node, whatever its configuration"),
    signature="NotImplementedError",
)


class Onnx2Torch(Converter):
    """``onnx2torch.convert`` on the onnxruntime runtime's graph, weights as initializers."""

    name = "onnx2torch"
    environment = SIDE
    packages = ("onnx2torch", "torch", "torchvision", "onnx")
    imports = ("torch", "onnx", "onnxruntime", "onnx2torch")
    source, target = "onnxruntime", "torch"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration("ONNX LSTM node, 1 layer, forward",
                      claims=claims(max_layers=1, lacks=("bidirectional", INITIAL_STATE, LENGTHS)),
                      known_failure=_NO_LSTM),
        Configuration("ONNX LSTM nodes, 1-2 layers, 1-2 directions, initial states",
                      claims=claims(lacks=(LENGTHS,)), requires=requires("initial state"),
                      known_failure=_NO_LSTM),
        Configuration("ONNX LSTM nodes, 1-2 layers, 1-2 directions, sequence_lens",
                      claims=claims(), requires=requires("lengths"), known_failure=_NO_LSTM),
    )

    def convert(self, config: Configuration, case: Case, native: Any) -> Any:
        import onnx2torch

        return onnx2torch.convert(_with_initializers(case, native))

    def run_converted(self, config: Configuration, case: Case, converted: Any) -> LSTMResult:
        """The module on the runtime's feeds (graph inputs left after the initializers)."""
        import torch

        from equivalence.runtimes import onnxruntime as ort_runtime

        spec, inputs = case.spec, case.inputs
        fed = ort_runtime._feeds(spec, [], inputs, inputs.h0 is not None)
        with torch.no_grad():
            outputs = converted(*[torch.from_numpy(a) for a in fed.values()])
        result = ort_runtime._result(spec, [o.numpy() for o in outputs], inputs)
        return LSTMResult(zero_padding(result.outputs, inputs), result.h, result.c)


def _with_initializers(case: Case, native: Any) -> Any:
    """The onnxruntime runtime's graph for the case, its weight inputs turned into initializers."""
    from onnx import numpy_helper

    from equivalence.runtimes.onnxruntime import build_model, layer_weights

    inputs = case.inputs
    model = build_model(case.spec, has_state=inputs.h0 is not None,
                        has_lengths=inputs.lengths is not None)
    values = {f"{name}_{k}": np.asarray(array, dtype=np.float32)
              for k, weights in enumerate(layer_weights(native))
              for name, array in weights.items()}
    graph = model.graph
    kept = [i for i in graph.input if i.name not in values]
    del graph.input[:]
    graph.input.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(a, name) for name, a in values.items())
    return model
