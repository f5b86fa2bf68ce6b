"""What a matrix cell says: its headline number, its text, and the grid of cells."""

from __future__ import annotations

from typing import Any

from equivalence.spec import DTYPES

PASS, FAIL = "pass", "FAIL"
SHORT = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}


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
    return f"{value} {PASS if row['passed'] else FAIL}{judged_text(row)}"


def judged_text(row: dict[str, Any]) -> str:
    """Which dtypes the cell judged, e.g. `` [f16 bf16 f32 f64]``; the number is float32's
    when f32 is listed, else the worst of those listed (then `` no f32`` says so)."""
    judged = [d for d in DTYPES if d in (row.get("max_abs_diff_by_dtype") or {})]
    if not judged:  # results written before dtypes were recorded
        return ""
    names = " ".join(SHORT[d] for d in judged)
    return f" [{names}]" if "float32" in judged else f" [{names}; no f32]"


def grid(data: dict[str, Any], cell: str = "lstm"
         ) -> tuple[list[str], list[str], dict[tuple[str, str], dict]]:
    """Sources (rows), targets (columns, "reference" first) and the cells of one cell type's
    matrix (rows written before the cell was recorded are LSTM rows)."""
    pairs = [r for r in data["pairs"] if r.get("cell", "lstm") == cell]
    cells = {(r["source"], r["target"]): r for r in pairs}
    sources = list(dict.fromkeys(r["source"] for r in pairs))
    named = {r["target"] for r in pairs} - {"reference"}
    # columns in the rows' order, so the diagonal lines up; then targets that never source
    targets = ["reference"] + [s for s in sources if s in named]
    targets += sorted(named - set(targets))
    return sources, targets, cells
