"""Work that must not depend on what ran before it: each task in its own fresh process.

Runtimes keep per-process state (built networks, compiled functions, caches) that can
move a float32 result by its last bit, and so a shrink path. The conformance grid's rows
and the report's exporters are therefore each judged in a new spawned process (spawned,
not forked: frameworks hold threads and devices a fork would copy half of), ``jobs`` at a
time, so their results are the same for any number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def each_in_fresh_process(work: Callable[[Any], T], tasks: Sequence[Any], jobs: int,
                          tick: Callable[[], None] | None = None) -> list[T]:
    """``work(task)`` for each task, each in a new spawned process, ``jobs`` at a time;
    the results in the tasks' order, ``tick`` called as each one finishes. ``work`` must
    be a module-level function (spawned processes import it by name)."""
    import multiprocessing

    if not tasks:
        return []
    done: dict[int, T] = {}
    context = multiprocessing.get_context("spawn")
    # maxtasksperchild=1 with chunksize=1: one task per process, then a new process
    with context.Pool(max(1, min(jobs, len(tasks))), maxtasksperchild=1) as pool:
        numbered = [(n, work, task) for n, task in enumerate(tasks)]
        for n, result in pool.imap_unordered(_numbered, numbered, chunksize=1):
            done[n] = result
            if tick is not None:
                tick()
    return [done[n] for n in range(len(tasks))]


def _numbered(item: tuple[int, Callable[[Any], Any], Any]) -> tuple[int, Any]:
    n, work, task = item
    return n, work(task)
