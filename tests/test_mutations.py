"""The mutation self-test: every catalogued conversion bug is caught (and named when it can be)."""

from __future__ import annotations

import pytest
from hypothesis import settings

from equivalence.mutations import CATALOGUE, Mutation, run_mutation

pytestmark = pytest.mark.cpu
EXAMPLES = settings.default.max_examples


@pytest.mark.parametrize("mutation", CATALOGUE, ids=lambda m: m.name)
def test_bug_is_caught_and_diagnosed(mutation: Mutation) -> None:
    result = run_mutation(mutation, max_examples=EXAMPLES)
    assert result.caught, f"{mutation.name}: not caught in {result.examples} examples"
    if mutation.diagnosis is not None:
        assert result.diagnosis and mutation.diagnosis in result.diagnosis, (
            f"{mutation.name}: diagnosed as {result.diagnosis!r}, "
            f"expected something naming {mutation.diagnosis!r}")


@pytest.mark.parametrize("source, target", [("torch", "keras"), ("tf1", "keras"),
                                            ("keras", "tf1"), ("keras", "onnx"),
                                            ("cudnn", "keras"), ("keras", "cudnn")])
def test_the_correct_converters_are_never_flagged(source: str, target: str) -> None:
    result = run_mutation(Mutation("control: no bug", source, target), max_examples=EXAMPLES)
    assert not result.caught, f"correct {source} -> {target} flagged"
    assert result.examples == EXAMPLES
