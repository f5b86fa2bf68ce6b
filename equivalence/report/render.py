"""Markdown and HTML pages from a results object (generated, never edited by hand).

Both pages render the one :class:`~equivalence.report.document.Document` that
:mod:`~equivalence.report.sections` builds, so they always say the same thing.
"""

from __future__ import annotations

from typing import Any

from equivalence.report import sections, to_html, to_markdown
from equivalence.report.cells import FAIL, PASS, cell_text, grid, headline

__all__ = ["FAIL", "PASS", "cell_text", "grid", "headline", "html_page", "markdown"]


def markdown(data: dict[str, Any], *, replay: str, images: bool = True) -> str:
    """index.md."""
    return to_markdown.render(sections.document(data, replay=replay, images=images))


def html_page(data: dict[str, Any], *, replay: str, images: bool = True) -> str:
    """index.html: every section as HTML, the matrix coloured, the images inline."""
    return to_html.render(sections.document(data, replay=replay, images=images))
