"""Put a whole report folder in place atomically: build in a temporary folder, then swap."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from equivalence.report import conformance_plot, plots, render, results

FILES = ("equivalence.json", "index.md", "index.html", "heatmap.png", "heatmap_gru.png",
         "error_growth.png", "conformance.png")


class ReportWriteError(results.ResultsFileError):
    """The output folder cannot be written."""


def write_report(data: dict[str, Any], out: Path, *, replay: str) -> list[Path]:
    """Write the report files into ``out``; on any error nothing of the new report is left."""
    out = Path(out)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=parent))
    except OSError as exc:
        raise ReportWriteError(f"{out}: cannot write the report here ({exc.strerror})") from None
    try:
        (staging / "equivalence.json").write_text(results.dumps(data))
        (staging / "index.md").write_text(render.markdown(data, replay=replay))
        (staging / "index.html").write_text(render.html_page(data, replay=replay))
        plots.heatmap(data, staging / "heatmap.png")
        plots.heatmap(data, staging / "heatmap_gru.png", cell="gru")
        plots.error_growth(data, staging / "error_growth.png")
        conformance_plot.draw(data.get("conformance") or [], staging / "conformance.png")
        _swap_in(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ReportWriteError(f"{out}: cannot write the report ({exc})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / name for name in FILES]


def _swap_in(staging: Path, out: Path) -> None:
    """Replace the report files in ``out`` (other files there are kept)."""
    if not out.exists():
        os.replace(staging, out)
        return
    if not os.access(out, os.W_OK):
        raise PermissionError(13, "Permission denied", str(out))
    for name in FILES:
        os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)
