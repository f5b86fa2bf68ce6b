"""TensorFlow's raw ``CudnnRNNV3`` op fed the flat cuDNN parameter buffer (GPU only).

Owns running ``cudnn_params`` weights (the buffer :mod:`equivalence.formats.flat`
writes) through cuDNN via TensorFlow, with no Keras layer in between, so the
buffer layout itself is what gets checked. cuDNN has no CPU kernel: this
runtime reports itself unavailable without a GPU.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Runtime, split_states, zero_padding
from equivalence.spec import LSTMSpec


class TfCudnnRnnRuntime(Runtime):
    """``tf.raw_ops.CudnnRNNV3`` (time-major, right-padded ``sequence_lengths``)."""

    module: ClassVar[str] = "tensorflow"

    def device_reason(self) -> str | None:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            return "no GPU visible to TensorFlow (CudnnRNNV3 has no CPU kernel)"
        tf.config.experimental.enable_tensor_float_32_execution(False)
        return None

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        import tensorflow as tf

        dtype = np.dtype(spec.dtype)
        states = (spec.layers * spec.directions, inputs.batch, spec.units)
        h0 = np.zeros(states, dtype) if inputs.h0 is None else inputs.h0.reshape(states)
        c0 = np.zeros(states, dtype) if inputs.c0 is None else inputs.c0.reshape(states)
        lengths = inputs.lengths if inputs.lengths is not None else [inputs.steps] * inputs.batch
        with tf.device("/GPU:0"):
            output, h, c, _, _ = tf.raw_ops.CudnnRNNV3(
                input=np.ascontiguousarray(inputs.x.transpose(1, 0, 2), dtype),
                input_h=h0.astype(dtype),
                input_c=c0.astype(dtype),
                params=np.asarray(native, dtype),
                sequence_lengths=np.asarray(lengths, np.int32),
                rnn_mode="lstm",
                input_mode="linear_input",
                direction="bidirectional" if spec.directions == 2 else "unidirectional",
                dropout=0.0,
                seed=0,
                seed2=0,
                num_proj=0,
                is_training=False,
                time_major=True,
            )
        outputs = zero_padding(output.numpy().transpose(1, 0, 2), inputs)
        return LSTMResult(outputs, split_states(h.numpy(), spec), split_states(c.numpy(), spec))
