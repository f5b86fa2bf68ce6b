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
* ``nn.GRU.__call__(x, hidden=None)`` returns every step's h, ``(B, T, H)``; it
  is PyTorch's GRU (r z n, b_hn inside r * (...)) with the r and z biases summed
  (tests/test_runtime_mlx.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from equivalence.formats._common import layer_grid
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Runtime
from equivalence.spec import LSTMSpec

_ARRAYS = {"lstm": ("Wx", "Wh", "bias"), "gru": ("Wx", "Wh", "b", "bhn")}


class MlxRuntime(Runtime):
    """``mlx.nn.LSTM`` per layer and direction, composed as an MLX model does."""

    module: ClassVar[str] = "mlx.core"
    requires: ClassVar[tuple[str, ...]] = ("mlx.nn",)

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        self._layers: dict[tuple[str, int, int], Any] = {}

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
        gru = spec.cell == "gru"
        final_h, final_c = [], []
        for layer, row in enumerate(grid):
            outputs = []
            for direction, weights in enumerate(row):
                module = self._layer(spec.cell, spec.layer_input_size(layer), spec.units)
                module.update({name: _to_mlx(weights[name], dtype)
                               for name in _ARRAYS[spec.cell]})
                state = _initial_state(inputs, layer, direction, dtype, gru)
                backward = direction == 1
                returned = module(x[:, ::-1] if backward else x, *state)
                h = returned if gru else returned[0]
                final_h.append(h[:, -1])
                if not gru:
                    final_c.append(returned[1][:, -1])
                outputs.append(h[:, ::-1] if backward else h)
            x = mx.concatenate(outputs, axis=-1) if len(outputs) == 2 else outputs[0]
        shape = (spec.layers, spec.directions, inputs.batch, spec.units)
        c = None if gru else _to_numpy(mx.stack(final_c)).reshape(shape)
        return LSTMResult(_to_numpy(x), _to_numpy(mx.stack(final_h)).reshape(shape), c)

    def _layer(self, cell: str, input_size: int, units: int) -> Any:
        """One layer object per cell and shape: its arrays are replaced before every call."""
        key = (cell, input_size, units)
        if key not in self._layers:
            import mlx.nn as nn

            self._layers[key] = (nn.GRU if cell == "gru" else nn.LSTM)(input_size, units)
        return self._layers[key]


def _initial_state(inputs: LSTMInputs, layer: int, direction: int, dtype: Any,
                   gru: bool = False) -> tuple:
    """``(hidden, cell)`` (a GRU's ``(hidden,)``) for one direction of one layer, or ``()``:
    MLX's own zero start."""
    states = (inputs.h0,) if gru else (inputs.h0, inputs.c0)
    if any(state is None for state in states):  # the contract gives both or neither
        return ()
    return tuple(_to_mlx(state[layer, direction], dtype) for state in states
                 if state is not None)


def _to_mlx(array: Any, dtype: Any) -> Any:
    import mlx.core as mx

    # dtype= at creation: mx.array alone turns a float64 numpy array into float32
    return mx.array(np.ascontiguousarray(array), dtype=dtype)


def _to_numpy(array: Any) -> np.ndarray:
    import mlx.core as mx

    if array.dtype == mx.bfloat16:
        array = array.astype(mx.float32)
    return np.array(array, copy=True)
