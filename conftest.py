"""This repository's pytest setup: markers, Hypothesis profiles, shards, slow-first order.

Profiles live in :mod:`equivalence.profiles`; choose one with
``HYPOTHESIS_PROFILE`` (default ``dev``). What any user's suite gets (the
``--equivalence-results FILE`` results file, the runtimes header, JUnit
properties) is the installed plugin, :mod:`equivalence.report.pytest_plugin`.
"""

from __future__ import annotations

import os

# Before any framework import: Keras 3 picks its backend once per process.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from hypothesis import settings

from equivalence import profiles
from equivalence.report import pytest_plugin

profiles.register()
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
settings.load_profile(PROFILE)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--shard",
        metavar="K/N",
        default=None,
        help="run only the K-th of N interleaved slices of the tests (nightly runners, 1-based)",
    )


# Modules of long tests (exports, worker processes, a browser, the README's walkthroughs:
# 5-25 s each) run first, so that pytest-xdist's workers do not end on one long test while
# the other idles.
SLOW_FIRST = ("test_third_party.py", "test_conformance.py", "test_runtime_workers.py",
              "test_report.py", "test_readme.py", "test_findings.py")


def pytest_collection_modifyitems(config, items) -> None:
    if config.getoption("--shard"):
        _keep_shard(config, items)  # on the collection order, so shards stay stable

    def rank(item) -> int:
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: a module's tests stay together, in order


def _keep_shard(config, items) -> None:
    index, count = _shard(config.getoption("--shard"))
    kept, dropped = [], []
    for position, item in enumerate(items):
        (kept if position % count == index - 1 else dropped).append(item)
    config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise pytest.UsageError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return int(index), int(count)


def pytest_configure(config) -> None:
    for marker in (
        "cpu: runs on any machine (the CPU suite)",
        "gpu: needs a CUDA device; skips without one unless EQUIVALENCE_REQUIRE_GPU=1",
        "neoml: runs in the separate NeoML environment (tox -e neoml)",
        "sideenv: needs the third-party converters' side environment (tox -e thirdparty)",
    ):
        config.addinivalue_line("markers", marker)
    # Tests here run check_conversion on buggy converters that are meant to fail: the
    # results file takes only the examples the runtime tests record (runtime_support.record).
    config.stash[pytest_plugin.RECORD_CHECKS] = False


def pytest_report_header(config) -> list[str]:
    return [
        f"equivalence: HYPOTHESIS_PROFILE={PROFILE} "
        f"(max_examples={settings.default.max_examples}, "
        f"derandomize={settings.default.derandomize})"
    ]
