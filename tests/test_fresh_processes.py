"""each_in_fresh_process: every task in a new process, results in the tasks' order."""

from __future__ import annotations

import os

import pytest

from equivalence.harness.fresh_processes import each_in_fresh_process

pytestmark = pytest.mark.cpu


def _task_and_pid(task: int) -> tuple[int, int]:
    return task, os.getpid()


def test_each_task_runs_in_its_own_new_process_and_keeps_its_place() -> None:
    ticks = []
    done = each_in_fresh_process(_task_and_pid, [3, 1, 2], jobs=2,
                                 tick=lambda: ticks.append(1))
    assert [task for task, _ in done] == [3, 1, 2]
    pids = {pid for _, pid in done}
    assert len(pids) == 3 and os.getpid() not in pids
    assert len(ticks) == 3


def test_no_tasks_start_no_process() -> None:
    assert each_in_fresh_process(_task_and_pid, [], jobs=2) == []
