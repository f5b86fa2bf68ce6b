"""The oracle: a float64 numpy LSTM implementing every feature of every format.

Written for clarity, not speed. One time loop (:func:`run_direction`), one
cell step (:func:`lstm_cell_step`); the stack, directions, padding and state
bookkeeping live in :func:`lstm`. Its result layout is the contract every
runtime normalizes to (see :mod:`equivalence.io_types`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.capabilities import Capabilities
from equivalence.errors import ShapeError
from equivalence.io_types import LSTMResult
from equivalence.spec import ACTIVATIONS, DTYPES, RECURRENT_ACTIVATIONS, LSTMSpec

# The reference implements every feature (strategies draw from this for reference-only tests).
CAPABILITIES = Capabilities(
    projection=True,
    projection_clip=True,
    peepholes=True,
    cell_clip=True,
    gate_clip=True,
    forget_bias=True,
    reverse=True,
    input_forget=True,
    recurrent_activations=frozenset(RECURRENT_ACTIVATIONS),
    activations=frozenset(ACTIVATIONS),
    time_major=True,
    dtypes=frozenset(DTYPES),
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def hard_sigmoid_tf_keras(x: np.ndarray) -> np.ndarray:
    """tf_keras / Keras 2: clip(0.2 x + 0.5, 0, 1)."""
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def hard_sigmoid_keras3(x: np.ndarray) -> np.ndarray:
    """Keras 3: relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)."""
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


RECURRENT_ACTIVATION: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": sigmoid,
    "hard_sigmoid_tf_keras": hard_sigmoid_tf_keras,
    "hard_sigmoid_keras3": hard_sigmoid_keras3,
}


def elu(x: np.ndarray) -> np.ndarray:
    """Keras ``elu`` and ONNX ``Elu`` at their default alpha 1: x, or exp(x) - 1 below 0."""
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)), overflow-free."""
    return np.logaddexp(0.0, x)


# The cell/output activation: applied to the candidate g and to c before the output gate.
ACTIVATION: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
    "sigmoid": sigmoid,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "softplus": softplus,
    "elu": elu,
}


def lstm_cell_step(
    cell: CellWeights, spec: LSTMSpec, x: np.ndarray, h: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One time step for a batch: returns the new (h, c)."""
    gate = RECURRENT_ACTIVATION[spec.recurrent_activation]
    act = ACTIVATION[spec.activation]
    z = x @ cell.w_input.T + cell.b_input + h @ cell.w_recurrent.T + cell.b_recurrent
    zi, zf, zg, zo = np.split(z, 4, axis=-1)
    zf = zf + spec.forget_bias  # TF1 adds forget_bias at run time
    if cell.peephole is not None:
        zi = zi + cell.peephole[0] * c
        zf = zf + cell.peephole[1] * c
    zi, zf, zg = (_gate_clip(z_, spec) for z_ in (zi, zf, zg))
    input_gate = gate(zi)
    forget_gate = 1.0 - input_gate if spec.input_forget else gate(zf)  # ONNX input_forget
    c_new = forget_gate * c + input_gate * act(zg)
    if spec.cell_clip is not None:
        c_new = np.clip(c_new, -spec.cell_clip, spec.cell_clip)
    if cell.peephole is not None:
        zo = zo + cell.peephole[2] * c_new  # the output peephole sees the new cell state
    h_new = gate(_gate_clip(zo, spec)) * act(c_new)
    if cell.projection is not None:
        h_new = h_new @ cell.projection.T
        if spec.projection_clip is not None:
            h_new = np.clip(h_new, -spec.projection_clip, spec.projection_clip)
    return h_new, c_new


def _gate_clip(z: np.ndarray, spec: LSTMSpec) -> np.ndarray:
    """ONNX ``clip``: bound a gate pre-activation before its activation."""
    if spec.gate_clip is None:
        return z
    return np.clip(z, -spec.gate_clip, spec.gate_clip)


def run_direction(
    cell: CellWeights,
    spec: LSTMSpec,
    x: np.ndarray,
    h: np.ndarray,
    c: np.ndarray,
    lengths: np.ndarray,
    reverse: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run one direction over right-padded ``x`` (B, T, in).

    Returns outputs (B, T, O) in original time order (zero past each length)
    and the final (h, c). The reverse direction walks each sequence from its
    last valid step back to step 0, so padding never enters the state.
    """
    batch, steps = x.shape[:2]
    rows = np.arange(batch)
    outputs = np.zeros((batch, steps, h.shape[-1]))
    for step in range(steps):
        active = step < lengths
        t = np.where(active, lengths - 1 - step if reverse else step, 0)
        h_new, c_new = lstm_cell_step(cell, spec, x[rows, t], h, c)
        h = np.where(active[:, None], h_new, h)
        c = np.where(active[:, None], c_new, c)
        outputs[rows[active], t[active]] = h_new[active]
    return outputs, h, c


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
    h0 = _initial("h0", h0, (spec.layers, spec.directions, batch, spec.output_size))
    c0 = _initial("c0", c0, (spec.layers, spec.directions, batch, spec.units))
    layer_input, final_h, final_c = x, [], []
    for layer, per_direction in enumerate(weights.cells):
        outs = []
        for direction, cell in enumerate(per_direction):
            out, h, c = run_direction(
                _as_float64(cell),
                spec,
                layer_input,
                h0[layer, direction],
                c0[layer, direction],
                lengths,
                # direction 1 of a pair runs backwards; so does a reverse spec's only one
                reverse=direction == 1 or spec.reverse,
            )
            outs.append(out)
            final_h.append(h)
            final_c.append(c)
        layer_input = np.concatenate(outs, axis=-1)
    outputs = layer_input.transpose(1, 0, 2) if time_major else layer_input
    shape = (spec.layers, spec.directions, batch)
    return LSTMResult(
        outputs, np.stack(final_h).reshape(*shape, -1), np.stack(final_c).reshape(*shape, -1)
    )


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
