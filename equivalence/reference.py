"""The oracle: a float64 numpy recurrent stack implementing every feature of every format.

Written for clarity, not speed. One time loop (:func:`run_direction`) over the
cell's float64 step (:mod:`equivalence.cells`: LSTM or GRU); the stack,
directions, padding and state bookkeeping live in :func:`lstm` (also :func:`run`).
Its result layout is the contract every runtime normalizes to (see
:mod:`equivalence.io_types`).
"""

from __future__ import annotations

import numpy as np

from equivalence import cells
from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.capabilities import VOCABULARY, Capabilities
from equivalence.cells import activations
from equivalence.errors import ShapeError
from equivalence.io_types import LSTMResult
from equivalence.spec import LSTMSpec

# The reference implements every feature (strategies draw from this for reference-only tests).
CAPABILITIES = Capabilities(VOCABULARY)


# The activations live with the cells (equivalence.cells.activations); these names stay
# here because tests and findings use the reference's.
sigmoid, elu, softplus = activations.sigmoid, activations.elu, activations.softplus
hard_sigmoid_tf_keras = activations.hard_sigmoid_tf_keras
hard_sigmoid_keras3 = activations.hard_sigmoid_keras3
RECURRENT_ACTIVATION = activations.RECURRENT_ACTIVATION
ACTIVATION = activations.ACTIVATION


def lstm_cell_step(
    cell: CellWeights, spec: LSTMSpec, x: np.ndarray, h: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM time step for a batch: returns the new (h, c)."""
    _, (h_new, c_new) = cells.lstm.step(cell, spec, x, (h, c))
    return h_new, c_new


def run_direction(
    cell: CellWeights,
    spec: LSTMSpec,
    x: np.ndarray,
    states: tuple[np.ndarray, ...],
    lengths: np.ndarray,
    reverse: bool,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Run one direction over right-padded ``x`` (B, T, in).

    Returns outputs (B, T, O) in original time order (zero past each length)
    and the final states (h, c for an LSTM; h for a GRU). The reverse direction
    walks each sequence from its last valid step back to step 0, so padding
    never enters the state.
    """
    step_fn = cells.cell(spec.cell).step
    batch, steps = x.shape[:2]
    rows = np.arange(batch)
    outputs = np.zeros((batch, steps, states[0].shape[-1]))
    for step in range(steps):
        active = step < lengths
        t = np.where(active, lengths - 1 - step if reverse else step, 0)
        out, new = step_fn(cell, spec, x[rows, t], states)
        states = tuple(np.where(active[:, None], n, s) for n, s in zip(new, states, strict=True))
        outputs[rows[active], t[active]] = out[active]
    return outputs, states


def lstm(
    weights: LSTMWeights,
    x: np.ndarray,
    *,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    time_major: bool = False,
) -> LSTMResult:
    """Run the whole stack in float64.

    ``x`` is (B, T, I), or (T, B, I) with ``time_major``; ``h0`` (L, D, B, O),
    ``c0`` (L, D, B, H); ``lengths`` (B,) right-padded valid lengths. Outputs
    follow the input's major order; h and c are (L, D, B, O) and (L, D, B, H).
    """
    spec = weights.spec
    x = np.asarray(x, dtype=np.float64)
    if time_major:
        x = x.transpose(1, 0, 2)
    batch, steps = _check_input(spec, x)
    lengths = _check_lengths(lengths, batch, steps)
    initial = {"h": _initial("h0", h0, (spec.layers, spec.directions, batch, spec.output_size))}
    if "c" in spec.state_names:
        initial["c"] = _initial("c0", c0, (spec.layers, spec.directions, batch, spec.units))
    elif c0 is not None:
        raise ShapeError("c0", np.shape(c0), "None", f"a {spec.cell} cell has no c")
    layer_input = x
    final: dict[str, list[np.ndarray]] = {name: [] for name in initial}
    for layer, per_direction in enumerate(weights.cells):
        outs = []
        for direction, cell in enumerate(per_direction):
            out, states = run_direction(
                _as_float64(cell),
                spec,
                layer_input,
                tuple(initial[name][layer, direction] for name in initial),
                lengths,
                # direction 1 of a pair runs backwards; so does a reverse spec's only one
                reverse=direction == 1 or spec.reverse,
            )
            outs.append(out)
            for name, state in zip(initial, states, strict=True):
                final[name].append(state)
        layer_input = np.concatenate(outs, axis=-1)
    outputs = layer_input.transpose(1, 0, 2) if time_major else layer_input
    shape = (spec.layers, spec.directions, batch)
    stacked = {name: np.stack(values).reshape(*shape, -1) for name, values in final.items()}
    return LSTMResult(outputs, stacked["h"], stacked.get("c"))


run = lstm  # the name for any cell: ``reference.run(weights, x)`` runs a GRU too


def _as_float64(cell: CellWeights) -> CellWeights:
    return CellWeights(**{k: np.asarray(v, dtype=np.float64) for k, v in cell.arrays().items()})


def _check_input(spec: LSTMSpec, x: np.ndarray) -> tuple[int, int]:
    if x.ndim != 3 or x.shape[2] != spec.input_size:
        raise ShapeError("x", x.shape, ("B", "T", spec.input_size))
    return x.shape[0], x.shape[1]


def _check_lengths(lengths: np.ndarray | None, batch: int, steps: int) -> np.ndarray:
    if lengths is None:
        return np.full(batch, steps)
    lengths = np.asarray(lengths)
    if lengths.shape != (batch,) or lengths.min(initial=1) < 1 or lengths.max(initial=1) > steps:
        raise ShapeError("lengths", lengths.shape, (batch,), f"values must lie in [1, {steps}]")
    return lengths.astype(np.int64)


def _initial(name: str, value: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if value is None:
        return np.zeros(shape)
    value = np.asarray(value, dtype=np.float64)
    if value.shape != shape:
        raise ShapeError(name, value.shape, shape)
    return value
