"""What ``equivalence compare`` says is wrong, from weights where both are read, else outputs.

* Both sides' weights read: the weight-space diagnosis every check uses
  (:func:`equivalence.diagnosis.from_weights.explain`) names the mistakes.
* From the probes' pattern: right at the exported shape but wrong at other
  time lengths (the length fixed at export), wrong only when streaming (the
  states handed back are not the states taken), wrong only with initial
  states or lengths (the input is ignored).
* From the failing example's outputs: B's h and c swapped; B run as if fed
  no initial state; and, where A's weights are known, where B first departs
  from the float64 reference and which gate change mimics it
  (:func:`equivalence.diagnosis.from_outputs.localize`).
"""

from __future__ import annotations

import numpy as np

from equivalence.artefacts.probes import WRONG, Example, ProbeResult, contract_inputs
from equivalence.artefacts.side import Feed, Refused, Returned, Side
from equivalence.case import Case
from equivalence.io_types import LSTMResult

TIME_PROBES = ("time 1", "shorter time", "longer time")


def diagnose(a: Side, b: Side, results: list[ProbeResult]) -> str:
    """One paragraph naming what is wrong; empty when every probe matched or refused."""
    wrong = [r for r in results if r.verdict == WRONG]
    if not wrong:
        return ""
    notes = _pattern(results)
    example = wrong[0].failure
    if example is not None:
        notes += _outputs(a, b, example)
    if a.weights is not None and b.weights is not None:
        from equivalence.diagnosis.from_weights import explain

        named = explain(a.weights, b.weights).message()
        notes.append(f"weights: {named}" if named else
                     "weights: both files hold the same weights (within rounding), so the "
                     "difference is in how B computes with them")
    elif a.weights is not None and example is not None:
        located = _localized(a, example)
        if located:
            notes.append(f"outputs: {located}")
    return "; ".join(notes)


def _pattern(results: list[ProbeResult]) -> list[str]:
    verdicts = {r.probe.name: r.verdict for r in results}
    exported_ok = verdicts.get("exported shape") != WRONG
    notes = []
    if exported_ok and any(verdicts.get(p) == WRONG for p in TIME_PROBES):
        notes.append("B is right at the exported time length and wrong at others: the time "
                     "length was fixed at export (the graph computes its own number of steps)")
    if exported_ok and verdicts.get("streaming") == WRONG and \
            verdicts.get("initial states") != WRONG:
        notes.append("B is right on whole sequences and wrong when streaming: the states it "
                     "returns are not the states it takes (order or layout)")
    if exported_ok and verdicts.get("initial states") == WRONG:
        notes.append("B is wrong only when fed initial states: it drops or misroutes them")
    if exported_ok and verdicts.get("lengths") == WRONG:
        notes.append("B is wrong only with sequence lengths: it ignores them or pads wrongly")
    return notes


def _outputs(a: Side, b: Side, example: Example) -> list[str]:
    notes = []
    if _swapped(example.a, example.b):
        notes.append(f"B's h ({b.names.get('h', 'h')}) holds A's c and its c "
                     f"({b.names.get('c', 'c')}) holds A's h: h and c are swapped")
    if example.feed.h0 is not None and _ignores_states(a, example):
        notes.append("B's results equal A's run from zero initial states: B ignores the "
                     "initial states it is fed")
    return notes


def _swapped(a: Returned, b: Returned) -> bool:
    """B's h is A's c and B's c is A's h (and the two differ at all)."""
    if a.h is None or a.c is None or b.h is None or b.c is None:
        return False
    if not a.h.shape == a.c.shape == b.h.shape == b.c.shape:
        return False
    return bool(not np.allclose(a.h, a.c, atol=1e-6) and np.allclose(b.h, a.c, atol=1e-4)
                and np.allclose(b.c, a.h, atol=1e-4))


def _ignores_states(a: Side, example: Example) -> bool:
    try:
        zero = a.run(Feed(example.feed.x, np.zeros_like(example.feed.h0),
                          np.zeros_like(example.feed.c0), example.feed.lengths))
    except Refused:
        return False
    return bool(np.allclose(zero.y, example.b.y, atol=1e-4))


def _localized(a: Side, example: Example) -> str:
    """``localize`` on A's weights with B's results (roles B lacks filled from A's)."""
    from equivalence.compare import Tolerance
    from equivalence.diagnosis.from_outputs import localize

    weights = a.weights
    assert weights is not None
    spec = weights.spec
    shape = (spec.layers, spec.directions)
    inputs = contract_inputs(example.feed, spec)

    def states(value: np.ndarray | None, fallback: np.ndarray | None) -> np.ndarray:
        chosen = value if value is not None else fallback
        return np.asarray(chosen).reshape(*shape, *np.asarray(chosen).shape[1:])

    actual = LSTMResult(example.b.y, states(example.b.h, example.a.h),
                        states(example.b.c, example.a.c))
    tolerance = Tolerance.for_case(spec.dtype, example.feed.steps)
    try:
        return localize(Case(spec, weights, inputs), actual, tolerance)
    except Exception:  # the localization is a hint; the verdict stands without it
        return ""
