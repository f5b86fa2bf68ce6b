"""The mutation self-test: every catalogued bug, single or compound, is caught and named completely.

Real frameworks on both sides where they run here; the diagnosis reads the
converted weights back and must name each mistake of the bug, with nothing
left unexplained. The correct converters are never flagged, never diagnosed.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

from equivalence.mutations.self_test import CATALOGUE, COMPOUND_BUGS, Mutation, run_mutation

pytestmark = pytest.mark.cpu
EXAMPLES = settings.default.max_examples


def test_every_bug_says_what_it_must_be_named() -> None:
    assert all(m.names for m in CATALOGUE), [m.name for m in CATALOGUE if not m.names]
    assert len(COMPOUND_BUGS) >= 5 and all(m.compound for m in COMPOUND_BUGS)


@pytest.mark.parametrize("mutation", CATALOGUE, ids=lambda m: m.name)
def test_bug_is_caught_and_named_completely(mutation: Mutation) -> None:
    result = run_mutation(mutation, max_examples=EXAMPLES)
    assert result.caught, f"{mutation.name}: not caught in {result.examples} examples"
    assert not result.missing, (
        f"{mutation.name}: diagnosed as {result.diagnosis!r}, which does not name "
        f"{list(result.missing)}")
    assert "unexplained" not in (result.diagnosis or ""), result.diagnosis
    assert result.named_completely


@pytest.mark.parametrize("source, target", [("torch", "keras"), ("tf1", "keras"),
                                            ("keras", "tf1"), ("keras", "onnx"),
                                            ("cudnn", "keras"), ("keras", "cudnn"),
                                            ("keras", "torch"), ("torch", "mlx"),
                                            ("keras", "mlx")])
def test_the_correct_converters_are_never_flagged(source: str, target: str) -> None:
    result = run_mutation(Mutation("control: no bug", source, target), max_examples=EXAMPLES)
    assert not result.caught, f"correct {source} -> {target} flagged: {result.diagnosis}"
    assert result.examples == EXAMPLES
    assert result.diagnosis is None
