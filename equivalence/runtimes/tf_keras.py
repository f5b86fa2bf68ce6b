"""Keras 2 runtimes from ``tf_keras``: ``LSTM``, ``LSTMCell`` stacks and ``CuDNNLSTM``.

``tf_keras`` imports beside Keras 3 in one process (``import keras`` stays
Keras 3); ``TF_USE_LEGACY_KERAS`` is not needed and is not set here, because it
would change what ``tf.keras`` means for every other user of the process.

tf_keras's ``"hard_sigmoid"`` is clip(0.2 x + 0.5, 0, 1)
(tf_keras/src/backend.py ``hard_sigmoid``), the spec's ``hard_sigmoid_tf_keras``.

``CuDNNLSTM`` is exported only in the v1 API, as
``tf_keras.api._v1.keras.layers.CuDNNLSTM`` (its class lives in
``tf_keras.src.layers.rnn.cudnn_lstm``). It has no CPU kernel: it can be built,
given weights and saved on a CPU, but it runs only on a GPU. It refuses masks.
``CuDNNGRU`` (the same module) is built the same way for a GRU spec, so the legacy
.h5 converter can hold its weights; the row does not claim GRU (no GPU run yet).
"""

from __future__ import annotations

import importlib
from typing import ClassVar

from equivalence.runtimes._keras_common import CELLS, CUDNN, LAYERS, KerasFamilyRuntime, KerasModule

CUDNN_LSTM_IMPORT = "tf_keras.api._v1.keras.layers"


class TfKerasRuntime(KerasFamilyRuntime):
    """tf_keras ``LSTM`` layers (``Bidirectional`` with concat for two directions)."""

    module = "tf_keras"
    style = LAYERS
    activations: ClassVar[dict[str, str]] = {
        "sigmoid": "sigmoid",
        "hard_sigmoid_tf_keras": "hard_sigmoid",
    }


class TfKerasCellRuntime(TfKerasRuntime):
    """tf_keras ``RNN(StackedRNNCells([LSTMCell, ...]))`` (``RNN(LSTMCell)`` for one layer).

    Worth its own runtime: on a CPU tf_keras's ``LSTM`` with sigmoid runs a
    fused ``standard_lstm`` function, not ``LSTMCell``, so the cell path is
    different code. Two directions use ``Bidirectional(RNN(LSTMCell))`` per layer.
    """

    style = CELLS


class CuDNNLSTMRuntime(KerasFamilyRuntime):
    """tf_keras ``CuDNNLSTM`` layers; needs a GPU. Native weights have 8H biases."""

    module = "tf_keras"
    style = CUDNN

    def device_reason(self) -> str | None:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            return "no GPU visible to TensorFlow (CuDNNLSTM has no CPU kernel)"
        return None

    def keras_module(self) -> KerasModule:
        import tensorflow as tf

        # Ampere/Hopper GPUs run float32 cuDNN RNNs in TF32 unless told not to,
        # which would be a precision difference, not a conversion error.
        tf.config.experimental.enable_tensor_float_32_execution(False)
        keras = importlib.import_module(self.module)
        v1_layers = importlib.import_module(CUDNN_LSTM_IMPORT)
        return KerasModule(layers=keras.layers, cudnn_lstm=v1_layers.CuDNNLSTM,
                           cudnn_gru=v1_layers.CuDNNGRU)
