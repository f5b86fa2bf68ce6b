"""Flat parameter vectors: the cuDNN buffer and ``jax.experimental.rnn`` weights.

A flat vector carries no shapes, so reading one needs ``input_size``,
``units``, ``layers`` and ``directions``; its length is checked against them.
Both use canonical orientation and gate order (i f g o, (4H, in) row-major).

* ``cudnn_params`` (TF ``CudnnRNNCanonicalToParams``, PyTorch's flat cuDNN
  weights): per layer and direction, W_i..W_o (H, in), R_i..R_o (H, H), then
  the four input biases and the four recurrent biases. A GRU (``cell="gru"``)
  is the same with cuDNN's three gates, reset, update, new (linear layers 0-2
  on the input, 3-5 on h): the canonical r z n. cuDNN's GRU applies the reset
  gate to ``R_n h + b_Rn`` (reset_after=True, ONNX ``linear_before_reset=1``),
  so a reset-before GRU is refused by name.
* ``jax_rnn``: every pseudo-layer's W_ih (4H, in) and W_hh (4H, H) first, then
  every pseudo-layer's b_ih and b_hh.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.formats import _common as c
from equivalence.spec import LSTMSpec

SUPPORTED = frozenset({"stacked layers", "bidirectional"})
CUDNN_PARAMS_SUPPORTED = SUPPORTED | {"cell=gru"}  # jax.experimental.rnn is LSTM only


def _spec(input_size: Any, units: Any, layers: Any, directions: Any,
          cell: str = "lstm") -> LSTMSpec:
    for name, value in (("input_size", input_size), ("units", units)):
        if value is None:
            raise c.ConversionError(f"{name}: required to read a flat parameter vector")
    return LSTMSpec(input_size, units, layers, c.check_directions(directions), cell=cell)


def _sizes(spec: LSTMSpec) -> list[tuple[int, int]]:
    """(matrix elements, bias elements) per pseudo-layer, layer-major."""
    rows = spec.gate_count * spec.units
    return [
        (rows * (spec.layer_input_size(k) + spec.units), 2 * rows)
        for k in range(spec.layers)
        for _ in range(spec.directions)
    ]


def _vector(native: Any, name: str, spec: LSTMSpec) -> np.ndarray:
    vector = c.as_weight(native, f"{name} vector")
    expected = sum(m + b for m, b in _sizes(spec))
    c.expect_shape(
        vector,
        f"{name} vector",
        (expected,),
        f"I={spec.input_size}, H={spec.units}, layers={spec.layers}, directions={spec.directions}",
    )
    return vector


def _cell(matrices: np.ndarray, biases: np.ndarray, spec: LSTMSpec, layer: int) -> CellWeights:
    rows, width = spec.gate_count * spec.units, spec.layer_input_size(layer)
    split = rows * width
    return CellWeights(
        w_input=matrices[:split].reshape(rows, width).copy(),
        w_recurrent=matrices[split:].reshape(rows, spec.units).copy(),
        b_input=biases[:rows].copy(),
        b_recurrent=biases[rows:].copy(),
    )


def _read(vector: np.ndarray, spec: LSTMSpec, *, matrices_first: bool) -> LSTMWeights:
    """Cut the vector into cells: per pseudo-layer [matrices, biases], or all matrices first."""
    sizes = _sizes(spec)
    matrix_offset = 0
    bias_offset = sum(m for m, _ in sizes) if matrices_first else 0
    cells = []
    for n, (m, b) in enumerate(sizes):
        if not matrices_first:
            bias_offset = matrix_offset + m
        cells.append(
            _cell(
                vector[matrix_offset : matrix_offset + m],
                vector[bias_offset : bias_offset + b],
                spec,
                n // spec.directions,
            )
        )
        matrix_offset += m if matrices_first else m + b
        bias_offset += b
    return c.build(spec.replace(dtype=vector.dtype.name), cells)


def _pieces(weights: LSTMWeights) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (
            np.concatenate([cell.w_input.ravel(), cell.w_recurrent.ravel()]),
            np.concatenate([cell.b_input, cell.b_recurrent]),
        )
        for _layer, _direction, cell in weights.iter_cells()
    ]


def _checked(weights: LSTMWeights, name: str, supported: frozenset[str]) -> LSTMWeights:
    c.refuse_features(weights.spec, name, supported)
    return weights.with_folded_forget_bias()


def cudnn_params_to_canonical(
    native: Any,
    *,
    input_size: int | None = None,
    units: int | None = None,
    layers: int = 1,
    directions: int = 1,
    cell: str = "lstm",
) -> LSTMWeights:
    """cuDNN buffer -> canonical (matrices and biases interleaved per pseudo-layer);
    ``cell="gru"`` reads a cuDNN GRU's (three gates, reset_after=True)."""
    cell = c.known_cell(cell, "cudnn_params", CUDNN_PARAMS_SUPPORTED)
    spec = _spec(input_size, units, layers, directions, cell)
    return _read(_vector(native, "cudnn_params", spec), spec, matrices_first=False)


def cudnn_params_from_canonical(weights: LSTMWeights) -> np.ndarray:
    """Canonical -> cuDNN buffer."""
    weights = _checked(weights, "cudnn_params", CUDNN_PARAMS_SUPPORTED)
    return np.concatenate([np.concatenate(pair) for pair in _pieces(weights)])


def jax_rnn_to_canonical(
    native: Any,
    *,
    input_size: int | None = None,
    units: int | None = None,
    layers: int = 1,
    directions: int = 1,
) -> LSTMWeights:
    """jax.experimental.rnn vector -> canonical (all matrices, then all biases)."""
    spec = _spec(input_size, units, layers, directions)
    return _read(_vector(native, "jax_rnn", spec), spec, matrices_first=True)


def jax_rnn_from_canonical(weights: LSTMWeights) -> np.ndarray:
    """Canonical -> jax.experimental.rnn vector."""
    pieces = _pieces(_checked(weights, "jax_rnn", SUPPORTED))
    return np.concatenate([m for m, _ in pieces] + [b for _, b in pieces])
