"""Running a case through runtimes and converters, and judging the result.

Used by the generated tests, ``check_conversion``, the report and the
benchmark, so every path makes native weights, runs frameworks and compares
in exactly one way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from equivalence import reference
from equivalence.case import Case
from equivalence.compare import (
    Comparison,
    Sensitivity,
    Tolerance,
    compare,
    judge,
    rounding_sensitivity,
)
from equivalence.convert import convert, from_canonical
from equivalence.diagnosis.explain import Converted, diagnose
from equivalence.formats import options
from equivalence.io_types import LSTMResult
from equivalence.memo import SHARED
from equivalence.table import Entry

# One home for the format-option vocabulary (kept importable from here for callers).
reader_options = options.reader_options
writer_options = options.writer_options


def native_weights(entry: Entry, case: Case) -> Any:
    """The case's canonical weights written in ``entry``'s native format."""
    options = writer_options(entry.format, dict(entry.format_options))
    return SHARED.get(
        "native", (entry.format, options, case.weights),
        lambda: from_canonical(case.weights, entry.format, **options), freeze=False,
    )


def run(entry: Entry, case: Case, native: Any) -> LSTMResult:
    """``entry``'s runtime on ``native``; a run of identical content in this process is shared."""
    return SHARED.get(
        "run", (entry.name, case.spec, case.inputs, native),
        lambda: entry.load().run(case.spec, native, case.inputs, **dict(entry.format_options)),
    )


def reference_result(case: Case) -> LSTMResult:
    inputs = case.inputs
    return SHARED.get("reference", (case.weights, inputs), lambda: reference.lstm(
        case.weights, inputs.x, h0=inputs.h0, c0=inputs.c0, lengths=inputs.lengths
    ))


def tolerance(case: Case, *entries: Entry) -> Tolerance:
    scale = max((e.tolerance_scale for e in entries), default=1.0)
    return Tolerance.for_case(case.spec.dtype, case.inputs.steps, scale)


def sensitivity(case: Case) -> Callable[[], Sensitivity]:
    """The case's rounding sensitivity (:mod:`equivalence.compare`), measured on its own
    weights and inputs when a check first needs it, and shared like a run."""
    return lambda: SHARED.get(
        "sensitivity", (case.spec.dtype, case.weights, case.inputs),
        lambda: rounding_sensitivity(case.weights, case.inputs, case.spec.dtype,
                                     exact=reference_result(case)),
    )


def move(source: Entry, target: Entry, case: Case, native: Any) -> Any:
    """The project's converters moving ``native`` from ``source``'s format to ``target``'s."""
    read = reader_options(source.format, case.spec, dict(source.format_options))
    write = writer_options(target.format, dict(target.format_options))
    return SHARED.get(
        "move", (source.format, target.format, read, write, native),
        lambda: convert(native, source=source.format, target=target.format,
                        source_options=read, target_options=write),
        freeze=False,
    )


@dataclass(frozen=True)
class Outcome:
    """A judged example: what was compared, how it came out, and who is off."""

    label: str
    case: Case
    comparison: Comparison
    blame: str = ""
    actual: LSTMResult | None = None  # what the checked side produced (for diagnosis)

    @property
    def ok(self) -> bool:
        return self.comparison.ok

    def message(self, replay: str = "") -> str:
        lines = [
            f"{self.label}: not equivalent",
            f"case: {self.case.describe()}",
            self.comparison.describe(),
        ]
        lines += [self.blame] if self.blame else []
        lines += [f"replay: {replay}"] if replay else []
        return "\n".join(lines)


def check_against_reference(entry: Entry, case: Case) -> Outcome:
    """Run ``entry`` on the case's weights and compare with the float64 reference."""
    actual = run(entry, case, native_weights(entry, case))
    comparison = judge(reference_result(case), actual, tolerance(case, entry), sensitivity(case))
    return Outcome(f"{entry.name} vs reference", case, comparison, actual=actual)


def blame(case: Case, results: dict[str, LSTMResult], tol: Tolerance) -> str:
    """Recompute in float64 and say which side is off (as PyTorch's OpInfo does)."""
    expected = reference_result(case)
    judged = {name: compare(expected, result, tol) for name, result in results.items()}
    text = ", ".join(f"{n} is {c.max_abs_diff:.3g} from the float64 reference"
                     for n, c in judged.items())
    off = [n for n, c in judged.items() if not c.ok]
    verdict = f"off: {' and '.join(off)}" if off else "both within tolerance of the reference"
    return f"float64 recheck: {text}; {verdict}"


def check_pair(
    source: Entry,
    target: Entry,
    case: Case,
    converter: Callable[[Any], Any] | None = None,
    target_run: Callable[[Case, Any], LSTMResult] | None = None,
) -> Outcome:
    """Run ``source``, move its native weights to ``target`` and run that; compare both.

    ``converter`` replaces the project's converters (native -> what the target runs);
    ``target_run`` replaces the target runtime, for converters whose output is a
    whole model (an exported graph) rather than native weights.
    """
    native = native_weights(source, case)
    expected = run(source, case, native)
    # A converter under test gets its own copy: the shared native weights must not change.
    moved = converter(copy.deepcopy(native)) if converter else move(source, target, case, native)
    actual = target_run(case, moved) if target_run else run(target, case, moved)
    comparison = judge(expected, actual, tolerance(case, source, target), sensitivity(case))
    tol = comparison.tolerance  # with the sensitivity where it was measured
    label = f"{source.name} -> {target.name}"
    if comparison.ok:
        return Outcome(label, case, comparison, actual=actual)
    verdict = blame(case, {source.name: expected, f"{target.name} (converted)": actual}, tol)
    # Native weights (not a whole exported model) can be read back and diagnosed in weight space.
    converted = None if target_run else Converted(
        moved, target.format, reader_options(target.format, case.spec, dict(target.format_options)))
    named = diagnose(case, actual, converted, tol)
    verdict += f"\ndiagnosis: {named}" if named else ""
    return Outcome(label, case, comparison, verdict, actual)
