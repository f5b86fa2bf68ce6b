"""Where a wrong result goes wrong, when only outputs exist (black-box converters).

Without the converted weights, the outputs still say a lot:

* the first time step that diverges, per direction, in the order that
  direction processes the sequence (the backward one starts at the end);
* which layer and direction is off first: the outputs show the last layer
  only, but every layer's final h and c are observable, and a layer's state
  can only be spoiled by itself or the layers below;
* h versus c: a cell state that matches under a wrong h points at the output
  gate or the projection;
* which gate's perturbation best reproduces the error: the float64 reference
  is rerun with one gate's bias shifted or one gate's input or recurrent
  weights scaled, the size fitted by least squares and checked by rerunning.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from equivalence import reference
from equivalence.canonical import GATES, CellWeights, LSTMWeights
from equivalence.case import Case
from equivalence.compare import Tolerance
from equivalence.io_types import LSTMResult

STEP = 1e-4  # finite-difference step of the gate perturbations (float64 reference)
CONVINCING = 0.5  # share of the error a perturbation must reproduce to be named


@dataclass(frozen=True)
class Perturbation:
    """One change to one cell: a gate's bias shifted, a gate's weights scaled, or one weight."""

    layer: int
    direction: int
    gate: int
    array: str  # "b_input", "w_input" or "w_recurrent"
    element: tuple[int, int] | None = None  # (unit, column) for a single weight
    size: float = 0.0

    def apply(self, weights: LSTMWeights, size: float) -> LSTMWeights:
        def nudge(layer: int, direction: int, cell: CellWeights) -> CellWeights:
            if (layer, direction) != (self.layer, self.direction):
                return cell
            array = np.array(getattr(cell, self.array), dtype=np.float64)
            units = len(array) // 4
            if self.element is not None:
                unit, column = self.element
                array[self.gate * units + unit, column] += size
            elif self.array == "b_input":
                array[self.gate * units : (self.gate + 1) * units] += size
            else:
                array[self.gate * units : (self.gate + 1) * units] *= 1 + size
            return replace(cell, **{self.array: array})

        return weights.map_cells(nudge)

    def describe(self, weights: LSTMWeights) -> str:
        gate, where = GATES[self.gate], _cell(weights, self.layer, self.direction, " in ")
        if self.element is not None:
            unit, column = self.element
            name, source = {"w_input": ("kernel", "input"),
                            "w_recurrent": ("recurrent kernel", "h")}[self.array]
            return (f"changing the single weight {name}[{gate}, unit {unit}, {source} {column}] "
                    f"by {self.size:+.3g}{where}")
        if self.array == "b_input":
            return f"shifting the {gate} gate's bias by {self.size:+.3g}{where}"
        kind = "input" if self.array == "w_input" else "recurrent"
        return f"scaling the {gate} gate's {kind} weights by {1 + self.size:.3g}{where}"


def _cell(weights: LSTMWeights, layer: int, direction: int, lead: str = "") -> str:
    spec = weights.spec
    parts = [f"layer {layer}"] if spec.layers > 1 else []
    parts += [("forward", "backward")[direction]] if spec.directions > 1 else []
    return lead + " ".join(parts) if parts else ""


def _run(weights: LSTMWeights, case: Case) -> LSTMResult:
    inputs = case.inputs
    return reference.lstm(weights, inputs.x, h0=inputs.h0, c0=inputs.c0, lengths=inputs.lengths)


def _flat(result: LSTMResult) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in result.tensors().values()])


def localize(case: Case, actual: LSTMResult, tolerance: Tolerance) -> str:
    """Where ``actual`` first departs from the reference, and which gate change mimics it."""
    expected = _run(case.weights, case)
    for name, want in expected.tensors().items():
        got = np.asarray(actual.tensors()[name])
        if got.shape != want.shape:
            return f"the target's {name} has shape {got.shape}, expected {want.shape}"
    parts = [*_first_steps(case, expected, actual, tolerance), *_states(case, expected, actual,
                                                                          tolerance)]
    parts.append(_best_gate(case, expected, actual, tolerance))
    return "; ".join(p for p in parts if p)


def _off(expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    expected = np.asarray(expected, np.float64)
    return np.abs(np.asarray(actual, np.float64) - expected) > tolerance.allowed(expected)


def _first_steps(case: Case, expected: LSTMResult, actual: LSTMResult,
                 tolerance: Tolerance) -> Iterator[str]:
    """Per direction: the first step, in processing order, whose output is off."""
    spec, inputs = case.spec, case.inputs
    width = spec.output_size
    steps = inputs.steps
    lengths = np.full(inputs.batch, steps) if inputs.lengths is None else np.asarray(inputs.lengths)
    for direction in range(spec.directions):
        columns = slice(direction * width, (direction + 1) * width)
        off = _off(expected.outputs[..., columns], actual.outputs[..., columns], tolerance).any(-1)
        if not off.any():
            continue
        batch, time = np.nonzero(off)
        processed = time if direction == 0 else lengths[batch] - 1 - time
        first = int(np.argmin(processed))
        name = ("forward", "backward")[direction] if spec.directions > 1 else "the"
        order = "" if direction == 0 else f", its step {int(processed[first]) + 1} of {steps}"
        yield (f"{name} outputs diverge first at time step {int(time[first])}"
               f" (sequence {int(batch[first])}{order})")


def _states(case: Case, expected: LSTMResult, actual: LSTMResult,
            tolerance: Tolerance) -> Iterator[str]:
    """The lowest layer whose final state is off, and whether h, c or both are."""
    spec = case.spec
    for layer in range(spec.layers):
        found = []
        for direction in range(spec.directions):
            h_off = bool(_off(expected.h[layer, direction], actual.h[layer, direction],
                              tolerance).any())
            c_off = (expected.c is not None and actual.c is not None  # a GRU has no c
                     and bool(_off(expected.c[layer, direction], actual.c[layer, direction],
                                   tolerance).any()))
            if h_off or c_off:
                found.append(_state_text(h_off, c_off) + _cell(case.weights, layer, direction,
                                                                " in "))
        if found:
            below = f" (layers below {layer} match)" if layer else ""
            yield "; ".join(found) + below
            return
    yield "final h and c match: only the output sequence is off"


def _state_text(h_off: bool, c_off: bool) -> str:
    if h_off and not c_off:
        return ("final h off while c matches (the output gate, the projection, or h read from "
                "the wrong place)")
    if c_off and not h_off:
        return "final c off while h matches (c read from the wrong place)"
    return "final h and c both off (the cell state diverges)"


def _gate_changes(case: Case) -> Iterator[Perturbation]:
    for layer, direction, _ in case.weights.iter_cells():
        for gate in range(4):
            for array in ("b_input", "w_input", "w_recurrent"):
                yield Perturbation(layer, direction, gate, array)


def _weight_changes(cells: Iterable[tuple[int, int]], case: Case) -> Iterator[Perturbation]:
    """Every single kernel weight of ``cells``."""
    for layer, direction in cells:
        cell = case.weights.cell(layer, direction)
        for array in ("w_input", "w_recurrent"):
            rows, columns = getattr(cell, array).shape
            for row, column in itertools.product(range(rows), range(columns)):
                gate, unit = divmod(row, rows // 4)
                yield Perturbation(layer, direction, gate, array, (unit, column))


def _best_gate(case: Case, expected: LSTMResult, actual: LSTMResult,
               tolerance: Tolerance) -> str:
    """The one change that reproduces most of the error: per gate, then per weight of the
    cells the best gates sit in; least squares on a finite-difference slope, then rerun."""
    error = _flat(actual) - _flat(expected)
    norm = float(np.linalg.norm(error))
    if norm == 0.0:
        return ""
    base = _flat(expected)

    def outcome(p: Perturbation, size: float) -> np.ndarray:
        return _flat(_run(p.apply(case.weights, size), case))

    def linear_fits(changes: Iterable[Perturbation]) -> list[tuple[float, Perturbation]]:
        fits = []
        for p in changes:
            slope = (outcome(p, STEP) - base) / STEP
            if (denominator := float(slope @ slope)) > 0:
                size = float(slope @ error) / denominator
                fits.append((float(np.linalg.norm(error - size * slope)), replace(p, size=size)))
        return sorted(fits, key=lambda pair: pair[0])

    gates = linear_fits(_gate_changes(case))
    cells = dict.fromkeys((p.layer, p.direction) for _, p in gates[:2])
    weights = linear_fits(_weight_changes(cells, case))
    shortlist = gates[:2] + weights[:2]
    refined = [_refine(p, functools.partial(outcome, p), base + error) for _, p in shortlist]
    if not refined:
        return ""
    left, best = min(refined, key=lambda pair: pair[0])
    share = max(0.0, 1.0 - left / norm)
    if share < CONVINCING:
        return (f"no single change reproduces the error (closest: "
                f"{best.describe(case.weights)}, {share:.0%} of it)")
    return f"best reproduced by {best.describe(case.weights)} ({share:.0%} of the error)"


def _refine(p: Perturbation, run: Callable[[float], np.ndarray],
            target: np.ndarray) -> tuple[float, Perturbation]:
    """Gauss-Newton on the size, from the linear estimate; the closest rerun wins."""
    size, seen = p.size, []
    for _ in range(4):
        here = run(size)
        seen.append((float(np.linalg.norm(here - target)), size))
        slope = (run(size + STEP) - here) / STEP
        if (denominator := float(slope @ slope)) == 0.0:
            break
        size += float(slope @ (target - here)) / denominator
    left, size = min(seen)
    return left, replace(p, size=size)
