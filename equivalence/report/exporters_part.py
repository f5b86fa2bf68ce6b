"""The report's "Exporters" section, from the results JSON's ``exporters`` list.

Each entry is one :meth:`equivalence.converters.exporter.ExporterRun.to_dict`:
an exporter configuration, its version, and per probe the worst verdict over
its cases with a status (:data:`~equivalence.converters.exporter.AS_CLAIMED`,
``known``, ``unexpected``, ``surprise pass``). The section is one grid
(configurations x probes, each cell the verdict coloured by its status), the
probes that are not as claimed with their minimal cases, the exporters that
could not run here and the exports that failed.

A probe no case reached (every export failed) has ``cases == 0``: it reads
"not run", never a surprise pass, since nothing passed.
"""

from __future__ import annotations

from typing import Any

from equivalence.report.document import (
    Block,
    BulletList,
    Cell,
    Code,
    CodeBlock,
    Details,
    Heading,
    Link,
    Paragraph,
    Span,
    Strong,
    Table,
    Text,
    cell,
    slug,
)

AS_CLAIMED, KNOWN, UNEXPECTED, SURPRISE = "as claimed", "known", "unexpected", "surprise pass"
NOT_RUN = "not run"
# the cell classes to_html colours: green, amber, red, blue, none
STATUS_CLASS = {AS_CLAIMED: "pass", KNOWN: "known", UNEXPECTED: "fail", SURPRISE: "surprise",
                NOT_RUN: ""}


def status(probe: dict[str, Any]) -> str:
    """The probe's status, ``not run`` where no case reached it."""
    return NOT_RUN if not probe.get("cases") else str(probe["status"])


def judged(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries that ran here (an unavailable exporter has no probes to show)."""
    return [r for r in runs if not r.get("unavailable")]


def row_name(run: dict[str, Any]) -> str:
    return f"{run['exporter']}: {run['configuration']}"


def anchor(run: dict[str, Any], probe: dict[str, Any]) -> str:
    return f"exporter-{slug(row_name(run))}-{slug(probe['name'])}"


def upstream_span(upstream: str) -> Span:
    """A link when the upstream is an issue address, else its words."""
    return Link("upstream issue", upstream) if upstream.startswith("http") else upstream


def _diff(probe: dict[str, Any]) -> str:
    diff = probe.get("max_abs_diff")
    return f" {diff:.2e}" if probe["verdict"] == "silently wrong" and diff else ""


def probe_cell(run: dict[str, Any], probe: dict[str, Any]) -> Cell:
    """The verdict, what it means against the expectation, and where to read more."""
    found, expected = status(probe), probe.get("expected") or {}
    text: list[Span] = [probe["verdict"] + _diff(probe)]
    if found == NOT_RUN:
        text = [NOT_RUN]
    elif found == AS_CLAIMED and expected:
        text.append(" (by design)")
    elif found == KNOWN:
        text += [" (known: ", upstream_span(expected["upstream"]), ")"]
    elif found == SURPRISE:
        text += [" ", Link("SURPRISE PASS", f"#{anchor(run, probe)}"),
                 f" (expected {expected['verdict']})"]
    elif found == UNEXPECTED:
        text += [" ", Link("UNEXPECTED", f"#{anchor(run, probe)}")]
        if expected:
            text.append(f" (expected {expected['verdict']})")
    return cell(*text, verdict=STATUS_CLASS[found])


def probe_names(runs: list[dict[str, Any]]) -> list[str]:
    """Every probe any configuration met, in the order they were first met."""
    return list(dict.fromkeys(p["name"] for r in runs for p in r.get("probes") or []))


def grid(runs: list[dict[str, Any]]) -> Table:
    names = probe_names(runs)
    rows = []
    for run in runs:
        by_name = {p["name"]: p for p in run.get("probes") or []}
        row = [cell(row_name(run)), cell(str(run["cases"]))]
        row += [probe_cell(run, by_name[n]) if n in by_name else cell("-") for n in names]
        rows.append(row)
    # the versions are listed under the table (versions()): as a column they made it
    # wider than a 1400 px screen
    return Table(["exporter: configuration", "cases", *names], rows, row_headers=True)


def versions(runs: list[dict[str, Any]]) -> list[Text]:
    """One line per exporter: the versions its configurations ran with."""
    found = dict.fromkeys((r["exporter"], r.get("version") or "-") for r in runs)
    return [(Strong(name), f": {version}") for name, version in found]


def _detail(run: dict[str, Any], probe: dict[str, Any]) -> list[Heading | Paragraph | CodeBlock]:
    """One probe that is not as claimed: what it gave, what was expected, its minimal case."""
    expected = probe.get("expected") or {}
    said: list[Span] = [f"{status(probe)}: {probe['verdict']} on {probe['cases']} cases"]
    if probe["verdict"] == "silently wrong":
        said.append(f", max abs diff {probe['max_abs_diff']:.3g}")
    if expected:
        said += [f"; expected {expected['verdict']} ({expected['reason']}; ",
                 upstream_span(expected["upstream"]), ")"]
    blocks: list[Heading | Paragraph | CodeBlock] = [
        Heading(4, f"{row_name(run)} / {probe['name']}", anchor(run, probe)), Paragraph(said)]
    if probe.get("reason"):
        blocks.append(CodeBlock(str(probe["reason"]), "", "What differed"))
    if probe.get("minimal_case"):
        blocks.append(CodeBlock(str(probe["minimal_case"]), "", "Minimal case"))
    return blocks


def details(runs: list[dict[str, Any]]) -> list[Block]:
    """Unexpected probes and surprise passes in the open, known failures folded."""
    open_blocks: list[Block] = []
    known: list[Heading | Paragraph | CodeBlock] = []
    for run in runs:
        for probe in run.get("probes") or []:
            found = status(probe)
            if found in (UNEXPECTED, SURPRISE):
                open_blocks += _detail(run, probe)
            elif found == KNOWN:
                known += _detail(run, probe)
    blocks: list[Block] = []
    if open_blocks:
        blocks += [Heading(3, "Unexpected and surprise passes", "exporters-unexpected"),
                   *open_blocks]
    if known:
        count = sum(isinstance(b, Heading) for b in known)
        blocks += [Heading(3, "Known failures", "exporters-known"),
                   Details(f"{count} known failures: open the list", known)]
    return blocks


def unavailable(runs: list[dict[str, Any]]) -> list[Text]:
    """One line per exporter that cannot run here, with its reason (once, not per configuration)."""
    seen: dict[tuple[str, str], list[str]] = {}
    for r in runs:
        if r.get("unavailable"):
            seen.setdefault((r["exporter"], r["unavailable"]), []).append(r["configuration"])
    return [(Strong(name), f" ({', '.join(configs)}): {why}")
            for (name, why), configs in seen.items()]


def errors(runs: list[dict[str, Any]]) -> list[Text]:
    return [(Strong(row_name(r)), f" ({r['cases']} cases judged): ", Code(error))
            for r in runs for error in r.get("errors") or []]


def section(data: dict[str, Any]) -> list[Block]:
    """The section's blocks; nothing when the results hold no ``exporters`` entries."""
    runs = data.get("exporters") or []
    if not runs:
        return []
    ran = judged(runs)
    counts: dict[str, int] = {}
    for probe in (p for r in ran for p in r.get("probes") or []):
        counts[status(probe)] = counts.get(status(probe), 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none judged"
    blocks: list[Block] = [
        Heading(2, "Exporters"),
        Paragraph((
            "The paths people deploy LSTMs through, each export opened as ",
            Code("equivalence compare"), " opens a file and compared with its source under "
            "every probe (other time lengths and batch sizes, initial states, streaming, "
            "sequence lengths). A cell is the worst verdict over the cases: ",
            Strong("as claimed"), " (green; a refusal the configuration claims reads "
            "\"by design\"), ", Strong("known"), " (amber, linked to its upstream issue), ",
            Strong("unexpected"), " (red: fails the run), ", Strong("surprise pass"),
            " (blue: a known failure that did not show, so it may be fixed upstream). "
            f"Probes: {tally}.")),
    ]
    if ran:
        blocks += [grid(ran), Heading(3, "Versions", "exporters-versions"),
                   BulletList(versions(ran))]
        blocks += details(ran)
    if unavailable(runs):
        blocks += [Heading(3, "Not available here", "exporters-unavailable"),
                   BulletList(unavailable(runs))]
    if errors(ran):
        blocks += [Heading(3, "Export errors", "exporters-errors"), BulletList(errors(ran))]
    return blocks
