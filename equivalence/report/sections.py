"""The report's sections, built once from a results object as a :class:`Document`.

Order: the lead paragraph and heatmap, the matrix, failures (each with its
minimal case and replay command, linked from its matrix cell and its row in
"Every check"), runtimes, every check, the version matrix (only when a check
ran in more than one environment), third-party converters, exporters, the mutation
self-test, versions per environment, error growth. :data:`SECTIONS` is the
one list to extend.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from equivalence import table
from equivalence.compare import TENSORS
from equivalence.report import summary
from equivalence.report.cells import FAIL, PASS, cell_text, grid
from equivalence.report.document import (
    Block,
    BulletList,
    Cell,
    Code,
    CodeBlock,
    Details,
    Document,
    Heading,
    Image,
    Link,
    Paragraph,
    Span,
    Strong,
    Table,
    Text,
    cell,
    slug,
)

# The harness's own packages, after the frameworks the table's rows record (key_versions).
HARNESS_PACKAGES = ("numpy", "hypothesis")
# Where a row names a framework whose CPU build is installed under another name.
CPU_BUILDS = {"tensorflow": "tensorflow-cpu"}
NEOML_PYTHON = ".venv-neoml/bin/python"
MATRIX_COLUMNS = 8  # targets per matrix table, so it fits a 1400 px screen
CONFORMANCE_COLUMNS = 10  # features per conformance table (shorter cells)


class Context:
    """What every section needs: the results, the command that made them, images or not."""

    def __init__(self, data: dict[str, Any], replay: str, images: bool) -> None:
        self.data, self.replay, self.images = data, replay, images

    @property
    def pairs(self) -> list[dict[str, Any]]:
        return list(self.data["pairs"])

    def runs(self) -> list[dict[str, Any]]:
        return [e for e in self.data.get("environments", []) if e.get("name") != "merged"]


# ------------------------------------------------------------------ anchors and replays


def cell_suffix(row: dict[str, Any]) -> str:
    """"[gru]" for a GRU check, "" for an LSTM one (as the test ids and ``--only`` write it)."""
    kind = row.get("cell", "lstm")
    return "" if kind == "lstm" else f"[{kind}]"


def failure_anchor(row: dict[str, Any]) -> str:
    run = f"-{row['run']}" if row.get("run") else ""
    kind = f"-{row['cell']}" if cell_suffix(row) else ""
    return (f"failure-{slug(row['source'])}-to-{slug(row['target'])}{kind}"
            f"{slug(run) if run else ''}")


def pair_replay(data: dict[str, Any], row: dict[str, Any]) -> str:
    """The command that reruns one check (in the environment it ran in)."""
    source, target = row["source"], row["target"]
    size = f"--examples {data.get('examples') or 25} --seed {data.get('seed', 0)}"
    if source == "neoml" and target == "reference":
        command = f"{NEOML_PYTHON} -m pytest -m neoml tests/test_neoml.py -k reference"
    elif source == "neoml":
        command = (f"{NEOML_PYTHON} -m equivalence.harness.exchange export-neoml --out cases "
                   f"{size} && "
                   f"python -m equivalence.harness.exchange judge --cases cases --targets {target}")
    elif target == "neoml":
        command = (f"python -m equivalence.harness.exchange export --out cases --sources {source} "
                   f"{size} && EQUIVALENCE_EXCHANGE_DIR=cases {NEOML_PYTHON} -m pytest -m "
                   f"neoml tests/test_neoml.py")
    else:
        check = f"{source}->{target}{cell_suffix(row)}"
        command = f"equivalence report --only {shlex.quote(check)} {size}"
    if row.get("run"):
        command = f"# in the {row['run']!r} environment (tox -e {row['run']})\n{command}"
    return command


# ------------------------------------------------------------------ sections


def lead(ctx: Context) -> list[Block]:
    data = ctx.data
    return [Paragraph((
        f"Generated {data['generated_at']} with seed {data['seed']}, up to "
        f"{data['examples']} examples per cell, by ", Code(ctx.replay.strip()), "."))]


def verdict(ctx: Context) -> list[Block]:
    """The first section: the counts a reader needs before any detail."""
    found = summary.verdict(ctx.data)
    counts = [cell(str(found.checks)), cell(str(found.passed), verdict="pass"),
              cell(str(len(found.failed)), verdict="fail" if found.failed else "pass"),
              cell(str(len(found.known)), verdict="fail" if found.known else ""),
              cell(str(len(found.not_run)))]
    blocks: list[Block] = [
        Heading(2, "Verdict"),
        Table(["checks", "passed", "failed", "known deviations", "not run"], [counts]),
    ]
    items: list[Text] = [(Strong("Failed: "), ", ".join(found.failed))] if found.failed else []
    if found.known:
        items.append((Strong("Known deviations (listed in Failures): "), ", ".join(found.known)))
    items += [(Strong("Not run: "), what, f" ({why})") for what, why in found.not_run]
    if found.mutations[1]:
        items.append((Link("Mutation self-test", "#mutation-self-test"),
                      f": {found.mutations[0]} of {found.mutations[1]} catalogued bugs caught"))
    if found.conformance:
        counts_text = ", ".join(f"{n} {v}" for v, n in found.conformance.items())
        items.append((Link("Conformance grid", "#conformance"),
                      f": {sum(found.conformance.values())} cells, {counts_text}"))
    return blocks + ([BulletList(items)] if items else [])


def matrix(ctx: Context) -> list[Block]:
    return [*_matrix_tables(ctx, "lstm"), *gru_matrix(ctx)]


def gru_matrix(ctx: Context) -> list[Block]:
    """The GRU's matrix: the rows that run GRUs, both reset_after variants where claimed."""
    if not any(r.get("cell") == "gru" for r in ctx.pairs):
        return []
    return [Heading(2, "GRU matrix"),
            Paragraph(("The same checks on GRU networks (gates r z n, state h; reset_after "
                       "True and, where both sides hold it, False), for the rows that run "
                       "GRUs. Cells as above, over outputs and h.",)),
            *([Image("heatmap_gru.png", "GRU heatmap: max abs diff over tolerance, pass "
                     "green, fail red")] if ctx.images else []),
            *_matrix_tables(ctx, "gru", heading=False)]


def _matrix_tables(ctx: Context, kind: str, heading: bool = True) -> list[Block]:
    sources, targets, cells = grid(ctx.data, kind)
    rows = []
    for source in sources:
        row = [cell(source)]
        for target in targets:
            found = cells.get((source, target))
            text = cell_text(found)
            if found is None:
                row.append(cell())
            elif found["passed"]:
                row.append(cell(text, verdict="pass"))
            else:
                row.append(cell(Link(text, f"#{failure_anchor(found)}"), verdict="fail"))
        rows.append(row)
    tables = split_table("source \\ target", targets, rows, "Targets")
    if not heading:
        return tables
    return [
        Heading(2, "Matrix"),
        *([Image("heatmap.png", "heatmap: max abs diff over tolerance, pass green, fail red")]
          if ctx.images else []),
        Paragraph((
            "Rows: the runtime whose native weights are the source; columns: the runtime the "
            "converters moved them to (", Code("reference"), ": the float64 numpy reference). "
            "Cells: float32 max abs diff over outputs, h and c, the verdict (over every "
            "dtype drawn) under the tolerance policy, and the dtypes judged. A failed cell "
            "links to its minimal case and replay command. The heatmap colours the diff "
            "over its dtype's tolerance, so a pass reads green and a fail red.")),
        *tables,
    ]


def split_table(corner: str, columns: list[str], rows: list[list[Cell]], what: str,
                most: int | None = None) -> list[Block]:
    """A grid with row headers as tables of at most ``most`` columns each (each repeating
    the row headers; :data:`MATRIX_COLUMNS` by default), so a wide grid fits the screen
    instead of scrolling sideways."""
    parts = -(-len(columns) // (most or MATRIX_COLUMNS))
    size = -(-len(columns) // max(parts, 1)) or 1
    return [
        Table([corner, *columns[start:start + size]],
              [[row[0], *row[1 + start:1 + start + size]] for row in rows], row_headers=True,
              caption=(f"{what} {start + 1}-{min(start + size, len(columns))} of "
                       f"{len(columns)}",) if parts > 1 else ())
        for start in range(0, max(len(columns), 1), size)
    ]


def failures(ctx: Context) -> list[Block]:
    failed = [r for r in ctx.pairs if not r["passed"]]
    blocks: list[Block] = [Heading(2, "Failures")]
    if not failed:
        return [*blocks, Paragraph(("No failures.",))]
    for row in failed:
        case = row.get("worst_case") or {}
        anchor = failure_anchor(row)
        where = f" ({row['run']})" if row.get("run") else ""
        blocks += [
            Heading(3, f"{row['source']} -> {row['target']}{cell_suffix(row)}{where}", anchor),
            Paragraph((f"{row['examples']} examples in the {row['environment']} environment; "
                       "the minimal failing example:",)),
            *([Paragraph((f"Known silently wrong on this machine: {row['known']}",))]
              if row.get("known") else []),
            CodeBlock(case.get("case") or "-", f"{anchor}-case", "Minimal case"),
            CodeBlock(row.get("error") or case.get("message") or "-", "", "What differed"),
            CodeBlock(pair_replay(ctx.data, row), f"{anchor}-replay", "Replay"),
        ]
    return blocks


def runtimes(ctx: Context) -> list[Block]:
    rows = ctx.data["runtimes"]
    if any("run" in r for r in rows):
        return [Heading(2, "Runtimes"), *_runtimes_by_run(ctx)]
    table = [[cell(r["name"]), cell(r["version"] or "-"), cell(r["device"]),
              cell(r["environment"]),
              cell("available" if r["available"] else f"not available: {r['reason']}")]
             for r in rows]
    return [Heading(2, "Runtimes"),
            Table(["runtime", "version", "device", "environment", "status"], table,
                  row_headers=True)]


def _runtimes_by_run(ctx: Context) -> list[Block]:
    """Merged runs: one row per runtime, one column per environment, reasons as notes."""
    names = [e["name"] for e in ctx.runs()]
    by_key: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in ctx.data["runtimes"]:
        by_key.setdefault((r["name"], r["device"]), {})[r.get("run", "")] = r
    reasons: list[str] = []
    rows = []
    for (name, device), per_run in by_key.items():
        row = [cell(name), cell(device)]
        for run in names:
            found = per_run.get(run)
            if found is None:
                row.append(cell("-"))
            elif found["available"]:
                row.append(cell(found["version"] or "available", verdict="pass"))
            else:
                reason = found["reason"] or "not available"
                if reason not in reasons:
                    reasons.append(reason)
                row.append(cell(f"n/a [{reasons.index(reason) + 1}]"))
        rows.append(row)
    blocks: list[Block] = [
        Paragraph(("The runtime's version in each environment; n/a [k]: not available there, "
                   "for reason k below.",)),
        Table(["runtime", "device", *names], rows, row_headers=True),
    ]
    if reasons:
        blocks.append(BulletList([(f"[{n}] {reason}",) for n, reason in enumerate(reasons, 1)]))
    return blocks


def every_check(ctx: Context) -> list[Block]:
    merged = any("run" in r for r in ctx.pairs)
    header = ["source", "target", *(["environment"] if merged else []), "examples",
              *TENSORS, "passed", "features"]
    rows = []
    for r in ctx.pairs:
        diffs = ["-" if r["max_abs_diff"][t] is None else f"{r['max_abs_diff'][t]:.2e}"
                 for t in TENSORS]
        verdict: Cell = (cell(PASS, verdict="pass") if r["passed"] else
                         cell(Link(FAIL, f"#{failure_anchor(r)}"), verdict="fail"))
        rows.append([cell(r["source"]), cell(r["target"] + cell_suffix(r)),
                     *([cell(r.get("run", ""))] if merged else []), cell(str(r["examples"])),
                     *(cell(d) for d in diffs), verdict,
                     cell(", ".join(r.get("features", [])))])
    failed = sum(not r["passed"] for r in ctx.pairs)
    return [Heading(2, "Every check"),
            Details(f"{len(rows)} checks ({failed} failed): open the table", [
                Table(header, rows)])]


def version_matrix(ctx: Context) -> list[Block]:
    """Pairs against environments; shown only when some check ran in two environments."""
    names = [e["name"] for e in ctx.runs()]
    cells = {(p.get("run") or p.get("environment"), p["source"], p["target"]): p
             for p in ctx.pairs}
    pairs = list(dict.fromkeys((p["source"], p["target"]) for p in ctx.pairs))
    shared = [pair for pair in pairs
              if sum((n, *pair) in cells for n in names) >= 2]
    if len(names) < 2 or not shared:
        return []
    rows = [[cell("status"), *(cell(e.get("status", "ran")) for e in ctx.runs())]]
    for source, target in pairs:
        row = [cell(f"{source} -> {target}")]
        for n in names:
            found = cells.get((n, source, target))
            if found is None:
                row.append(cell("n/a"))
            elif found["passed"]:
                row.append(cell(cell_text(found), verdict="pass"))
            else:
                row.append(cell(Link(cell_text(found), f"#{failure_anchor(found)}"),
                                verdict="fail"))
        rows.append(row)
    return [
        Heading(2, "Version matrix"),
        Paragraph(("Each check in each environment (framework versions in ",
                   Link("Versions", "#versions"), "); n/a: not run there.")),
        Table(["check", *names], rows, row_headers=True),
    ]


def third_party(ctx: Context) -> list[Block]:
    entries = ctx.data.get("third_party") or []
    if not entries:
        return []
    blocks: list[Block] = [
        Heading(2, "Third-party converters"),
        Paragraph(("Converters people use, run on the configurations they claim to support. "
                   "A bug found in one is kept as an expected failure with its minimal case.",)),
    ]
    for e in entries:
        blocks += _third_party_entry(ctx, e)
    return blocks


def _third_party_entry(ctx: Context, e: dict[str, Any]) -> list[Block]:
    status: list[Span] = [f"Version: {e.get('version') or '-'}; status: ",
                          Code(str(e.get("status")))]
    status += [f" ({e['reason']})"] if e.get("reason") else []
    blocks: list[Block] = [Heading(3, e["converter"], f"third-party-{slug(e['converter'])}"),
                           Paragraph(status)]
    if e.get("not_claimed"):
        blocks.append(Paragraph((f"Not claimed: {e['not_claimed']}",)))
    rows: list[list[Cell]] = []
    details: list[Block] = []
    for c in e.get("configurations") or []:
        diff = "-" if c.get("max_abs_diff") is None else f"{c['max_abs_diff']:.2e}"
        anchor = f"third-party-{slug(e['converter'])}-{slug(c['name'])}"
        failing = c.get("minimal_failing_case")
        passed: Cell = (cell("yes", verdict="pass") if c["passed"] else
                        cell(Link("no", f"#{anchor}"), verdict="fail"))
        rows.append([cell(c["name"]), cell(str(c["examples"])), passed, cell(diff),
                     cell(c.get("diagnosis") or "-"),
                     cell(c.get("expected_failure_reason") or "-")])
        if failing:
            replay = (f"python -m equivalence.converters --only {shlex.quote(e['converter'])} "
                      f"--seed {ctx.data.get('seed', 0)}")
            details += [Heading(4, f"{c['name']}: minimal failing case", anchor),
                        CodeBlock(str(failing), f"{anchor}-case", "Minimal case"),
                        CodeBlock(replay, f"{anchor}-replay", "Replay")]
    if rows:
        blocks.append(Table(["configuration", "examples", "passed", "max abs diff",
                             "diagnosis", "expected failure"], rows))
    return blocks + details


def mutations(ctx: Context) -> list[Block]:
    rows = ctx.data.get("mutations") or []
    if not rows:
        return []
    caught = sum(r["caught"] for r in rows)
    table: list[list[Cell]] = []
    details: list[Block] = []
    for r in rows:
        anchor = f"mutation-{slug(r['bug'])}"
        missed = not r["caught"]
        table.append([cell(r["bug"]),
                      cell(Link("NO", f"#{anchor}"), verdict="fail") if missed
                      else cell("yes", verdict="pass"),
                      cell(str(r["examples"])), cell(str(r["seconds"])),
                      cell(r["diagnosis"] or "-")])
        if missed:
            node = f"tests/test_mutations.py::test_bug_is_caught_and_diagnosed[{r['bug']}]"
            details += [Heading(3, f"Not caught: {r['bug']}", anchor),
                        CodeBlock(f"HYPOTHESIS_PROFILE=ci python -m pytest {shlex.quote(node)}",
                                  f"{anchor}-replay", "Replay")]
    return [
        Heading(2, "Mutation self-test"),
        Paragraph(("Known conversion bugs injected into the project's own converters and "
                   "adapters (", Code("equivalence/mutations/self_test.py"),
                   f"): {caught} of {len(rows)} caught.")),
        Table(["bug", "caught", "examples", "seconds", "diagnosis given"], table),
        *details,
    ]


def conformance(ctx: Context) -> list[Block]:
    """Runtime x feature: match, refused by name, or silently wrong (its own failure class)."""
    from equivalence.report.conformance_plot import MATCH, WRONG, axes

    cells = ctx.data.get("conformance") or []
    if not cells:
        return []
    runtimes, features, by_key = axes(cells)
    verdict_class = {MATCH: "pass", WRONG: "fail"}
    rows = []
    for runtime in runtimes:
        row = [cell(runtime)]
        for feature in features:
            found = by_key.get((runtime, feature))
            if found is None:
                row.append(cell(""))
                continue
            text = found["verdict"] + (" (claimed)" if found.get("claimed") else "")
            row.append(cell(text, verdict=verdict_class.get(found["verdict"], "")))
        rows.append(row)
    findings = [
        (Strong(f"{c['runtime']} / {c['feature']}: {c['verdict']}"),
         f" (max abs diff {c['max_abs_diff']:.3g})" if c.get("max_abs_diff") is not None else "",
         ". Minimal case: ", Code(str(c.get("minimal_case", ""))),
         f". {c.get('detail', '')}" if c.get("detail") else "")
        for c in sorted(cells, key=lambda c: (c["verdict"] != WRONG, c["runtime"], c["feature"]))
        if c["verdict"] != MATCH
    ]
    blocks: list[Block] = [
        Heading(2, "Conformance"),
        Paragraph(("Every runtime against every feature it could meet, on generated cases: it "
                   "matches the float64 reference, refuses by name, or is ",
                   Strong("silently wrong"), " (runs and gives other numbers). "
                   "(claimed): the runtime's table row claims the feature. Found cases are "
                   "kept as expected failures in ", Code("tests/test_conformance.py"), ".")),
    ]
    if ctx.images:
        blocks.append(Image("conformance.png", "conformance grid"))
    blocks += split_table("runtime", features, rows, "Features", most=CONFORMANCE_COLUMNS)
    if findings:
        wrong = sum(c["verdict"] == WRONG for c in cells)
        blocks += [Heading(3, "Refused and silently wrong"),
                   Details(f"{len(findings)} cells ({wrong} silently wrong): open the list",
                           [BulletList(findings)])]
    return blocks


def exporters(ctx: Context) -> list[Block]:
    from equivalence.report.exporters_part import section

    return section(ctx.data)


def quantized(ctx: Context) -> list[Block]:
    from equivalence.report.quantized_part import section

    return section(ctx.data)


def key_versions() -> tuple[str, ...]:
    """The packages the versions table lists first: the table's rows' (in table order, a CPU
    build beside its framework), then the harness's own."""
    rows = [name for p in table.packages() for name in (p, CPU_BUILDS.get(p)) if name]
    return tuple(dict.fromkeys([*rows, *HARNESS_PACKAGES]))


def versions(ctx: Context) -> list[Block]:
    """One column per environment; every package any of them recorded."""
    runs = ctx.runs() or [{"name": "this run", "versions": ctx.data["versions"]}]
    packages = list(dict.fromkeys(
        [k for k in key_versions() if any(k in e.get("versions", {}) for e in runs)]
        + sorted({k for e in runs for k in e.get("versions", {})})))
    rows = [[cell(p), *(cell(e.get("versions", {}).get(p, "-")) for e in runs)]
            for p in packages]
    if any(e.get("status") for e in runs):
        rows.append([cell("status"), *(cell(e.get("status", "ran")) for e in runs)])
    checks = [cell("checks run"), *(cell(str(sum(
        (p.get("run") or p.get("environment")) == e["name"] for p in ctx.pairs))) for e in runs)]
    return [Heading(2, "Versions"),
            Table(["package", *(e["name"] for e in runs)], [*rows, checks], row_headers=True)]


def error_growth(ctx: Context) -> list[Block]:
    if not ctx.images or not ctx.data.get("error_growth"):
        return []
    return [Heading(2, "Error growth with sequence length"),
            Paragraph(("Each runtime against the float64 reference at T = 1..128 (I=4, H=8, "
                       "B=4): the band holds the runtimes that agree, a runtime ten times "
                       "their median anywhere is drawn by name, and the dashed line is the "
                       "tolerance floor, which grows with the square root of T.",)),
            Image("error_growth.png", "error growth with sequence length, tolerance floor")]


SECTIONS: tuple[Callable[[Context], list[Block]], ...] = (
    lead, verdict, matrix, failures, runtimes, every_check, version_matrix, conformance,
    third_party, exporters, quantized, mutations, versions, error_growth,
)


def document(data: dict[str, Any], *, replay: str, images: bool = True) -> Document:
    ctx = Context(data, replay, images)
    doc = Document("Equivalence report")
    for section in SECTIONS:
        doc.blocks += section(ctx)
    return doc
