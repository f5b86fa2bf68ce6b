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
    from equivalence.harness.fresh_processes import each_in_fresh_process

    loaded = [load_exporter(path) for path in EXPORTERS]  # cheap: no framework is imported
    chosen = [n for n, e in enumerate(loaded) if not only or e.name in only]
    # the exporters with the most configurations start first, so the workers finish together
    chosen.sort(key=lambda n: -len(loaded[n].configurations))
    tasks = [(EXPORTERS[n], cases, probe_examples, seed) for n in chosen]
    with progress_bar(len(tasks), "exporters") as start:
        parts = each_in_fresh_process(_exporter, tasks, jobs, start("exporters"))
    by_index = dict(zip(chosen, parts, strict=True))
    return [run for n in sorted(by_index) for run in by_index[n]]


def _exporter(task: tuple[str, int, int, int]) -> list[dict[str, Any]]:
    """One exporter's entries in a worker (module level: spawned processes import it)."""
    from equivalence.converters.exporter import run_exporter

    path, cases, probe_examples, seed = task
    return run_exporter(path, cases=cases, probe_examples=probe_examples, seed=seed)


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
    """``run_conformance(runtimes, jobs=jobs)`` (each row in its own fresh spawned process),
    counting rows."""
    from equivalence.harness import conformance

    rows = [row for row in conformance.rows_for(runtimes)
            if row.load().unavailable_reason() is None]
    with progress_bar(len(rows), "rows") as start:
        return conformance.run_conformance(rows, max_examples=examples, seed=seed, jobs=jobs,
                                           tick=start("conformance grid"))


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
