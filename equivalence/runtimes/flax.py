"""Flax linen runtimes: ``nn.RNN`` over ``nn.LSTMCell`` or ``nn.OptimizedLSTMCell``, and
``nn.GRUCell`` on the ``flax`` row (flax has no optimized GRU cell).

This module owns running flax-format weights (see :mod:`equivalence.formats.flax`)
through flax itself and normalizing the result to the contract of
:mod:`equivalence.io_types`. Layers are a Python loop of ``nn.RNN``; a
bidirectional layer is a forward ``nn.RNN`` plus ``nn.RNN(reverse=True,
keep_order=True)``, concatenated forward first.

Facts from flax 0.12.8 ``linen/recurrent.py`` that the code relies on:

* ``nn.RNN(..., return_carry=True)`` with ``seq_lengths`` returns the carry of
  each sequence's last valid step (``_select_last_carry``).
* ``reverse=True`` with ``seq_lengths`` flips only the valid part of each
  sequence (``flip_sequences`` keeps padding at the end), and ``keep_order``
  flips the outputs back the same way, so the reverse direction's carry is the
  state after original step 0.
* Outputs at padded steps are not zeroed: we zero them here.
* The carry is ``(c, h)``; a ``GRUCell``'s is ``h`` alone, and its ``__call__`` is
  r z n with b_hn inside r * (...) (reset_after=True; tests/test_gru_flax.py).

One jitted function per (cell, spec, time-major, lengths present or not)
takes the parameters as an argument, so a new set of weights of the same shape
never retraces; jax's own jit cache handles new batch/time shapes. Missing
initial states are passed as zeros rather than made inside the function: the
carry flax starts from is the same, and runs with and without states share one
compilation (each costs 0.25-0.85 s, most of a flax check's time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from equivalence.errors import UnsupportedFeatureError
from equivalence.formats import flax as flax_format
from equivalence.formats._common import layer_grid
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes._jax import x64
from equivalence.runtimes.base import Row, Runtime, zero_padding
from equivalence.spec import LSTMSpec

# Recurrent activations flax can use as ``gate_fn`` with a function jax itself
# ships: Keras 3's hard sigmoid is relu6(x + 3) / 6, which is jax.nn.hard_sigmoid.
_GATE_FUNCTIONS = {"sigmoid": "sigmoid", "hard_sigmoid_keras3": "hard_sigmoid"}

class _FlaxLinenRuntime(Runtime):
    """Shared body of the two linen runtimes; subclasses pick the cell class."""

    module: ClassVar[str] = "flax"
    cell_class: ClassVar[str]
    # The linen class this runtime runs GRUs with (None: it runs none; its row claims none).
    gru_class: ClassVar[str | None] = None
    default_variant: ClassVar[str]
    # Format-option variants whose param tree this runtime reads (linen LSTMCell
    # and OptimizedLSTMCell share one tree, so either is accepted).
    variants: ClassVar[frozenset[str]] = frozenset({"linen", "linen_optimized"})

    def __init__(self, entry: Row) -> None:
        super().__init__(entry)
        # Jitted forward functions of this instance: (cell, spec, flags) -> fn. Per instance,
        # so the benchmark's "naive" fresh instance really compiles anew.
        self._forwards: dict[tuple[Any, ...], Callable[..., Any]] = {}

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        variant = options.get("variant", self.default_variant)
        if variant not in self.variants:
            raise UnsupportedFeatureError(self.name, f"variant={variant!r}",
                                          f"it reads {sorted(self.variants)} param trees")
        dtype = np.dtype(spec.dtype)
        params = _params_grid(spec, native, dtype)
        x = np.asarray(inputs.x, dtype=dtype)
        if inputs.time_major:
            x = x.transpose(1, 0, 2)
        h0, c0 = _initial_carry(spec, inputs, dtype)
        lengths = None if inputs.lengths is None else np.asarray(inputs.lengths, np.int32)
        forward = self._forward(spec, inputs)
        with x64(dtype == np.float64):
            outputs, h, c = forward(params, x, h0, c0, lengths)
            # np.array: writable copies, not read-only views of jax buffers
            outputs, h = np.array(outputs), np.array(h)
            c = None if c is None else np.array(c)
        if inputs.time_major:
            outputs = outputs.transpose(1, 0, 2)
        return LSTMResult(zero_padding(outputs, inputs), h, c)

    def _forward(self, spec: LSTMSpec, inputs: LSTMInputs) -> Callable[..., Any]:
        cell_class = self.gru_class if spec.cell == "gru" else self.cell_class
        if cell_class is None:  # Runtime.run refuses it first; this guards a direct call
            raise UnsupportedFeatureError(self.name, f"cell={spec.cell}")
        key = (cell_class, spec, inputs.time_major, inputs.lengths is not None)
        if key not in self._forwards:
            self._forwards[key] = _build_forward(cell_class, spec, *key[2:])
        return self._forwards[key]


class FlaxRuntime(_FlaxLinenRuntime):
    """``flax.linen.RNN`` over ``flax.linen.LSTMCell`` or ``GRUCell`` (one Dense per gate)."""

    cell_class: ClassVar[str] = "LSTMCell"
    gru_class: ClassVar[str | None] = "GRUCell"
    default_variant: ClassVar[str] = "linen"


class FlaxOptimizedRuntime(_FlaxLinenRuntime):
    """``flax.linen.RNN`` over ``flax.linen.OptimizedLSTMCell`` (gates in one matmul)."""

    cell_class: ClassVar[str] = "OptimizedLSTMCell"
    default_variant: ClassVar[str] = "linen_optimized"


def _initial_carry(
    spec: LSTMSpec, inputs: LSTMInputs, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray | None]:
    """``h0`` and ``c0`` as (L, D, B, H) arrays, zeros where the inputs have none; a GRU's
    ``c0`` is None (its carry is h alone)."""
    shape = (spec.layers, spec.directions, inputs.batch, spec.units)

    def state(value: np.ndarray | None) -> np.ndarray:
        return np.zeros(shape, dtype) if value is None else np.asarray(value, dtype=dtype)

    return state(inputs.h0), (state(inputs.c0) if "c" in spec.state_names else None)


def _build_forward(
    cell_class: str, spec: LSTMSpec, time_major: bool, has_lengths: bool
) -> Callable[..., Any]:
    """A jitted ``(params, x, h0, c0, lengths) -> (outputs, h, c)`` for ``spec`` (a GRU's
    ``c0`` and ``c`` are None)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    cell_type = getattr(nn, cell_class)
    gate_fn = getattr(jax.nn, _GATE_FUNCTIONS[spec.recurrent_activation])
    units = spec.units
    gru = spec.cell == "gru"

    def forward(params, x, h0, c0, lengths):
        batch = x.shape[1] if time_major else x.shape[0]
        layer_input, final_h, final_c = x, [], []
        for layer in range(spec.layers):
            outs = []
            for direction in range(spec.directions):
                rnn = nn.RNN(
                    cell_type(features=units, gate_fn=gate_fn),
                    time_major=time_major,
                    return_carry=True,
                    reverse=direction == 1,
                    keep_order=True,  # reverse outputs back in original time order
                )
                h = h0[layer, direction]
                carry = h if gru else (c0[layer, direction], h)
                carry, out = rnn.apply(
                    {"params": {"cell": params[layer][direction]}},
                    layer_input,
                    initial_carry=carry,
                    seq_lengths=lengths if has_lengths else None,
                )
                outs.append(out)
                final_h.append(carry if gru else carry[1])
                final_c.extend(() if gru else (carry[0],))
            layer_input = jnp.concatenate(outs, axis=-1)
        shape = (spec.layers, spec.directions, batch, units)
        c = None if gru else jnp.stack(final_c).reshape(shape)
        return layer_input, jnp.stack(final_h).reshape(shape), c

    return jax.jit(forward)


def _params_grid(spec: LSTMSpec, native: Any, dtype: np.dtype) -> list[list[dict[str, Any]]]:
    """``native`` as ``[layer][direction]`` cell param dicts of numpy arrays in ``dtype``.

    A single cell's params (L=1, D=1) is a dict; anything else is a list over
    layers of lists over directions. A ``{'params': ...}`` wrapper is accepted.
    """
    grid = layer_grid(native, "flax params", flax_format.unwrap)
    return [[_cast_tree(cell, dtype) for cell in row] for row in grid]


def _cast_tree(tree: Any, dtype: np.dtype) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _cast_tree(v, dtype) for k, v in tree.items()}
    return np.asarray(tree, dtype=dtype)
