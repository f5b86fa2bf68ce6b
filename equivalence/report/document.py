"""The report as a document: blocks of text, tables, code and images, rendered twice.

:mod:`~equivalence.report.sections` builds one list of blocks from a results
object; :mod:`~equivalence.report.to_markdown` and
:mod:`~equivalence.report.to_html` render the same list, so both files say the
same thing and neither renderer parses the other's output. Text is a sequence
of spans: plain strings, :class:`Code`, :class:`Strong` and :class:`Link`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Code:
    """Inline code (a command, a file name, a value)."""

    text: str


@dataclass(frozen=True)
class Strong:
    text: str


@dataclass(frozen=True)
class Link:
    """A link; ``href`` is ``#anchor`` for a place in the report, or a relative file."""

    text: str
    href: str


Span = str | Code | Strong | Link
Text = Sequence[Span]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""  # an id others link to ("" = from the text)

    @property
    def id(self) -> str:
        return self.anchor or slug(self.text)


@dataclass(frozen=True)
class Paragraph:
    spans: Text


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, and a verdict that colours it ("pass", "fail", "known",
    "surprise" or "")."""

    spans: Text
    verdict: str = ""


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    row_headers: bool = False  # the first column names the row (bold, a <th>)
    caption: Text = ()


@dataclass(frozen=True)
class CodeBlock:
    """Preformatted text (a message, a case, a command); ``anchor`` lets others link to it."""

    text: str
    anchor: str = ""
    label: str = ""  # a few words said before it ("Replay:")


@dataclass(frozen=True)
class Image:
    src: str
    alt: str


@dataclass(frozen=True)
class BulletList:
    items: Sequence[Text]


@dataclass(frozen=True)
class Details:
    """Blocks folded away until the reader opens them (a long table), under ``summary``."""

    summary: str
    blocks: Sequence[Heading | Paragraph | Table | CodeBlock | Image | BulletList]


Block = Heading | Paragraph | Table | CodeBlock | Image | BulletList | Details


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def contents(self) -> list[Heading]:
        """The second-level headings, for a table of contents."""
        return [b for b in self.blocks if isinstance(b, Heading) and b.level == 2]


def slug(text: str) -> str:
    """An HTML id from any text: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def cell(*spans: Span, verdict: str = "") -> Cell:
    return Cell(tuple(spans), verdict)


def plain(text: Text) -> str:
    """The text of spans without markup (for alt texts and sorting)."""
    return "".join(s if isinstance(s, str) else s.text for s in text)
