"""Run the matrix: every runtime against the reference, every ordered pair through the converters.

One matrix per cell type: the LSTM's, then the GRU's (the rows that run GRUs). A check
is (source, target, cell); ``--only`` names a GRU check as the test ids do,
``torch->keras[gru]``.

Rows for runtimes that cannot run here (not installed, no GPU, another
environment) are kept with the reason. The NeoML environment's part is run
through its own interpreter when one is given, else read from a results file.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from equivalence import table
from equivalence.cells import NAMES
from equivalence.harness import judge as harness
from equivalence.harness.explore import explore
from equivalence.report import results
from equivalence.strategies import Case, joint_capabilities, lstm_cases

Tick = Callable[[], None]
Check = tuple[str, str, str]  # source, target ("reference" for the float64 reference), cell


def check_name(check: Check) -> str:
    """``torch->keras``, ``torch->keras[gru]``: as ``--only`` and the test ids write it."""
    source, target, cell = check
    return f"{source}->{target}" + ("" if cell == "lstm" else f"[{cell}]")


def checks(only: list[str] | None = None, environment: str = table.MAIN) -> list[Check]:
    """Checks to run: per cell, runtime vs "reference" rows, then the pairs."""
    wanted: list[Check] = []
    for cell in NAMES:
        names = [e.name for e in table.cell_entries(cell, environment=environment)]
        wanted += [(name, "reference", cell) for name in names]
        wanted += [(a.name, b.name, cell) for a, b in table.cell_pairs(cell,
                                                                      environment=environment)]
    if only:
        known = {check_name(c) for c in wanted} | {c[0] for c in wanted}
        unknown = [p for p in only if p not in known]
        if unknown:
            raise table.UnknownFormatError(
                f"--only: unknown pair(s) {unknown}; write SOURCE->TARGET or a runtime name, "
                f"e.g. torch->keras, torch->reference or torch->keras[gru]"
            )
        wanted = [c for c in wanted if check_name(c) in only or c[0] in only]
    return wanted


def cases(source: str, target: str, cell: str = "lstm") -> st.SearchStrategy[Case]:
    """What one matrix cell draws: every dtype both sides claim (float32 in at least a third
    of the examples, :func:`equivalence.strategies.dtype_draws`)."""
    rows = [table.entry(source)] + ([] if target == "reference" else [table.entry(target)])
    caps = joint_capabilities([row.load().capabilities for row in rows])
    return lstm_cases(capabilities=caps, dtypes=caps.dtypes, cell=cell)


def run_check(
    source: str, target: str, *, examples: int, seed: int, tick: Tick | None = None,
    cell: str = "lstm",
) -> dict[str, Any]:
    """One matrix cell."""
    src = table.entry(source)
    known = None
    if target == "reference":
        known = src.load().known_deviation()
        found = explore(
            cases(source, target, cell),
            lambda case: harness.check_against_reference(src, case),
            max_examples=examples,
            seed_value=seed,
            on_example=tick,
        )
    else:
        tgt = table.entry(target)
        found = explore(
            cases(source, target, cell),
            lambda case: harness.check_pair(src, tgt, case),
            max_examples=examples,
            seed_value=seed,
            on_example=tick,
        )
    return results.pair_row(source, target, src.environment, found, known, cell)


@contextlib.contextmanager
def progress_bar(total: int, unit: str = "examples") -> Iterator[Callable[[str], Tick]]:
    """A rich progress bar (pair, ``unit`` done, time left); plain lines without rich."""
    try:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
    except ImportError:
        yield lambda label: print(f"checking {label}", flush=True) or (lambda: None)
        return
    columns = (
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("starting", total=total)

        def start(label: str) -> Tick:
            bar.update(task, description=label)
            return lambda: bar.advance(task)

        yield start


def run_main(
    *, examples: int, seed: int, only: list[str] | None, jobs: int = 1
) -> list[dict[str, Any]]:
    """Every runnable check of this environment, with a progress bar; ``jobs`` processes."""
    available = {r["name"] for r in results.runtime_rows() if r["available"]}
    todo = checks(only)
    runnable = [c for c in todo if c[0] in available and c[1] in available | {"reference"}]
    if jobs > 1 and len(runnable) > 1:
        rows = _run_in_workers(runnable, examples=examples, seed=seed, jobs=jobs)
    else:
        rows = []
        with progress_bar(len(runnable) * examples) as start:
            for source, target, cell in runnable:
                tick = start(check_name((source, target, cell)).replace("->", " -> "))
                rows.append(run_check(source, target, examples=examples, seed=seed, tick=tick,
                                      cell=cell))
    order = {check: n for n, check in enumerate(runnable)}
    return sorted(rows, key=lambda row: order[(row["source"], row["target"], row["cell"])])


def _sharing_key(check: Check) -> str:
    """Checks drawing from the same capabilities draw the same cases (derandomized seeds):
    keeping them in one process lets them share runs (equivalence.memo)."""
    source, target, cell = check
    rows = [table.entry(source)] + ([] if target == "reference" else [table.entry(target)])
    return cell + repr(joint_capabilities([r.capabilities for r in rows]))


def _run_in_workers(
    runnable: list[Check], *, examples: int, seed: int, jobs: int
) -> list[dict[str, Any]]:
    """Checks split over ``jobs`` fresh processes (spawned: frameworks must not be forked),
    each group of checks that share cases kept in one process."""
    import concurrent.futures
    import multiprocessing

    groups: dict[str, list[Check]] = {}
    for check in runnable:
        groups.setdefault(_sharing_key(check), []).append(check)
    # the same slices every run: a check's last bits may depend on what ran before it
    slices: list[list[Check]] = [[] for _ in range(jobs)]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(slices, key=len).extend(group)  # biggest groups first, to the lightest slice
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool, \
            context.Manager() as manager, progress_bar(len(runnable), "checks") as start:
        tick = start(f"{len(runnable)} checks in {jobs} processes")
        finished = manager.Queue()  # one item per check done, so the bar counts checks
        futures = [pool.submit(run_checks, part, examples, seed, finished)
                   for part in slices if part]
        while not all(f.done() for f in futures) or not finished.empty():
            with contextlib.suppress(queue.Empty):
                finished.get(timeout=0.5)
                tick()
        return [row for future in futures for row in future.result()]


def run_checks(part: list[Check], examples: int, seed: int,
               finished: Any = None) -> list[dict[str, Any]]:
    """A worker's share of the matrix, in order; ``finished`` hears of each check done."""
    rows = []
    for source, target, cell in part:
        rows.append(run_check(source, target, examples=examples, seed=seed, cell=cell))
        if finished is not None:
            finished.put(check_name((source, target, cell)))
    return rows


@contextlib.contextmanager
def neoml_in_background(python: Path, *, examples: int,
                        seed: int) -> Iterator[Callable[[], dict[str, Any]]]:
    """Both directions through case files: every runtime here -> NeoML (judged in ``python``,
    the NeoML environment), and NeoML -> every runtime here (NeoML's own cases and stored
    networks, judged here).

    The NeoML environment's process runs while the block does (the report's one-process
    phases leave a core idle); the block calls the yielded ``finish`` to wait for it and
    judge NeoML's cases here, which returns the NeoML part's results with NeoML's row
    added. Leaving the block early stops the process."""
    from equivalence.harness.exchange import export, pair_runtimes

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        available = {r["name"] for r in results.runtime_rows() if r["available"]}
        sources = tuple(name for name in pair_runtimes() if name in available)
        export(folder / "cases", sources=sources, examples=examples, seed=seed)
        command = [
            str(python), "-m", "equivalence.report.neoml_part",
            "--cases", str(folder / "cases"), "--export", str(folder / "neoml-cases"),
            "--examples", str(examples), "--seed", str(seed), "--out", str(folder / "neoml.json"),
        ]
        # files, not pipes: nobody reads a pipe while the block runs, and a full one blocks
        with open(folder / "stderr.txt", "w") as errors:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors,
                                       text=True)
        try:
            yield lambda: _finish_neoml(process, command, folder, sources)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _finish_neoml(process: subprocess.Popen, command: list[str], folder: Path,
                  sources: tuple[str, ...]) -> dict[str, Any]:
    from equivalence.report.neoml_part import exchanged_count, exchanged_rows

    if process.wait() != 0:
        stderr = (folder / "stderr.txt").read_text(errors="replace")
        raise results.ResultsFileError(
            f"the NeoML environment's part failed ({' '.join(command)}):\n{stderr[-2000:]}")
    part = json.loads((folder / "neoml.json").read_text())
    files = sorted((folder / "neoml-cases").glob("neoml-*.npz"))
    with progress_bar(exchanged_count(files, list(sources))) as start:
        part["pairs"] += exchanged_rows(files, list(sources), table.MAIN,
                                        start("neoml -> every runtime"))
    return part
