"""The ``equivalence`` command line: the report, and inspect/convert for real files."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF1's graph API logs a deprecation per cell built; keep the progress bar readable.
logging.getLogger("tensorflow").setLevel(logging.ERROR)


DEFAULT_NEOML_PYTHON = Path(".venv-neoml/bin/python")
DESCRIPTION = ("Prove numerically that an LSTM computes the same function after its weights "
               "move between frameworks.")
# Pairs are quoted: unquoted, the shell takes the > of torch->keras as a redirect.
EXAMPLES = """examples:
  equivalence inspect model.h5                      list the LSTMs in a file
  equivalence convert model.pt --to keras -o lstm.weights.h5 --verify
  equivalence convert ckpt/model.ckpt --to torch -o lstm.pt --layer rnn/multi_rnn_cell
  equivalence compare lstm.pt lstm.onnx             is the export the same function?
  equivalence compare model.keras saved_model/ --json
  equivalence report                                the whole matrix into reports/
  equivalence report --only 'torch->keras' 'keras->onnxruntime'
"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("equivalence")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


@contextlib.contextmanager
def _neoml_part(args: argparse.Namespace, data: dict) -> Iterator[Callable[[], str]]:
    """Yields ``merge``, which merges the NeoML environment's results into ``data`` and says
    where they came from. A run in the NeoML environment goes on while the block does."""
    from equivalence.report import results

    if args.neoml_results:
        part = results.load(args.neoml_results)
        yield lambda: _merge_neoml(data, part, f"read from {args.neoml_results}")
    elif args.neoml_python and Path(args.neoml_python).exists():
        from equivalence.report.matrix import neoml_in_background

        with neoml_in_background(Path(args.neoml_python), examples=args.examples,
                                 seed=args.seed) as finish:
            yield lambda: _merge_neoml(data, finish(), f"run in {args.neoml_python}")
    else:
        why = ("not run: no NeoML environment (create .venv-neoml, see the README, or pass "
               "--neoml-python / --neoml-results)")
        data["environments"].append({"name": "neoml", "status": why, "versions": {}})
        yield lambda: why


def _merge_neoml(data: dict, part: dict, how: str) -> str:
    data["runtimes"] = [r for r in data["runtimes"] if r["name"] != "neoml"] + part["runtimes"]
    data["pairs"] += part["pairs"]
    data["environments"] += part["environments"]
    return how


def report(args: argparse.Namespace) -> int:
    """The report, with the frameworks' own logs in a file unless ``--debug``."""
    from equivalence.runtimes.framework_logs import framework_logs_to_file

    log = None
    try:
        with framework_logs_to_file(args.debug) as log:
            return _report(args)
    finally:
        if log is not None:
            print(f"framework logs: {log} (--debug prints them here instead)", flush=True)


def _report(args: argparse.Namespace) -> int:
    """Run the matrix (or merge results files) and write the report folder."""
    from equivalence.report import matrix, results, summary
    from equivalence.report.write import write_report

    replay = "equivalence report " + " ".join(args.raw_argv)
    if args.merge:
        data = results.merge([results.load(p) for p in args.merge], seed=args.seed)
        data["error_growth"] = []
    else:
        if args.profile:
            from equivalence.profiles import EXAMPLES

            args.examples = args.examples or EXAMPLES[args.profile]
        args.examples = args.examples or 25
        start = time.perf_counter()
        pairs = matrix.run_main(
            examples=args.examples, seed=args.seed, only=args.only, jobs=args.jobs
        )
        print(f"matrix: {time.perf_counter() - start:.0f}s", flush=True)
        data = results.new_results(
            seed=args.seed,
            examples=args.examples,
            environment="main",
            runtimes=results.runtime_rows(),
            pairs=pairs,
        )
        if not args.only:
            _run_parts(args, data)
        else:
            data["error_growth"] = []
        print(f"checks done in {time.perf_counter() - start:.0f}s", flush=True)
    written = write_report(data, args.out, replay=replay)
    print(f"wrote {', '.join(str(p) for p in written)}")
    found = summary.verdict(data)
    print("\n".join(found.lines()), flush=True)
    # A known deviation fails its check in the report; only an unexpected failure fails the run.
    return 1 if found.failed else 0


def _run_parts(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """The report's parts after the matrix, each timed (printed, not stored: the JSON is
    deterministic)."""
    from equivalence.converters import run_third_party
    from equivalence.report import phases

    def timed(label: str, work: Callable[[], Any], spin: bool = False) -> Any:
        start = time.perf_counter()
        value = phases.waiting(label, work) if spin else work()  # spin: no units to count
        print(f"{label}: {time.perf_counter() - start:.0f}s", flush=True)
        return value

    ran = [r["name"] for r in data["runtimes"] if r["available"] and r["environment"] == "main"]
    # The phases that run in this one process go while the NeoML environment's part runs
    # beside them, on the core they leave idle.
    with _neoml_part(args, data) as merge_neoml:
        data["error_growth"] = timed("error growth",
                                     lambda: phases.error_growth(ran, seed=args.seed))
        data["mutations"] = timed("mutation self-test", lambda: phases.mutation_self_test(
            examples=args.examples, seed=args.seed))
        # quantized LSTMs: each example converts and runs every path (about 25 s): a few
        data["quantized"] = timed("quantized LSTMs", lambda: phases.quantized(
            examples=min(args.examples, 3), seed=args.seed))
        # third-party converters are slow (exports, saves): a few examples per configuration
        data["third_party"] = timed("third-party converters", lambda: run_third_party(
            max_examples=min(args.examples, 5), seed=args.seed), spin=True)
        print(f"NeoML: {timed('neoml part (the rest)', merge_neoml)}", flush=True)
    data["conformance"] = timed("conformance grid", lambda: phases.conformance_grid(
        examples=args.examples, seed=args.seed, jobs=args.jobs))
    # exporters: each case exports, saves and probes an artefact: two cases per configuration
    data["exporters"] = timed("exporters", lambda: phases.exporters(
        cases=min(args.examples, 2), seed=args.seed, jobs=args.jobs))


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="equivalence", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    from equivalence.cli.files import add_arguments as add_file_commands

    add_file_commands(sub)
    from equivalence.artefacts.command import add_arguments as add_compare_command

    add_compare_command(sub)
    rep = sub.add_parser("report", help="the equivalence matrix, plots and results file")
    rep.add_argument("--examples", type=int, default=None, help="examples per check (25)")
    rep.add_argument(
        "--profile",
        choices=("dev", "ci", "nightly"),
        help="take the example count of a Hypothesis profile",
    )
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes for the matrix (default: one per core; 1 runs in this process) and "
        "for the conformance grid (each of its rows is judged in a fresh process)",
    )
    rep.add_argument(
        "--only",
        nargs="+",
        metavar="PAIR",
        help="'SOURCE->TARGET' pairs or runtime names, quoted for the shell's sake "
        "(e.g. 'torch->keras'; unquoted, > redirects into a file)",
    )
    rep.add_argument("--out", type=Path, default=Path("reports"))
    rep.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="build one report from results files instead of running checks",
    )
    rep.add_argument(
        "--neoml-python",
        default=str(DEFAULT_NEOML_PYTHON),
        help="the NeoML environment's python (default .venv-neoml/bin/python)",
    )
    rep.add_argument("--neoml-results", type=Path, help="read NeoML results from this file")
    rep.add_argument("--debug", action="store_true",
                     help="print the frameworks' own logs here (default: into a log file)")
    rep.set_defaults(func=report)
    args = parser.parse_args(raw)
    args.raw_argv = raw[1:]
    from equivalence.errors import ConversionError

    try:
        return args.func(args)
    except ConversionError as exc:
        print(f"equivalence {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C is a request to stop, not a failure to explain
        print(f"equivalence {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
