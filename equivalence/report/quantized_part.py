"""The report's "Quantized LSTMs" section, from the results JSON's ``quantized`` list.

Each row is one :meth:`equivalence.quantized.result.QuantizedResult.to_dict`: a
quantization path on one shape, its verdict against the quantized oracle, the
bound that verdict used, and its error against the plain float reference.
"""

from __future__ import annotations

from typing import Any

from equivalence.report.document import Block, Cell, Code, Heading, Paragraph, Strong, Table, cell

_VERDICT_CLASS = {"matches its quantization": "pass", "silently wrong": "fail"}


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:.2e}"


def _row(r: dict[str, Any]) -> list[Cell]:
    why = r.get("reason") or "; ".join(r.get("notes") or []) or "-"
    return [cell(r["path"]), cell(r.get("version") or "-"), cell(r["spec"]),
            cell(str(r.get("examples", 0))),
            cell(r["verdict"], verdict=_VERDICT_CLASS.get(r["verdict"], "")),
            cell(_figure(r.get("error_vs_oracle"))), cell(_figure(r.get("bound"))),
            cell("-" if r.get("worst_ratio") is None else f"{r['worst_ratio']:.2g}"),
            cell(_figure(r.get("error_vs_float"))), cell(why)]


def section(data: dict[str, Any]) -> list[Block]:
    """The section's blocks; nothing when the results hold no ``quantized`` rows."""
    rows = data.get("quantized") or []
    if not rows:
        return []
    wrong = sum(r["verdict"] == "silently wrong" for r in rows)
    return [
        Heading(2, "Quantized LSTMs"),
        Paragraph((
            "Each quantization path on random LSTMs, judged against the float64 reference run "
            "on the weights the quantized model holds (read back and dequantized) with the "
            "matmul inputs quantized as the scheme does. The bound is propagated elementwise "
            "from the quantization steps (", Code("equivalence/quantized/oracle.py"),
            " derives it): within it ", Strong("matches its quantization"), ", beyond it ",
            Strong("silently wrong"), f" ({wrong} of {len(rows)} rows). The error against the "
            "plain float reference on the original weights is beside it. Figures are the "
            "worst over the examples; worst ratio is the largest elementwise error / bound.")),
        Table(["path", "version", "shape", "examples", "verdict", "error vs quantized oracle",
               "bound (max)", "worst ratio", "error vs float", "reason / notes"],
              [_row(r) for r in rows]),
    ]
