"""Keras 2 ``CuDNNLSTM`` weights (tf_keras, legacy .h5 files).

Native form: like :mod:`.keras` (``[kernel, recurrent_kernel, bias]`` per
LSTM, Bidirectional forward then backward) with two differences that make
naive copying silently wrong:

* ``bias`` is (8H): the four input biases, then the four recurrent biases.
* each gate block of the kernels holds cuDNN's row-major (H, in) matrix
  reshaped flat into (in, H) -- a reshape, not a transpose. For the square
  recurrent blocks this is the transpose of Keras's block.

This matches tf_keras's ``_convert_rnn_weights`` (tested against it).

A ``CuDNNGRU`` (``cell="gru"``) has the same three arrays with 3H columns: kernel
(in, 3H), recurrent_kernel (H, 3H), each gate block laid out as above, in Keras's
gate order z r h (canonical r z n: z and r trade places), and bias (6H): the three
input biases, then the three recurrent ones. ``CuDNNGRU._process_batch`` hands cuDNN
the blocks in its own r z n order; cuDNN's GRU keeps the candidate's recurrent bias
inside r * (...), so a CuDNNGRU is ``GRU(reset_after=True)``, whose (2, 3H) bias is
the 6H one reshaped (tf_keras 2.21, ``cudnn_gru.py``, ``hdf5_format.py``).
``reset_after=False`` has no CuDNNGRU and is refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.errors import UnsupportedFeatureError
from equivalence.formats import _common as c
from equivalence.formats.keras import GRU_GATE_ORDER, read_groups

NAME = "cudnn"
SUPPORTED = frozenset({"stacked layers", "bidirectional", "cell=gru"})


def _blocks_to_canonical(kernel: np.ndarray, units: int) -> np.ndarray:
    """(in, gH) cuDNN kernel -> canonical (gH, in): each (in, H) block read as flat (H, in)."""
    rows, gates = kernel.shape[0], kernel.shape[1] // units
    blocks = [
        np.ascontiguousarray(block).reshape(units, rows)
        for block in np.split(kernel, gates, axis=1)
    ]
    return np.concatenate(blocks, axis=0)


def _blocks_from_canonical(matrix: np.ndarray, units: int) -> np.ndarray:
    """Canonical (gH, in) -> cuDNN (in, gH): each (H, in) block laid flat as (in, H)."""
    cols, gates = matrix.shape[1], matrix.shape[0] // units
    blocks = [
        np.ascontiguousarray(block).reshape(cols, units)
        for block in np.split(matrix, gates, axis=0)
    ]
    return np.concatenate(blocks, axis=1)


def to_canonical(native: Any, *, directions: int = 1, cell: str = "lstm",
                 reset_after: bool = True) -> LSTMWeights:
    """CuDNNLSTM weights -> canonical, the two bias halves kept apart; ``cell="gru"``
    reads CuDNNGRU weights (``reset_after=False`` refused: no CuDNNGRU computes it)."""
    cell = c.known_cell(cell, NAME, SUPPORTED)
    if cell == "gru" and not bool(reset_after):
        raise UnsupportedFeatureError(NAME, "reset_after=False",
                                      "a CuDNNGRU is GRU(reset_after=True)")
    spec, groups = read_groups(native, directions, 2, cell, bool(reset_after), NAME)
    units, gates = spec.units, spec.gate_count
    order = c.inverse_order(GRU_GATE_ORDER) if cell == "gru" else list(range(gates))
    cells = [
        CellWeights(
            w_input=c.permute_gates(_blocks_to_canonical(kernel, units), order),
            w_recurrent=c.permute_gates(_blocks_to_canonical(recurrent, units), order),
            b_input=c.permute_gates(bias[: gates * units], order).copy(),
            b_recurrent=c.permute_gates(bias[gates * units :], order).copy(),
        )
        for kernel, recurrent, bias in groups
    ]
    return c.build(spec, cells)


def from_canonical(weights: LSTMWeights) -> list[np.ndarray]:
    """Canonical -> CuDNNLSTM (CuDNNGRU) flat list (forget offset folded into the input bias)."""
    c.refuse_features(weights.spec, NAME, SUPPORTED)
    weights = weights.with_folded_forget_bias()
    units = weights.spec.units
    order = GRU_GATE_ORDER if weights.spec.cell == "gru" else range(weights.spec.gate_count)
    native: list[np.ndarray] = []
    for _layer, _direction, cell in weights.iter_cells():
        w_input, w_recurrent, b_input, b_recurrent = (
            c.permute_gates(a, order) for a in
            (cell.w_input, cell.w_recurrent, cell.b_input, cell.b_recurrent))
        native += [
            _blocks_from_canonical(w_input, units),
            _blocks_from_canonical(w_recurrent, units),
            np.concatenate([b_input, b_recurrent]),
        ]
    return native
