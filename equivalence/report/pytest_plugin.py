"""The pytest plugin: what a user's own test suite gets from installing ``equivalence``.

Registered by the ``pytest11`` entry point, so nothing needs configuring. It adds:

* ``--equivalence-results FILE``: every check run in the session (``check_conversion``,
  ``assert_conversion``, ``check_implementation``...) and every example a test item
  recorded, as a results file in the report's schema (``equivalence report --merge``);
* a report header line naming the runtimes installed here, found without importing a
  framework (``importlib.util.find_spec``), so the header costs milliseconds;
* for JUnit XML (pytest's own ``--junitxml``), each check's verdict as a test property
  (``equivalence_verdict``); a failure's full message (with the diagnosis) is JUnit's
  own failure message.

The assertion helpers are :func:`equivalence.assert_conversion` and
:func:`equivalence.assert_implementation`, re-exported here: they hide their own
frames (``__tracebackhide__``), so a failure shows the verdict under the test's line.

Rows travel from pytest-xdist's workers to the controller in each report's
``user_properties`` (xdist forwards them); the controller writes the file.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import pytest

from equivalence import table

HELPERS = ("assert_conversion", "assert_implementation")  # re-exported from equivalence

ROW = "equivalence_row"  # a pair row in a call report's user_properties
VERDICT = "equivalence_verdict"  # one line per check, a JUnit property
_ROWS: list[dict[str, Any]] = []  # gathered where the session ends (xdist: the controller)
_CURRENT: list[pytest.Item] = []  # the item whose call is running, for the check observer

# Distributions whose import name is not the distribution name with "_" for "-".
_IMPORT_NAMES = {"opencv-python-headless": "cv2", "tensorflow-cpu": "tensorflow"}


def __getattr__(name: str) -> Any:  # the helpers need Hypothesis: imported on use
    if name in HELPERS:
        import equivalence

        return getattr(equivalence, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("equivalence")
    group.addoption(
        "--equivalence-results",
        metavar="FILE",
        default=None,
        help="write every check and judged example as an equivalence results file "
        "(the report's schema: equivalence report --merge FILE)",
    )


def installed_runtimes() -> tuple[list[str], list[str]]:
    """CPU runtimes of this environment whose packages are installed; the GPU rows.

    A cheap stand-in for ``unavailable_reason()``, which imports the framework: rows
    of one runtime module share the packages named on any of them.
    """
    packages: dict[str, set[str]] = {}
    for entry in table.RUNTIMES:
        packages.setdefault(entry.runtime.partition(":")[0], set()).update(entry.packages)
    cpu, gpu = [], []
    for entry in table.RUNTIMES:
        if entry.environment != table.MAIN:
            continue
        if entry.device != "cpu":
            gpu.append(entry.name)
        elif all(_importable(p) for p in packages[entry.runtime.partition(":")[0]]):
            cpu.append(entry.name)
    return cpu, gpu


def _importable(distribution: str) -> bool:
    name = _IMPORT_NAMES.get(distribution, distribution.replace("-", "_"))
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def pytest_report_header(config: pytest.Config) -> list[str]:
    cpu, gpu = installed_runtimes()
    line = f"equivalence runtimes installed here: {', '.join(cpu) or 'none'}"
    return [line + (f" (GPU rows {', '.join(gpu)} need a device)" if gpu else "")]


def _observe(found: Any) -> None:
    """Called by the checking API as each check ends: its row, and its verdict for JUnit."""
    if not _CURRENT or found.worst is None:  # outside a test's call, or nothing judged
        return
    if not _CURRENT[-1].config.stash.get(RECORD_CHECKS, True):
        return
    from equivalence.report import results

    item = _CURRENT[-1]
    source, target = _pair(found.worst.label)
    row = results.pair_row(source, target, "pytest", found)
    item.stash.setdefault(_ROWS_KEY, []).append(json.loads(json.dumps(row)))  # plain JSON
    item.user_properties.append((VERDICT, verdict(found)))


def _pair(label: str) -> tuple[str, str]:
    """``torch -> keras`` or ``torch implementation vs float64 reference``, as two names."""
    source, _, target = label.partition(" -> ")
    if not target:
        source, _, target = label.partition(" vs ")
    return source, target


def verdict(found: Any) -> str:
    """One line for JUnit: the pair, passed or failed, over how many examples."""
    label = found.worst.label.split(": ")[0]
    worst = max(found.max_abs_diff.values(), default=0.0)
    state = "passed" if found.passed else "FAILED"
    text = f"{label}: {state} over {found.examples} examples (max abs diff {worst:.3g})"
    if found.failure is not None:
        text += f"; minimal failing example: {found.failure.case.describe()}"
    return text + (f"; error: {found.error}" if found.error else "")


_ROWS_KEY = pytest.StashKey[list[dict[str, Any]]]()
# A suite sets config.stash[RECORD_CHECKS] = False (in pytest_configure) to keep its checks
# out of the results file, leaving only the examples its tests record themselves.
RECORD_CHECKS = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    from equivalence.harness import check

    _CURRENT.append(item)
    if _observe not in check.OBSERVERS:
        check.OBSERVERS.append(_observe)
    try:
        yield
    finally:
        _CURRENT.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    made = yield
    report = made.get_result()
    if report.when != "call":
        return
    stored: list[dict[str, Any]] = item.stash.get(_ROWS_KEY, [])
    rows = list(stored)
    outcomes = getattr(item, "equivalence_outcomes", None)  # examples a test recorded itself
    if outcomes:
        from equivalence.report.from_pytest import row_for

        rows.append(row_for(outcomes))
    report.user_properties.extend((ROW, row) for row in rows)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _ROWS.extend(value for name, value in report.user_properties  # type: ignore[misc]
                 if name == ROW)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--equivalence-results", None)
    if path and not hasattr(session.config, "workerinput"):  # the controller writes it
        from equivalence.report.from_pytest import write_results

        profile = _profile()
        write_results(_ROWS, path, profile=profile, exitstatus=int(exitstatus))


def _profile() -> str:
    """The Hypothesis profile loaded for the session (the results file records it)."""
    try:
        from hypothesis import settings

        return str(settings.get_current_profile_name())
    except (ImportError, AttributeError):  # older Hypothesis: the usual variable
        return os.environ.get("HYPOTHESIS_PROFILE", "default")
