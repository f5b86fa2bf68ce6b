"""The verdict at a glance: how many checks passed, failed, deviate as known, and what did not run.

One reading of a results object, shared by the report's first section and the
command line's final lines, so the page and the console give the same figures.

Exporter probes (the ``exporters`` key) are checks too: an *unexpected* probe
is a failure (it fails the run), a *known* one a known deviation, and one as
claimed or a surprise pass a pass; surprise passes are also named, since a known
failure that no longer shows means the exporter's expectation needs changing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from equivalence.report.conformance_plot import MATCH, WRONG
from equivalence.report.exporters_part import (
    AS_CLAIMED,
    KNOWN,
    NOT_RUN,
    SURPRISE,
    UNEXPECTED,
    status,
)


@dataclass(frozen=True)
class Verdict:
    checks: int
    passed: int
    failed: list[str]  # failures nobody expected: these fail the run
    known: list[str]  # failures this machine is known for (a documented deviation)
    not_run: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    mutations: tuple[int, int] = (0, 0)  # caught, catalogued
    conformance: dict[str, int] = field(default_factory=dict)  # verdict -> cells
    exporters: dict[str, int] = field(default_factory=dict)  # exporter probe status -> probes
    surprises: list[str] = field(default_factory=list)  # exporter probes that passed, unexpectedly
    known_exporters: list[str] = field(default_factory=list)  # the exporter probes among known

    def lines(self) -> list[str]:
        """The console's summary, one fact a line."""
        out = [f"{self.checks} checks: {self.passed} passed, {len(self.failed)} failed, "
               f"{len(self.known)} known deviations, {len(self.not_run)} not run"]
        if self.failed:
            out.append(f"failed: {', '.join(self.failed)}")
        machine = [k for k in self.known if k not in self.known_exporters]
        if machine:
            out.append(f"known silently wrong on this machine: {', '.join(machine)}")
        if self.exporters:
            counts = ", ".join(f"{n} {s}" for s, n in self.exporters.items())
            out.append(f"exporters: {sum(self.exporters.values())} probes, {counts}")
        if self.known_exporters:
            out.append(f"known exporter failures: {', '.join(self.known_exporters)}")
        if self.surprises:
            out.append(f"surprise passes (a known failure did not show: update its "
                       f"expectation): {', '.join(self.surprises)}")
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
    cell = "" if row.get("cell", "lstm") == "lstm" else f"[{row['cell']}]"
    return f"{row['source']}->{row['target']}{cell}{where}"


def verdict(data: dict[str, Any]) -> Verdict:
    pairs = data.get("pairs") or []
    failing = [r for r in pairs if not r["passed"]]
    mutations = data.get("mutations") or []
    conformance: dict[str, int] = {}
    for c in data.get("conformance") or []:
        conformance[c["verdict"]] = conformance.get(c["verdict"], 0) + 1
    order = {MATCH: 0, WRONG: 2}
    conformance = dict(sorted(conformance.items(), key=lambda kv: (order.get(kv[0], 1), kv[0])))
    probes = exporter_probes(data)
    by_status = {s: [name for name, found in probes if found == s]
                 for s in dict.fromkeys(found for _, found in probes)}
    known_exporters = by_status.get(KNOWN, [])
    return Verdict(
        checks=len(pairs) + len(probes),
        passed=len(pairs) - len(failing) + len(by_status.get(AS_CLAIMED, []))
        + len(by_status.get(SURPRISE, [])),
        failed=[_name(r) for r in failing if not r.get("known")]
        + by_status.get(UNEXPECTED, []),
        known=[_name(r) for r in failing if r.get("known")] + known_exporters,
        not_run=not_run(data),
        mutations=(sum(bool(m["caught"]) for m in mutations), len(mutations)),
        conformance=conformance,
        exporters={s: len(names) for s, names in by_status.items()},
        surprises=by_status.get(SURPRISE, []),
        known_exporters=known_exporters,
    )


def exporter_probes(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, status) of every exporter probe a case reached (``not run`` ones are left out:
    they neither pass nor fail)."""
    return [(f"{r['exporter']} [{r['configuration']}] {p['name']}: {p['verdict']}", status(p))
            for r in data.get("exporters") or [] if not r.get("unavailable")
            for p in r.get("probes") or [] if status(p) != NOT_RUN]


def not_run(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Everything the report would have covered that it did not, with the reason."""
    skipped = [(f"runtime {r['name']}", r.get("reason") or "not available")
               for r in data.get("runtimes") or [] if not r.get("available")]
    skipped += [(f"environment {e['name']}", e["status"])
                for e in data.get("environments") or []
                if str(e.get("status", "")).startswith("not run")]
    skipped += [(f"converter {e['converter']}", e.get("reason") or e.get("status", ""))
                for e in data.get("third_party") or [] if e.get("runnable") is False]
    skipped += [(f"exporter {e['exporter']}", e["unavailable"])
                for e in data.get("exporters") or [] if e.get("unavailable")]
    skipped += [(f"exporter {e['exporter']} [{e['configuration']}]",
                 f"every export failed: {(e.get('errors') or ['no case drawn'])[0]}")
                for e in data.get("exporters") or []
                if not e.get("unavailable") and not e.get("cases")]
    return list(dict.fromkeys(skipped))
