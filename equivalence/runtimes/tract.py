"""tract (Sonos's Rust inference engine) running our ONNX ``LSTM`` graph through its Python wheel.

tract loads ONNX from a file path only, so a graph is written to a temporary
file, loaded with every input's shape and type fixed (``set_input_fact``),
typed, optimized and made runnable (``into_model().into_runnable()``), once
per graph and input shapes. Weights stay graph inputs: one build serves every
example of a shape.

Facts this module relies on (verified against tract 0.23.9, x86_64):

* Without ``initial_h``/``initial_c``, a one-layer forward graph fails for a
  batch of more than one ("Clashing resolution for expression"), and with a
  symbolic batch the Rust side panics and aborts the process; so this runtime
  always feeds the initial states (zeros when none were given) and always
  fixes the input shapes.
* ``direction="reverse"`` is computed as forward, ``clip`` and ``activations``
  are ignored, ``input_forget`` is ignored: the conformance grid finds these
  as silently wrong; the table row does not claim them.
* A ``sequence_lens`` graph input fails to load ("Non constant seq_len is not
  supported"); float64 fails at run time (``LstmEpilogue``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from equivalence.runtimes._onnx_family import Compiled, Feeds, OnnxModelRuntime

_DATUM = {"float16": "f16", "float32": "f32", "float64": "f64", "int32": "i32"}


class TractRuntime(OnnxModelRuntime):
    """tract's ONNX frontend and CPU runtime."""

    module: ClassVar[str] = "tract"
    always_state: ClassVar[bool] = True
    per_shape: ClassVar[bool] = True

    def version(self) -> str:
        import tract

        return str(tract.version())

    def compile(self, model: bytes, feeds: Feeds) -> Compiled:
        import tract

        with tempfile.TemporaryDirectory(prefix="equivalence-tract-") as folder:
            path = Path(folder) / "model.onnx"
            path.write_bytes(model)
            loaded = tract.onnx().load(str(path))
        names = [loaded.input_name(i) for i in range(loaded.input_count())]
        for index, name in enumerate(names):
            loaded.set_input_fact(index, _fact(feeds[name]))
        runnable = loaded.into_model().into_runnable()

        def run(fed: Feeds) -> list[np.ndarray]:
            return [out.to_numpy() for out in runnable.run([fed[name] for name in names])]

        return run


def _fact(array: np.ndarray) -> str:
    """tract's fact string for ``array``: ``"5,2,3,f32"``."""
    return ",".join([*(str(n) for n in array.shape), _DATUM[str(array.dtype)]])
