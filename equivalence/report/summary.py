"""The verdict at a glance: how many checks passed, failed, deviate as known, and what did not run.

One reading of a results object, shared by the report's first section and the
command line's final lines, so the page and the console give the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .conformance_plot import MATCH, WRONG


@dataclass(frozen=True)
class Verdict:
    checks: int
    passed: int
    failed: list[str]  # failures nobody expected: these fail the run
    known: list[str]  # failures this machine is known for (a documented deviation)
    not_run: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    mutations: tuple[int, int] = (0, 0)  # caught, catalogued
    conformance: dict[str, int] = field(default_factory=dict)  # verdict -> cells

    def lines(self) -> list[str]:
        """The console's summary, one fact a line."""
        out = [f"{self.checks} checks: {self.passed} passed, {len(self.failed)} failed, "
               f"{len(self.known)} known deviations, {len(self.not_run)} not run"]
        if self.failed:
            out.append(f"failed: {', '.join(self.failed)}")
        if self.known:
            out.append(f"known silently wrong on this machine: {', '.join(self.known)}")
        out += [f"not run: {what} ({why})" for what, why in self.not_run]
        if self.mutations[1]:
            out.append(f"mutation self-test: {self.mutations[0]} of {self.mutations[1]} caught")
        if self.conformance:
            total = sum(self.conformance.values())
            counts = ", ".join(f"{n} {v}" for v, n in self.conformance.items())
            out.append(f"conformance grid: {total} cells, {counts}")
        return out


def _name(row: dict[str, Any]) -> str:
    where = f" ({row['run']})" if row.get("run") else ""
    return f"{row['source']}->{row['target']}{where}"


def verdict(data: dict[str, Any]) -> Verdict:
    pairs = data.get("pairs") or []
    failing = [r for r in pairs if not r["passed"]]
    mutations = data.get("mutations") or []
    conformance: dict[str, int] = {}
    for c in data.get("conformance") or []:
        conformance[c["verdict"]] = conformance.get(c["verdict"], 0) + 1
    order = {MATCH: 0, WRONG: 2}
    conformance = dict(sorted(conformance.items(), key=lambda kv: (order.get(kv[0], 1), kv[0])))
    return Verdict(
        checks=len(pairs),
        passed=len(pairs) - len(failing),
        failed=[_name(r) for r in failing if not r.get("known")],
        known=[_name(r) for r in failing if r.get("known")],
        not_run=not_run(data),
        mutations=(sum(bool(m["caught"]) for m in mutations), len(mutations)),
        conformance=conformance,
    )


def not_run(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Everything the report would have covered that it did not, with the reason."""
    skipped = [(f"runtime {r['name']}", r.get("reason") or "not available")
               for r in data.get("runtimes") or [] if not r.get("available")]
    skipped += [(f"environment {e['name']}", e["status"])
                for e in data.get("environments") or []
                if str(e.get("status", "")).startswith("not run")]
    skipped += [(f"converter {e['converter']}", e.get("reason") or e.get("status", ""))
                for e in data.get("third_party") or [] if e.get("runnable") is False]
    return list(dict.fromkeys(skipped))
