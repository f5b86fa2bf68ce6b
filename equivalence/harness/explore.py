"""Drive a judge over Hypothesis-drawn cases and summarize: counts, worst errors, minimal failure.

Shared by the report and anything else that needs "run N seeded examples of
this check and tell me how it went" outside pytest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from equivalence.compare import TENSORS
from equivalence.harness.judge import Outcome
from equivalence.strategies import Case


@dataclass
class Exploration:
    """What happened over the examples of one check."""

    examples: int = 0
    max_abs_diff: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TENSORS, 0.0))
    by_dtype: dict[str, float] = field(default_factory=dict)  # worst over tensors, per dtype
    worst: Outcome | None = None  # the example closest to (or furthest over) its tolerance
    failure: Outcome | None = None  # the minimal failing example, after shrinking
    error: str = ""  # an exception that is not a mismatch (a runtime crashing)
    features: set[str] = field(default_factory=set)

    @property
    def passed(self) -> bool:
        return self.failure is None and not self.error

    def add(self, outcome: Outcome) -> None:
        """Count one judged example."""
        self.examples += 1
        self.features |= case_features(outcome.case)
        for diff in outcome.comparison.diffs:
            self.max_abs_diff[diff.name] = max(self.max_abs_diff[diff.name], diff.max_abs_diff)
        dtype = outcome.case.spec.dtype
        self.by_dtype[dtype] = max(self.by_dtype.get(dtype, 0.0), outcome.comparison.max_abs_diff)
        if self.worst is None or _score(outcome) > _score(self.worst):
            self.worst = outcome
        if not outcome.ok and self.failure is None:
            self.failure = outcome


class _Mismatch(Exception):
    pass


def case_features(case: Case) -> set[str]:
    """What an example exercised (for the report's features column)."""
    found = set(case.spec.features()) | {case.spec.dtype}
    inputs = case.inputs
    found |= {"initial state"} if inputs.h0 is not None else set()
    found |= {"lengths"} if inputs.lengths is not None else set()
    found |= {"time-major"} if inputs.time_major else set()
    return found


def _score(outcome: Outcome) -> float:
    return outcome.comparison.max_abs_diff / max(outcome.comparison.tolerance.atol, 1e-300)


def explore(
    cases: st.SearchStrategy[Case],
    judge: Callable[[Case], Outcome],
    *,
    max_examples: int,
    seed_value: int,
    on_example: Callable[[], None] | None = None,
) -> Exploration:
    """Run ``judge`` on up to ``max_examples`` seeded cases; shrink the first failure."""
    result = Exploration()
    failures: list[Outcome] = []

    @settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        print_blob=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def probe(case: Case) -> None:
        outcome = judge(case)
        if not failures:  # shrinking replays are not new examples
            result.add(outcome)
            if on_example:
                on_example()
        if not outcome.ok:
            failures.append(outcome)
            raise _Mismatch

    try:
        seed(seed_value)(probe)()
    except _Mismatch:
        result.failure = failures[-1]
    except Exception as exc:  # a framework crash is reported, not raised
        result.error = f"{type(exc).__name__}: {exc}"
    return result
