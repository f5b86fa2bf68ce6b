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

from hypothesis import HealthCheck, Phase, given, seed, settings

from . import harness, reference, table
from .compare import Comparison, Tolerance, compare
from .convert import from_canonical, to_canonical
from .diagnose import diagnose
from .errors import UnknownFormatError
from .formats import get as get_format
from .io_types import LSTMResult
from .runtimes.base import Capabilities
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


@dataclass(frozen=True)
class Failure:
    """The minimal failing example and what went wrong with it."""

    case: Case
    reason: str
    comparison: Comparison | None = None
    actual: LSTMResult | None = None  # what the target produced (for the diagnosis)

    def __str__(self) -> str:
        lines = [f"case: {self.case.describe()}", self.reason]
        if self.comparison is not None:
            lines.append(self.comparison.describe())
        return "\n".join(lines)


@dataclass
class CheckResult:
    """What ``check_conversion`` found."""

    source: str
    target: str
    ok: bool = True
    examples: int = 0
    max_abs_diff: float = 0.0
    counterexample: Failure | None = None
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
            lines += ["minimal failing example:", str(self.counterexample)]
        if self.diagnosis:
            lines.append(f"diagnosis: {self.diagnosis}")
        return "\n".join(lines)


class _Mismatch(Exception):
    """Raised inside the Hypothesis test so that it shrinks the failing example."""


def judge(
    fn: Callable[[Any], Any], source: Side, target: Side, case: Case
) -> tuple[Failure | None, float]:
    """Run one example; return (failure or None, max abs diff)."""
    native = from_canonical(
        case.weights, source.format, **harness.writer_options(source.format, source.options())
    )
    expected = source.run(case, native)
    try:
        moved = fn(copy.deepcopy(native))
    except Exception as exc:  # the user's code failing is a result, not a crash
        return Failure(case, f"the conversion function raised {_short(exc)}"), float("inf")
    try:
        actual = target.run(case, moved)
    except Exception as exc:
        return Failure(case, f"the target rejected the converted weights: {_short(exc)}"), float(
            "inf"
        )
    comparison = compare(expected, actual, Tolerance.for_case(case.spec.dtype, case.inputs.steps))
    if comparison.ok:
        return None, comparison.max_abs_diff
    return Failure(case, "outputs differ", comparison, actual), comparison.max_abs_diff


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
    failures: list[Failure] = []

    @settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        print_blob=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=lstm_cases(capabilities=caps, dtypes=("float32",), single_cell=True))
    def probe(case: Case) -> None:
        result.examples += 1
        failure, diff = judge(fn, sides[0], sides[1], case)
        result.max_abs_diff = max(result.max_abs_diff, diff)
        if failure is not None:
            failures.append(failure)
            raise _Mismatch

    try:
        _seeded(probe, seed)()
    except _Mismatch:
        result.ok = False
        result.counterexample = failures[-1]  # Hypothesis replays the shrunk example last
        minimal = failures[-1]
        if minimal.actual is not None:
            result.diagnosis = diagnose(minimal.case, minimal.actual)
    return result


def _seeded(test: Callable[[], None], value: int) -> Callable[[], None]:
    return seed(value)(test)


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
