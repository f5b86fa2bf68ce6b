"""The report's "Exporters" section and the summary's reading of the ``exporters`` key.

One real :func:`run_exporters` result (torch.onnx.export, one case, one probe
example) is rendered as HTML and Markdown; hand-made entries cover every
status (as claimed, by design, known, unexpected, surprise pass, not run), an
unavailable exporter and an export error; the summary counts an unexpected probe
as a failure (so the run fails), a known one as a known deviation, and names the
surprise passes.
"""

from __future__ import annotations

import copy
from html.parser import HTMLParser
from typing import Any

import pytest

from equivalence.converters.exporter import run_exporters
from equivalence.report import phases, render, results, summary
from equivalence.report.exporters_part import STATUS_CLASS, section

pytestmark = pytest.mark.cpu

ISSUE = "https://github.com/example/exporter/issues/1"


CHEAP = ("torch.onnx.export (file)", "onnxoptimizer")  # about a second each, one case


@pytest.fixture(scope="module")
def real_runs() -> list[dict[str, Any]]:
    """The report's way: each exporter in its own fresh process, two at a time."""
    return phases.exporters(cases=1, probe_examples=1, seed=0, jobs=2, only=CHEAP)


def test_exporters_in_worker_processes_give_the_entries_of_one_process(
        real_runs: list[dict[str, Any]]) -> None:
    """Same entries, numbers included, in EXPORTERS' order, whatever process ran them."""
    assert [e["exporter"] for e in real_runs] == ["torch.onnx.export (file)"] * 2 + \
        ["onnxoptimizer"] * 2
    assert real_runs == run_exporters(cases=1, probe_examples=1, seed=0, only=CHEAP)


def _probe(name: str, verdict: str, status: str, expected: dict | None = None,
           cases: int = 1, diff: float = 0.0) -> dict[str, Any]:
    return {"name": name, "verdict": verdict, "status": status, "cases": cases,
            "max_abs_diff": diff, "minimal_case": {"batch": 1, "steps": 3} if verdict != "match"
            else None, "reason": "B differs" if verdict != "match" else None,
            "expected": expected}


def _known(verdict: str, upstream: str = ISSUE) -> dict[str, str]:
    return {"verdict": verdict, "reason": "lengths ignored", "upstream": upstream}


def hand_made() -> list[dict[str, Any]]:
    """Every status once, an unavailable exporter, and a configuration with an export error."""
    by_design = {"verdict": "refused", "reason": "fixed shapes", "upstream": "by design"}
    probes = [
        _probe("exported shape", "match", "as claimed"),
        _probe("longer time", "refused", "as claimed", by_design),
        _probe("lengths", "silently wrong", "known", _known("silently wrong"), diff=0.42),
        _probe("streaming", "silently wrong", "unexpected", diff=0.07),
        _probe("batch 1", "match", "surprise pass", _known("silently wrong")),
        _probe("initial states", "match", "surprise pass", _known("refused"), cases=0),
    ]
    return [
        {"exporter": "fake exporter", "version": "fake 1.0", "configuration": "dynamic",
         "cases": 1, "unavailable": None, "errors": ["RuntimeError: export blew up"],
         "probes": probes},
        {"exporter": "absent exporter", "version": "", "configuration": "default",
         "cases": 0, "unavailable": "absent-pkg is not installed", "errors": [], "probes": []},
        {"exporter": "absent exporter", "version": "", "configuration": "static",
         "cases": 0, "unavailable": "absent-pkg is not installed", "errors": [], "probes": []},
    ]


def _data(runs: list[dict[str, Any]], pairs: list[dict[str, Any]] | None = None) -> dict:
    data = results.new_results(seed=0, examples=1, environment="main", runtimes=[],
                               pairs=pairs or [])
    data["exporters"] = runs
    return data


class _Cells(HTMLParser):
    """The class and text of every <td>, to read a cell's colour back from the page."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str]] = []
        self._open: list[Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "td":
            self._open = [dict(attrs).get("class") or "", ""]

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open[1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._open is not None:
            self.cells.append((self._open[0], self._open[1]))
            self._open = None


def _html_cells(data: dict) -> list[tuple[str, str]]:
    parser = _Cells()
    parser.feed(render.html_page(data, replay="r", images=False))
    return parser.cells


def test_a_real_run_renders_every_configuration_and_probe(real_runs) -> None:
    data = _data(real_runs)
    markdown = render.markdown(data, replay="r", images=False)
    part = markdown.split("\n## Exporters\n", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in part.splitlines() if line.startswith("| exporter: "))
    for run in real_runs:
        assert f"{run['exporter']}: {run['configuration']}" in part
        assert run["version"] in part
        for probe in run["probes"]:
            assert f"| {probe['name']} |" in header, (probe["name"], header)
    # the fixed-shape configuration's other shapes are refusals it claims, shown as such
    fixed = next(r for r in real_runs if "fixed" in r["configuration"])
    assert all(p["status"] == "as claimed" for p in fixed["probes"]), fixed
    assert "refused (by design)" in part
    probes = summary.exporter_probes(data)
    assert probes and {found for _, found in probes} == {"as claimed"}
    found = summary.verdict(data)
    assert found.failed == [] and found.surprises == []
    assert found.checks == len(probes) == found.passed
    # the HTML page colours every probe cell as claimed: green
    cells = _html_cells(data)
    probe_cells = [c for c in cells if c[1].startswith(("match", "refused"))]
    assert len(probe_cells) == len(probes)
    assert {css for css, _ in probe_cells} == {"pass"}


def test_every_status_is_coloured_marked_and_linked() -> None:
    data = _data(hand_made())
    cells = _html_cells(data)
    cases = ("", str(data["exporters"][0]["cases"]))  # the row: cases, then the probes
    start = next(i + 1 for i, c in enumerate(cells[:-1]) if c == cases and cells[i + 1][0])
    names = [p["name"] for p in data["exporters"][0]["probes"]]
    by_probe = dict(zip(names, cells[start:start + len(names)], strict=True))
    assert by_probe["exported shape"] == (STATUS_CLASS["as claimed"], "match") == ("pass", "match")
    assert by_probe["longer time"] == ("pass", "refused (by design)")
    assert by_probe["lengths"] == ("known", "silently wrong 4.20e-01 (known: upstream issue)")
    assert by_probe["streaming"] == ("fail", "silently wrong 7.00e-02 UNEXPECTED")
    assert by_probe["batch 1"] == ("surprise", "match SURPRISE PASS (expected silently wrong)")
    assert by_probe["initial states"] == ("", "not run")
    html = render.html_page(data, replay="r", images=False)
    assert "td.known" in html and "td.surprise" in html  # the page styles the new classes
    assert f'<a href="{ISSUE}">upstream issue</a>' in html
    markdown = render.markdown(data, replay="r", images=False)
    part = markdown.split("\n## Exporters\n", 1)[1].split("\n## ", 1)[0]
    # Markdown has no colours: the cell says its status
    assert f"silently wrong 4.20e-01 (known: [upstream issue]({ISSUE}))" in part
    assert "silently wrong 7.00e-02 [UNEXPECTED](#exporter-fake-exporter-dynamic-streaming)" \
        in part
    assert "match [SURPRISE PASS](#exporter-fake-exporter-dynamic-batch-1) " \
           "(expected silently wrong)" in part
    assert '<a id="exporter-fake-exporter-dynamic-streaming"></a>' in part
    assert '<a id="exporter-fake-exporter-dynamic-batch-1"></a>' in part
    # the probe nobody reached is not a surprise pass
    assert "exporter-fake-exporter-dynamic-initial-states" not in part
    # unavailable once per exporter with its configurations and reason; the export error
    assert part.count("absent-pkg is not installed") == 1
    assert "**absent exporter** (default, static): absent-pkg is not installed" in part
    assert "`RuntimeError: export blew up`" in part
    assert "| absent exporter: default" not in part  # an unavailable exporter has no row
    assert section({"exporters": []}) == []


def test_the_summary_counts_unexpected_as_failures_and_names_surprises() -> None:
    pairs = [{"source": "a", "target": "reference", "passed": True}]
    found = summary.verdict(_data(hand_made(), pairs))
    assert found.failed == ["fake exporter [dynamic] streaming: silently wrong"]
    assert found.known == found.known_exporters == ["fake exporter [dynamic] lengths: "
                                                    "silently wrong"]
    assert found.surprises == ["fake exporter [dynamic] batch 1: match"]
    # the pair, exported shape, longer time (by design), the surprise pass: 4 passed
    assert (found.checks, found.passed) == (6, 4)
    assert found.exporters == {"as claimed": 2, "known": 1, "unexpected": 1, "surprise pass": 1}
    assert ("exporter absent exporter", "absent-pkg is not installed") in found.not_run
    lines = "\n".join(found.lines())
    for expected in ("6 checks: 4 passed, 1 failed, 1 known deviations",
                     "failed: fake exporter [dynamic] streaming",
                     "exporters: 5 probes, 2 as claimed, 1 known, 1 unexpected, 1 surprise pass",
                     "known exporter failures: fake exporter [dynamic] lengths",
                     "surprise passes (a known failure did not show",
                     "not run: exporter absent exporter (absent-pkg is not installed)"):
        assert expected in lines, lines
    assert "known silently wrong on this machine" not in lines  # no pair deviates here


def test_must_fail_an_unexpected_probe_fails_the_run_a_known_one_does_not() -> None:
    runs = hand_made()
    quiet = copy.deepcopy(runs)
    quiet[0]["probes"] = [p for p in quiet[0]["probes"] if p["status"] != "unexpected"]
    assert summary.verdict(_data(quiet)).failed == []  # known and surprise passes: no failure
    assert summary.verdict(_data(runs)).failed != []
    # the page's verdict section names it under "Failed"
    markdown = render.markdown(_data(runs), replay="r", images=False)
    verdict_part = markdown.split("\n## Verdict\n", 1)[1].split("\n## ", 1)[0]
    assert "**Failed: **fake exporter [dynamic] streaming: silently wrong" in verdict_part


def test_an_exporter_whose_every_export_failed_is_not_run() -> None:
    run = {"exporter": "broken", "version": "1", "configuration": "c", "cases": 0,
           "unavailable": None, "errors": ["ValueError: no"], "probes": [
               _probe("lengths", "match", "surprise pass", _known("silently wrong"), cases=0)]}
    found = summary.verdict(_data([run]))
    assert found.surprises == [] and found.checks == 0
    assert ("exporter broken [c]", "every export failed: ValueError: no") in found.not_run


def test_merge_keeps_every_runs_exporters() -> None:
    one, two = _data(hand_made()[:1]), _data(hand_made()[1:])
    merged = results.merge([one, two], seed=0)
    assert [r["configuration"] for r in merged["exporters"]] == ["dynamic", "default", "static"]
    assert results.new_results(seed=0, examples=1, environment="main", runtimes=[],
                               pairs=[])["exporters"] == []
