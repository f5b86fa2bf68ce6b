"""``equivalence inspect FILE`` and ``equivalence convert INPUT --to FMT -o OUTPUT``.

Safety rules, all enforced before anything is written: the input is only ever
opened for reading and is never an output; an existing output (a dangling
symbolic link too) is refused without ``--force``; every output is written
under a hidden temporary name in its own folder and published at the end
without replacing anything unless ``--force`` (two racing runs: one wins, the
other exits 2). Refusals come in one order whether or not ``--verify`` is
given: what the target cannot represent, then stored inputs it cannot hold,
then what cannot be verified. Every error, expected or not, is one line naming
the file, exit status 2 and no traceback (``--debug`` prints it). Which formats
exist and who reads and writes them is :mod:`equivalence.files.registry`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import traceback
from pathlib import Path
from typing import Any

from equivalence.cli.convert_all import convert_all
from equivalence.cli.convert_steps import (
    DROP_FLAG,
    VerifyFailed,
    check_verifiable,
    input_files,
    output_files,
    publish_staged,
    refuse_with_states,
    spec_summary,
    staged_files,
    stored_plan,
    torch_first,
    verify_written,
    write_staged,
)
from equivalence.errors import ConversionError
from equivalence.files import registry
from equivalence.files._base import (
    FileFormatError,
    FoundLSTM,
    counted,
    describe_spec,
    parent_folders,
    refuse_output,
    temporary_name,
)
from equivalence.files._base import select as select_lstm
from equivalence.files.limits import MAX_NAME_CHARS, capped
from equivalence.files.registry import FROM_CHOICES, TO_CHOICES, WriteJob, read
from equivalence.files.torch.torchscript import TRUST_FLAG
from equivalence.formats.tf1 import DEFAULT_FORGET_BIAS

COLUMNS = ("name", "format", "cell", "layers", "directions", "I", "H", "projection", "peepholes",
           "biases")
MAX_LISTED = 100  # LSTMs in inspect's table: a file may hold thousands


def finite_float(text: str) -> float:
    """An argparse type: a finite number (NaN and infinities would be written into weights)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


# What people call the families in the wild; argparse shows and checks the canonical names.
ALIASES = {"pytorch": "torch", "pt": "torch", "tf.keras": "keras", "tf_keras": "keras",
           "tensorflow1": "tf1", "tf.compat.v1": "tf1", "cudnnlstm": "cudnn",
           "cudnngru": "cudnn"}


def family_name(text: str) -> str:
    """A family name or one of its :data:`ALIASES`, case-insensitively."""
    name = text.strip().lower()
    return ALIASES.get(name, name)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def add_arguments(subparsers: Any) -> None:
    """Add the ``inspect`` and ``convert`` subcommands to an argparse subparsers object."""
    ins = subparsers.add_parser("inspect", help="list the LSTMs in a model/weights file")
    ins.add_argument("file", type=Path, help=".keras, .h5, TF checkpoint, .pt, TorchScript, "
                                             ".safetensors, .onnx or .npz case file")
    ins.add_argument("--forget-bias", type=finite_float, default=DEFAULT_FORGET_BIAS,
                     help="TF1 checkpoints: the cells' forget_bias (not stored; default 1.0)")
    ins.add_argument("--json", action="store_true", help="print the listing as JSON")
    ins.add_argument("--debug", action="store_true",
                     help="print tracebacks of errors and the frameworks' own logs")
    ins.set_defaults(func=inspect_command)

    conv = subparsers.add_parser("convert", help="convert an LSTM between framework files")
    conv.add_argument("input", type=Path)
    conv.add_argument("--from", dest="source", type=family_name, choices=FROM_CHOICES,
                      default="auto",
                      help="what the input is (default: recognized from its content; "
                           "cudnn = CuDNNLSTM or CuDNNGRU layers of a Keras file)")
    conv.add_argument("--to", dest="target", type=family_name, choices=TO_CHOICES,
                      required=True, help="the target file kind (aliases: "
                      + ", ".join(f"{a}={n}" for a, n in ALIASES.items()) + ")")
    conv.add_argument("-o", "--output", type=Path, required=True,
                      help="; ".join(registry.FAMILY[n].output_help for n in TO_CHOICES))
    conv.add_argument("--layer", help="which LSTM (a name from `equivalence inspect`)")
    conv.add_argument("--all", dest="every_lstm", action="store_true",
                      help="convert every LSTM of the input, one output per LSTM named "
                           "from -o: -o out/m.pt writes out/m_<name>.pt (all or nothing)")
    conv.add_argument("--verify", action="store_true",
                      help="run both files' networks as the files define them on random "
                           "inputs and compare")
    conv.add_argument("--keep-failed", action="store_true",
                      help="--verify: publish the output even when verification fails "
                           "(default: a failing verify leaves nothing)")
    conv.add_argument("--force", action="store_true", help="replace an existing output")
    conv.add_argument("--forget-bias", type=finite_float, default=DEFAULT_FORGET_BIAS,
                      help="TF1 input: the forget_bias its cells were built with (default 1.0)")
    conv.add_argument("--out-forget-bias", type=finite_float, default=DEFAULT_FORGET_BIAS,
                      help="TF1 output: the forget_bias the cells will be built with (1.0)")
    conv.add_argument("--examples", type=positive_int, default=3,
                      help="--verify input batches (3)")
    conv.add_argument("--seed", type=int, default=0, help="--verify random seed")
    conv.add_argument("--with-states", action="store_true",
                      help="onnx, .keras: the written model also takes h0, c0 and the "
                           "lengths (onnx: sequence_lens, .keras: a mask) as inputs and "
                           "returns h and c (to port a decoder)")
    conv.add_argument(DROP_FLAG, dest="drop_stored", action="store_true",
                      help="write the network without the initial states / sequence lengths "
                           "the input stores, when the target cannot hold them")
    conv.add_argument(TRUST_FLAG, dest="run_torchscript", action="store_true",
                      help="--verify of a TorchScript input: allow torch.jit.load, which runs "
                           "the archive's TorchScript code")
    conv.add_argument("--debug", action="store_true",
                      help="print tracebacks of errors and the frameworks' own logs")
    conv.set_defaults(func=convert_command)


def _error(command: str, exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    text = str(exc) if isinstance(exc, ConversionError) else (
        f"unexpected error: {type(exc).__name__}: {exc}")
    print(f"equivalence {command}: error: {capped(text.splitlines()[0] if text else text)}",
          file=sys.stderr)
    return 2


def _guarded(command: str, args: argparse.Namespace, body: Any) -> int:
    """Run ``body``; any failure is one line and exit status 2 (``--debug``: the traceback,
    and the frameworks' own logs, which otherwise go to a file deleted afterwards)."""
    from equivalence.runtimes.framework_logs import framework_logs_to_file

    debug = getattr(args, "debug", False)
    log = None
    try:
        # TensorFlow's C++ logs (oneDNN, cuInit, absl) bypass every level setting
        with framework_logs_to_file(debug, python_stderr=True) as log:
            return body(args)
    except Exception as exc:  # ConversionError, OSError, or a bug: never a bare traceback
        return _error(command, exc, debug)
    finally:
        if log is not None:
            log.unlink(missing_ok=True)


# ---------------------------------------------------------------- inspect


def _row(found: FoundLSTM) -> tuple[dict[str, str], str | None]:
    try:
        facts = describe_spec(found.spec)
        problem = None
    except ConversionError as exc:
        facts = dict.fromkeys(COLUMNS[2:9], "?")
        problem = str(exc)
    return {"name": capped(found.name, MAX_NAME_CHARS), "format": found.format, **facts,
            "biases": found.biases}, problem


def table(rows: list[dict[str, str]]) -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines.append("  ".join("-" * widths[c] for c in COLUMNS))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _count_line(found: list[FoundLSTM]) -> str:
    """"3 LSTM(s)"; "2 LSTM(s), 1 GRU(s)" where GRUs were found too."""
    return counted(found, "{n} {cell}(s)")


def listing(found: FoundLSTM) -> dict[str, Any]:
    """One LSTM as inspect --json lists it."""
    item: dict[str, Any] = {"name": capped(found.name, MAX_NAME_CHARS), "format": found.format,
                            "kind": found.kind, "biases": found.biases,
                            "notes": [capped(note) for note in found.notes]}
    try:
        spec = found.spec
        item.update(cell=spec.cell, layers=spec.layers, directions=spec.directions,
                    input_size=spec.input_size,
                    units=spec.units, projection_size=spec.projection_size,
                    dtype=spec.dtype, features=list(spec.features()), problem=None)
    except ConversionError as exc:
        item.update(cell=None, layers=None, directions=None, input_size=None, units=None,
                    projection_size=None, dtype=None, features=[], problem=capped(str(exc)))
    item["stored_inputs"] = found.stored.names() if found.stored is not None else []
    item["parts"] = [capped(part.name, MAX_NAME_CHARS) for part in found.parts]
    return item


def inspect_command(args: argparse.Namespace) -> int:
    """List every LSTM in ``args.file``; 2 when none is found or one is broken."""
    return _guarded("inspect", args, _inspect)


def _inspect(args: argparse.Namespace) -> int:
    found = read(args.file, forget_bias=getattr(args, "forget_bias", DEFAULT_FORGET_BIAS),
                 debug=getattr(args, "debug", False))
    if not found:
        raise FileFormatError(args.file, "no LSTM found in this file")
    if getattr(args, "json", False):
        items = [listing(item) for item in found]
        print(json.dumps({"file": str(args.file), "lstms": items}, indent=2))
        return 2 if any(item["problem"] for item in items) else 0
    rows, problems = [], []
    for item in found:
        row, problem = _row(item)
        rows.append(row)
        if problem:
            problems.append(problem)
    print(f"{args.file}: {_count_line(found)}")
    print(table(rows[:MAX_LISTED]))
    if len(found) > MAX_LISTED:  # bounded output; --json lists every one
        print(f"... and {len(found) - MAX_LISTED:,} more (--json lists them all)")
    for item in found[:MAX_LISTED]:
        print(f"\n{capped(item.name, MAX_NAME_CHARS)}: {item.kind}")
        for note in item.notes:
            print(f"  note: {capped(note)}")
        if item.parts:
            print("  layers, each selectable with --layer: "
                  f"{capped(str([p.name for p in item.parts]))}")
    for problem in problems:
        print(f"equivalence inspect: error: {capped(problem)}", file=sys.stderr)
    return 2 if problems else 0


# ---------------------------------------------------------------- convert


def convert_command(args: argparse.Namespace) -> int:
    """Convert one LSTM of ``args.input`` into ``args.output``.

    Returns 0, 2 on errors (nothing written), 1 when ``--verify`` finds a difference.
    """
    return _guarded("convert", args, _convert)


def _convert(args: argparse.Namespace) -> int:
    if getattr(args, "every_lstm", False):
        return convert_all(args)
    source = None if args.source == "auto" else args.source
    options = {"run_torchscript": getattr(args, "run_torchscript", False)}
    row = registry.family(args.target)
    if row.check_output is not None:
        registry.function(row.check_output)(args.output)
    refuse_with_states(args)
    found = select_lstm(read(args.input, source, args.forget_bias, debug=args.debug),
                        args.layer, args.input)
    weights = found.canonical()
    refuse_output(args.output, input_files(args.input), args.force,
                  output_files(args.target, args.output))
    try:  # what the target cannot represent, refused the same with or without --verify
        registry.refuse_unwritable(args.target, weights)
    except ConversionError as exc:
        raise FileFormatError(args.output, f"cannot write {args.target}: {exc}") from exc
    stored, stored_notes = stored_plan(args, found)
    # Readers and refusals import no framework; what follows (--verify's sides, the writer)
    # may import TensorFlow, so a refusal above exits without paying for torch's import.
    torch_first(args)
    if args.verify and args.target != "neoml":
        check_verifiable(args, found, weights, options)
    print(f"read {found.name!r} from {args.input}: {found.kind}, {spec_summary(weights.spec)}")
    for note in found.notes:
        print(f"  note: {note}")
    for note in stored_notes:
        print(note)
    job = WriteJob(found=found, replace=args.force, stored=stored,
                   forget_bias=args.out_forget_bias, seed=args.seed, options=options,
                   with_states=getattr(args, "with_states", False))
    assert row.writer is not None  # --to offers only families with a writer
    verifying = args.verify and args.target != "neoml"
    # Verified outputs are written under a temporary name and published only once verify
    # passes (or fails with --keep-failed): no exit-2 path and no unwanted exit 1 leaves
    # anything behind, and --force replaces nothing before the verdict.
    destination = temporary_name(args.output) if verifying else args.output
    try:
        with parent_folders(args.output):  # folders made here go when anything fails
            try:
                return _write_and_verify(args, found, weights, job, destination, stored_notes)
            finally:
                for staged in staged_files(args.output, destination):
                    staged.unlink(missing_ok=True)
    except VerifyFailed:
        print(f"verify: FAILED: {args.output} was kept (--keep-failed)" if args.keep_failed
              else f"verify: FAILED: nothing written (pass --keep-failed to keep {args.output})")
        return 1


def _write_and_verify(args: argparse.Namespace, found: FoundLSTM, weights: Any, job: WriteJob,
                      destination: Path, stored_notes: list[str]) -> int:
    row = registry.family(args.target)
    lines = write_staged(args, row, destination, weights, job)
    print("\n".join(lines).replace(str(destination), str(args.output)))
    if destination == args.output:
        if args.verify:
            print("verify: NeoML runs in its own environment; the command above checks this "
                  "file")
        return 0
    ok = verify_written(args, found, job.options, stored_notes, destination)
    if ok or args.keep_failed:
        publish_staged(args, destination)
    if not ok:
        raise VerifyFailed
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (the project's CLI adds the same subcommands)."""
    parser = argparse.ArgumentParser(prog="equivalence")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
