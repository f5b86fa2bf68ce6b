"""The report's PNGs: the matrix heatmap and error growth with sequence length."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cells import grid, headline


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def heatmap(data: dict[str, Any], path: Path) -> None:
    """Source x target, colour = log10 max abs diff; failed cells outlined and marked."""
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    sources, targets, cells = grid(data)
    values = np.full((len(sources), len(targets)), np.nan)
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            row = cells.get((s, t))
            if row is not None:
                worst = headline(row)
                values[i, j] = 1.0 if row.get("error") or worst is None else max(worst, 1e-17)
    fig, ax = plt.subplots(figsize=(1.1 * len(targets) + 3, 0.6 * len(sources) + 2.5))
    finite = values[np.isfinite(values)]
    low = max(finite.min(), 1e-17) if finite.size else 1e-9
    high = max(finite.max(), low * 10) if finite.size else 1.0
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap="viridis", norm=LogNorm(vmin=low, vmax=high)
    )
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            row = cells.get((s, t))
            if row is None:
                continue
            ok = row["passed"]
            ax.text(
                j,
                i,
                ("0" if values[i, j] <= 1e-17 else f"{values[i, j]:.0e}")
                + ("" if ok else "\nFAIL"),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if ok else "red",
            )
            if not ok:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, color="red", lw=2))
    ax.set_xticks(range(len(targets)), targets, rotation=45, ha="right")
    ax.set_yticks(range(len(sources)), sources)
    ax.set_xlabel("target (weights moved by the converters; reference = float64 numpy)")
    ax.set_ylabel("source runtime")
    ax.set_title("float32 max abs diff over outputs, h and c (log scale)")
    fig.colorbar(image, ax=ax, label="max abs diff")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def error_growth(data: dict[str, Any], path: Path) -> None:
    """Max abs diff vs the float64 reference against T, one line per runtime, per dtype."""
    plt = _pyplot()
    points = data.get("error_growth", [])
    dtypes = ("float32", "float64")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, dtype in zip(axes, dtypes, strict=True):
        runtimes = sorted({p["runtime"] for p in points if p["dtype"] == dtype})
        for n, name in enumerate(runtimes):
            series = sorted(
                (p["steps"], p["max_abs_diff"])
                for p in points
                if p["runtime"] == name and p["dtype"] == dtype
            )
            # distinct markers and dashes: runtimes sharing a kernel overlap exactly
            ax.plot(
                [s for s, _ in series],
                [max(d, 1e-18) for _, d in series],
                marker="os^vD<>pPX*h"[n % 12],
                linestyle=("-", "--", ":", "-.")[n % 4],
                label=name,
                alpha=0.85,
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{dtype}: max abs diff vs the float64 reference")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("max abs diff (outputs, h, c)")
        ax.grid(True, which="both", alpha=0.3)
        if runtimes:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no runtime here runs {dtype}", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def growth_points(
    runtime_names: list[str], *, seed: int, steps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
) -> list[dict[str, Any]]:
    """Measure error growth: I=4, H=8, B=4, one spec, every T, float32 and float64."""
    import numpy as np

    from .. import harness, table
    from ..canonical import random_weights
    from ..io_types import LSTMInputs
    from ..spec import LSTMSpec
    from ..strategies import Case

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
