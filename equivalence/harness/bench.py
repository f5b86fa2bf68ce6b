"""Benchmark: examples per second per runtime, cached layers vs a naive rebuild per example.

``python -m equivalence.harness.bench [--examples N] [--json]``. Each example has new
random weights and inputs on a few recurring shapes, as Hypothesis draws them;
"cached" reuses one runtime object (built layers, traced graphs, sessions),
"naive" builds a fresh runtime object, and so a fresh network, every example.
The first (building) call is included in the cached figure. "ceiling" is the
same ratio in the framework alone (``execute`` on native weights made
beforehand): the speedup a harness with no cost of its own would show.

"ratio" is examples/s through ``Runtime.run`` over examples/s of ``execute``
alone, on the same prepared examples with built networks: what the contract's
checks cost. The command exits 1 when a runtime's ratio is under
``RATIO_FLOOR`` (0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from equivalence import table
from equivalence.canonical import random_weights
from equivalence.case import Case
from equivalence.formats.options import checked_run_options
from equivalence.harness import judge as harness
from equivalence.io_types import LSTMInputs
from equivalence.runtimes.base import Runtime
from equivalence.spec import LSTMSpec

SHAPES = (LSTMSpec(5, 4, layers=2, directions=2), LSTMSpec(3, 6), LSTMSpec(2, 2, layers=2))


def cases(entry: table.Entry, count: int, seed: int = 0, shapes: int | None = None) -> list[Case]:
    """``count`` examples cycling over the first ``shapes`` shapes ``entry`` can run."""
    caps = entry.load().capabilities
    runnable = [s for s in SHAPES if caps.refusal(s) is None] or [LSTMSpec(3, 4)]
    cycle = runnable[:shapes]
    rng = np.random.default_rng(seed)
    made = []
    for n in range(count):
        spec = cycle[n % len(cycle)]
        weights = random_weights(spec, rng).astype("float32")
        x = rng.normal(size=(3, 6, spec.input_size)).astype(np.float32)
        made.append(Case(weights.spec, weights, LSTMInputs(x)))
    return made


def examples_per_second(
    entry: table.Entry,
    examples: list[Case],
    runtime_for: Callable[[], Runtime],
    framework_only: bool = False,
) -> float:
    """Examples per second through ``Runtime.run`` (conversion, contract checks, run).

    ``framework_only``: through ``execute`` on native weights made beforehand,
    so the figure is the framework's own building and running, without the
    harness's conversion and checks.
    """
    natives = [harness.native_weights(entry, case) for case in examples]
    options = dict(entry.format_options)
    start = time.perf_counter()
    for case, native in zip(examples, natives, strict=True):
        runtime = runtime_for()
        if framework_only:
            checked = checked_run_options(runtime.name, runtime.format, case.spec, options)
            runtime.execute(case.spec, native, case.inputs, checked)
        else:
            runtime.run(case.spec, native, case.inputs, **options)
    return len(examples) / (time.perf_counter() - start)


RATIO_FLOOR = 0.5  # Runtime.run must keep at least half the framework's own examples/s


def harness_ratio(entry: table.Entry, count: int, repeats: int = 3) -> dict[str, float]:
    """Examples/s through ``Runtime.run`` and of ``execute`` alone, on the same examples.

    The examples' native weights are made and the networks built beforehand
    (one untimed pass), so both loops time only what each example costs once
    built: the framework's run, plus (for ``Runtime.run``) the contract's checks.
    The two loops alternate ``repeats`` times; the medians are reported.
    """
    runtime = entry.load()
    examples = cases(entry, count, seed=5)
    examples_per_second(entry, examples, lambda: runtime)
    through_run, alone = [], []
    for _ in range(repeats):
        alone.append(examples_per_second(entry, examples, lambda: runtime, framework_only=True))
        through_run.append(examples_per_second(entry, examples, lambda: runtime))
    run_rate, alone_rate = float(np.median(through_run)), float(np.median(alone))
    return {
        "run_examples_per_second": round(run_rate, 1),
        "framework_examples_per_second": round(alone_rate, 1),
        "harness_ratio": round(run_rate / alone_rate, 2),
    }


def measure(entry: table.Entry, count: int, naive_count: int) -> dict[str, float]:
    cached = entry.load()

    def fresh() -> Runtime:
        return type(cached)(entry)

    # Framework start-up (kernel registration, thread pools, TensorFlow's first trace, 5 s) is
    # paid once, by a throwaway object running one shape often enough to build and trace it.
    warm = fresh()
    examples_per_second(entry, cases(entry, 4, seed=2, shapes=1), lambda: warm)
    fast = examples_per_second(entry, cases(entry, count), lambda: cached)
    slow = examples_per_second(entry, cases(entry, naive_count, seed=1), fresh)
    # The ceiling: the same two loops in the framework alone (a harness with no cost of its
    # own); where building is about as cheap as running, no cache can beat it by much.
    one = fresh()
    fast_alone = examples_per_second(entry, cases(entry, count, seed=3), lambda: one,
                                     framework_only=True)
    slow_alone = examples_per_second(entry, cases(entry, naive_count, seed=4), fresh,
                                     framework_only=True)
    return {
        "examples_per_second": round(fast, 2),
        "naive_examples_per_second": round(slow, 2),
        "speedup": round(fast / slow, 1),
        "framework_only_ceiling": round(fast_alone / slow_alone, 1),
        **harness_ratio(entry, count),
    }


def under_floor(results: dict[str, dict[str, float]]) -> list[str]:
    """The runtimes whose harness ratio is under :data:`RATIO_FLOOR`, with their figure."""
    return [f"{name}: harness ratio {row['harness_ratio']} < {RATIO_FLOOR}"
            for name, row in results.items() if row["harness_ratio"] < RATIO_FLOOR]


def suite_wall_times(pytest_args: list[str], jobs: str) -> dict[str, float]:
    """Wall time of the ci-profile suite: naive (serial, nothing shared) and as CI runs it.

    Both runs are the same tests with the same derandomized examples, side by side
    on this machine; only work sharing (:mod:`equivalence.memo`) and the worker
    processes differ.
    """
    runs = {
        "naive": ({"EQUIVALENCE_NO_CACHE": "1"}, []),
        "shared": ({}, ["-n", jobs] if jobs not in ("0", "1") else []),
    }
    walls = {}
    for label, (env, extra) in runs.items():
        command = [sys.executable, "-m", "pytest", "-q", "-m", "cpu", *extra, *pytest_args]
        environment = {**os.environ, "HYPOTHESIS_PROFILE": "ci", **env}
        start = time.perf_counter()
        finished = subprocess.run(command, env=environment, capture_output=True, text=True)
        walls[label] = round(time.perf_counter() - start, 1)
        summary = finished.stdout.strip().splitlines()[-1:] or ["(no output)"]
        print(f"{label:<7} {walls[label]:>8.1f} s  {' '.join(command[2:])}: {summary[0]}",
              file=sys.stderr)
        if finished.returncode != 0:
            raise SystemExit(f"suite run '{label}' failed (pytest exit {finished.returncode})")
    walls["speedup"] = round(walls["naive"] / walls["shared"], 2)
    return walls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equivalence.harness.bench",
                                     description=__doc__)
    parser.add_argument("--examples", type=int, default=200, help="cached examples per runtime")
    parser.add_argument("--naive-examples", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="runtime names (default: every runnable one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--suite", action="store_true",
                        help="time the ci suite: naive (serial, no sharing) vs shared + workers")
    parser.add_argument("--ratio-only", action="store_true",
                        help="only the harness ratio (Runtime.run vs execute alone)")
    parser.add_argument("--jobs", default="auto", help="pytest-xdist workers for --suite")
    parser.add_argument("pytest_args", nargs="*", help="with --suite: tests to run (default all)")
    args = parser.parse_args(argv)
    if args.suite:
        walls = suite_wall_times(args.pytest_args, args.jobs)
        print(json.dumps(walls) if args.json else
              f"ci suite: naive {walls['naive']} s, shared {walls['shared']} s "
              f"({walls['speedup']}x)")
        return 0
    results = {}
    for entry in table.entries():
        if args.only and entry.name not in args.only:
            continue
        reason = entry.load().unavailable_reason()
        if reason:
            print(f"skip {entry.name}: {reason}", file=sys.stderr)
            continue
        results[entry.name] = (harness_ratio(entry, args.examples) if args.ratio_only
                               else measure(entry, args.examples, args.naive_examples))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
    failures = under_floor(results)
    for failure in failures:
        print(f"too slow: {failure}", file=sys.stderr)
    return 1 if failures else 0


def print_table(results: dict[str, dict[str, float]]) -> None:
    if all("speedup" not in row for row in results.values()):
        print(f"{'runtime':<16}{'run ex/s':>11}{'alone ex/s':>12}{'ratio':>7}")
        for name, row in results.items():
            print(f"{name:<16}{row['run_examples_per_second']:>11}"
                  f"{row['framework_examples_per_second']:>12}{row['harness_ratio']:>7}")
        return
    print(f"{'runtime':<16}{'examples/s':>12}{'naive ex/s':>12}{'speedup':>9}{'ceiling':>9}"
          f"{'run ex/s':>11}{'alone ex/s':>12}{'ratio':>7}")
    for name, row in results.items():
        print(
            f"{name:<16}{row['examples_per_second']:>12}{row['naive_examples_per_second']:>12}"
            f"{row['speedup']:>8}x{row['framework_only_ceiling']:>8}x"
            f"{row['run_examples_per_second']:>11}{row['framework_examples_per_second']:>12}"
            f"{row['harness_ratio']:>7}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
