"""The ``equivalence`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def smoke(args: argparse.Namespace) -> int:
    """Every runnable runtime of this environment against the reference, a few examples each."""
    import numpy as np

    from . import harness, table
    from .exchange import random_case_for
    from .strategies import Case

    failed = 0
    print(f"{'runtime':<16}{'examples':>9}{'max abs diff':>14}  result")
    for entry in table.entries():
        reason = entry.load().unavailable_reason()
        if reason:
            print(f"{entry.name:<16}{'-':>9}{'-':>14}  not runnable: {reason}")
            continue
        rng, worst, ok, start = np.random.default_rng(args.seed), 0.0, True, time.perf_counter()
        for _ in range(args.examples):
            case = Case(*random_case_for(entry.load().capabilities, rng))
            outcome = harness.check_against_reference(entry, case)
            worst, ok = max(worst, outcome.comparison.max_abs_diff), ok and outcome.ok
        failed += not ok
        seconds = time.perf_counter() - start
        print(f"{entry.name:<16}{args.examples:>9}{worst:>14.3g}  "
              f"{'pass' if ok else 'FAIL'} ({seconds:.1f}s)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="equivalence", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("smoke", help="each runtime here against the float64 reference")
    cmd.add_argument("--examples", type=int, default=10)
    cmd.add_argument("--seed", type=int, default=0)
    cmd.set_defaults(func=smoke)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
