"""``equivalence compare A B``: is a user's converted or exported model the same function?

Each side runs as its file defines itself (:func:`open_side`), both on the
same drawn inputs under every probe that applies (:mod:`.probes`), judged
by the one tolerance policy, measured on A's weights where they are read.

Exit status: 0 equivalent (every probe matched or was refused by a runtime
that rejects the shape); 1 not equivalent (some probe ran and gave other
numbers), with the diagnosis; 2 cannot compare (a file unreadable, shapes
that differ, the exported shape itself refused): one line, nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equivalence.artefacts.diagnosis import diagnose
from equivalence.artefacts.probes import MATCH, REFUSED, WRONG, ProbeResult, plan, run_probe
from equivalence.artefacts.side import Side, parse_map
from equivalence.errors import ConversionError

EQUIVALENT, NOT_EQUIVALENT = "equivalent", "not equivalent"
DEFAULT_EXAMPLES = 10


@dataclass
class Outcome:
    """A finished compare: the sides, each probe's result, the verdict and the diagnosis."""

    a: Side
    b: Side
    results: list[ProbeResult]
    skipped: list[tuple[str, str]]
    diagnosis: str
    seconds: float

    @property
    def verdict(self) -> str:
        return NOT_EQUIVALENT if any(r.verdict == WRONG for r in self.results) else EQUIVALENT

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "a": self.a.describe(), "b": self.b.describe(),
                "probes": [r.to_dict() for r in self.results],
                "not_probed": [{"name": n, "reason": why} for n, why in self.skipped],
                "diagnosis": self.diagnosis or None, "seconds": round(self.seconds, 2)}


def open_side(path: Path, *, layer: str | None = None, mapping: dict[str, str] | None = None,
              run_torchscript: bool = False) -> Side:
    """The side ``path`` defines: a SavedModel folder, a LiteRT flatbuffer, an OpenVINO IR,
    a whole ONNX model, or any file ``inspect`` reads (through the verify runners)."""
    path = Path(path)
    from equivalence.files._base import checkpoint_prefix

    # a TF checkpoint is named by its prefix (no such file) or its folder, as inspect takes it
    if not (path / "saved_model.pb").is_file() and checkpoint_prefix(path) is not None:
        from equivalence.artefacts.file_side import file_side

        return file_side(path, layer=layer, run_torchscript=run_torchscript)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ConversionError(f"{path}: a folder without saved_model.pb (compare reads "
                                  "a TF SavedModel folder, or a file)")
        from equivalence.artefacts.savedmodel import savedmodel_side

        return savedmodel_side(path, mapping=mapping)
    head = _head(path)
    if path.suffix == ".tflite" or head[4:8] == b"TFL3":
        from equivalence.artefacts.litert import litert_side

        return litert_side(path, mapping=mapping)
    if path.suffix == ".xml":
        from equivalence.artefacts.openvino_ir import openvino_side

        return openvino_side(path, mapping=mapping)
    from equivalence.files.registry import detect_kind

    kind = detect_kind(path)
    if kind == "onnx":
        from equivalence.artefacts.onnx_model import onnx_side

        return onnx_side(path, mapping=mapping, layer=layer)
    if kind == "torchscript" and not run_torchscript:
        raise ConversionError(f"{path}: a TorchScript archive; compare runs it with "
                              "torch.jit.load, which executes the archive's code: pass "
                              "--run-torchscript to allow it")
    from equivalence.artefacts.file_side import file_side

    return file_side(path, layer=layer, run_torchscript=run_torchscript)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(16)
    except OSError as exc:
        raise ConversionError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def check_shapes(a: Side, b: Side) -> None:
    """Two networks of different shapes cannot compute the same function: say both."""
    fields = ("input_size", "output_width", "state_rows", "units")
    for name in fields:
        left, right = getattr(a.shape, name), getattr(b.shape, name)
        if left is not None and right is not None and left != right:
            raise ConversionError(f"the two files hold LSTMs of different shapes: A ({a.path}) "
                                  f"{a.shape.describe()}; B ({b.path}) {b.shape.describe()}")
    if a.shape.input_size is None and b.shape.input_size is None:
        raise ConversionError("neither file says its input size: pass a file whose LSTM "
                              "weights or input shape can be read")
    if a.weights is not None and b.weights is not None:
        sa, sb = a.weights.spec, b.weights.spec
        if (sa.layers, sa.directions) != (sb.layers, sb.directions):
            raise ConversionError(
                f"the two files hold LSTMs of different shapes: A has {sa.layers} layer(s) x "
                f"{sa.directions} direction(s), B {sb.layers} x {sb.directions}")


def compare_sides(a: Side, b: Side, *, examples: int = DEFAULT_EXAMPLES, seed: int = 0,
                  say: Callable[[str], None] = print) -> Outcome:
    """Run every applicable probe on ``a`` and ``b``; the exported shape itself refused is
    a ConversionError (nothing could be compared)."""
    if examples < 1:
        raise ConversionError(f"--examples: {examples}, expected at least 1")
    check_shapes(a, b)
    start = time.perf_counter()
    chosen = plan(a, b)
    results = []
    for probe in chosen.probes:
        result = run_probe(probe, a, b, examples=examples, seed=seed)
        say(_line(result))
        results.append(result)
        if probe.name == "exported shape" and result.verdict == REFUSED:
            raise ConversionError(f"cannot compare: at the exported shape {result.reason}")
    for name, why in chosen.skipped:
        say(f"  {name}: not probed ({why})")
    diagnosis = diagnose(a, b, results)
    return Outcome(a, b, results, chosen.skipped, diagnosis, time.perf_counter() - start)


def _line(result: ProbeResult) -> str:
    probe = result.probe
    shapes = (f"batch {_span(probe.batches)}, time {_span(probe.steps)}"
              + (f" x {probe.chunks} chunks" if probe.chunks > 1 else ""))
    text = f"  {probe.name} ({shapes}): {result.verdict}"
    if result.verdict == REFUSED:
        return f"{text}: {result.reason}"
    # the difference ends at ';' (what follows are counts and tolerances)
    text += f", max abs diff {result.max_abs_diff:.3g}; {result.examples} examples"
    if result.tolerance:
        text += f", allowed {result.tolerance}"
    if result.failure is not None:
        case = result.failure.minimal_case(probe)
        worst = case.pop("worst")
        text += (f"; minimal case {case}: {worst['tensor']} off by "
                 f"{worst['max_abs_diff']:.3g} at {tuple(worst['at'])}")
    if result.reference:
        text += (f"; y vs the float64 reference of A's weights: A {result.reference['A']:.3g}, "
                 f"B {result.reference['B']:.3g}")
    return text


def _span(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(values) == 1 else f"{min(values)}-{max(values)}"


# ---------------------------------------------------------------- the subcommand


def add_arguments(subparsers: Any) -> None:
    """Add ``compare`` to an argparse subparsers object."""
    cmp = subparsers.add_parser(
        "compare", help="is B (your converted or exported model) the same function as A?",
        description="Run A and B as their files define them on the same random inputs, at "
                    "the exported shape and the shapes deployment uses (other time lengths "
                    "and batch sizes, initial states, streaming, lengths). Exit 0: "
                    "equivalent; 1: not, with the diagnosis; 2: cannot compare.")
    cmp.add_argument("a", type=Path, help="the original (any file inspect reads)")
    cmp.add_argument("b", type=Path, help="the converted or exported model: .onnx, a "
                     "SavedModel folder, .tflite, OpenVINO .xml, or any file inspect reads")
    cmp.add_argument("--layer-a", help="which LSTM of A (a name from `equivalence inspect`)")
    cmp.add_argument("--layer-b", help="which LSTM of B")
    cmp.add_argument("--map-a", help="A's inputs and outputs by role, e.g. "
                     "'x=input,h0=h0,c0=c0,y=output,h=hn,c=cn'")
    cmp.add_argument("--map-b", help="B's, the same way")
    cmp.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                     help=f"examples per probe ({DEFAULT_EXAMPLES})")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--json", action="store_true", help="print one JSON document")
    cmp.add_argument("--run-torchscript", action="store_true",
                     help="allow torch.jit.load of a TorchScript side (it runs the archive's "
                          "code)")
    cmp.add_argument("--debug", action="store_true", help="print tracebacks of errors")
    cmp.set_defaults(func=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    """The subcommand: 0 equivalent, 1 not, 2 cannot compare (one line on stderr)."""
    from equivalence.runtimes.framework_logs import framework_logs_to_file

    log = None
    try:
        with framework_logs_to_file(args.debug) as log:  # TF's C++ logs off the console
            outcome = _compare(args)
    except Exception as exc:  # ConversionError or a bug: one line, exit 2, nothing written
        if args.debug:
            import traceback

            traceback.print_exception(exc)
        text = str(exc) if isinstance(exc, ConversionError) else \
            f"unexpected error: {type(exc).__name__}: {exc}"
        print(f"equivalence compare: error: {(text.splitlines() or [''])[0][:2000]}",
              file=sys.stderr)
        return 2
    finally:
        if log is not None:
            log.unlink(missing_ok=True)
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2))
    else:
        _print_verdict(outcome)
    return 0 if outcome.verdict == EQUIVALENT else 1


def _compare(args: argparse.Namespace) -> Outcome:
    say: Callable[[str], None] = (lambda _text: None) if args.json else print
    a = open_side(args.a, layer=args.layer_a, mapping=parse_map(args.map_a),
                  run_torchscript=args.run_torchscript)
    b = open_side(args.b, layer=args.layer_b, mapping=parse_map(args.map_b),
                  run_torchscript=args.run_torchscript)
    check_shapes(a, b)  # before anything is said: exit 2 is one line
    for name, side in (("A", a), ("B", b)):
        say(f"compare: {name} = {side.label}")
        for note in side.notes:
            say(f"  note: {note}")
    return compare_sides(a, b, examples=args.examples, seed=args.seed, say=say)


def _print_verdict(outcome: Outcome) -> None:
    refused = [r.probe.name for r in outcome.results if r.verdict == REFUSED]
    matched = sum(r.verdict == MATCH for r in outcome.results)
    if outcome.diagnosis:
        print(f"compare: diagnosis: {outcome.diagnosis}")
    tail = f"; refused: {', '.join(refused)}" if refused else ""
    print(f"compare: {outcome.verdict.upper()} ({matched} of {len(outcome.results)} probes "
          f"matched{tail}) in {outcome.seconds:.1f}s")
