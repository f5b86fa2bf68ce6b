"""The NeoML environment's part of the report (run with that environment's Python).

``python -m equivalence.report.neoml_part --cases DIR --out FILE``: NeoML
against the float64 reference, and every exchanged case (Keras, PyTorch, TF1,
ONNX Runtime outputs) converted to NeoML and run here; writes a results file.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

from .. import exchange, harness, table
from ..compare import TENSORS, Tolerance, compare
from ..convert import convert
from ..explore import explore
from ..strategies import lstm_cases
from . import matrix, results


def exchanged_rows(cases: Path) -> list[dict[str, Any]]:
    """One row per source runtime found in the case files."""
    runtime = table.entry("neoml").load()
    grouped: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for path in sorted(cases.glob("*.npz")):
        case = exchange.load(path)
        native = convert(
            case.native,
            source=case.format,
            target="neoml",
            source_options=harness.reader_options(case.format, case.spec, case.format_options),
        )
        actual = runtime.run(case.spec, native, case.inputs)
        tol = Tolerance.for_case(case.spec.dtype, case.inputs.x.shape[1])
        grouped[case.source].append((compare(case.expected, actual, tol), path.name))
    rows = []
    for source, found in grouped.items():
        worst = max(found, key=lambda item: item[0].max_abs_diff)
        rows.append(
            {
                "source": source,
                "target": "neoml",
                "environment": table.NEOML,
                "examples": len(found),
                "max_abs_diff": {
                    t: max(c.by_name()[t].max_abs_diff for c, _ in found) for t in TENSORS
                },
                "tolerance": {"atol": worst[0].tolerance.atol, "rtol": worst[0].tolerance.rtol},
                "passed": all(c.ok for c, _ in found),
                "worst_case": {
                    "case": worst[1],
                    "ok": worst[0].ok,
                    "max_abs_diff": worst[0].max_abs_diff,
                    "message": "" if worst[0].ok else worst[0].describe(),
                },
                "features": ["exchanged case files"],
                "error": "",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equivalence.report.neoml_part")
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    entry = table.entry("neoml")
    caps = entry.load().capabilities
    found = explore(
        lstm_cases(capabilities=caps, dtypes=caps.dtypes),
        lambda case: harness.check_against_reference(entry, case),
        max_examples=args.examples,
        seed_value=args.seed,
    )
    rows = [results.pair_row("neoml", "reference", table.NEOML, found)]
    rows += exchanged_rows(args.cases)
    runtimes = [r for r in matrix.runtime_rows(table.NEOML) if r["name"] == "neoml"]
    data = results.new_results(
        seed=args.seed,
        examples=args.examples,
        environment=table.NEOML,
        runtimes=runtimes,
        pairs=rows,
    )
    args.out.write_text(results.dumps(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
