"""`equivalence report`: files written, bad input refused cleanly, results deterministic, merges;
the HTML page checked in headless Chromium (real HTML, no raw Markdown, fits a laptop screen,
every failure linked to its minimal case and replay command); version matrix and runtimes."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from equivalence import table
from equivalence.capabilities import joint_capabilities
from equivalence.cli.main import main
from equivalence.harness import judge as harness
from equivalence.harness.explore import explore
from equivalence.report import render, results
from equivalence.report.cells import cell_text
from equivalence.report.sections import failure_anchor
from equivalence.report.write import FILES, write_report
from equivalence.strategies import lstm_cases

pytestmark = pytest.mark.cpu
SMALL = ["--only", "torch->onnxruntime", "onnxruntime->reference", "--examples", "3"]


def report(out: Path, *extra: str) -> int:
    return main(["report", *SMALL, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def small_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small report, shared by the tests that only read what it wrote (each report run
    spawns its worker processes, about 5 s)."""
    out = tmp_path_factory.mktemp("small") / "a"
    assert report(out) == 0
    return out


def stable(path: Path) -> dict:
    data = json.loads((path / "equivalence.json").read_text())
    data.pop("generated_at")
    return data


def test_report_writes_the_five_files_and_is_deterministic(small_report: Path,
                                                          tmp_path: Path) -> None:
    assert report(tmp_path / "b") == 0
    for name in FILES:
        assert (small_report / name).stat().st_size > 0, name
    first = stable(small_report)
    assert first == stable(tmp_path / "b")
    pairs = {(p["source"], p["target"]): p for p in first["pairs"]}
    assert set(pairs) == {("torch", "onnxruntime"), ("onnxruntime", "reference")}
    assert all(p["examples"] == 3 and p["passed"] for p in pairs.values())
    assert {r["name"] for r in first["runtimes"]} >= {"torch", "onnxruntime", "neoml"}
    assert "| **torch** |" in (small_report / "index.md").read_text()


def test_merge_builds_one_report_from_several_runs(small_report: Path, tmp_path: Path) -> None:
    results_file = str(small_report / "equivalence.json")
    assert main(["report", "--merge", results_file, results_file,
                 "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "equivalence.json").read_text())
    # one environment's results twice are shards of one run: one environment, every pair
    assert len(merged["pairs"]) == 4 and len(merged["environments"]) == 1


@pytest.mark.parametrize("content, problem", [("{not json", "not valid JSON"),
                                              ('{"pairs": 3, "runtimes": []}', "'pairs'"),
                                              ('{"pairs": [{"source": "x"}], "runtimes": []}',
                                               "pairs[0] lacks")])
def test_malformed_merge_file_is_named_and_nothing_is_written(tmp_path: Path, capsys,
                                                              content: str, problem: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["report", "--merge", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and problem in err
    assert not (tmp_path / "out").exists()


def test_the_gru_checks_make_their_own_matrix(tmp_path: Path) -> None:
    """GRU checks are named as the test ids are (torch->keras[gru]), run on GRU networks, and
    fill a "GRU matrix" of their own beside the LSTM's."""
    from equivalence.report.matrix import checks

    every = checks()
    assert ("torch", "onnxruntime", "gru") in every and ("torch", "reference", "gru") in every
    assert ("torch", "flax", "gru") in every  # nn.GRUCell; flax has no optimized GRU cell
    assert not any(c[2] == "gru" and "flax_optimized" in c[:2] for c in every)
    only = ["--only", "torch->onnxruntime[gru]", "torch->onnxruntime", "--examples", "3"]
    assert main(["report", *only, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "equivalence.json").read_text())["pairs"]
    assert sorted(r["cell"] for r in rows) == ["gru", "lstm"]
    gru = next(r for r in rows if r["cell"] == "gru")
    assert "cell=gru" in gru["features"] and gru["max_abs_diff"]["c"] is None
    page = (tmp_path / "index.md").read_text()
    lstm_part, gru_part = page.split("## GRU matrix")
    assert "| **torch** |" in lstm_part.split("## Matrix")[1] and "| **torch** |" in gru_part
    # each matrix has its heatmap
    assert "heatmap.png" in lstm_part and "heatmap_gru.png" in gru_part


def test_unknown_pair_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["report", "--only", "torch->caffe", "--out", str(tmp_path / "o")]) == 2
    assert "torch->caffe" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_known_deviation_is_reported_failing_but_does_not_fail_the_run(tmp_path: Path,
                                                                       capsys) -> None:
    """openvino_default at bf16 (CPUs with AVX512-BF16/AMX) fails its check, with the reason;
    where its default precision is f32 the check passes. Either way the run exits 0."""
    runtime = table.entry("openvino_default").load()
    if runtime.unavailable_reason():
        pytest.skip(f"openvino: {runtime.unavailable_reason()}")
    out_dir = tmp_path / "o"
    code = main(["report", "--only", "openvino_default->reference", "--examples", "3",
                 "--jobs", "1", "--out", str(out_dir)])
    out = capsys.readouterr().out
    row = json.loads((out_dir / "equivalence.json").read_text())["pairs"][0]
    deviation = runtime.known_deviation()
    assert code == 0, out
    if deviation is None:
        assert row["passed"] and "known" not in row
    else:
        assert not row["passed"] and row["known"] == deviation
        assert "known silently wrong on this machine: openvino_default->reference" in out
        assert deviation in (out_dir / "index.md").read_text()


def test_unwritable_output_leaves_nothing_behind(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert report(blocker / "reports") == 2
    assert "cannot write the report" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ------------------------------------------------------------------ the pages in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Markdown that must never reach the page as text (outside <pre>/<code>)
RAW_MARKDOWN = {
    "pipe table rule": re.compile(r"\|\s*:?-{3,}"),
    "bold": re.compile(r"\*\*\S"),
    "heading": re.compile(r"(^|\n)\s*#{1,6} \S"),
    "link or image": re.compile(r"\]\("),
    "code fence": re.compile(r"```|~~~"),
    "inline code": re.compile(r"`[^`\s][^`]*`"),
}
# ...and Markdown structure must not hide in preformatted text either (the old "Details")
RAW_MARKDOWN_ANYWHERE = ("pipe table rule", "heading", "code fence")


class _Dom(HTMLParser):
    """What a test needs from a dumped DOM: visible text, ids, links, tables, headings."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.all_text: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.tags: list[str] = []
        self.body: dict[str, str] = {}
        self.pre_ids: dict[str, str] = {}
        self._raw = 0  # inside pre, code, script or style
        self._pre: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "a" and attributes.get("href", "").startswith("#"):
            self.links.append(attributes["href"][1:])
        if tag == "body":
            self.body = {k: v or "" for k, v in attributes.items()}
        if tag in ("pre", "code", "script", "style"):
            self._raw += 1
        if tag == "pre":
            self._pre = attributes.get("id", "")
            if self._pre:
                self.pre_ids[self._pre] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("pre", "code", "script", "style"):
            self._raw -= 1
        if tag == "pre":
            self._pre = None

    def handle_data(self, data: str) -> None:
        if self._raw == 0 or self._pre is not None:
            self.all_text.append(data)
        if self._pre:
            self.pre_ids[self._pre] += data
        if not self._raw:
            self.text.append(data)


def browser_dom(page: Path, tmp_path: Path, width: int = 1366) -> _Dom:
    """The page as headless Chromium lays it out at ``width`` px, with its page width."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install -y chromium)")
    probe = page.with_name(f"probe-{page.name}")
    measure = ("<script>const seen = document.body.dataset;"
               "seen.pageWidth = document.documentElement.scrollWidth;"
               "seen.viewport = window.innerWidth;"
               # tables that scroll sideways in their own box at this width
               "seen.wideTables = [...document.querySelectorAll('.table-wrap')]"
               ".filter(e => e.scrollWidth > e.clientWidth + 1).length;"
               "seen.firstSection = document.querySelector('h2').id;"
               "seen.openDetails = document.querySelectorAll('details[open]').length;"
               "</script></body>")
    probe.write_text(page.read_text().replace("</body>", measure))
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / f'chromium-{width}'}",
               f"--window-size={width},900", "--dump-dom", probe.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    return dom


def _failing_row() -> dict:
    """A real failure: torch -> onnxruntime through a converter that drops bias_hh."""
    src, tgt = table.entry("torch"), table.entry("onnxruntime")
    caps = joint_capabilities([src.capabilities, tgt.capabilities])

    def judge(case):
        def dropped(native: dict) -> object:
            broken = {k: (np.zeros_like(v) if k.startswith("bias_hh") else v)
                      for k, v in native.items()}
            return harness.move(src, tgt, case, broken)
        return harness.check_pair(src, tgt, case, converter=dropped)

    found = explore(lstm_cases(capabilities=caps), judge, max_examples=5, seed_value=0)
    assert not found.passed
    return results.pair_row("torch", "onnxruntime", "main", found)


def _check_page(dom: _Dom, data: dict) -> None:
    visible = "".join(dom.text)
    for what, pattern in RAW_MARKDOWN.items():
        found = pattern.search(visible)
        around = visible[max(found.start() - 60, 0):found.end() + 60] if found else ""
        assert found is None, f"raw Markdown ({what}) on the page: ...{around}..."
    everything = "".join(dom.all_text)
    for what in RAW_MARKDOWN_ANYWHERE:
        assert not RAW_MARKDOWN[what].search(everything), f"raw Markdown ({what}) in a <pre>"
    sections = sections_of(data)
    assert sections and sections <= dom.ids, sections - dom.ids
    assert dom.tags.count("table") >= 3 and dom.tags.count("h2") == len(sections)
    dangling = [link for link in dom.links if link not in dom.ids]
    assert not dangling, f"links to nothing: {dangling}"
    assert int(dom.body["data-page-width"]) <= int(dom.body["data-viewport"]), dom.body


def sections_of(data: dict) -> set[str]:
    from equivalence.report.sections import document

    return {h.id for h in document(data, replay="equivalence report").contents()}


def test_html_report_is_real_html_in_a_browser(tmp_path: Path) -> None:
    assert report(tmp_path / "r") == 0
    data = json.loads((tmp_path / "r" / "equivalence.json").read_text())
    failing = _failing_row()
    data["pairs"].append(failing)
    write_report(data, tmp_path / "r", replay="equivalence report")
    for width in (1366, 1280):
        dom = browser_dom(tmp_path / "r" / "index.html", tmp_path, width)
        _check_page(dom, data)
    # the failure: its matrix cell and its row link to it; it shows its case and replay
    anchor = failure_anchor(failing)
    assert dom.links.count(anchor) == 2
    assert dom.pre_ids[f"{anchor}-case"].strip() == failing["worst_case"]["case"]
    replay = dom.pre_ids[f"{anchor}-replay"]
    assert replay.startswith("equivalence report --only 'torch->onnxruntime'")
    markdown = (tmp_path / "r" / "index.md").read_text()
    assert f"(#{anchor})" in markdown and f'<a id="{anchor}-replay"></a>' in markdown


def test_the_browser_check_rejects_markdown_shown_as_text(tmp_path: Path) -> None:
    """The check must fail on the old page: the Markdown report dumped in a <pre>."""
    assert report(tmp_path / "r") == 0
    data = json.loads((tmp_path / "r" / "equivalence.json").read_text())
    old = tmp_path / "old.html"
    old.write_text("<!doctype html><html><body><h1>Equivalence report</h1><h2>Details</h2>"
                   f"<pre>{html.escape(render.markdown(data, replay='r'))}</pre></body></html>")
    with pytest.raises(AssertionError, match="raw Markdown"):
        _check_page(browser_dom(old, tmp_path), data)


@pytest.mark.parametrize("committed", ["reports", "reports/matrix"])
def test_committed_reports_render_as_real_html(tmp_path: Path, committed: str) -> None:
    source = Path(__file__).parent.parent / committed / "equivalence.json"
    if not source.exists():
        pytest.skip(f"no committed {committed}")
    data = json.loads(source.read_text())
    page = tmp_path / "index.html"
    page.write_text(render.html_page(data, replay="equivalence report"))
    _check_page(browser_dom(page, tmp_path), data)


def _run(name: str, pairs: list[dict], runtimes: list[dict]) -> dict:
    data = results.new_results(seed=0, examples=3, environment=name, runtimes=runtimes,
                               pairs=pairs)
    data["environments"][0]["name"] = name
    return data


def test_version_matrix_only_when_a_check_ran_in_two_environments(small_report: Path) -> None:
    one = json.loads((small_report / "equivalence.json").read_text())
    # main + neoml (disjoint checks): nothing to lay side by side
    split = _run("main", one["pairs"][:1], one["runtimes"])
    split["pairs"] += [{**one["pairs"][1], "environment": "neoml"}]
    split["environments"].append({"name": "neoml", "versions": {"numpy": "1.26.4"}})
    assert "## Version matrix" not in render.markdown(split, replay="r")
    # the same checks in two runs: every cell is the real one, none n/a
    merged = results.merge([_run("old", one["pairs"], one["runtimes"]),
                            _run("new", one["pairs"], one["runtimes"])], seed=0)
    text = render.markdown(merged, replay="r")
    block = text.split("## Version matrix", 1)[1].split("\n## ", 1)[0]
    for row in one["pairs"]:
        line = next(ln for ln in block.splitlines() if f"{row['source']} -> {row['target']}" in ln)
        assert line.count(cell_text(row)) == 2 and "n/a" not in line


def test_merged_runtimes_table_has_one_row_per_runtime(small_report: Path) -> None:
    one = json.loads((small_report / "equivalence.json").read_text())
    other = [{**r, "available": False, "version": "", "reason": "not installed in old"}
             for r in one["runtimes"]]
    merged = results.merge([_run("old", [], other), _run("new", [], one["runtimes"])], seed=0)
    text = render.markdown(merged, replay="r")
    block = text.split("## Runtimes", 1)[1].split("\n## ", 1)[0]
    header = next(ln for ln in block.splitlines() if ln.startswith("| runtime"))
    assert header == "| runtime | device | old | new |"
    for runtime in one["runtimes"]:
        rows = [ln for ln in block.splitlines() if ln.startswith(f"| **{runtime['name']}** |")]
        assert len(rows) == 1, rows
    assert "[1] not installed in old" in block


def test_a_cell_says_which_dtypes_it_judged(small_report: Path) -> None:
    data = json.loads((small_report / "equivalence.json").read_text())
    text = (small_report / "index.md").read_text()
    for row in data["pairs"]:
        judged = row["max_abs_diff_by_dtype"]
        assert "float32" in judged, row["source"]
        shown = cell_text(row)
        assert shown in text
        listed = shown.split("[", 1)[1].rstrip("]").split()
        assert listed == [{"float16": "f16", "float32": "f32"}[d]
                          for d in ("float16", "float32") if d in judged], shown
    # without float32 the cell says so, and its number is the worst of the others
    row = {"passed": True, "max_abs_diff": {"output": 3e-3, "h": 1e-3, "c": 2e-3},
           "max_abs_diff_by_dtype": {"bfloat16": 3e-3, "float64": 1e-12}}
    assert cell_text(row) == "3.0e-03 pass [bf16 f64; no f32]"
    assert cell_text({**row, "passed": False, "max_abs_diff_by_dtype": {"float32": 2e-7}}) \
        == "2.0e-07 FAIL [f32]"


# ------------------------------------------------------------------ the report at a glance


def _committed_with_a_failure() -> dict:
    source = Path(__file__).parent.parent / "reports" / "equivalence.json"
    if not source.exists():
        pytest.skip("no committed report")
    data = json.loads(source.read_text())
    data["pairs"].append(_failing_row())
    return data


def _page(data: dict, tmp_path: Path) -> Path:
    page = tmp_path / "index.html"
    page.write_text(render.html_page(data, replay="equivalence report"))
    return page


def test_the_page_reads_at_1400_and_800_px(tmp_path: Path) -> None:
    """Laid out by Chromium: the verdict first, no table wider than a 1400 px screen, the
    long table folded, and at 800 px still no sideways scrolling of the page."""
    data = _committed_with_a_failure()
    page = _page(data, tmp_path)
    wide = browser_dom(page, tmp_path, 1400)
    _check_page(wide, data)
    assert wide.body["data-first-section"] == "verdict"
    assert wide.body["data-wide-tables"] == "0", "a table scrolls sideways at 1400 px"
    assert wide.body["data-open-details"] == "0"
    narrow = browser_dom(page, tmp_path, 800)
    _check_page(narrow, data)  # the page itself never scrolls sideways


def test_the_width_check_fails_on_unsplit_grids(tmp_path: Path, monkeypatch) -> None:
    from equivalence.report import sections

    data = _committed_with_a_failure()
    monkeypatch.setattr(sections, "MATRIX_COLUMNS", 100)
    monkeypatch.setattr(sections, "CONFORMANCE_COLUMNS", 100)
    wide = browser_dom(_page(data, tmp_path), tmp_path, 1400)
    assert wide.body["data-wide-tables"] != "0"


def test_heatmap_colours_diff_over_tolerance_never_against_the_verdict() -> None:
    from equivalence.report.plots import tolerance_ratio

    bf16_pass = {"passed": True, "max_abs_diff": {"output": 4e-3},
                 "max_abs_diff_by_dtype": {"bfloat16": 4e-3, "float32": 1e-7}}
    f32_fail = {"passed": False, "max_abs_diff": {"output": 6e-4},
                "max_abs_diff_by_dtype": {"float32": 6e-4}}
    # the larger absolute diff that passes reads further from failing than the smaller one
    assert tolerance_ratio(bf16_pass) < 1 < tolerance_ratio(f32_fail)
    assert tolerance_ratio(bf16_pass) == pytest.approx(4e-3 / 4e-2)
    # a pass under a grown allowance is drawn at the edge, a failure without numbers past it
    grown = {**f32_fail, "passed": True}
    assert tolerance_ratio(grown) == 1.0
    broken = {"passed": False, "error": "shape (3,) expected (2,)", "max_abs_diff": {}}
    assert tolerance_ratio(broken) > 1
    tiny_fail = {**bf16_pass, "passed": False}
    assert tolerance_ratio(tiny_fail) > 1


def test_the_verdict_counts_and_names_what_did_not_run() -> None:
    from equivalence.report import summary

    data = {"pairs": [
        {"source": "a", "target": "reference", "passed": True},
        {"source": "b", "target": "reference", "passed": False, "known": "bf16 here"},
        {"source": "c", "target": "a", "passed": False},
    ], "runtimes": [{"name": "gpu_thing", "available": False, "reason": "no GPU"}],
        "environments": [{"name": "neoml", "status": "not run: no NeoML environment"}],
        "third_party": [{"converter": "sideconv", "runnable": False, "reason": "no side env",
                         "status": "not runnable here"}],
        "mutations": [{"caught": True}, {"caught": False}],
        "conformance": [{"verdict": "match"}, {"verdict": "silently wrong"}]}
    found = summary.verdict(data)
    assert (found.checks, found.passed, found.failed, found.known) == \
        (3, 1, ["c->a"], ["b->reference"])
    lines = "\n".join(found.lines())
    for expected in ("3 checks: 1 passed, 1 failed, 1 known deviations, 3 not run",
                     "runtime gpu_thing (no GPU)", "environment neoml (not run: no NeoML",
                     "converter sideconv (no side env)", "mutation self-test: 1 of 2 caught",
                     "conformance grid: 2 cells, 1 match, 1 silently wrong"):
        assert expected in lines, lines
    markdown = render.markdown(_committed_with_a_failure(), replay="r", images=False)
    assert markdown.split("\n## ", 2)[1].startswith("Verdict\n")


def test_framework_logs_stay_off_the_console(tmp_path: Path, capfd) -> None:
    assert report(tmp_path / "r") == 0
    out, err = capfd.readouterr()
    assert err == "", err[-2000:]
    log = Path(re.search(r"framework logs: (\S+)", out).group(1))
    assert log.exists()
    assert "1 passed" not in out and "2 checks: 2 passed, 0 failed" in out
    assert report(tmp_path / "d", "--debug") == 0
    assert "framework logs:" not in capfd.readouterr().out


def test_error_growth_with_its_bar_measures_what_the_plain_call_does() -> None:
    from equivalence.report import phases, plots

    names = ["torch", "onnxruntime"]
    assert phases.error_growth(names, seed=3) == plots.growth_points(names, seed=3)


def test_the_key_versions_come_from_the_table() -> None:
    """A row's packages are listed first without a hand-kept list (tract, opencv included)."""
    from equivalence.report.sections import HARNESS_PACKAGES, key_versions

    listed = key_versions()
    assert set(table.packages()) <= set(listed)
    assert listed[-len(HARNESS_PACKAGES):] == HARNESS_PACKAGES
    assert listed.index("tensorflow-cpu") == listed.index("tensorflow") + 1
