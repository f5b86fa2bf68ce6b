"""Test-side glue: availability policy, replay commands, per-test result records."""

from __future__ import annotations

import functools
import os

import pytest

from equivalence import table
from equivalence.harness.judge import Outcome
from equivalence.runtimes.base import Runtime

ALLOW_MISSING = os.environ.get("EQUIVALENCE_ALLOW_MISSING") == "1"


@functools.cache
def _reason(name: str) -> str | None:
    return table.entry(name).load().unavailable_reason()


def require(entry: table.Entry) -> Runtime:
    """The runtime, or a failure (a skip only with EQUIVALENCE_ALLOW_MISSING=1)."""
    reason = _reason(entry.name)
    if reason:
        message = f"{entry.name} is not runnable here: {reason}"
        if ALLOW_MISSING:
            pytest.skip(message)
        pytest.fail(f"{message} (set EQUIVALENCE_ALLOW_MISSING=1 to skip it)")
    return entry.load()


def replay_command(request: pytest.FixtureRequest) -> str:
    profile = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    return f"HYPOTHESIS_PROFILE={profile} python -m pytest '{request.node.nodeid}'"


def record(request: pytest.FixtureRequest, outcome: Outcome) -> None:
    """Keep every judged example on the test item (the results plugin reads it)."""
    outcomes = getattr(request.node, "equivalence_outcomes", None)
    if outcomes is None:
        outcomes = request.node.equivalence_outcomes = []
    outcomes.append(outcome)
