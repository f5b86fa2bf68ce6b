"""NeoML's part of the report: the rows that need the NeoML environment, and its case files.

``python -m equivalence.report.neoml_part --cases DIR --export DIR --out FILE``
(run with that environment's Python): NeoML against the float64 reference,
every exchanged case (each main-environment runtime's outputs) converted to
NeoML and run here, and, with ``--export``, NeoML's own cases for the main
environment to run (:func:`equivalence.harness.exchange.export_neoml`). The NeoML row
(NeoML -> every runtime) is judged back in the main environment by
:func:`exchanged_rows` over those files, so both directions use the same code.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from equivalence import table
from equivalence.harness import exchange
from equivalence.harness import judge as harness
from equivalence.harness.explore import Exploration, explore
from equivalence.report import results
from equivalence.strategies import lstm_cases

FEATURE = "exchanged case files"


def exploration(judged: list[Any], error: str = "") -> Exploration:
    """One row's summary of judged case files; the smallest failing case is the minimal one."""
    found = Exploration()
    for outcome in judged:
        found.add(outcome)
    failing = [o for o in judged if not o.ok]
    if failing:
        found.failure = min(failing, key=_size)
    found.error = error
    found.features.add(FEATURE)
    return found


def _size(outcome: Any) -> tuple[int, ...]:
    spec, inputs = outcome.case.spec, outcome.case.inputs
    return (spec.layers * spec.directions * spec.units * spec.input_size,
            inputs.batch * inputs.steps)


def exchanged_count(files: list[Path], targets: list[str]) -> int:
    """How many (file, target) judgements :func:`exchanged_rows` makes (for its progress)."""
    count = 0
    for path in files:
        case = exchange.load(path)
        count += sum(1 for t in targets if t != case.source
                     and table.entry(t).capabilities.refusal(case.spec) is None)
    return count


def exchanged_rows(
    files: list[Path], targets: list[str], environment: str,
    tick: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (case files' source, cell, target): each file moved to ``target``, run,
    judged; a source's GRU cases are a row of their own, in the GRU matrix. A target whose
    row does not claim a case (NeoML's reset-before GRU into torch) is no pair for it: it
    refuses by name (tests/test_neoml.py holds that), so the case is not judged there."""
    by_source: dict[tuple[str, str], list[Path]] = defaultdict(list)
    specs = {}
    for path in files:
        case = exchange.load(path)
        by_source[case.source, case.spec.cell].append(path)
        specs[path] = case.spec
    order = {name: n for n, name in enumerate(entry.name for entry in table.RUNTIMES)}
    rows = []
    def place(key: tuple[str, str]) -> tuple[int, bool]:  # table order, LSTM before GRU
        return order.get(key[0], 99), key[1] != "lstm"

    for (source, cell), paths in sorted(by_source.items(), key=lambda item: place(item[0])):
        for target in targets:
            claimed = [p for p in paths
                       if table.entry(target).capabilities.refusal(specs[p]) is None]
            if target == source or not claimed:
                continue
            judged, error = [], ""
            for path in claimed:
                try:
                    judged.append(exchange.judge(path, target))
                except Exception as exc:  # a crash is the row's result, not the report's end
                    error = f"{path.name}: {type(exc).__name__}: {exc}"
                    break
                if tick:
                    tick()
            rows.append(results.pair_row(source, target, environment,
                                         exploration(judged, error), cell=cell))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equivalence.report.neoml_part")
    parser.add_argument("--cases", type=Path, required=True, help="main environment's cases")
    parser.add_argument("--export", type=Path, help="write NeoML's own cases here")
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    entry = table.entry("neoml")
    caps = entry.capabilities
    rows = []
    for cell in sorted(caps.cells, key=("lstm", "gru").index):
        found = explore(
            lstm_cases(capabilities=caps, dtypes=caps.dtypes, cell=cell),
            lambda case: harness.check_against_reference(entry, case),
            max_examples=args.examples,
            seed_value=args.seed,
        )
        rows.append(results.pair_row("neoml", "reference", table.NEOML, found, cell=cell))
    rows += exchanged_rows(sorted(args.cases.glob("*.npz")), ["neoml"], table.NEOML)
    if args.export:
        exchange.export_neoml(args.export, examples=args.examples, seed=args.seed)
    runtimes = [r for r in results.runtime_rows(table.NEOML) if r["name"] == "neoml"]
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
