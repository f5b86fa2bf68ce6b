"""The report's phases after the matrix, each with a progress bar that counts its own units.

Each runs the same work, in the same processes, as the function it wraps
(:func:`~equivalence.mutations.self_test.run_catalogue`,
:func:`~equivalence.report.plots.growth_points`,
:func:`~equivalence.harness.conformance.run_conformance`), so the results file is the
same; only the console learns how far along it is: bugs injected, runtimes
measured, grid rows judged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from equivalence.report.matrix import progress_bar

T = TypeVar("T")


def mutation_self_test(*, examples: int, seed: int) -> list[dict[str, Any]]:
    from equivalence.mutations.self_test import CATALOGUE, run_mutation

    found = []
    with progress_bar(len(CATALOGUE), "bugs") as start:
        tick = start("mutation self-test")
        for mutation in CATALOGUE:
            found.append(run_mutation(mutation, max_examples=examples, seed=seed).as_dict())
            tick()
    return found


def quantized(*, examples: int, seed: int) -> list[dict[str, Any]]:
    """The ``quantized`` rows: every quantization path on every shape (about 25 s an example)."""
    from equivalence.quantized import run_all

    return [r.to_dict() for r in waiting("quantized LSTMs", lambda: run_all(examples, seed))]


def exporters(*, cases: int, seed: int, jobs: int = 1, probe_examples: int = 2,
              only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The ``exporters`` entries (``only``: these exporter names): every registered exporter's
    configurations under every probe, each exporter in its own fresh spawned process,
    ``jobs`` at a time (as the grid's rows: an exporter's numbers then depend on nothing that
    ran before it, so the entries are the same for every ``jobs``). The entries keep
    ``EXPORTERS``' order."""
    from equivalence.converters.exporter import EXPORTERS, load_exporter

    loaded = [load_exporter(path) for path in EXPORTERS]  # cheap: no framework is imported
    chosen = [n for n, e in enumerate(loaded) if not only or e.name in only]
    # the exporters with the most configurations start first, so the workers finish together
    chosen.sort(key=lambda n: -len(loaded[n].configurations))
    tasks = [(n, EXPORTERS[n], cases, probe_examples, seed) for n in chosen]
    return _in_fresh_processes(_exporter, tasks, jobs, "exporters", "exporters")


def _exporter(task: tuple[int, str, int, int, int]) -> tuple[int, list[dict[str, Any]]]:
    """One exporter's entries in a worker (module level: spawned processes import it)."""
    from equivalence.converters.exporter import run_exporter

    index, path, cases, probe_examples, seed = task
    return index, run_exporter(path, cases=cases, probe_examples=probe_examples, seed=seed)


def error_growth(runtimes: list[str], *, seed: int) -> list[dict[str, Any]]:
    from equivalence.report.plots import growth_points

    points: list[dict[str, Any]] = []
    with progress_bar(len(runtimes), "runtimes") as start:
        tick = start("error growth")
        for name in runtimes:  # each runtime draws from its own seeded generator
            points += growth_points([name], seed=seed)
            tick()
    return points


def conformance_grid(*, examples: int, seed: int, jobs: int,
                     runtimes: list[str] | None = None) -> list[dict[str, Any]]:
    """As ``run_conformance(runtimes, jobs=jobs)``: each row in its own fresh spawned process."""
    from equivalence.harness import conformance

    rows = [row for row in conformance.rows_for(runtimes)
            if row.load().unavailable_reason() is None]
    tasks = [(n, (row.name, None, examples, seed, conformance.SHRINK_RUNS))
             for n, row in enumerate(rows)]
    return _in_fresh_processes(_row, tasks, jobs, "rows", "conformance grid")


def _in_fresh_processes(work: Callable[[Any], tuple[int, list[T]]], tasks: list[Any],
                        jobs: int, unit: str, label: str) -> list[T]:
    """``work`` on each task (its first item: its index) in its own fresh spawned process
    (frameworks must not be forked), ``jobs`` at a time, with a progress bar counting
    ``unit``; the parts joined in index order, whichever finished first."""
    import multiprocessing

    parts: dict[int, list[T]] = {}
    context = multiprocessing.get_context("spawn")
    with context.Pool(max(1, min(jobs, len(tasks))), maxtasksperchild=1) as pool, \
            progress_bar(len(tasks), unit) as start:
        tick = start(label)
        for n, part in pool.imap_unordered(work, tasks, chunksize=1):
            parts[n] = part
            tick()
    return [item for n in sorted(parts) for item in parts[n]]


def _row(task: tuple[int, tuple[Any, ...]]) -> tuple[int, list[dict[str, Any]]]:
    """One grid row in a worker (module level: spawned processes import it by name)."""
    from equivalence.harness import conformance

    index, args = task
    return index, conformance._row_cells(*args)


def waiting(label: str, work: Callable[[], T]) -> T:
    """``work()`` under a spinner and the time it has taken: for a phase that cannot count
    its units from here (a side environment's run, converters in parallel)."""
    try:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    except ImportError:
        return work()
    with Progress(SpinnerColumn(), TextColumn(f"{label:<32}"), TimeElapsedColumn(),
                  transient=True) as bar:
        bar.add_task(label, total=None)
        return work()
