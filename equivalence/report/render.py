"""Markdown and HTML pages from a results object (generated, never edited by hand)."""

from __future__ import annotations

import html
from typing import Any

from ..compare import TENSORS

PASS, FAIL = "pass", "FAIL"


def headline(row: dict[str, Any]) -> float | None:
    """The matrix number: float32's worst when float32 ran (other dtypes would drown it)."""
    by_dtype = row.get("max_abs_diff_by_dtype") or {}
    if "float32" in by_dtype:
        return by_dtype["float32"]
    values = list(row["max_abs_diff"].values())
    return None if None in values or not values else max(values)


def cell_text(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    if row.get("error"):
        return "error"
    worst = headline(row)
    value = "inf" if worst is None else f"{worst:.1e}"
    by_dtype = row.get("max_abs_diff_by_dtype") or {}
    if by_dtype and "float32" not in by_dtype:  # say which precision the number is
        value += f" ({'/'.join(sorted(by_dtype))})"
    return f"{value} {PASS if row['passed'] else FAIL}"


def grid(data: dict[str, Any]) -> tuple[list[str], list[str], dict[tuple[str, str], dict]]:
    """Sources (rows), targets (columns, "reference" first) and the cells."""
    cells = {(r["source"], r["target"]): r for r in data["pairs"]}
    sources = list(dict.fromkeys(r["source"] for r in data["pairs"]))
    named = {r["target"] for r in data["pairs"]} - {"reference"}
    # columns in the rows' order, so the diagonal lines up; then targets that never source
    targets = ["reference"] + [s for s in sources if s in named]
    targets += sorted(named - set(targets))
    return sources, targets, cells


def _runtime_lines(data: dict[str, Any]) -> list[str]:
    lines = ["| runtime | version | device | environment | status |", "|---|---|---|---|---|"]
    for r in data["runtimes"]:
        status = "available" if r["available"] else f"not available: {r['reason']}"
        lines.append(
            f"| {r['name']} | {r['version'] or '-'} | {r['device']} | "
            f"{r['environment']} | {status} |"
        )
    return lines


def _failure_lines(data: dict[str, Any], replay: str) -> list[str]:
    failed = [r for r in data["pairs"] if not r["passed"]]
    if not failed:
        return ["No failures."]
    lines = []
    for r in failed:
        case = r.get("worst_case") or {}
        lines += [
            f"### {r['source']} -> {r['target']}",
            "",
            "```",
            r.get("error") or case.get("message") or case.get("case", ""),
            "```",
            f"Replay: `{replay} --only '{r['source']}->{r['target']}'`",
            "",
        ]
    return lines


KEY_VERSIONS = (
    "tensorflow",
    "tensorflow-cpu",
    "tf-keras",
    "keras",
    "torch",
    "onnxruntime",
    "jax",
    "flax",
    "neoml",
    "numpy",
)


def _version_matrix_lines(data: dict[str, Any]) -> list[str]:
    """Rows: pairs; columns: runs (framework versions). Only for merged results."""
    runs = [e for e in data.get("environments", []) if e.get("name") != "merged"]
    if len(runs) < 2:
        return []
    names = [e["name"] for e in runs]
    cells = {(p.get("run"), p["source"], p["target"]): p for p in data["pairs"]}
    pairs = list(dict.fromkeys((p["source"], p["target"]) for p in data["pairs"]))
    lines = [
        "## Version matrix",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key in KEY_VERSIONS:
        if any(key in e.get("versions", {}) for e in runs):
            lines.append(
                f"| *{key}* | "
                + " | ".join(e.get("versions", {}).get(key, "-") for e in runs)
                + " |"
            )
    lines.append("| *status* | " + " | ".join(e.get("status", "ran") for e in runs) + " |")
    for source, target in pairs:
        row = [cell_text(cells.get((n, source, target))) or "n/a" for n in names]
        lines.append(f"| {source} -> {target} | " + " | ".join(row) + " |")
    return [*lines, ""]


def _third_party_lines(data: dict[str, Any]) -> list[str]:
    entries = data.get("third_party") or []
    if not entries:
        return []
    lines = [
        "## Third-party converters",
        "",
        "Converters people use, run on the configurations they claim to support. A bug "
        "found in one is kept as an expected failure with its minimal case.",
        "",
    ]
    for e in entries:
        lines += [
            f"### {e['converter']}",
            "",
            f"Version: {e.get('version') or '-'}; "
            f"status: **{e.get('status')}**" + (f" ({e['reason']})" if e.get("reason") else ""),
            "",
        ]
        if e.get("not_claimed"):
            lines += [f"Not claimed: {e['not_claimed']}", ""]
        if not e.get("configurations"):
            continue
        lines += [
            "| configuration | examples | passed | max abs diff | minimal failing case | "
            "diagnosis | expected failure |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in e["configurations"]:
            diff = "-" if c.get("max_abs_diff") is None else f"{c['max_abs_diff']:.2e}"
            case = str(c.get("minimal_failing_case") or "-").replace("\n", " ").replace("|", "/")
            lines.append(
                f"| {c['name']} | {c['examples']} | {'yes' if c['passed'] else 'no'} | "
                f"{diff} | {case[:300]} | {c.get('diagnosis') or '-'} | "
                f"{c.get('expected_failure_reason') or '-'} |"
            )
        lines.append("")
    return lines


def _mutation_lines(data: dict[str, Any]) -> list[str]:
    rows = data.get("mutations") or []
    if not rows:
        return []
    caught = sum(r["caught"] for r in rows)
    lines = [
        "## Mutation self-test",
        "",
        f"Known conversion bugs injected into the project's own converters and adapters "
        f"(`equivalence/mutations.py`): {caught} of {len(rows)} caught.",
        "",
        "| bug | caught | examples | seconds | diagnosis given |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bug']} | {'yes' if r['caught'] else 'NO'} | {r['examples']} | "
            f"{r['seconds']} | {r['diagnosis'] or '-'} |"
        )
    return [*lines, ""]


def markdown(data: dict[str, Any], *, replay: str, images: bool = True) -> str:
    """index.md: matrix, runtimes, features, failures, versions."""
    sources, targets, cells = grid(data)
    lines = [
        "# Equivalence report",
        "",
        f"Generated {data['generated_at']} with seed {data['seed']}, up to "
        f"{data['examples']} examples per cell, by `{replay}`.",
        "",
    ]
    if images:
        lines += ["![max abs diff heatmap](heatmap.png)", ""]
    lines += [
        "## Matrix",
        "",
        "Rows: the runtime whose native weights are the source; columns: the runtime "
        "the converters moved them to (`reference`: the float64 numpy reference). "
        "Cells: float32 max abs diff over outputs, h and c, and the verdict (over "
        "every dtype drawn) under the tolerance policy.",
        "",
        "| source \\ target | " + " | ".join(targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    for s in sources:
        lines.append(
            f"| **{s}** | " + " | ".join(cell_text(cells.get((s, t))) for t in targets) + " |"
        )
    lines += [
        "",
        "## Runtimes",
        "",
        *_runtime_lines(data),
        "",
        "## Every check",
        "",
        "| source | target | examples | output | h | c | passed | features |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["pairs"]:
        diffs = " | ".join(
            "-" if r["max_abs_diff"][t] is None else f"{r['max_abs_diff'][t]:.2e}" for t in TENSORS
        )
        lines.append(
            f"| {r['source']} | {r['target']} | {r['examples']} | {diffs} | "
            f"{PASS if r['passed'] else FAIL} | {', '.join(r.get('features', []))} |"
        )
    lines += [
        "",
        "## Failures",
        "",
        *_failure_lines(data, replay),
        "",
        *_version_matrix_lines(data),
        *_third_party_lines(data),
        *_mutation_lines(data),
        "## Versions",
        "",
        "| package | version |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in sorted(data["versions"].items())]
    if len(data.get("environments", [])) > 1:
        lines += ["", "## Environments", ""]
        lines += [
            f"- {e['name']}: " + ", ".join(f"{k} {v}" for k, v in sorted(e["versions"].items()))
            for e in data["environments"]
        ]
    if images:
        lines += [
            "",
            "## Error growth with sequence length",
            "",
            "![error growth](error_growth.png)",
        ]
    return "\n".join(lines) + "\n"


def html_page(data: dict[str, Any], *, replay: str) -> str:
    """index.html: the same content, the matrix coloured, the images inline."""
    sources, targets, cells = grid(data)
    head = "".join(f"<th>{html.escape(t)}</th>" for t in targets)
    body = []
    for s in sources:
        tds = []
        for t in targets:
            row = cells.get((s, t))
            css = "" if row is None else ("pass" if row["passed"] else "fail")
            tds.append(f'<td class="{css}">{html.escape(cell_text(row))}</td>')
        body.append(f"<tr><th>{html.escape(s)}</th>{''.join(tds)}</tr>")
    details = html.escape(markdown(data, replay=replay, images=False))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Equivalence report</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{border:1px solid #ccc;padding:4px 8px;
font-size:13px}} table{{border-collapse:collapse}} td.pass{{background:#d9f2d9}}
td.fail{{background:#f7c6c6;font-weight:bold}} pre{{background:#f6f6f6;padding:1em}}</style>
</head><body>
<h1>Equivalence report</h1>
<p>Generated {html.escape(data["generated_at"])}, seed {data["seed"]}, by
<code>{html.escape(replay)}</code>.</p>
<h2>Matrix (max abs diff over outputs, h, c)</h2>
<table><tr><th>source \\ target</th>{head}</tr>{"".join(body)}</table>
<h2>Heatmap</h2><img src="heatmap.png" alt="heatmap" style="max-width:100%">
<h2>Error growth</h2><img src="error_growth.png" alt="error growth" style="max-width:100%">
<h2>Details</h2><pre>{details}</pre>
</body></html>
"""
