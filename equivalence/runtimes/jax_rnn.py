"""``jax.experimental.rnn``: JAX's cuDNN LSTM, and its own pure-JAX reference.

This module owns running the ``jax_rnn`` native form (one flat float vector,
see :mod:`equivalence.formats.jax_rnn`) and normalizing the result to the
contract of :mod:`equivalence.io_types`.

Facts from jax 0.10.2 ``jax/experimental/rnn.py`` and ``jaxlib/gpu/rnn_kernels.cc``:

* ``lstm(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, num_layers,
  dropout, bidirectional, precision)``; ``x`` is batch-major ``(B, T, I)``,
  ``h_0``/``c_0`` and ``h_n``/``c_n`` are ``(L*D, B, H)`` ordered by pseudo-layer
  (forward 0, reverse 0, forward 1, ...), ``y`` is ``(B, T, D*H)``.
* ``seq_lengths`` (int32, required) are honoured: cuDNN runs with padded I/O,
  padding value 0, so padded outputs are zero and h_n/c_n are per-sequence.
* The kernel hard-codes ``CUDNN_DATA_FLOAT`` (float32 only), has no CPU
  lowering, and uses TF32 unless ``precision`` is HIGHEST (we pass HIGHEST).
* ``lstm_ref`` is JAX's pure-JAX reference of the same op (runs on CPU); fed
  by ``unpack_lstm_weights`` it reads the same flat vector, so it checks a
  converter's layout without a GPU. :class:`JaxRnnReferenceRuntime` exposes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes._jax import x64
from equivalence.runtimes.base import Row, Runtime, split_states, zero_padding
from equivalence.spec import LSTMSpec


class JaxRnnRuntime(Runtime):
    """``jax.experimental.rnn.lstm`` on a GPU (cuDNN)."""

    def __init__(self, entry: Row) -> None:
        super().__init__(entry)
        # Jitted forward functions of this instance, keyed by spec (per instance, so the
        # benchmark's "naive" fresh instance really compiles anew).
        self._forwards: dict[LSTMSpec, Callable[..., Any]] = {}

    module: ClassVar[str] = "jax.experimental.rnn"

    def device_reason(self) -> str | None:
        import jax

        try:
            jax.devices("gpu")
        except RuntimeError as exc:  # raised when no GPU backend is present
            return f"no GPU for cuDNN: {exc}"
        return None

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        dtype = np.dtype(spec.dtype)
        weights = _flat_weights(spec, native, dtype)
        x = np.asarray(inputs.x, dtype=dtype)
        batch, steps = x.shape[:2]
        h0 = _pseudo_layer_states(inputs.h0, spec, batch, spec.units, dtype)
        c0 = _pseudo_layer_states(inputs.c0, spec, batch, spec.units, dtype)
        lengths = (np.full(batch, steps, np.int32) if inputs.lengths is None
                   else np.asarray(inputs.lengths, np.int32))
        forward = self._forward(spec)
        with x64(dtype == np.float64):
            outputs, h, c = (np.array(a) for a in forward(x, h0, c0, weights, lengths))
        return LSTMResult(zero_padding(outputs, inputs), split_states(h, spec),
                          split_states(c, spec))

    def _forward(self, spec: LSTMSpec) -> Callable[..., Any]:
        if spec not in self._forwards:
            self._forwards[spec] = self._build(spec)
        return self._forwards[spec]

    def _build(self, spec: LSTMSpec) -> Callable[..., Any]:
        import jax
        from jax.experimental import rnn

        def forward(x, h0, c0, weights, lengths):
            # Positional: lstm is a custom_vjp with these as nondiff arguments.
            return rnn.lstm(x, h0, c0, weights, lengths, spec.input_size, spec.units,
                            spec.layers, 0.0, spec.directions == 2,
                            jax.lax.Precision.HIGHEST)  # HIGHEST turns TF32 off

        return jax.jit(forward)


class JaxRnnReferenceRuntime(JaxRnnRuntime):
    """``jax.experimental.rnn.lstm_ref``: JAX's pure-JAX model of the cuDNN op (CPU).

    Not cuDNN: it validates the flat ``jax_rnn`` layout (through JAX's own
    ``unpack_lstm_weights``) on machines without a GPU.
    """

    def device_reason(self) -> str | None:
        return None

    def _build(self, spec: LSTMSpec) -> Callable[..., Any]:
        import jax
        from jax.experimental import rnn

        bidirectional = spec.directions == 2

        def forward(x, h0, c0, weights, lengths):
            w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(
                weights, spec.input_size, spec.units, spec.layers, bidirectional)
            return rnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, spec.input_size,
                                spec.units, spec.layers, 0.0, bidirectional)

        return jax.jit(forward)


def _flat_weights(spec: LSTMSpec, native: Any, dtype: np.dtype) -> np.ndarray:
    """The flat vector in ``dtype`` (its length was checked by the format's reader)."""
    return np.asarray(native, dtype=dtype).reshape(-1)


def _pseudo_layer_states(
    states: np.ndarray | None, spec: LSTMSpec, batch: int, width: int, dtype: np.dtype
) -> np.ndarray:
    """Contract ``(L, D, B, X)`` to the op's ``(L*D, B, X)`` (zeros when absent)."""
    shape = (spec.layers * spec.directions, batch, width)
    if states is None:
        return np.zeros(shape, dtype)
    return np.asarray(states, dtype=dtype).reshape(shape)
