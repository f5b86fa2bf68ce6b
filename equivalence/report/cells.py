"""What a matrix cell says: its headline number, its text, and the grid of cells."""

from __future__ import annotations

from typing import Any

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
