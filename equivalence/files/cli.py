"""``equivalence inspect FILE`` and ``equivalence convert INPUT --to FMT -o OUTPUT``.

Safety rules, all enforced before anything is written: the input is only ever
opened for reading and is never an output; an existing output is refused
without ``--force``; every output is written under a temporary name in its own
folder and renamed over the target at the end, so a failure leaves nothing.
Errors are :class:`~equivalence.files.FileFormatError` (a ConversionError)
naming the file; the commands print them and return 2.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import sys
from pathlib import Path
from typing import Any

from ..errors import ConversionError
from ..formats.tf1 import DEFAULT_FORGET_BIAS
from . import read, select
from ._base import FileFormatError, FoundLSTM, describe_spec, refuse_output

FROM_CHOICES = ("auto", "keras", "cudnn", "tf1", "torch", "onnx", "neoml")
TO_CHOICES = ("keras", "tf1", "torch", "onnx", "neoml")
COLUMNS = ("name", "format", "layers", "directions", "I", "H", "projection", "peepholes",
           "biases")


def add_arguments(subparsers: Any) -> None:
    """Add the ``inspect`` and ``convert`` subcommands to an argparse subparsers object."""
    ins = subparsers.add_parser("inspect", help="list the LSTMs in a model/weights file")
    ins.add_argument("file", type=Path, help=".keras, .h5, TF checkpoint, .pt, .safetensors, "
                                             ".onnx or .npz case file")
    ins.add_argument("--forget-bias", type=float, default=DEFAULT_FORGET_BIAS,
                     help="TF1 checkpoints: the cells' forget_bias (not stored; default 1.0)")
    ins.set_defaults(func=inspect_command)

    conv = subparsers.add_parser("convert", help="convert an LSTM between framework files")
    conv.add_argument("input", type=Path)
    conv.add_argument("--from", dest="source", choices=FROM_CHOICES, default="auto",
                      help="what the input is (default: recognized from its content; "
                           "cudnn = CuDNNLSTM layers of a Keras file)")
    conv.add_argument("--to", dest="target", choices=TO_CHOICES, required=True)
    conv.add_argument("-o", "--output", type=Path, required=True,
                      help="keras: .keras, .weights.h5 or .h5 (tf_keras); tf1: a checkpoint "
                           "prefix; torch: .pt or .safetensors; onnx: .onnx; neoml: .npz")
    conv.add_argument("--layer", help="which LSTM (a name from `equivalence inspect`)")
    conv.add_argument("--verify", action="store_true",
                      help="run both files' networks on random inputs and compare")
    conv.add_argument("--force", action="store_true", help="replace an existing output")
    conv.add_argument("--forget-bias", type=float, default=DEFAULT_FORGET_BIAS,
                      help="TF1 input: the forget_bias its cells were built with (default 1.0)")
    conv.add_argument("--out-forget-bias", type=float, default=DEFAULT_FORGET_BIAS,
                      help="TF1 output: the forget_bias the cells will be built with (1.0)")
    conv.add_argument("--examples", type=int, default=3, help="--verify input batches (3)")
    conv.add_argument("--seed", type=int, default=0, help="--verify random seed")
    conv.set_defaults(func=convert_command)


def _error(command: str, exc: Exception) -> int:
    print(f"equivalence {command}: error: {exc}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------- inspect


def _row(found: FoundLSTM) -> tuple[dict[str, str], str | None]:
    try:
        facts = describe_spec(found.spec)
        problem = None
    except ConversionError as exc:
        facts = dict.fromkeys(COLUMNS[2:8], "?")
        problem = str(exc)
    return {"name": found.name, "format": found.format, **facts, "biases": found.biases}, problem


def table(rows: list[dict[str, str]]) -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines.append("  ".join("-" * widths[c] for c in COLUMNS))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def inspect_command(args: argparse.Namespace) -> int:
    """Print a table of every LSTM in ``args.file``; 2 when none is found or one is broken."""
    try:
        found = read(args.file, forget_bias=getattr(args, "forget_bias", DEFAULT_FORGET_BIAS))
    except ConversionError as exc:
        return _error("inspect", exc)
    if not found:
        return _error("inspect", FileFormatError(args.file, "no LSTM found in this file"))
    rows, problems = [], []
    for item in found:
        row, problem = _row(item)
        rows.append(row)
        if problem:
            problems.append(problem)
    print(f"{args.file}: {len(found)} LSTM(s)")
    print(table(rows))
    for item in found:
        print(f"\n{item.name}: {item.kind}")
        for note in item.notes:
            print(f"  note: {note}")
        if item.parts:
            print(f"  layers, each selectable with --layer: {[p.name for p in item.parts]}")
    for problem in problems:
        print(f"equivalence inspect: error: {problem}", file=sys.stderr)
    return 2 if problems else 0


# ---------------------------------------------------------------- convert


def _output_files(target: str, output: Path) -> list[Path]:
    if target == "tf1":
        from .tf1 import output_files, output_prefix

        return output_files(output_prefix(output))
    return [output]


def _input_files(path: Path) -> list[Path]:
    from ._base import checkpoint_prefix

    prefix = checkpoint_prefix(path) if path.exists() or Path(f"{path}.index").exists() else None
    if prefix is None:
        return [path]
    shards = prefix.parent.glob(glob.escape(prefix.name) + ".data-*")
    return [path, Path(f"{prefix}.index"), *shards]


def _check_output_name(target: str, output: Path) -> None:
    if target == "keras":
        from .keras import keras_output_kind

        keras_output_kind(output)
    elif target == "neoml" and not output.name.endswith(".npz"):
        raise FileFormatError(output, "a neoml output must end in .npz (a case file)")


def _write(args: argparse.Namespace, found: FoundLSTM, weights: Any) -> list[str]:
    output, target = args.output, args.target
    if target == "keras":
        from .keras import write_keras

        return write_keras(output, weights)
    if target == "tf1":
        from .tf1 import write_checkpoint

        return write_checkpoint(output, weights, args.out_forget_bias)
    if target == "torch":
        from .torch import write_torch

        return write_torch(output, weights)
    if target == "onnx":
        from .onnx import write_onnx

        return write_onnx(output, weights)
    import numpy as np

    from .neoml import write_case
    from .verify import make_inputs, side_for

    side = side_for(found, weights.spec)
    inputs = make_inputs(weights.spec, np.random.default_rng(args.seed), 3, 12, True, False)
    return write_case(output, weights, inputs, side.run(inputs), side.label.split(" ")[0])


def convert_command(args: argparse.Namespace) -> int:
    """Convert one LSTM of ``args.input`` into ``args.output``.

    Returns 0, 2 on errors (nothing written), 1 when ``--verify`` finds a difference.
    """
    try:
        return _convert(args)
    except ConversionError as exc:
        return _error("convert", exc)


def _torch_first(args: argparse.Namespace) -> None:
    """Import torch before TensorFlow when both will load (avoids a known crash at import)."""
    from ._base import detect_kind

    try:
        uses_torch = args.target == "torch" or detect_kind(args.input) in ("torch", "safetensors")
    except FileFormatError:
        return  # reading reports it
    if uses_torch:
        with contextlib.suppress(ImportError):
            importlib.import_module("torch")


def _convert(args: argparse.Namespace) -> int:
    source = None if args.source == "auto" else args.source
    _torch_first(args)
    _check_output_name(args.target, args.output)
    found = select(read(args.input, source, args.forget_bias), args.layer, args.input)
    weights = found.canonical()
    refuse_output(args.output, _input_files(args.input), args.force,
                  _output_files(args.target, args.output))
    if args.verify and args.target != "neoml":  # fail before writing if it cannot be verified
        from .verify import side_for

        target = FoundLSTM(name="", format=args.target, native=None, source=str(args.output),
                           kind="")
        for path, side in ((args.input, found), (args.output, target)):
            try:
                side_for(side, weights.spec)
            except FileFormatError:
                raise
            except ConversionError as exc:
                raise FileFormatError(path, f"--verify is not possible here: {exc}") from exc
    print(f"read {found.name!r} from {args.input}: {found.kind}, {_summary(weights.spec)}")
    for note in found.notes:
        print(f"  note: {note}")
    try:
        lines = _write(args, found, weights)
    except FileFormatError:
        raise
    except ConversionError as exc:
        raise FileFormatError(args.output, f"cannot write {args.target}: {exc}") from exc
    except OSError as exc:  # permissions, a full disk: the temporary file is already gone
        raise FileFormatError(args.output, f"cannot be written ({exc})") from exc
    print("\n".join(lines))
    if not args.verify:
        return 0
    if args.target == "neoml":
        print("verify: NeoML runs in its own environment; the command above checks this file")
        return 0
    from .verify import verify

    written = read(args.output, args.target, args.out_forget_bias)
    ok = verify(found, select(written, None, args.output), examples=args.examples,
                seed=args.seed, out=lambda text: print(text, flush=True))
    return 0 if ok else 1


def _summary(spec: Any) -> str:
    facts = describe_spec(spec)
    text = (f"layers={facts['layers']} directions={facts['directions']} I={facts['I']} "
            f"H={facts['H']}")
    if spec.projection_size:
        text += f" projection={spec.projection_size}"
    if spec.peepholes:
        text += " peepholes"
    if spec.recurrent_activation != "sigmoid":
        text += f" recurrent_activation={spec.recurrent_activation}"
    return text


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (the project's CLI adds the same subcommands)."""
    parser = argparse.ArgumentParser(prog="equivalence")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
