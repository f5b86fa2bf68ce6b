"""The Python API of ``equivalence convert`` and its ``--verify``: the CLI's own code, called.

:func:`convert_file` parses its keywords with the command's own argument parser (the
same names, aliases, choices and checks) and runs the command's body, so it keeps
the command's guarantees: the input is never written, an existing output is refused
unless ``force``, outputs are published only when everything (verification too)
succeeded, and every failure is a :class:`~equivalence.files.FileFormatError` or
another :class:`~equivalence.errors.ConversionError`, with nothing written. What the
command prints is returned as ``log`` instead. :func:`verify` runs two files'
networks against each other, as ``--verify`` does after writing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from equivalence.cli import files as cli
from equivalence.errors import ConversionError, brief
from equivalence.files import registry
from equivalence.files._base import FileFormatError, file_path, select


@dataclass(frozen=True)
class FileConversion:
    """What :func:`convert_file` did: ``ok`` is False only when verification failed
    (then nothing was written unless ``keep_failed``); ``log`` is the command's report."""

    output: Path
    ok: bool
    verified: bool
    log: str

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found: ``ok`` when every example was within tolerance."""

    ok: bool
    log: str

    def __bool__(self) -> bool:
        return self.ok


class _Parser(argparse.ArgumentParser):
    """The command's parser, raising ConversionError where the command would exit 2."""

    def error(self, message: str) -> NoReturn:
        raise ConversionError(message.replace("--", "").replace("argument ", ""))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="equivalence.files.convert_file")
    cli.add_arguments(parser.add_subparsers(dest="command", parser_class=_Parser))
    return parser


def _path_arg(name: str, value: object) -> str:
    try:
        text = os.fspath(file_path(value))  # type: ignore[arg-type]
    except (ConversionError, TypeError) as exc:
        raise ConversionError(f"{name}: {brief(value)}, expected a path") from exc
    return f"./{text}" if text.startswith("-") else text  # never read as an option


def _flag(argv: list[str], option: str, value: Any, default: Any) -> None:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConversionError(f"{option.lstrip('-').replace('-', '_')}: {brief(value)}, "
                                  "expected True or False")
        argv += [option] if value else []
    elif value is not None and value != default:
        argv += [option, str(value)]


def convert_file(input: str | os.PathLike[str], output: str | os.PathLike[str], *, to: str,
                 source: str | None = None, layer: str | None = None, verify: bool = False,
                 keep_failed: bool = False, force: bool = False, forget_bias: float = 1.0,
                 out_forget_bias: float = 1.0, examples: int = 3, seed: int = 0,
                 drop_stored_inputs: bool = False, run_torchscript: bool = False,
                 every_lstm: bool = False) -> FileConversion:
    """``equivalence convert INPUT --to TO -o OUTPUT``, keyword for option.

    Defaults as the command's: ``source`` None (recognized from the content), ``layer``
    None (the only LSTM), ``verify`` False, ``examples`` 3, ``seed`` 0, forget biases
    1.0. Raises FileFormatError/ConversionError naming the file or the argument, with
    nothing written; returns a falsy :class:`FileConversion` when verification failed.
    """
    argv = ["convert", _path_arg("input", input), "-o", _path_arg("output", output)]
    for option, value in (("--to", to), ("--from", source), ("--layer", layer)):
        if value is not None and not isinstance(value, str):
            raise ConversionError(f"{option[2:]}: {brief(value)}, expected a str")
    argv += ["--to", to] + (["--from", source] if source else [])
    argv += ["--layer", layer] if layer is not None else []
    flags: tuple[tuple[str, Any, Any], ...] = (
        ("--verify", verify, False), ("--keep-failed", keep_failed, False),
        ("--force", force, False), ("--all", every_lstm, False),
        (cli.DROP_FLAG, drop_stored_inputs, False), (cli.TRUST_FLAG, run_torchscript, False),
        ("--forget-bias", forget_bias, 1.0), ("--out-forget-bias", out_forget_bias, 1.0),
        ("--examples", examples, 3), ("--seed", seed, 0),
    )
    for option, value, default in flags:
        _flag(argv, option, value, default)
    args = _parser().parse_args(argv)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        status = _guarded(args)
    return FileConversion(Path(args.output), status == 0, bool(verify), log.getvalue())


def _guarded(args: argparse.Namespace) -> int:
    """The command's body; an unexpected failure is a FileFormatError naming the input."""
    try:
        return cli._convert(args)
    except ConversionError:
        raise
    except Exception as exc:  # the command's "unexpected error", as a typed error
        raise FileFormatError(args.input, f"unexpected error: {type(exc).__name__}: "
                                          f"{exc}") from exc


def verify(source: str | os.PathLike[str], target: str | os.PathLike[str], *,
           source_format: str | None = None, target_format: str | None = None,
           layer: str | None = None, target_layer: str | None = None, examples: int = 3,
           seed: int = 0, forget_bias: float = 1.0, target_forget_bias: float = 1.0,
           run_torchscript: bool = False) -> Verification:
    """Run the LSTM of ``source`` and that of ``target`` (files, as :func:`read` finds
    them) on ``examples`` random input batches and judge them under the one tolerance
    policy, as ``equivalence convert --verify`` does. Formats default to the content's;
    layers to the only LSTM. Nothing is written; errors are ConversionErrors."""
    if not isinstance(run_torchscript, bool):
        raise ConversionError(f"run_torchscript: {brief(run_torchscript)}, expected a bool")
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ConversionError(f"examples: {brief(examples)}, expected an int >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConversionError(f"seed: {brief(seed)}, expected an int")
    a = select(registry.read(source, source_format, forget_bias), layer, source)
    b = select(registry.read(target, target_format, target_forget_bias), target_layer, target)
    lines: list[str] = []
    from equivalence.artefacts.verify import verify as verify_files

    ok = verify_files(a, b, examples=examples, seed=seed, out=lines.append,
                      options={"run_torchscript": run_torchscript})
    return Verification(bool(ok), "\n".join(lines))
