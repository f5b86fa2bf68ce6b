"""The conformance grid drawn: a runtime x feature PNG and the same grid as Markdown.

Reads the cells of :func:`equivalence.harness.conformance.run_conformance` (plain
dicts, as stored under ``conformance`` in the results JSON). A feature a
runtime cannot meet (its format cannot hold it) is an empty cell, not a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MATCH, REFUSED, WRONG = "match", "refused", "silently wrong"  # conformance's verdicts
COLOURS = {MATCH: "#2e7d32", REFUSED: "#9e9e9e", WRONG: "#c62828"}
SYMBOLS = {MATCH: "✓", REFUSED: "refused", WRONG: "WRONG"}
Cell = Mapping[str, Any]


def axes(cells: Iterable[Cell]) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """Runtimes and features in first-seen order, and the cells by (runtime, feature)."""
    cells = list(cells)
    runtimes = list(dict.fromkeys(c["runtime"] for c in cells))
    features = list(dict.fromkeys(c["feature"] for c in cells))
    return runtimes, features, {(c["runtime"], c["feature"]): c for c in cells}


def markdown_lines(cells: Iterable[Cell]) -> list[str]:
    """The grid as a Markdown table, then every refused and silently wrong cell with its case."""
    runtimes, features, by_key = axes(cells)
    if not runtimes:
        return ["No conformance cells."]
    lines = ["| runtime | " + " | ".join(features) + " |",
             "|---|" + "---|" * len(features)]
    for runtime in runtimes:
        marks = [_mark(by_key.get((runtime, f))) for f in features]
        lines.append(f"| {runtime} | " + " | ".join(marks) + " |")
    lines += ["", "✓ match · refused: a named error · **WRONG**: silently wrong (ran, other "
              "numbers) · blank: the runtime's format cannot hold the feature · "
              "(claimed): the table row claims it", ""]
    for cell in sorted(by_key.values(), key=_severity):
        if cell["verdict"] != MATCH:
            lines.append(_finding(cell))
    return lines


def _mark(cell: Cell | None) -> str:
    if cell is None:
        return ""
    mark = SYMBOLS[cell["verdict"]]
    mark = f"**{mark}**" if cell["verdict"] == WRONG else mark
    return mark + (" (claimed)" if cell.get("claimed") else "")


def _severity(cell: Cell) -> tuple[int, str, str]:
    return ({WRONG: 0, REFUSED: 1}.get(cell["verdict"], 2), cell["runtime"], cell["feature"])


def _finding(cell: Cell) -> str:
    diff = cell.get("max_abs_diff")
    shown = f", max abs diff {diff:.3g}" if diff is not None else ""
    known = f" Known: {cell['known']}." if cell.get("known") else ""
    return (f"- **{cell['runtime']} / {cell['feature']}: {cell['verdict']}**{shown}. "
            f"Minimal case: `{cell['minimal_case']}`. {cell.get('detail', '')}.{known}")


def draw(cells: Iterable[Cell], path: Path) -> Path:
    """Write the grid as a PNG at ``path``: one coloured square per cell, its verdict inside."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    runtimes, features, by_key = axes(cells)
    fig, ax = plt.subplots(figsize=(0.9 * len(features) + 3, 0.55 * len(runtimes) + 2.6))
    for i, runtime in enumerate(runtimes):
        for j, feature in enumerate(features):
            cell = by_key.get((runtime, feature))
            if cell is not None:
                _square(ax, Rectangle, i, j, cell)
    _label(ax, runtimes, features)
    ax.legend(handles=[Patch(color=COLOURS[v], label=v) for v in COLOURS],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title("Conformance: match, refused or silently wrong (outlined: the row claims it)",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _square(ax: Any, rectangle: Any, i: int, j: int, cell: Cell) -> None:
    verdict = cell["verdict"]
    claimed = bool(cell.get("claimed"))
    ax.add_patch(rectangle((j - 0.42, i - 0.42), 0.84, 0.84, facecolor=COLOURS[verdict],
                           edgecolor="black" if claimed else "none", linewidth=2.0))
    diff = cell.get("max_abs_diff")
    text = {MATCH: "", REFUSED: "ref", WRONG: "WRONG"}[verdict]
    if verdict != REFUSED and diff is not None:
        text = f"{text}\n{diff:.0e}".strip()
    ax.text(j, i, text, ha="center", va="center", fontsize=6, color="white")


def _label(ax: Any, runtimes: Sequence[str], features: Sequence[str]) -> None:
    # At least one column and row of room, so an empty grid still draws (as an empty frame).
    ax.set_xlim(-0.5, max(len(features), 1) - 0.5)
    ax.set_ylim(max(len(runtimes), 1) - 0.5, -0.5)
    ax.set_xticks(range(len(features)), features, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(runtimes)), runtimes, fontsize=8)
    ax.set_aspect("equal")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
