"""``check_conversion``: hammer a user's own converter the way the suite hammers ours.

Hypothesis draws single-cell specs that both formats' runtimes support, builds
and runs the source framework on native weights, passes a copy of those
weights to the user's function, runs the target framework on what it returns,
and compares outputs, h and c. Anything going wrong inside the user's function
or with what it returns is a failed result with the reason, never a crash.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import harness, reference, table
from .capabilities import Capabilities
from .compare import Comparison, TensorDiff, Tolerance, compare
from .convert import from_canonical, to_canonical
from .diagnose import diagnose
from .errors import UnknownFormatError
from .explore import explore
from .formats import get as get_format
from .harness import Outcome
from .io_types import LSTMResult
from .strategies import Case, joint_capabilities, lstm_cases

CHECKABLE = tuple(table.FORMAT_RUNTIMES)


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


def choose_side(fmt: str) -> Side:
    """The first runnable runtime for ``fmt``; the reference if none runs here."""
    if fmt not in table.FORMAT_RUNTIMES:
        raise UnknownFormatError(
            f"format: {fmt!r} cannot be checked, expected one of {sorted(CHECKABLE)}"
        )
    reasons = []
    for name in table.FORMAT_RUNTIMES[fmt]:
        entry = table.entry(name)
        if entry.environment != table.MAIN:
            reasons.append(f"{name} lives in the {entry.environment} environment")
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


def judge(fn: Callable[[Any], Any], source: Side, target: Side, case: Case) -> Outcome:
    """Run one example through the user's ``fn``; every problem is a failed Outcome."""
    native = from_canonical(
        case.weights, source.format, **harness.writer_options(source.format, source.options())
    )
    expected = source.run(case, native)
    tolerance = Tolerance.for_case(case.spec.dtype, case.inputs.steps)
    label = f"{source.format} -> {target.format}"
    try:
        moved = fn(copy.deepcopy(native))
    except Exception as exc:  # the user's code failing is a result, not a crash
        return _problem(label, case, tolerance, f"the conversion function raised {_short(exc)}")
    try:
        actual = target.run(case, moved)
    except Exception as exc:
        reason = f"the target rejected the converted weights: {_short(exc)}"
        return _problem(label, case, tolerance, reason)
    comparison = compare(expected, actual, tolerance)
    return Outcome(label, case, comparison, "" if comparison.ok else "outputs differ", actual)


def _problem(label: str, case: Case, tolerance: Tolerance, reason: str) -> Outcome:
    diff = TensorDiff("output", float("inf"), (), 1, 1, problem=reason)
    return Outcome(label, case, Comparison((diff,), tolerance))


def _short(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    place = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{place}"


def check_conversion(
    fn: Callable[[Any], Any], *, source: str, target: str, max_examples: int = 50, seed: int = 0
) -> CheckResult:
    """Check ``fn`` (native ``source`` weights -> native ``target`` weights) on random LSTMs.

    Uses the single-layer native contract of each format (see the README).
    Returns a :class:`CheckResult`; raises ConversionError only for a bad call.
    """
    if not callable(fn):
        raise UnknownFormatError(f"fn: {fn!r} is not callable")
    if not isinstance(max_examples, int) or max_examples < 1:
        raise ValueError(f"max_examples={max_examples!r}: pass an int >= 1")
    sides = choose_side(source), choose_side(target)
    result = CheckResult(
        source, target, runtimes={"source": sides[0].label, "target": sides[1].label}
    )
    caps = joint_capabilities([sides[0].capabilities, sides[1].capabilities])
    found = explore(
        lstm_cases(capabilities=caps, dtypes=("float32",), single_cell=True),
        lambda case: judge(fn, sides[0], sides[1], case),
        max_examples=max_examples,
        seed_value=seed,
    )
    result.examples = found.examples
    result.max_abs_diff = max(found.max_abs_diff.values())
    result.ok = found.passed
    if found.error:  # the harness itself failed (e.g. the source framework crashed)
        raise RuntimeError(f"check_conversion could not run the source side: {found.error}")
    if found.failure is not None:
        result.counterexample = found.failure
        if found.failure.actual is not None:
            result.diagnosis = diagnose(found.failure.case, found.failure.actual)
    return result


def assert_conversion(
    fn: Callable[[Any], Any], *, source: str, target: str, max_examples: int = 50, seed: int = 0
) -> CheckResult:
    """``check_conversion`` for use in pytest: raises AssertionError with the readable result."""
    __tracebackhide__ = True
    result = check_conversion(
        fn, source=source, target=target, max_examples=max_examples, seed=seed
    )
    if not result.ok:
        raise AssertionError(str(result))
    return result
