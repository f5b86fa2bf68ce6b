"""Turn the examples judged inside pytest into a results file (``--equivalence-results``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..explore import Exploration
from ..harness import Outcome
from . import matrix, results


def _exploration(outcomes: list[Outcome]) -> Exploration:
    found = Exploration()
    for outcome in outcomes:
        found.add(outcome)
    return found


def write_results(items: list[Any], path: str, *, profile: str, exitstatus: int = 0) -> None:
    """One results file from every test item that judged examples."""
    rows = []
    for item in items:
        outcomes = getattr(item, "equivalence_outcomes", None)
        if not outcomes:
            continue
        source, _, target = outcomes[0].label.partition(" -> ")
        if target == "":
            source, target = outcomes[0].label.split(" vs ")
        rows.append(results.pair_row(source, target, "pytest", _exploration(outcomes)))
    data = results.new_results(
        seed=0,
        examples=max((r["examples"] for r in rows), default=0),
        environment=f"pytest ({profile})",
        runtimes=matrix.runtime_rows(),
        pairs=rows,
    )
    data["environments"][0]["status"] = (
        "ran" if exitstatus == 0 else f"ran, pytest exit {exitstatus}"
    )
    data["profile"] = profile
    Path(path).write_text(results.dumps(data))
