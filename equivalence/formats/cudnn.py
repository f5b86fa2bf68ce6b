"""Keras 2 ``CuDNNLSTM`` weights (tf_keras, legacy .h5 files).

Native form: like :mod:`.keras` (``[kernel, recurrent_kernel, bias]`` per
LSTM, Bidirectional forward then backward) with two differences that make
naive copying silently wrong:

* ``bias`` is (8H): the four input biases, then the four recurrent biases.
* each gate block of the kernels holds cuDNN's row-major (H, in) matrix
  reshaped flat into (in, H) -- a reshape, not a transpose. For the square
  recurrent blocks this is the transpose of Keras's block.

This matches tf_keras's ``_convert_rnn_weights`` (tested against it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.formats import _common as c
from equivalence.formats.keras import read_groups

NAME = "cudnn"
SUPPORTED = frozenset({"stacked layers", "bidirectional"})


def _blocks_to_canonical(kernel: np.ndarray, units: int) -> np.ndarray:
    """(in, 4H) cuDNN kernel -> canonical (4H, in): each (in, H) block read as flat (H, in)."""
    rows = kernel.shape[0]
    blocks = [
        np.ascontiguousarray(block).reshape(units, rows) for block in np.split(kernel, 4, axis=1)
    ]
    return np.concatenate(blocks, axis=0)


def _blocks_from_canonical(matrix: np.ndarray, units: int) -> np.ndarray:
    """Canonical (4H, in) -> cuDNN (in, 4H): each (H, in) block laid flat as (in, H)."""
    cols = matrix.shape[1]
    blocks = [
        np.ascontiguousarray(block).reshape(cols, units) for block in np.split(matrix, 4, axis=0)
    ]
    return np.concatenate(blocks, axis=1)


def to_canonical(native: Any, *, directions: int = 1) -> LSTMWeights:
    """CuDNNLSTM weights -> canonical; the two bias halves stay apart."""
    spec, groups = read_groups(native, directions, bias_factor=2)
    units = spec.units
    cells = [
        CellWeights(
            w_input=_blocks_to_canonical(kernel, units),
            w_recurrent=_blocks_to_canonical(recurrent, units),
            b_input=bias[: 4 * units].copy(),
            b_recurrent=bias[4 * units :].copy(),
        )
        for kernel, recurrent, bias in groups
    ]
    return c.build(spec, cells)


def from_canonical(weights: LSTMWeights) -> list[np.ndarray]:
    """Canonical -> CuDNNLSTM flat list (forget offset folded into the input bias)."""
    c.refuse_features(weights.spec, NAME, SUPPORTED)
    weights = weights.with_folded_forget_bias()
    units = weights.spec.units
    native: list[np.ndarray] = []
    for _layer, _direction, cell in weights.iter_cells():
        native += [
            _blocks_from_canonical(cell.w_input, units),
            _blocks_from_canonical(cell.w_recurrent, units),
            np.concatenate([cell.b_input, cell.b_recurrent]),
        ]
    return native
