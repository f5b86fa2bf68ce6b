"""Diagnosis: name what went wrong in a failed conversion, as precisely as the evidence allows.

The most precise evidence first:

1. The converted weights are at hand (``check_conversion``, every pair,
   ``convert --verify``): they are read back through the target format and
   compared with the source's in weight space
   (:func:`equivalence.diagnosis.from_weights.explain`), which names every mistake,
   compound ones included, and the residual that no mistake explains. If the
   weights also fail to account for the target's outputs, what else is wrong
   is diagnosed from the outputs too.
2. The weights are right, or only outputs exist (black-box exporters): known
   bugs are replayed through the float64 reference and the one that
   reproduces the target's numbers is named: reading bugs (h and c swapped,
   reversed outputs), another recurrent activation, and for black boxes the
   known weight bugs (gate orders, biases, layouts, float16).
3. Nothing reproduces it: :func:`equivalence.diagnosis.from_outputs.localize` says where
   it goes wrong (time step, layer and direction, h or c, which gate).
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from equivalence import cells, reference
from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.case import Case
from equivalence.compare import Tolerance, compare
from equivalence.convert import from_canonical, to_canonical
from equivalence.diagnosis.from_outputs import localize
from equivalence.diagnosis.from_weights import explain
from equivalence.errors import ConversionError
from equivalence.formats._common import permute_gates
from equivalence.formats.options import reader_options, writer_options
from equivalence.io_types import LSTMResult

# Gate orders with a name people will recognise (canonical is i f g o).
KNOWN_ORDERS = {("z", "r", "n"): "ONNX's and Keras's z, r, h order",
                ("i", "g", "f", "o"): "TF1's i, j, f, o order",
                ("i", "o", "f", "g"): "ONNX's i, o, f, c order",
                ("g", "f", "i", "o"): "NeoML's g, f, i, o order"}

Candidate = tuple[str, Callable[[Case], LSTMResult]]


@dataclass(frozen=True)
class Converted:
    """Converted native weights and how to read them back through their format."""

    native: Any
    format: str
    read_options: dict[str, Any] = field(default_factory=dict)

    def canonical(self) -> LSTMWeights:
        return to_canonical(self.native, self.format, **self.read_options)


def rerun(
    fn: Callable[[Any], Any],
    case: Case,
    *,
    source: str,
    target: str,
    source_options: dict[str, Any] | None = None,
    target_options: dict[str, Any] | None = None,
) -> Converted | None:
    """A conversion function run again on ``case``'s source-native weights (None if it raises).

    For callers that judged ``fn`` on outputs and now want its weights diagnosed.
    """
    native = from_canonical(case.weights, source, **writer_options(source, source_options or {}))
    try:
        moved = fn(copy.deepcopy(native))
    except Exception:  # its failure was reported when it was judged
        return None
    return Converted(moved, target, reader_options(target, case.spec, target_options or {}))


def diagnose(case: Case, actual: LSTMResult | None, converted: Converted | None = None,
             tolerance: Tolerance | None = None) -> str | None:
    """Name what makes ``actual`` (and ``converted``, when given) wrong for ``case``.

    None when nothing is wrong that can be seen: the converted weights agree
    with the source's and there are no outputs to judge.
    """
    tol = tolerance or Tolerance.for_case(case.spec.dtype, case.inputs.steps)
    if converted is None:
        return _from_outputs(case, actual, tol, weight_bugs=True) if actual is not None else None
    try:
        weights = converted.canonical()
    except ConversionError as exc:
        unreadable = f"the converted weights cannot be read back as {converted.format}: {exc}"
        if _kernel_values_present(case.weights, converted.native):
            return (f"{unreadable}; yet they hold every kernel value of the source: the right "
                    "numbers in arrays of the wrong shapes (split or reshaped at the wrong place)")
        return unreadable
    found = explain(case.weights, weights).message()
    if actual is None:
        return found
    rest = None if _reproduces(weights, case, actual, tol) else _from_outputs(
        replace(case, weights=weights), actual, tol, weight_bugs=False)
    if found and rest:
        return f"{found}; besides, the target's outputs differ from what these weights compute: " \
               f"{rest}"
    if found:
        return found
    return f"converted weights agree with the source's; {rest}" if rest else None


def _floats(native: Any) -> Iterator[np.ndarray]:
    """Every floating array in a nest of lists, tuples and dicts (never code, never files)."""
    if isinstance(native, dict):
        for value in native.values():
            yield from _floats(value)
    elif isinstance(native, (list, tuple)):
        for value in native:
            yield from _floats(value)
    elif hasattr(native, "__array__"):  # numpy arrays, and tensors that convert to them
        array = np.asarray(native)
        if array.dtype.kind == "f":
            yield array.ravel()


def _kernel_values_present(weights: LSTMWeights, native: Any) -> bool:
    """Whether every source kernel value appears (as a multiset) among the converted arrays."""
    arrays = [a.astype(np.float32) for a in _floats(native)]
    found: Counter[float] = Counter(np.concatenate(arrays).tolist() if arrays else [])
    kernels = [np.ravel(m).astype(np.float32) for _, _, cell in weights.iter_cells()
               for m in (cell.w_input, cell.w_recurrent)]
    wanted: Counter[float] = Counter(np.concatenate(kernels).tolist())
    return bool(wanted) and not wanted - found


def _run(weights: LSTMWeights, case: Case) -> LSTMResult:
    inputs = case.inputs
    return reference.lstm(weights, inputs.x, h0=inputs.h0, c0=inputs.c0, lengths=inputs.lengths)


def _reproduces(weights: LSTMWeights, case: Case, actual: LSTMResult, tol: Tolerance) -> bool:
    try:
        return compare(_run(weights, case), actual, tol).ok
    except ValueError:  # read-back weights of another shape: the weights explain it
        return True


def _from_outputs(case: Case, actual: LSTMResult, tol: Tolerance, *, weight_bugs: bool) -> str:
    """A known bug that reproduces ``actual``, else where it goes wrong."""
    correct = _run(case.weights, case)
    for label, transform in _reading_candidates(case):
        expected = transform(correct)
        if expected.h.shape == actual.h.shape and compare(expected, actual, tol).ok:
            return label
    candidates = [*_activation_candidates(case), *_variant_candidates(case)]
    if weight_bugs:
        candidates = [*_gate_orders(case), *_bias_candidates(case), *_layout_candidates(case),
                      *candidates]
    for label, make in candidates:
        try:
            if compare(make(case), actual, tol).ok:
                return label
        except ValueError:  # a candidate that does not fit this shape
            continue
    return localize(case, actual, tol)


def _fixed(weights: LSTMWeights) -> Callable[[Case], LSTMResult]:
    """A candidate that runs ``weights`` (already wrong) on the case's inputs."""
    return lambda case: _run(weights, case)


def _cells(fn: Callable[[CellWeights], CellWeights]) -> Callable[[Case], LSTMResult]:
    return lambda case: _run(case.weights.map_cells(lambda _l, _d, cell: fn(cell)), case)


def _gate_orders(case: Case) -> Iterator[Candidate]:
    gates = cells.cell(case.spec.cell).gates
    for order in itertools.permutations(range(len(gates))):
        if order == tuple(range(len(gates))):
            continue
        names = tuple(gates[k] for k in order)
        moved = [gates[position] for position, k in enumerate(order) if k != position]
        label = (f"gate blocks permuted to {', '.join(names)} "
                 f"({', '.join(moved[:-1])} and {moved[-1]} misplaced)")
        if len(moved) == 2:
            label = f"{moved[0]} and {moved[1]} blocks swapped"
        if names in KNOWN_ORDERS:
            label += f", as in {KNOWN_ORDERS[names]}"

        def permute(cell: CellWeights, order=order) -> CellWeights:
            fields = ("w_input", "w_recurrent", "b_input", "b_recurrent")
            return replace(cell, **{f: permute_gates(getattr(cell, f), order) for f in fields})

        yield label, _cells(permute)


def _bias_candidates(case: Case) -> Iterator[Candidate]:
    yield ("recurrent bias dropped (only the input bias kept)",
           _cells(lambda c: replace(c, b_recurrent=np.zeros_like(c.b_recurrent))))
    yield ("input bias dropped (only the recurrent bias kept)",
           _cells(lambda c: replace(c, b_input=np.zeros_like(c.b_input))))
    if case.spec.cell != "lstm":
        return  # forget_bias is the LSTM's
    for offset in (1.0, -1.0):
        def shift(cell: CellWeights, offset=offset) -> CellWeights:
            bias = cell.b_input.astype(np.float64).copy()
            units = bias.shape[0] // 4
            bias[units:2 * units] += offset
            return replace(cell, b_input=bias)

        why = "folded twice, or not subtracted when written" if offset > 0 else "not folded in"
        yield f"{offset:+.1f} added to the f block of the bias (forget_bias {why})", _cells(shift)


def _reshaped_not_transposed(matrix: np.ndarray, per_gate: bool, gates: int) -> np.ndarray:
    """What a right-multiplying format holds when someone reshaped where a transpose was due."""
    if not per_gate:
        return np.ascontiguousarray(matrix).reshape(matrix.shape[::-1]).T
    blocks = [np.ascontiguousarray(b.T).reshape(b.shape) for b in np.split(matrix, gates)]
    return np.concatenate(blocks)


def _layout_candidates(case: Case) -> Iterator[Candidate]:
    for per_gate, label in ((True, "gate blocks reshaped instead of transposed "
                                   "(CuDNNLSTM's flat layout read as Keras's, or back)"),
                            (False, "kernels reshaped instead of transposed")):
        def reshaped(cell: CellWeights, per_gate=per_gate) -> CellWeights:
            gates = case.spec.gate_count
            return replace(cell, w_input=_reshaped_not_transposed(cell.w_input, per_gate, gates),
                           w_recurrent=_reshaped_not_transposed(cell.w_recurrent, per_gate,
                                                                gates))

        yield label, _cells(reshaped)
    if case.spec.input_size == case.spec.output_size:
        yield ("input and recurrent kernels swapped",
               _cells(lambda c: replace(c, w_input=c.w_recurrent, w_recurrent=c.w_input)))
    # Rounded as two biases or as their sum (one-bias formats round the sum).
    for weights in (case.weights, case.weights.with_merged_biases()):
        rounded = weights.astype("float16").astype("float64")
        yield "all weights rounded through float16", _fixed(rounded)


def _activation_candidates(case: Case) -> Iterator[Candidate]:
    spec = case.spec
    for activation in ("sigmoid", "hard_sigmoid_tf_keras", "hard_sigmoid_keras3"):
        if activation != spec.recurrent_activation:
            weights = LSTMWeights(spec.replace(recurrent_activation=activation),
                                  case.weights.cells)
            yield (f"recurrent activation {activation} where {spec.recurrent_activation} "
                   "was meant", _fixed(weights))


def _variant_candidates(case: Case) -> Iterator[Candidate]:
    """The same weights in the other GRU variant (where the reset gate meets h)."""
    spec = case.spec
    if spec.cell == "gru":
        other = not spec.reset_after
        words = {False: "reset_after=False (the reset gate before the recurrent matmul: ONNX "
                        "linear_before_reset=0, Keras reset_after=False)",
                 True: "reset_after=True (the reset gate after the recurrent matmul: ONNX "
                       "linear_before_reset=1, PyTorch, Keras's default)"}
        weights = LSTMWeights(spec.replace(reset_after=other), case.weights.cells)
        yield (f"{words[other]} where reset_after={spec.reset_after} was meant",
               _fixed(weights))


def _reading_candidates(case: Case) -> Iterator[tuple[str, Callable[[LSTMResult], LSTMResult]]]:
    if case.spec.cell == "lstm":  # a GRU has no c to swap with
        yield "h and c swapped", lambda r: LSTMResult(r.outputs, r.c if r.c is not None
                                                      else r.h, r.h)
    yield "output sequence reversed in time", lambda r: LSTMResult(r.outputs[:, ::-1], r.h, r.c)
