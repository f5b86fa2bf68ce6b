"""OpenCV ``cv2.dnn``: our ONNX ``LSTM`` graph read by OpenCV's ONNX importer and run on CPU.

The model is read from its bytes (``readNetFromONNX``), once per graph and
input shapes; the weights stay graph inputs (OpenCV 5's importer takes them
as ``setInput`` blobs), so new weights only change the inputs. Outputs are
fetched by their graph names, in graph order.

Facts this module relies on (verified against opencv-python-headless 5.0.0):

* The importer refuses a graph whose outputs have no declared shape
  (``tensor.has_shape()``), so the shared graph declares them.
* Found by the conformance grid, so the table row does not claim them:
  ``sequence_lens`` is ignored (Y_h/Y_c are the full-length state); ``P`` is
  read as i, f, o where ONNX says i, o, f; ``clip`` and ``input_forget`` are
  ignored; with ``direction="reverse"`` Y is right but Y_h/Y_c are the state
  after the first step walked (t = T-1); float64 graphs give wrong numbers;
  ``layout=1`` and ``activations`` raise. OpenCV 5.1.0 matches on reverse,
  peepholes, ``layout=1`` and float64 (``known.KNOWN``'s ``fixed_in``).
* A ``GRU`` net without an ``initial_h`` input runs once; its second
  ``forward`` raises "Initial hidden state blob has incorrect dimensions"
  (opencv-python-headless 5.1.0; with ``initial_h`` fed it runs every time).
  GRU graphs therefore always get ``initial_h`` (zeros when the caller gave
  none, the ONNX default); tests/test_gru_onnx.py checks the fact, so the
  workaround goes when OpenCV fixes it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from equivalence.runtimes._onnx_family import Compiled, Feeds, OnnxModelRuntime


class OpenCvRuntime(OnnxModelRuntime):
    """``cv2.dnn`` with the default (OpenCV) backend on the CPU target."""

    module: ClassVar[str] = "cv2"
    per_shape: ClassVar[bool] = True  # one net per input shape: no reshape between examples
    always_state_cells: ClassVar[frozenset[str]] = frozenset({"gru"})  # see the docstring

    def compile(self, model: bytes, feeds: Feeds) -> Compiled:
        import cv2
        import onnx

        cv2.setNumThreads(1)  # tiny graphs, shared machines
        # errors come back as exceptions; its log would repeat them on stderr
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)
        graph = onnx.load_from_string(model).graph
        outputs, inputs = [o.name for o in graph.output], [i.name for i in graph.input]
        net = cv2.dnn.readNetFromONNX(np.frombuffer(model, dtype=np.uint8))

        def run(fed: Feeds) -> list[np.ndarray]:
            for name in inputs:
                net.setInput(np.ascontiguousarray(fed[name]), name)
            return list(net.forward(outputs))

        return run
