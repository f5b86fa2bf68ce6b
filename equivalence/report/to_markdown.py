"""Render a :class:`~equivalence.report.document.Document` as Markdown (``index.md``).

GitHub-flavoured: pipe tables, fenced code, and ``<a id>`` anchors before
blocks that other parts of the report link to.
"""

from __future__ import annotations

from equivalence.report.document import (
    Block,
    BulletList,
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


def render(document: Document) -> str:
    lines = [f"# {document.title}", ""]
    for block in document.blocks:
        lines += _block(block)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def spans(text: Text, in_table: bool = False) -> str:
    out = []
    for span in text:
        if isinstance(span, Code):
            out.append(_code(span.text))
        elif isinstance(span, Strong):
            out.append(f"**{_escape(span.text)}**")
        elif isinstance(span, Link):
            out.append(f"[{_escape(span.text)}]({span.href})")
        else:
            out.append(_escape(span))
    joined = "".join(out)
    if in_table:  # one line per row; a pipe would end the cell
        joined = joined.replace("\n", " ").replace("|", "\\|")
    return joined


def _escape(text: str) -> str:
    # only what would turn plain words into markup here (GFM leaves intra-word _ alone)
    return text.replace("*", "\\*").replace("`", "\\`")


def _code(text: str) -> str:
    text = text.replace("\n", " ")
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def _block(block: Block) -> list[str]:
    if isinstance(block, Heading):
        anchor = [f'<a id="{block.anchor}"></a>', ""] if block.anchor else []
        return [*anchor, f"{'#' * block.level} {block.text}"]
    if isinstance(block, Paragraph):
        return [spans(block.spans)]
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, CodeBlock):
        fence = "~~~~" if "```" in block.text else "```"
        head = [f'<a id="{block.anchor}"></a>', ""] if block.anchor else []
        head += [f"**{block.label}**", ""] if block.label else []
        return [*head, fence, block.text.rstrip("\n"), fence]
    if isinstance(block, Image):
        return [f"![{block.alt}]({block.src})"]
    if isinstance(block, BulletList):
        return [f"- {spans(item)}" for item in block.items]
    if isinstance(block, Details):
        # GitHub folds <details>; the blank lines let Markdown inside it render
        inner = [line for b in block.blocks for line in [*_block(b), ""]]
        return ["<details>", f"<summary>{block.summary}</summary>", "", *inner, "</details>"]
    raise TypeError(f"unknown block {type(block).__name__}")


def _table(table: Table) -> list[str]:
    lines = [spans(table.caption), ""] if table.caption else []
    lines.append("| " + " | ".join(h.replace("|", "\\|") for h in table.header) + " |")
    lines.append("|" + "---|" * len(table.header))
    for row in table.rows:
        texts = []
        for n, item in enumerate(row):
            text = spans(item.spans, in_table=True)
            texts.append(f"**{text}**" if table.row_headers and n == 0 and text else text)
        lines.append("| " + " | ".join(texts) + " |")
    return lines
