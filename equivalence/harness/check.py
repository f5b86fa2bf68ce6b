"""``check_conversion``: hammer a user's own converter the way the suite hammers ours.

Hypothesis draws specs that both formats' runtimes support, within the
check's keywords (:mod:`equivalence.harness.draws`: layers, directions, sizes,
features), builds and runs the source framework on native weights, passes a
copy of those weights to the user's function as the source framework gives
them (:mod:`equivalence.harness.framework_objects`), runs the target framework on what
it returns, and compares outputs, h and c. Anything going wrong inside the user's function
or with what it returns is a failed result with the reason, never a crash: an
exception (even one whose message cannot be formatted), an object whose
``__array__`` or ``__getitem__`` raises, weights the target's reader refuses,
or no answer within ``time_limit`` seconds (the call then runs in a daemon
thread, abandoned). ``SystemExit`` and ``KeyboardInterrupt`` are requests to
stop, not results: they end the check at once and propagate to the caller.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from equivalence import reference, table
from equivalence.capabilities import Capabilities
from equivalence.compare import Comparison, TensorDiff, Tolerance
from equivalence.compare import judge as within_tolerance
from equivalence.convert import from_canonical, to_canonical
from equivalence.diagnosis.explain import Converted, diagnose
from equivalence.diagnosis.native_names import in_target_terms
from equivalence.errors import (
    ConversionError,
    UnknownFormatError,
    WeightValueError,
    brief,
    describe,
)
from equivalence.formats import get as get_format
from equivalence.harness import judge as harness
from equivalence.harness.draws import Draws, cases, parse
from equivalence.harness.explore import explore
from equivalence.harness.framework_objects import NATIVE_KINDS, as_given, to_numpy
from equivalence.harness.judge import Outcome
from equivalence.harness.time_limit import (
    DEFAULT_TIME_LIMIT,
    FunctionFailed,
    TimedOut,
    check_time_limit,
    limited,
)
from equivalence.io_types import LSTMResult
from equivalence.spec import MAX_ELEMENTS
from equivalence.strategies import Case, joint_capabilities

CHECKABLE = tuple(table.FORMAT_RUNTIMES)
# Called with each check's Exploration (check_conversion's, check_implementation's) when
# it ends: the pytest plugin's results file and JUnit properties
# (equivalence.report.pytest_plugin).
OBSERVERS: list[Callable[[Any], None]] = []


@dataclass(frozen=True)
class Side:
    """How one side of the check runs: a real runtime, or the reference when none can run."""

    format: str
    entry: table.Entry | None
    why_reference: str = ""

    @property
    def label(self) -> str:
        if self.entry is not None:
            return f"{self.entry.name} ({self.entry.load().version()})"
        return f"reference in {self.format} semantics ({self.why_reference})"

    @property
    def capabilities(self) -> Capabilities:
        if self.entry is not None:
            return self.entry.load().capabilities
        return get_format(self.format).capabilities()

    def options(self) -> dict[str, Any]:
        return dict(self.entry.format_options) if self.entry else {}

    def run(self, case: Case, native: Any) -> LSTMResult:
        if self.entry is not None:
            return harness.run(self.entry, case, native)
        read = harness.reader_options(self.format, case.spec, self.options())
        weights = to_canonical(native, self.format, **read)
        inputs = case.inputs
        return reference.lstm(weights, inputs.x, h0=inputs.h0, c0=inputs.c0, lengths=inputs.lengths)


def choose_side(fmt: str, cell: object = "lstm") -> Side:
    """The first runnable runtime for ``fmt`` that runs ``cell``; the reference if none
    runs here (a GPU row that runs LSTMs only must not turn a GRU check into a refusal)."""
    if not isinstance(fmt, str) or fmt not in table.FORMAT_RUNTIMES:
        raise UnknownFormatError(
            f"format: {brief(fmt)} cannot be checked, expected one of {sorted(CHECKABLE)}"
        )
    reasons = []
    for name in table.FORMAT_RUNTIMES[fmt]:
        entry = table.entry(name)
        if entry.environment != table.MAIN:
            reasons.append(f"{name} lives in the {entry.environment} environment")
            continue
        if isinstance(cell, str) and cell not in entry.capabilities.cells:
            reasons.append(f"{name} runs {'/'.join(sorted(entry.capabilities.cells))} only")
            continue
        reason = entry.load().unavailable_reason()
        if reason is None:
            return Side(fmt, entry)
        reasons.append(f"{name}: {reason}")
    return Side(fmt, None, "; ".join(reasons))


@dataclass
class CheckResult:
    """What ``check_conversion`` found."""

    source: str
    target: str
    ok: bool = True
    examples: int = 0
    max_abs_diff: float = 0.0
    counterexample: Outcome | None = None  # the minimal failing example
    runtimes: dict[str, str] = field(default_factory=dict)
    diagnosis: str | None = None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        verdict = "equivalent" if self.ok else "NOT equivalent"
        lines = [
            f"{self.source} -> {self.target}: {verdict} over {self.examples} examples "
            f"(max abs diff {self.max_abs_diff:.3g})",
            f"ran: source {self.runtimes.get('source')}, target {self.runtimes.get('target')}",
        ]
        if self.counterexample is not None:
            lines += ["minimal failing example:", self.counterexample.message()]
        if self.diagnosis:
            lines.append(f"diagnosis: {self.diagnosis}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data (str, int, float, bool, None, lists, dicts) for JSON.

        A non-finite difference (a NaN or inf output) is None, since strict JSON has
        no NaN; ``message`` is the text ``str(result)`` prints.
        """
        return {
            "source": self.source, "target": self.target, "ok": bool(self.ok),
            "examples": int(self.examples), "max_abs_diff": _finite(self.max_abs_diff),
            "runtimes": {str(k): str(v) for k, v in self.runtimes.items()},
            "diagnosis": self.diagnosis,
            "counterexample": _outcome_dict(self.counterexample),
            "message": str(self),
        }

    def to_json(self, **dumps: Any) -> str:
        """``to_dict()`` as strict JSON (``allow_nan=False``); keywords go to ``json.dumps``."""
        return json.dumps(self.to_dict(), allow_nan=False, **dumps)


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _outcome_dict(outcome: Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    diffs = [{"tensor": d.name, "max_abs_diff": _finite(d.max_abs_diff),
              "where": [int(i) for i in d.where], "mismatched": int(d.mismatched),
              "total": int(d.total), "problem": d.problem}
             for d in outcome.comparison.diffs]
    return {"label": outcome.label, "case": outcome.case.describe(), "diffs": diffs,
            "tolerance": str(outcome.comparison.tolerance), "blame": outcome.blame}


def judge(fn: Callable[[Any], Any], source: Side, target: Side, case: Case,
          given: str = "framework") -> Outcome:
    """Run one example through the user's ``fn``; every problem is a failed Outcome.

    ``fn`` is expected to be wrapped by :func:`limited` (SystemExit, time limit);
    it is given the source's weights as ``given`` says (see :func:`as_given`).
    """
    native = from_canonical(
        case.weights, source.format, **harness.writer_options(source.format, source.options())
    )
    expected = source.run(case, native)
    tolerance = Tolerance.for_case(case.spec.dtype, case.inputs.steps)
    label = f"{source.format} -> {target.format}"
    try:
        moved = fn(as_given(copy.deepcopy(native), source.format, given))
    except FunctionFailed as exc:
        return _problem(label, case, tolerance, str(exc))
    except Exception as exc:  # the user's code failing is a result, not a crash
        return _problem(label, case, tolerance, f"the conversion function raised {_short(exc)}")
    try:
        # The target format's reader first: it names integer or object arrays that a
        # runtime might otherwise cast silently (or choke on without saying which).
        to_canonical(moved, target.format, **harness.reader_options(
            target.format, case.spec, target.options()))
        moved = _numpy_nest(moved)  # tensors, tf Variables, jax arrays: what the runtime reads
        actual = target.run(case, moved)
    except Exception as exc:  # what fn returned is foreign: any failure reading it is its own
        reason = f"the target rejected the converted weights: {_short(exc)}"
        return _problem(label, case, tolerance, reason)
    try:
        # the one policy: the static floor, or the case's measured rounding sensitivity
        comparison = within_tolerance(expected, actual, tolerance, harness.sensitivity(case))
    except Exception as exc:  # outputs the target computed from fn's weights, of odd shapes
        return _problem(label, case, tolerance, f"the target's outputs cannot be compared: "
                                                f"{_short(exc)}")
    return Outcome(label, case, comparison, "" if comparison.ok else "outputs differ", actual)


class _Judge:
    """``judge`` over many cases; after a timeout every call repeats that failure.

    Hypothesis shrinks a failure by replaying smaller cases; calling a function that
    hangs again on each would cost ``time_limit`` per replay. Repeating the one real
    timeout keeps the check bounded and reports the case that really timed out.
    """

    def __init__(self, fn: Callable[[Any], Any], sides: tuple[Side, Side],
                 given: str = "framework") -> None:
        self.fn, self.sides, self.given = fn, sides, given
        self.timed_out: Outcome | None = None
        self.stopped: BaseException | None = None  # a SystemExit or KeyboardInterrupt

    def __call__(self, case: Case) -> Outcome:
        if self.stopped is not None:
            raise _Stopped
        try:
            return self._judge(case)
        except (SystemExit, KeyboardInterrupt) as exc:
            # Hypothesis counts SystemExit as a failing example and replays it (then calls
            # the result flaky); an exception type it does not catch ends it at once.
            self.stopped = exc
            raise _Stopped from exc

    def _judge(self, case: Case) -> Outcome:
        if self.timed_out is not None:
            return self.timed_out
        hung: list[Case] = []

        def watched(native: Any) -> Any:
            try:
                return self.fn(native)
            except TimedOut:
                hung.append(case)
                raise

        outcome = judge(watched, *self.sides, case, self.given)
        if hung:
            self.timed_out = outcome
        return outcome


class _Stopped(BaseException):
    """Carries a SystemExit or KeyboardInterrupt out of Hypothesis without a replay."""


def _problem(label: str, case: Case, tolerance: Tolerance, reason: str) -> Outcome:
    diff = TensorDiff("output", float("inf"), (), 1, 1, problem=reason)
    return Outcome(label, case, Comparison((diff,), tolerance))


def _numpy_nest(native: Any) -> Any:
    """What ``fn`` returned with framework arrays as numpy; bounded, typed errors."""
    unbounded = _unbounded(native)
    if unbounded:
        raise WeightValueError(f"the converted weights {unbounded}")
    return to_numpy(native)


def _short(exc: BaseException) -> str:
    """``Type: message (at file:line)``; never raises, whatever the exception's ``__str__`` does."""
    try:
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    except Exception:
        where = []
    place = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
    return f"{describe(exc)}{place}"


def check_conversion(
    fn: Callable[[Any], Any],
    *,
    source: str,
    target: str,
    max_examples: int = 50,
    seed: int = 0,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    layers: int | Iterable[int] = 1,
    directions: int | Iterable[int] = 1,
    input_size: int | Iterable[int] | None = None,
    units: int | Iterable[int] | None = None,
    projection: bool | int | None = None,
    dtypes: str | Iterable[str] = ("float32",),
    native: str = "framework",
    cell: str = "lstm",
    reset_after: bool | None = None,
    **features: bool,
) -> CheckResult:
    """Check ``fn`` (native ``source`` weights -> native ``target`` weights) on random LSTMs.

    ``fn`` receives and returns each format's native stack layout (README, "Stacks
    and directions"). By default it receives what the source framework gives a
    user: torch an OrderedDict of tensors (``state_dict()``), keras the list of
    ``get_weights()``, tf1 the checkpoint reader's dict of numpy arrays, onnx
    numpy arrays (``numpy_helper``), flax the params tree of jax arrays;
    ``native="numpy"`` gives plain numpy. It may return framework objects too
    (tensors, requires_grad ones included, tf Variables, jax arrays).

    The draws: ``layers`` and ``directions`` (an int or a sequence of allowed
    values; 1 and 1 by default), ``input_size`` and ``units`` (an int, to pin your
    model's sizes, or a range), ``projection`` (None: drawn where both sides have
    it; False; True; or the size), ``dtypes``, and the features of
    :class:`~equivalence.capabilities.Capabilities` to turn off
    (``initial_state=False``, ``lengths=False``, ``peepholes=False``, ...).
    ``cell``: ``"lstm"`` or ``"gru"`` (both sides must run it); ``reset_after``
    pins a GRU's variant (None: both, where both sides hold both).
    ``time_limit``: seconds one call of ``fn`` may take (None: no limit, and ``fn``
    runs in the calling thread). Returns a :class:`CheckResult`, whose diagnosis
    names layers, directions and arrays as the target names them; raises
    ConversionError only for a bad call, naming the argument.
    """
    if not callable(fn):
        raise ConversionError(f"fn: {brief(fn)} is not callable")
    _check_run_options(max_examples, seed, time_limit, native)
    sides = choose_side(source, cell), choose_side(target, cell)
    draws = _draws(sides, layers=layers, directions=directions, input_size=input_size,
                   units=units, projection=projection, dtypes=dtypes, features=features,
                   cell=cell, reset_after=reset_after)
    result = CheckResult(
        source, target, runtimes={"source": sides[0].label, "target": sides[1].label}
    )
    guarded = limited(fn, time_limit)
    judged = _Judge(guarded, sides, native)
    found = _explore(draws, judged, max_examples, seed, (source, target))
    result.examples = found.examples
    result.max_abs_diff = max(found.max_abs_diff.values())
    result.ok = found.passed
    if found.error:  # the harness itself failed (e.g. the source framework crashed)
        raise RuntimeError(f"check_conversion could not run the source side: {found.error}")
    if found.failure is not None:
        result.counterexample = found.failure
        if judged.timed_out is None:  # a hung fn is not called again to be diagnosed
            case = found.failure.case  # fn runs again on it: its weights are diagnosed too
            result.diagnosis = _diagnosis(guarded, case, found.failure.actual, sides, native)
    return result


def _check_run_options(max_examples: object, seed: object, time_limit: object,
                       native: object) -> None:
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise ConversionError(f"max_examples: {brief(max_examples)}, expected an int >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConversionError(f"seed: {brief(seed)}, expected an int")
    check_time_limit(time_limit)
    if not isinstance(native, str) or native not in NATIVE_KINDS:
        raise ConversionError(f"native={brief(native)}: pass 'framework' (the source "
                              "framework's own objects) or 'numpy'")


def _draws(sides: tuple[Side, Side], **keywords: Any) -> Draws:
    """The check's keywords parsed against what both sides can run."""
    caps = joint_capabilities([side.capabilities for side in sides])
    pair = f"{sides[0].format} -> {sides[1].format}"
    return parse(caps, pair, **keywords)


def _explore(draws: Draws, judged: Callable[[Case], Outcome], max_examples: int,
             seed: int, formats: tuple[str, ...] = ()) -> Any:
    """``explore`` over the draws; a SystemExit or KeyboardInterrupt from ``fn`` re-raised."""
    try:
        with _one_torch_thread(formats, draws):
            found = explore(cases(draws), judged, max_examples=max_examples, seed_value=seed)
    except _Stopped:
        stopped = getattr(judged, "stopped", None)
        assert stopped is not None
        raise stopped from None
    for observe in OBSERVERS:
        observe(found)
    return found


SMALL_UNITS = 64  # up to this, one torch thread is faster than several (see below)


@contextlib.contextmanager
def _one_torch_thread(formats: tuple[str, ...], draws: Draws) -> Iterator[None]:
    """Torch on one intra-op thread while a check of small LSTMs runs, then as it was.

    A step of a small LSTM is microseconds of work, less than torch's thread pool
    costs per op; with TensorFlow's threads and other processes on few cores the
    pool spins. On 2 busy cores a warm 100-example stacked bidirectional torch ->
    keras check took 9-13 s with torch's default threads, 4-7 s with one
    (python -m equivalence.harness.bench_check).
    """
    if "torch" not in formats or max(draws.units) > SMALL_UNITS:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _diagnosis(fn: Callable[[Any], Any], case: Case, actual: LSTMResult | None,
               sides: tuple[Side, Side], given: str = "framework") -> str | None:
    """The diagnosis of the failing ``case``; never raises: ``fn``'s weights are foreign
    objects (meta tensors, lists that contain themselves) that the diagnosis also reads."""
    target = sides[1]
    try:
        converted = _rerun(fn, case, sides, given)
        unbounded = _unbounded(converted.native) if converted is not None else ""
        if unbounded:  # the diagnosis reads every value: only of what fits the caps
            return f"not diagnosed: the converted weights {unbounded}"
        if converted is not None:
            converted = replace(converted, native=to_numpy(converted.native))
        found = diagnose(case, actual, converted)
        return in_target_terms(found, case.spec, target.format) if found else found
    except FunctionFailed as exc:
        return f"not diagnosed: the conversion function failed when run again ({exc})"
    except Exception as exc:
        return f"not diagnosed: reading the converted weights raised {_short(exc)}"


_MAX_NODES = 10_000  # containers and arrays in what fn returns, for the diagnosis to walk


def _unbounded(native: Any) -> str:
    """Why the nest ``native`` is too big, deep or cyclic to diagnose ("" when it is not).

    Arrays are sized by their shape (a broadcast view of 4e12 elements takes no
    memory, but the diagnosis would copy it); the walk itself is bounded.
    """
    pending, containers, nodes, elements = [(native, 0)], set(), 0, 0
    while pending:
        item, depth = pending.pop()
        nodes += 1
        if depth > 64 or nodes > _MAX_NODES:
            return "nest deeper than 64 or hold more than 10000 items"
        if isinstance(item, (Mapping, list, tuple)):
            if id(item) in containers:
                return "contain themselves (or hold one list or dict twice)"
            containers.add(id(item))
            values = item.values() if isinstance(item, Mapping) else item
            pending += [(value, depth + 1) for value in values]
        elif hasattr(item, "shape"):
            elements += math.prod(int(n) for n in item.shape)
            if elements > MAX_ELEMENTS:
                return f"hold more than {MAX_ELEMENTS:.3g} elements (MAX_ELEMENTS)"
    return ""


def _rerun(fn: Callable[[Any], Any], case: Case, sides: tuple[Side, Side],
           given: str) -> Converted | None:
    """``fn`` run again on ``case``'s source weights, given as when judged (None if it raises)."""
    source, target = sides
    native = from_canonical(case.weights, source.format,
                            **harness.writer_options(source.format, source.options()))
    try:
        moved = fn(as_given(native, source.format, given))
    except FunctionFailed:
        raise
    except Exception:  # its failure was reported when it was judged
        return None
    return Converted(moved, target.format,
                     harness.reader_options(target.format, case.spec, target.options()))


def assert_conversion(
    fn: Callable[[Any], Any], *, source: str, target: str, **options: Any
) -> CheckResult:
    """``check_conversion`` for use in pytest: raises AssertionError with the readable result.

    Takes the same keyword arguments as :func:`check_conversion`.
    """
    __tracebackhide__ = True
    result = check_conversion(fn, source=source, target=target, **options)
    if not result.ok:
        raise AssertionError(str(result))
    return result
