"""Render a :class:`~equivalence.report.document.Document` as one HTML page (``index.html``).

Standard library only. Every block becomes real HTML (headings with ids,
tables, ``<pre>`` for messages and commands, links), laid out for a laptop
screen: the text column is capped, long words and commands wrap, and a table
wider or taller than the screen scrolls inside its own box (its header row and
first column sticky) instead of the whole page.
"""

from __future__ import annotations

import re
from html import escape

from equivalence.report.document import (
    Block,
    BulletList,
    Cell,
    Code,
    CodeBlock,
    Details,
    Document,
    Heading,
    Image,
    Link,
    Paragraph,
    Strong,
    Table,
    Text,
)

STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 1.5rem 1.25rem 4rem; max-width: 78rem; }
h1 { font-size: 1.7rem; margin: 0 0 .5rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem;
     border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p, li { max-width: 60rem; overflow-wrap: anywhere; }
nav.contents { background: #f6f7f9; border: 1px solid #e2e4e8; border-radius: 6px;
               padding: .6rem 1rem; margin: 1rem 0; }
nav.contents ol { margin: .2rem 0; padding-left: 1.3rem; columns: 2 16rem; }
code { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: #f3f3f5; padding: 0 .25em; border-radius: 3px; overflow-wrap: anywhere; }
pre { background: #f6f7f9; border: 1px solid #e2e4e8; border-radius: 6px; padding: .6rem .8rem;
      white-space: pre-wrap; overflow-wrap: anywhere; margin: .3rem 0 .8rem; }
pre code { background: none; padding: 0; }
.label { font-weight: 600; margin: .6rem 0 0; }
/* a table scrolls in its own box, its header row and first column stay in view */
.table-wrap { overflow: auto; max-width: 100%; max-height: 85vh; margin: .4rem 0 1rem; }
details { margin: .4rem 0 1rem; }
summary { cursor: pointer; color: #0550ae; }
table { border-collapse: collapse; font-size: 13px; }
caption { caption-side: top; text-align: left; padding: .2rem 0 .4rem; color: #444; }
th, td { border: 1px solid #d5d8dc; padding: 3px 7px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
thead th { background: #eef0f3; position: sticky; top: 0; z-index: 2; }
tbody th { background: #fafafa; white-space: nowrap; position: sticky; left: 0; z-index: 1; }
thead th:first-child { left: 0; z-index: 3; }
td.pass { background: #dcf3dc; }
td.fail { background: #f9cccc; font-weight: 600; }
td.known { background: #fbeec2; }  /* an expected failure, kept with its upstream issue */
td.surprise { background: #cfe3fb; font-weight: 600; }  /* an expected failure that passed */
td a, td.fail a { color: inherit; }
img { max-width: 100%; height: auto; }
.num { white-space: nowrap; }
:target { outline: 3px solid #f0b400; outline-offset: 2px; }
"""


# a number such as 1.2e-07 stays on one line (a narrow cell would break it at the minus)
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?e[-+]\d+")


def render(document: Document) -> str:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(document.title)}</title>",
        f"<style>{STYLE}</style>",
        "</head><body>",
        f"<h1>{escape(document.title)}</h1>",
    ]
    blocks = document.blocks
    # the lead paragraph and the first section (the verdict) stay above the contents
    sections = [n for n, b in enumerate(blocks) if isinstance(b, Heading) and b.level == 2]
    lead = sections[1] if len(sections) > 1 else len(blocks)
    parts += [_block(block) for block in blocks[:lead]]
    parts.append(_contents(document))
    blocks = blocks[lead:]
    parts += [_block(block) for block in blocks]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _contents(document: Document) -> str:
    items = "".join(f'<li><a href="#{escape(h.id)}">{escape(h.text)}</a></li>'
                    for h in document.contents())
    return f'<nav class="contents"><strong>Contents</strong><ol>{items}</ol></nav>'


def spans(text: Text) -> str:
    out = []
    for span in text:
        if isinstance(span, Code):
            out.append(f"<code>{escape(span.text)}</code>")
        elif isinstance(span, Strong):
            out.append(f"<strong>{escape(span.text)}</strong>")
        elif isinstance(span, Link):
            out.append(f'<a href="{escape(span.href)}">{escape(span.text)}</a>')
        else:
            out.append(NUMBER.sub(r'<span class="num">\g<0></span>', escape(span)))
    return "".join(out)


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f'<h{block.level} id="{escape(block.id)}">{escape(block.text)}</h{block.level}>'
    if isinstance(block, Paragraph):
        return f"<p>{spans(block.spans)}</p>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, CodeBlock):
        anchor = f' id="{escape(block.anchor)}"' if block.anchor else ""
        label = f'<p class="label">{escape(block.label)}</p>' if block.label else ""
        return f"{label}<pre{anchor}><code>{escape(block.text.rstrip())}</code></pre>"
    if isinstance(block, Image):
        return f'<p><img src="{escape(block.src)}" alt="{escape(block.alt)}"></p>'
    if isinstance(block, BulletList):
        return "<ul>" + "".join(f"<li>{spans(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Details):
        inner = "".join(_block(b) for b in block.blocks)
        return f"<details><summary>{escape(block.summary)}</summary>{inner}</details>"
    raise TypeError(f"unknown block {type(block).__name__}")


def _table(table: Table) -> str:
    caption = f"<caption>{spans(table.caption)}</caption>" if table.caption else ""
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in table.header)
    rows = []
    for row in table.rows:
        cells = [_cell(item, header=table.row_headers and n == 0) for n, item in enumerate(row)]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _cell(item: Cell, header: bool) -> str:
    if header:
        return f'<th scope="row">{spans(item.spans)}</th>'
    css = f' class="{item.verdict}"' if item.verdict else ""
    return f"<td{css}>{spans(item.spans)}</td>"
