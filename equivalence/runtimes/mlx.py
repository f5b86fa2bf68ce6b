"""MLX runtime: ``mlx.nn.LSTM`` layers on MLX's CPU device.

This module owns running the ``mlx`` native form (:mod:`equivalence.formats.mlx`)
through MLX itself. MLX has no stacked or bidirectional LSTM, so the network is
composed the way MLX models compose it: a list of layers, each fed the one
below's outputs (forward then backward features), a backward direction run on
the time-reversed input with its outputs flipped back.

Facts this module relies on (verified against mlx 0.32.4, the Linux x86_64
CPU wheel):

* ``nn.LSTM.__call__(x, hidden=None, cell=None)`` takes ``(B, T, I)`` and
  returns every step's hidden and cell states, ``(B, T, H)`` each: the final
  states are the last step's. Without ``cell`` it starts from ``c = i * g``
  (a zero cell state); that path runs when no initial state is given.
* No masks or sequence lengths, batch-first only.
* float16, bfloat16, float32 and float64 all run on the CPU; numpy cannot
  read a bfloat16 array back, so it returns as float32 (exact). ``mx.array``
  of a float64 numpy array is float32 unless ``dtype=`` says otherwise.
* float64 runs at float32 accuracy: the CPU ``exp`` (so ``sigmoid``) is
  float32-accurate on float64 arrays. The table row does not claim float64.
* Computation is lazy; converting to numpy evaluates it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from equivalence.formats._common import layer_grid
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Runtime
from equivalence.spec import LSTMSpec

_ARRAYS = ("Wx", "Wh", "bias")


class MlxRuntime(Runtime):
    """``mlx.nn.LSTM`` per layer and direction, composed as an MLX model does."""

    module: ClassVar[str] = "mlx.core"
    requires: ClassVar[tuple[str, ...]] = ("mlx.nn",)

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        self._layers: dict[tuple[int, int], Any] = {}

    def version(self) -> str:
        from importlib.metadata import version  # the mlx package itself has no __version__

        return version("mlx")

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        import mlx.core as mx

        dtype = getattr(mx, spec.dtype)
        grid = layer_grid(native, "mlx weights")
        x = _to_mlx(inputs.x, dtype)
        final_h, final_c = [], []
        for layer, row in enumerate(grid):
            outputs = []
            for direction, weights in enumerate(row):
                lstm = self._lstm(spec.layer_input_size(layer), spec.units)
                lstm.update({name: _to_mlx(weights[name], dtype) for name in _ARRAYS})
                state = _initial_state(inputs, layer, direction, dtype)
                backward = direction == 1
                h, c = lstm(x[:, ::-1] if backward else x, *state)
                final_h.append(h[:, -1])
                final_c.append(c[:, -1])
                outputs.append(h[:, ::-1] if backward else h)
            x = mx.concatenate(outputs, axis=-1) if len(outputs) == 2 else outputs[0]
        shape = (spec.layers, spec.directions, inputs.batch, spec.units)
        return LSTMResult(_to_numpy(x), _to_numpy(mx.stack(final_h)).reshape(shape),
                          _to_numpy(mx.stack(final_c)).reshape(shape))

    def _lstm(self, input_size: int, units: int) -> Any:
        """One layer object per shape: its arrays are replaced before every call."""
        key = (input_size, units)
        if key not in self._layers:
            import mlx.nn as nn

            self._layers[key] = nn.LSTM(input_size, units)
        return self._layers[key]


def _initial_state(inputs: LSTMInputs, layer: int, direction: int, dtype: Any) -> tuple:
    """``(hidden, cell)`` for one direction of one layer, or ``()``: MLX's own zero start."""
    if inputs.h0 is None or inputs.c0 is None:  # the contract gives both or neither
        return ()
    return (_to_mlx(inputs.h0[layer, direction], dtype),
            _to_mlx(inputs.c0[layer, direction], dtype))


def _to_mlx(array: Any, dtype: Any) -> Any:
    import mlx.core as mx

    # dtype= at creation: mx.array alone turns a float64 numpy array into float32
    return mx.array(np.ascontiguousarray(array), dtype=dtype)


def _to_numpy(array: Any) -> np.ndarray:
    import mlx.core as mx

    if array.dtype == mx.bfloat16:
        array = array.astype(mx.float32)
    return np.array(array, copy=True)
