"""Keras 3 runtimes on the TensorFlow backend: ``LSTM`` layers and ``LSTMCell`` stacks.

Keras 3 picks its backend once per process from ``KERAS_BACKEND``; this module
asks for TensorFlow (without overriding a choice already made) and reports the
runtime unavailable when another backend is in use. On a CPU Keras 3 runs the
generic (non-cuDNN) loop by itself; ``use_cudnn`` keeps its default.

Keras 3's ``"hard_sigmoid"`` is ``relu6(x + 3) / 6`` = clip(x/6 + 0.5, 0, 1)
(keras/src/backend/tensorflow/nn.py), the spec's ``hard_sigmoid_keras3``.
"""

from __future__ import annotations

import os
from typing import ClassVar

from equivalence.runtimes._keras_common import CELLS, LAYERS, KerasFamilyRuntime, KerasModule


def import_keras3():
    """Import Keras 3, asking for the TensorFlow backend unless one was chosen already."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


class KerasRuntime(KerasFamilyRuntime):
    """Keras 3 ``LSTM`` layers (``Bidirectional`` with concat for two directions)."""

    module = "keras"
    style = LAYERS
    activations: ClassVar[dict[str, str]] = {
        "sigmoid": "sigmoid",
        "hard_sigmoid_keras3": "hard_sigmoid",
    }

    def unavailable_reason(self) -> str | None:
        try:
            keras = import_keras3()
        except Exception as exc:  # any import failure means "not runnable here"
            return f"keras not importable: {type(exc).__name__}: {exc}"
        major = str(getattr(keras, "__version__", "0")).split(".")[0]
        if major != "3":  # TensorFlow <= 2.15 installs Keras 2 as `keras`
            return f"keras {keras.__version__} is not Keras 3 (this runtime needs Keras 3)"
        backend = keras.backend.backend()
        if backend != "tensorflow":
            return f"Keras 3 backend is {backend!r} in this process, expected 'tensorflow'"
        return self.device_reason()

    def keras_module(self) -> KerasModule:
        keras = import_keras3()
        return KerasModule(layers=keras.layers)


class KerasCellRuntime(KerasRuntime):
    """Keras 3 ``RNN(StackedRNNCells([LSTMCell, ...]))`` (``RNN(LSTMCell)`` for one layer).

    Two directions use ``Bidirectional(RNN(LSTMCell))`` per layer: a stack
    wrapped in one ``Bidirectional`` would run each direction through the whole
    stack, which is a different network.
    """

    style = CELLS


class KerasGpuRuntime(KerasRuntime):
    """Keras 3 ``LSTM`` on the GPU, where TensorFlow takes its cuDNN path.

    Compared with the ``keras`` row (pinned to the CPU) by ``pytest -m gpu``;
    TF32 is off so the comparison is at float32 precision.
    """

    def device_reason(self) -> str | None:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            return "no GPU visible to TensorFlow"
        tf.config.experimental.enable_tensor_float_32_execution(False)
        return None
