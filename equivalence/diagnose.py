"""Diagnosis: which known conversion bug explains a wrong result.

Each candidate rebuilds the wrong network a known bug would produce (from the
correct canonical weights) or the wrong reading of its results, runs it in the
float64 reference, and compares with what the target really produced. The
first candidate that reproduces the target's numbers within tolerance is the
diagnosis. Cheap (reference only), and it names the bug in the user's terms.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from . import reference
from .canonical import GATES, CellWeights, LSTMWeights
from .compare import Tolerance, compare
from .formats._common import permute_gates
from .io_types import LSTMResult
from .strategies import Case

# Gate orders with a name people will recognise (canonical is i f g o).
KNOWN_ORDERS = {("i", "g", "f", "o"): "TF1's i, j, f, o order",
                ("i", "o", "f", "g"): "ONNX's i, o, f, c order",
                ("g", "f", "i", "o"): "NeoML's g, f, i, o order"}

Candidate = tuple[str, Callable[[Case], LSTMResult]]


def _run(weights: LSTMWeights, case: Case) -> LSTMResult:
    inputs = case.inputs
    return reference.lstm(weights, inputs.x, h0=inputs.h0, c0=inputs.c0, lengths=inputs.lengths)


def _fixed(weights: LSTMWeights) -> Callable[[Case], LSTMResult]:
    """A candidate that runs ``weights`` (already wrong) on the case's inputs."""
    return lambda case: _run(weights, case)


def _cells(fn: Callable[[CellWeights], CellWeights]) -> Callable[[Case], LSTMResult]:
    return lambda case: _run(case.weights.map_cells(lambda _l, _d, cell: fn(cell)), case)


def _gate_orders() -> Iterator[Candidate]:
    for order in itertools.permutations(range(4)):
        if order == (0, 1, 2, 3):
            continue
        names = tuple(GATES[k] for k in order)
        moved = [GATES[position] for position, k in enumerate(order) if k != position]
        label = (f"gate blocks permuted to {', '.join(names)} "
                 f"({', '.join(moved[:-1])} and {moved[-1]} misplaced)")
        if len(moved) == 2:
            label = f"{moved[0]} and {moved[1]} swapped"
        if names in KNOWN_ORDERS:
            label += f", as in {KNOWN_ORDERS[names]}"

        def permute(cell: CellWeights, order=order) -> CellWeights:
            fields = ("w_input", "w_recurrent", "b_input", "b_recurrent")
            return replace(cell, **{f: permute_gates(getattr(cell, f), order) for f in fields})

        yield label, _cells(permute)


def _bias_candidates() -> Iterator[Candidate]:
    yield ("only the input bias kept (the recurrent bias dropped, not summed)",
           _cells(lambda c: replace(c, b_recurrent=np.zeros_like(c.b_recurrent))))
    yield ("only the recurrent bias kept (the input bias dropped, not summed)",
           _cells(lambda c: replace(c, b_input=np.zeros_like(c.b_input))))
    for offset in (1.0, -1.0):
        def shift(cell: CellWeights, offset=offset) -> CellWeights:
            bias = cell.b_input.astype(np.float64).copy()
            units = bias.shape[0] // 4
            bias[units:2 * units] += offset
            return replace(cell, b_input=bias)

        sign = "+" if offset > 0 else "-"
        yield (f"forget-gate bias off by {sign}1 (TF1's forget_bias not folded or folded twice)",
               _cells(shift))


def _reshaped_not_transposed(matrix: np.ndarray, per_gate: bool) -> np.ndarray:
    """What a right-multiplying format holds when someone reshaped where a transpose was due."""
    if not per_gate:
        return np.ascontiguousarray(matrix).reshape(matrix.shape[::-1]).T
    blocks = [np.ascontiguousarray(b.T).reshape(b.shape) for b in np.split(matrix, 4)]
    return np.concatenate(blocks)


def _layout_candidates(case: Case) -> Iterator[Candidate]:
    for per_gate, label in ((True, "kernel gate blocks reshaped instead of transposed "
                                   "(CuDNNLSTM's flat layout read as Keras's, or back)"),
                            (False, "kernels reshaped instead of transposed")):
        def reshaped(cell: CellWeights, per_gate=per_gate) -> CellWeights:
            return replace(cell, w_input=_reshaped_not_transposed(cell.w_input, per_gate),
                           w_recurrent=_reshaped_not_transposed(cell.w_recurrent, per_gate))

        yield label, _cells(reshaped)
    if case.spec.input_size == case.spec.output_size:
        yield ("input and recurrent kernels swapped (TF1 kernel split at the wrong row)",
               _cells(lambda c: replace(c, w_input=c.w_recurrent, w_recurrent=c.w_input)))
    spec = case.spec
    for activation in ("sigmoid", "hard_sigmoid_tf_keras", "hard_sigmoid_keras3"):
        if activation != spec.recurrent_activation:
            weights = LSTMWeights(spec.replace(recurrent_activation=activation),
                                  case.weights.cells)
            yield (f"recurrent activation {activation} where {spec.recurrent_activation} "
                   "was meant", _fixed(weights))
    # Rounded as two biases or as their sum (one-bias formats round the sum).
    for weights in (case.weights, case.weights.with_merged_biases()):
        rounded = weights.astype("float16").astype("float64")
        yield "weights rounded through float16", _fixed(rounded)


def _reading_candidates() -> Iterator[tuple[str, Callable[[LSTMResult], LSTMResult]]]:
    yield "h and c swapped", lambda r: LSTMResult(r.outputs, r.c, r.h)
    yield "output sequence reversed in time", lambda r: LSTMResult(r.outputs[:, ::-1], r.h, r.c)


def diagnose(case: Case, actual: LSTMResult) -> str | None:
    """Name the known bug that reproduces ``actual`` for ``case``; None when none does."""
    tol = Tolerance.for_case(case.spec.dtype, case.inputs.steps)
    correct = _run(case.weights, case)
    for label, transform in _reading_candidates():
        expected = transform(correct)
        if expected.h.shape == actual.h.shape and compare(expected, actual, tol).ok:
            return label
    for label, make in [*_gate_orders(), *_bias_candidates(), *_layout_candidates(case)]:
        try:
            if compare(make(case), actual, tol).ok:
                return label
        except ValueError:  # a candidate that does not fit this shape
            continue
    return None
