"""Project-wide pytest setup: markers, Hypothesis profiles, the results file, the header.

Profiles live in :mod:`equivalence.profiles`; choose one with
``HYPOTHESIS_PROFILE`` (default ``dev``). ``--equivalence-results FILE`` writes
every judged example's summary in the report's schema, so CI runs feed
``equivalence report --merge``.
"""

from __future__ import annotations

import os

# Before any framework import: Keras 3 picks its backend once per process.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from hypothesis import settings

from equivalence import profiles

profiles.register()
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
settings.load_profile(PROFILE)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--equivalence-results",
        metavar="FILE",
        default=None,
        help="write the judged examples as an equivalence.json results file",
    )


def pytest_configure(config) -> None:
    for marker in (
        "cpu: runs on any machine (the CPU suite)",
        "gpu: needs a CUDA device; skips without one unless EQUIVALENCE_REQUIRE_GPU=1",
        "neoml: runs in the separate NeoML environment (tox -e neoml)",
    ):
        config.addinivalue_line("markers", marker)


def pytest_report_header(config) -> list[str]:
    return [
        f"equivalence: HYPOTHESIS_PROFILE={PROFILE} "
        f"(max_examples={settings.default.max_examples}, "
        f"derandomize={settings.default.derandomize})"
    ]


# Pair rows reported by the test items, gathered where the session ends (the controller
# under pytest-xdist: rows travel in each report's user_properties, which xdist forwards).
_ROWS: list[dict] = []
_ROW = "equivalence_row"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    made = yield
    report = made.get_result()
    outcomes = getattr(item, "equivalence_outcomes", None)
    if report.when == "call" and outcomes:
        from equivalence.report.from_pytest import row_for

        report.user_properties.append((_ROW, row_for(outcomes)))


def pytest_runtest_logreport(report) -> None:
    _ROWS.extend(value for name, value in report.user_properties if name == _ROW)


def pytest_sessionfinish(session, exitstatus) -> None:
    path = session.config.getoption("--equivalence-results")
    if path and not hasattr(session.config, "workerinput"):  # the controller writes it
        from equivalence.report.from_pytest import write_results

        write_results(_ROWS, path, profile=PROFILE, exitstatus=int(exitstatus))
