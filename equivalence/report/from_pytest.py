"""Turn the examples judged inside pytest into a results file (``--equivalence-results``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from equivalence.harness.explore import Exploration
from equivalence.harness.judge import Outcome
from equivalence.report import results


def _exploration(outcomes: list[Outcome]) -> Exploration:
    found = Exploration()
    for outcome in outcomes:
        found.add(outcome)
    return found


def row_for(outcomes: list[Outcome]) -> dict[str, Any]:
    """One test item's judged examples as a pair row (plain JSON: it crosses xdist workers)."""
    source, _, target = outcomes[0].label.partition(" -> ")
    if target == "":
        source, target = outcomes[0].label.split(" vs ")
    row = results.pair_row(source, target, "pytest", _exploration(outcomes))
    return json.loads(json.dumps(row))


def write_results(rows: list[dict[str, Any]], path: str, *, profile: str,
                  exitstatus: int = 0) -> None:
    """One results file from the pair rows of every test item that judged examples."""
    data = results.new_results(
        seed=0,
        examples=max((r["examples"] for r in rows), default=0),
        environment=f"pytest ({profile})",
        runtimes=results.runtime_rows(),
        pairs=sorted(rows, key=lambda r: (r["source"], r["target"])),
    )
    data["environments"][0]["status"] = (
        "ran" if exitstatus == 0 else f"ran, pytest exit {exitstatus}"
    )
    data["profile"] = profile
    Path(path).write_text(results.dumps(data))
