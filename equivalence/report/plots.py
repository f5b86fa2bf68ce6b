"""The report's PNGs: the matrix heatmap and error growth with sequence length."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from equivalence.report.cells import grid, headline, judged_text


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def tolerance_ratio(row: dict[str, Any]) -> float:
    """How close a cell came to failing: the worst dtype's max abs diff over that dtype's
    static tolerance floor (``compare.ATOL`` at T=1), so 1 is the edge of the policy.

    The floor is the smallest allowance a check has (it grows with T, and where the
    rounding sensitivity is larger, so a pass may exceed it): a passed cell is drawn at
    most at 1, a failed one above 1, and the colour never contradicts the verdict."""
    from equivalence.compare import ATOL

    by_dtype = {d: v for d, v in (row.get("max_abs_diff_by_dtype") or {}).items() if d in ATOL}
    if row.get("error"):
        ratio = math.inf
    elif by_dtype:
        ratio = max(math.inf if v is None else v / ATOL[d] for d, v in by_dtype.items())
    else:  # results written before dtypes were recorded: the worst case's own tolerance
        worst, tolerance = headline(row), row.get("tolerance") or {}
        ratio = math.inf if worst is None else worst / tolerance.get("atol", ATOL["float32"])
    return min(ratio, 1.0) if row["passed"] else max(ratio, FAIL_FLOOR)


FAIL_FLOOR = 2.0  # a failed cell is drawn at least this far past the edge, clearly red
RATIO_RANGE = (1e-6, 1e2)  # colour scale: far inside the tolerance .. far past it


def heatmap(data: dict[str, Any], path: Path, cell: str = "lstm") -> None:
    """One cell type's matrix, source x target, colour = max abs diff / tolerance (green
    pass, red fail, log scale); text = the float32 max abs diff, the dtypes judged, FAIL."""
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    sources, targets, cells = grid(data, cell)
    if not cells:  # a run without this cell's checks (--only): say so, not an empty axis
        _no_checks(plt, path, f"no {cell.upper()} checks in this run")
        return
    ratios = np.full((len(sources), len(targets)), np.nan)
    for (i, s), (j, t) in itertools.product(enumerate(sources), enumerate(targets)):
        if (s, t) in cells:
            ratios[i, j] = np.clip(tolerance_ratio(cells[s, t]), *RATIO_RANGE)
    fig, ax = plt.subplots(figsize=(1.05 * len(targets) + 3.5, 0.62 * len(sources) + 2.5))
    # red only past the edge: the map turns from green to red at ratio 1
    image = ax.imshow(np.ma.masked_invalid(ratios), cmap=_pass_fail_map(),
                      norm=LogNorm(*RATIO_RANGE))
    for (i, s), (j, t) in itertools.product(enumerate(sources), enumerate(targets)):
        row = cells.get((s, t))
        if row is None:
            continue
        ax.text(j, i, _heatmap_text(row), ha="center", va="center", fontsize=6.5,
                color="black", fontweight="normal" if row["passed"] else "bold")
        if not row["passed"]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, color="black", lw=2))
    ax.set_xticks(range(len(targets)), targets, rotation=45, ha="right")
    ax.set_yticks(range(len(sources)), sources)
    ax.set_xlabel("target (weights moved by the converters; reference = float64 numpy)")
    ax.set_ylabel("source runtime")
    ax.set_title(f"{cell.upper()} matrix\ncolour: max abs diff / tolerance (green passes, "
                 "red fails)\ntext: float32 max abs diff, dtypes judged", fontsize=9)
    bar = fig.colorbar(image, ax=ax, label="max abs diff / the dtype's tolerance")
    bar.ax.axhline(1.0, color="black", lw=1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _no_checks(plt: Any, path: Path, text: str) -> None:
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pass_fail_map():
    """Green (far inside the tolerance) to pale at ratio 1, then red: a log-scale colour map
    whose turn sits at 1 on :data:`RATIO_RANGE`."""
    from matplotlib.colors import LinearSegmentedColormap

    low, high = (math.log10(v) for v in RATIO_RANGE)
    edge = (0 - low) / (high - low)
    return LinearSegmentedColormap.from_list("pass_fail", [
        (0.0, "#1a9850"), (edge * 0.7, "#91cf60"), (edge, "#f7f7c0"),
        (min(edge + 1e-3, 1.0), "#fc8d59"), (1.0, "#b2182b")])


def _heatmap_text(row: dict[str, Any]) -> str:
    if row.get("error"):
        return "error\nFAIL"
    worst = headline(row)
    number = "inf" if worst is None else ("0" if worst <= 1e-17 else f"{worst:.0e}")
    dtypes = judged_text(row).strip(" []").replace("; ", "\n").replace(" ", ",")
    return "\n".join(t for t in (number, dtypes, "" if row["passed"] else "FAIL") if t)


def error_growth(data: dict[str, Any], path: Path) -> None:
    """Max abs diff vs the float64 reference against T, one panel per dtype: the band every
    runtime lies in, their median, the tolerance floor, and by name only the runtimes that
    stand out (:data:`OUTLIER` times the median somewhere), so 17 lines do not overlap."""
    plt = _pyplot()
    points = data.get("error_growth", [])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, dtype in zip(axes, ("float32", "float64"), strict=True):
        curves = _curves(points, dtype)
        if curves:
            _growth_panel(ax, dtype, curves)
        else:
            ax.text(0.5, 0.5, f"no runtime here runs {dtype}", ha="center", transform=ax.transAxes)
        ax.set_title(f"{dtype}: max abs diff vs the float64 reference ({len(curves)} runtimes)")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("max abs diff (outputs, h, c)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


OUTLIER = 10.0  # a runtime is named when its error is this many times the median somewhere


def _curves(points: list[dict[str, Any]], dtype: str) -> dict[str, dict[int, float]]:
    curves: dict[str, dict[int, float]] = {}
    for p in points:
        if p["dtype"] == dtype and p["max_abs_diff"] is not None:
            curves.setdefault(p["runtime"], {})[p["steps"]] = max(p["max_abs_diff"], 1e-18)
    return dict(sorted(curves.items()))


def _growth_panel(ax: Any, dtype: str, curves: dict[str, dict[int, float]]) -> None:
    import numpy as np

    from equivalence.compare import Tolerance

    steps = sorted({t for c in curves.values() for t in c})
    median = {t: float(np.median([c[t] for c in curves.values() if t in c])) for t in steps}
    named = {name: c for name, c in curves.items()
             if max(v / max(median[t], 1e-18) for t, v in c.items()) >= OUTLIER}
    rest = [c for name, c in curves.items() if name not in named]
    if rest:
        columns = [[c[t] for c in rest if t in c] or [median[t]] for t in steps]
        ax.fill_between(steps, [min(v) for v in columns], [max(v) for v in columns],
                        color="#9ecae1", alpha=0.6,
                        label=f"range of the {len(rest)} other runtimes")
        ax.plot(steps, [float(np.median(v)) for v in columns], color="#08519c", lw=2,
                label="their median")
    ax.plot(steps, [Tolerance.for_case(dtype, t).atol for t in steps], color="black",
            lw=1.5, linestyle="--", label="tolerance floor (atol x sqrt(T))")
    for n, (name, curve) in enumerate(named.items()):
        ax.plot(sorted(curve), [curve[t] for t in sorted(curve)], marker="os^vD<>p"[n % 8],
                lw=1.4, color=("#d73027", "#fc8d59", "#984ea3", "#ff7f00")[n % 4], label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="center left")


def growth_points(
    runtime_names: list[str], *, seed: int, steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
) -> list[dict[str, Any]]:
    """Measure error growth: I=4, H=8, B=4, one spec, every T, float32 and float64."""
    import numpy as np

    from equivalence import table
    from equivalence.canonical import random_weights
    from equivalence.harness import judge as harness
    from equivalence.io_types import LSTMInputs
    from equivalence.spec import LSTMSpec
    from equivalence.strategies import Case

    points = []
    for name in runtime_names:
        entry = table.entry(name)
        for dtype in ("float32", "float64"):
            spec = LSTMSpec(4, 8, dtype=dtype)
            if entry.load().capabilities.refusal(spec):
                continue
            rng = np.random.default_rng(seed)
            weights = random_weights(spec, rng).astype(dtype)
            for t in steps:
                x = rng.normal(size=(4, t, 4)).astype(dtype)
                outcome = harness.check_against_reference(
                    entry, Case(weights.spec, weights, LSTMInputs(x))
                )
                points.append(
                    {
                        "runtime": name,
                        "dtype": dtype,
                        "steps": t,
                        "max_abs_diff": outcome.comparison.max_abs_diff,
                    }
                )
    return points
