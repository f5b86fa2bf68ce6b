"""The probes of ``equivalence compare``: the ways deployment breaks, each with its verdict.

An artefact that matches at the one shape it was exported at can still be
wrong at every other: exporters fix the time length (pytorch#191855,
litert-torch#1062), bake in the batch size, ignore sequence lengths
(Paddle2ONNX#1373, tf2onnx#2221), and hand states back in another order
than they take them, which only shows when a stream is cut into chunks.
So both sides run on the same Hypothesis-drawn inputs under each probe:

* ``exported shape``: the batch and time length the artefact fixes (or 2 x 6);
* ``time 1``, ``shorter time``, ``longer time``; ``batch 1``, ``larger batch``;
* ``initial states`` fed, where both sides take them;
* ``streaming``: the sequence cut into chunks of the exported length, each
  chunk fed the states the previous one returned, against side A on the
  whole sequence;
* ``lengths``: right-padded sequences, where both sides take lengths.

Each probe's verdict: ``match``; ``refused`` (a side's runtime rejected the
shape: reported, not counted against the verdict at the exported shape); or
``silently wrong`` (it ran and gave other numbers), with the minimal case
Hypothesis shrank to. Values are drawn from a seed, as the suite's
strategies draw them; the shapes are the probe's, so shrinking moves to the
smallest shape that still fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from equivalence.artefacts.side import Feed, Refused, Returned, Side
from equivalence.compare import Comparison, Tolerance, judge, rounding_sensitivity
from equivalence.io_types import LSTMInputs, LSTMResult

MATCH, REFUSED, WRONG = "match", "refused", "silently wrong"
DEFAULT_BATCH, DEFAULT_STEPS, CHUNKS = 2, 6, 3


@dataclass(frozen=True)
class Probe:
    """One way of feeding both sides: the shapes drawn from, and what is fed."""

    name: str
    batches: tuple[int, ...]
    steps: tuple[int, ...]
    states: bool = False
    lengths: bool = False
    chunks: int = 1  # > 1: streaming, side B fed chunk by chunk


@dataclass
class Example:
    """One drawn input, both sides' results and their comparison."""

    feed: Feed
    a: Returned
    b: Returned
    comparison: Comparison
    seed: int

    def minimal_case(self, probe: Probe) -> dict[str, Any]:
        case: dict[str, Any] = {"batch": self.feed.batch, "steps": self.feed.steps,
                                "seed": self.seed}
        if probe.chunks > 1:
            case["chunks"] = probe.chunks
        if self.feed.h0 is not None:
            case["initial_states"] = True
        if self.feed.lengths is not None:
            case["lengths"] = [int(v) for v in self.feed.lengths]
        worst = max(self.comparison.diffs, key=lambda d: d.max_abs_diff)
        case["worst"] = {"tensor": _role(worst.name), "at": list(worst.where),
                         "max_abs_diff": worst.max_abs_diff}
        return case


@dataclass
class ProbeResult:
    """How one probe went over its examples."""

    probe: Probe
    verdict: str = MATCH
    examples: int = 0
    max_abs_diff: float = 0.0
    tolerance: str = ""
    reason: str = ""  # a refusal's reason, which side refused
    failure: Example | None = None
    worst: Example | None = None
    reference: dict[str, float] | None = None  # A's and B's distance from float64, failing


    def to_dict(self) -> dict[str, Any]:
        return {"name": self.probe.name, "verdict": self.verdict, "examples": self.examples,
                "max_abs_diff": _finite(self.max_abs_diff), "tolerance": self.tolerance,
                "minimal_case": self.failure.minimal_case(self.probe) if self.failure else None,
                "reason": self.reason or None, "vs_float64_reference": self.reference}


@dataclass
class Plan:
    """The probes that apply to a pair of sides, and those that do not, with why."""

    probes: list[Probe]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def plan(a: Side, b: Side) -> Plan:
    """The probes for ``a`` and ``b``: shapes from what they fix, features both take."""
    batch = b.fixed_batch or a.fixed_batch or DEFAULT_BATCH
    steps = b.fixed_steps or a.fixed_steps or DEFAULT_STEPS
    probes = [Probe("exported shape", (batch,), (steps,))]
    skipped: list[tuple[str, str]] = []
    if steps > 1:
        probes.append(Probe("time 1", (batch,), (1,)))
    if steps > 2:
        probes.append(Probe("shorter time", (batch,), tuple(range(2, steps))))
    # up to 40 steps: trained networks amplify rounding over long sequences (the
    # tolerance policy's sensitivity must see that, or a faithful copy fails)
    probes.append(Probe("longer time", (batch,), (max(3 * steps, 40), steps + 1, 2 * steps)))
    if batch > 1:
        probes.append(Probe("batch 1", (1,), (steps,)))
    probes.append(Probe("larger batch", (batch + 1, batch + 3), (steps,)))
    both_take = a.takes & b.takes
    state_in, state_out = state_roles(a, b)
    if state_in <= both_take:
        probes.append(Probe("initial states", (batch,), (steps,), states=True))
    else:
        skipped.append(("initial states", _lacking(state_in, a, b, "takes")))
    if directions(a, b) == 2:  # the reverse direction reads the future: no stream to cut
        skipped.append(("streaming", "bidirectional: the reverse direction starts from the "
                                     "sequence's end, so a stream cannot be cut into chunks"))
    elif any(s.weights is not None and s.weights.spec.reverse for s in (a, b)):
        skipped.append(("streaming", "a reverse LSTM starts from the sequence's end, so a "
                                     "stream cannot be cut into chunks"))
    elif state_in <= b.takes and state_out <= b.returns & a.returns:
        # the first chunk gets drawn states where A takes them too, else both start at zero
        probes.append(Probe("streaming", (batch,), (steps,), states=state_in <= both_take,
                            chunks=CHUNKS))
    else:
        skipped.append(("streaming", f"needs B to take {', '.join(sorted(state_in))} and both "
                                     f"to return {', '.join(sorted(state_out))}"))
    if "lengths" in both_take:
        probes.append(Probe("lengths", (batch,), (max(steps, 2),), lengths=True))
    else:
        skipped.append(("lengths", _lacking({"lengths"}, a, b, "takes")))
    return Plan(probes, skipped)


def is_gru(a: Side, b: Side) -> bool:
    """Either side's weights are a GRU's (one state, h)."""
    return any(s.weights is not None and s.weights.spec.cell == "gru" for s in (a, b))


def state_roles(a: Side, b: Side) -> tuple[set[str], set[str]]:
    """The state inputs and outputs of the network: h0, c0 and h, c; a GRU's h0 and h."""
    return ({"h0"}, {"h"}) if is_gru(a, b) else ({"h0", "c0"}, {"h", "c"})


def directions(a: Side, b: Side) -> int | None:
    """1 or 2 where either side's weights or shapes say it, else None."""
    for side in (a, b):
        if side.weights is not None:
            return side.weights.spec.directions
        shape = side.shape
        if shape.output_width and shape.state_width:
            return shape.output_width // shape.state_width
    return None


def _lacking(roles: set[str], a: Side, b: Side, what: str) -> str:
    sides = [name for name, side in (("A", a), ("B", b)) if not roles <= getattr(side, what)]
    return f"{' and '.join(sides)} {'take' if len(sides) > 1 else 'takes'} no " \
           f"{', '.join(sorted(roles))}"


class _Mismatch(Exception):
    pass


class _Refusal(Exception):
    pass


def run_probe(probe: Probe, a: Side, b: Side, *, examples: int, seed: int,
              on_example: Callable[[], None] | None = None) -> ProbeResult:
    """Draw ``examples`` inputs for ``probe``, run both sides, judge; shrink a failure."""
    result = ProbeResult(probe)
    failures: list[Example] = []
    draws = st.tuples(st.sampled_from(probe.batches), st.sampled_from(probe.steps),
                      st.integers(0, 2**32 - 1))

    @settings(max_examples=examples, database=None, deadline=None, print_blob=False,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))
    @given(draw=draws)
    def check(draw: tuple[int, int, int]) -> None:
        feed = make_feed(a, b, probe, *draw)
        try:
            example = run_example(probe, a, b, feed, draw[2])
        except Refused as exc:
            if not failures:  # a refusal while shrinking a failure is not the finding
                result.reason = str(exc)
                raise _Refusal from exc
            raise _Mismatch from exc
        if not failures:
            _count(result, example)
            if on_example:
                on_example()
        if not example.comparison.ok:
            failures.append(example)
            raise _Mismatch

    try:
        hypothesis_seed(seed)(check)()
    except _Mismatch:
        result.verdict, result.failure = WRONG, failures[-1]
        result.max_abs_diff = max(result.max_abs_diff, failures[0].comparison.max_abs_diff)
        result.reference = reference_distances(a, failures[-1])
    except _Refusal:
        result.verdict = REFUSED
    return result


def reference_distances(a: Side, example: Example) -> dict[str, float] | None:
    """How far each side is from the float64 reference of A's weights on the example (which
    side is off); None where A's weights are not read or the example streamed."""
    if a.weights is None:
        return None
    from equivalence.reference import lstm

    weights = a.weights
    inputs = contract_inputs(a.as_run(example.feed), weights.spec)
    exact = lstm(weights, inputs.x, h0=inputs.h0, c0=inputs.c0, lengths=inputs.lengths)
    y = np.asarray(exact.outputs, np.float64)
    if y.shape != example.a.y.shape or y.shape != example.b.y.shape:
        return None
    return {"A": float(np.abs(example.a.y - y).max()), "B": float(np.abs(example.b.y - y).max())}


def _count(result: ProbeResult, example: Example) -> None:
    result.examples += 1
    diff = example.comparison.max_abs_diff
    if result.worst is None or diff > result.worst.comparison.max_abs_diff:
        result.worst = example
        result.tolerance = str(example.comparison.tolerance)
    result.max_abs_diff = max(result.max_abs_diff, diff)


def make_feed(a: Side, b: Side, probe: Probe, batch: int, steps: int, seed: int) -> Feed:
    """The inputs of one example, drawn from ``seed`` (what Hypothesis shrinks is the shape)."""
    rng = np.random.default_rng(seed)
    shape = a.shape if a.shape.input_size is not None else b.shape
    total = steps * probe.chunks
    assert shape.input_size is not None  # check_shapes refused a pair that does not say it
    dtype = np.float64 if a.dtype == b.dtype == "float64" else np.float32
    x = rng.normal(size=(batch, total, shape.input_size)).astype(dtype)
    h0 = c0 = lengths = None
    if probe.states:
        rows, units = shape.state_rows or 1, shape.units or 1
        width = shape.state_width or units
        h0 = rng.uniform(-1, 1, (rows, batch, width)).astype(dtype)
        c0 = None if is_gru(a, b) else rng.uniform(-1, 1, (rows, batch, units)).astype(dtype)
    if probe.lengths and total > 1:
        lengths = rng.integers(1, total + 1, size=batch)
        lengths[0] = total  # one full-length sequence keeps the output length at T
    return Feed(x, h0, c0, lengths)


def run_example(probe: Probe, a: Side, b: Side, feed: Feed, seed: int) -> Example:
    """Both sides on ``feed`` (B chunk by chunk when streaming), judged by the one policy."""
    got_a = _guarded(a, "A", feed)
    got_b = stream(b, feed, probe.chunks) if probe.chunks > 1 else _guarded(b, "B", feed)
    expected, actual = as_results(got_a, got_b)
    tolerance = Tolerance.for_case(_dtype(a, b), feed.steps,
                                   max(a.tolerance_scale, b.tolerance_scale))
    sensitivity = None
    if a.weights is not None:  # measured on the source's weights, never on B's
        weights = a.weights

        def sensitivity() -> Any:
            return rounding_sensitivity(weights, contract_inputs(a.as_run(feed), weights.spec),
                                        weights.spec.dtype)

    return Example(feed, got_a, got_b, judge(expected, actual, tolerance, sensitivity), seed)


def stream(side: Side, feed: Feed, chunks: int) -> Returned:
    """``side`` fed ``chunks`` consecutive pieces of ``feed``, each with the states the
    previous piece returned: what a streaming deployment does."""
    pieces = np.array_split(np.arange(feed.steps), chunks)
    h, c, outputs = feed.h0, feed.c0, []
    for piece in pieces:
        part = Feed(np.ascontiguousarray(feed.x[:, piece]), h, c)
        returned = _guarded(side, "B", part)
        outputs.append(returned.y)
        h, c = returned.h, returned.c
    return Returned(np.concatenate(outputs, axis=1), h, c)


def _guarded(side: Side, which: str, feed: Feed) -> Returned:
    try:
        return side.run(feed)
    except Refused as exc:
        raise Refused(f"{which} refused batch={feed.batch} steps={feed.steps}: {exc}") from exc
    except Exception as exc:  # a side that raised anything else still refused this feed
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise Refused(f"{which} refused batch={feed.batch} steps={feed.steps}: "
                      f"{type(exc).__name__}: {text}") from exc


def as_results(a: Returned, b: Returned) -> tuple[LSTMResult, LSTMResult]:
    """Both results with only the roles both return (the others empty, so the one
    comparison function judges exactly what both sides expose)."""
    empty = np.zeros((0,))
    pairs = []
    for role in ("h", "c"):
        left, right = a.get(role), b.get(role)
        pairs.append((left, right) if left is not None and right is not None else (empty, empty))
    (ha, hb), (ca, cb) = pairs
    return LSTMResult(a.y, ha, ca), LSTMResult(b.y, hb, cb)


def contract_inputs(feed: Feed, spec: Any) -> LSTMInputs:
    """``feed`` in the contract's layout, for the float64 reference of ``spec``'s weights."""
    def state(value: np.ndarray | None) -> np.ndarray | None:
        if value is None:
            return None
        return value.reshape(spec.layers, spec.directions, *value.shape[1:])

    return LSTMInputs(feed.x, state(feed.h0), state(feed.c0), feed.lengths)


def _dtype(a: Side, b: Side) -> str:
    """The coarser dtype of the two sides decides the static floor."""
    order = ("float64", "float32", "float16", "bfloat16")
    return max((a.dtype, b.dtype), key=lambda d: order.index(d) if d in order else 1)


def _role(tensor: str) -> str:
    return {"output": "y"}.get(tensor, tensor)


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
