"""The steps of ``equivalence convert`` shared by one LSTM and ``--all``: which files an
output is, what is refused before anything is read, staging, publishing and ``--verify``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
from pathlib import Path
from typing import Any

from equivalence.errors import ConversionError
from equivalence.files import registry
from equivalence.files._base import (
    FileFormatError,
    FoundLSTM,
    checkpoint_prefix,
    describe_spec,
    publish,
)
from equivalence.files._base import select as select_lstm
from equivalence.files.registry import WriteJob, read

DROP_FLAG = "--drop-stored-inputs"


def output_files(target: str, output: Path) -> list[Path]:
    row = registry.family(target)
    if row.output_files is not None:
        return list(registry.function(row.output_files)(output))
    return [output]


def input_files(path: Path) -> list[Path]:
    prefix = checkpoint_prefix(path) if path.exists() or Path(f"{path}.index").exists() else None
    if prefix is None:
        return [path]
    shards = prefix.parent.glob(glob.escape(prefix.name) + ".data-*")
    return [path, Path(f"{prefix}.index"), *shards]


def refuse_with_states(args: argparse.Namespace) -> None:
    """--with-states only where the written model takes the states as inputs."""
    if not getattr(args, "with_states", False):
        return
    if args.target == "onnx" or (args.target == "keras"
                                 and str(args.output).endswith(".keras")):
        return
    raise FileFormatError(args.output, "--with-states: only an ONNX or a .keras model takes "
                                       "states as inputs here")


def torch_first(args: argparse.Namespace) -> None:
    """Import torch before TensorFlow when both will load (avoids a known crash at import):
    TensorFlow loads for ``--verify``'s sides and for the writers that import it."""
    tensorflow = args.verify or registry.family(args.target).uses_tensorflow
    if tensorflow and registry.uses_torch(args.input, args.target):
        with contextlib.suppress(ImportError):
            importlib.import_module("torch")


def stored_plan(args: argparse.Namespace, found: FoundLSTM) -> tuple[Any, list[str]]:
    """(the stored inputs to carry, notes): refused by name when the target cannot hold them."""
    stored = found.stored
    if stored is None:
        return None, []
    names = stored.names()
    row = registry.family(args.target)
    if set(names) <= row.holds_stored:
        return stored, []
    if args.drop_stored:
        return None, [f"note: dropped the {', '.join(names)} stored in {args.input} for "
                      f"{found.name!r} ({DROP_FLAG}): the written network starts from zero "
                      "states over full lengths, a different function"]
    raise FileFormatError(args.input, f"LSTM {found.name!r} stores {', '.join(names)} (part "
                                      f"of the function the file computes); {args.target} "
                                      f"cannot represent stored {'/'.join(names)}; pass "
                                      f"{DROP_FLAG} to write the network without them")


def check_verifiable(args: argparse.Namespace, found: FoundLSTM, weights: Any,
                      options: dict[str, Any]) -> None:
    """Fail before writing when a side cannot be run: the source as its file defines it, the
    target by its format's runtime unless its files run themselves (ONNX nodes, Keras layers)."""
    from equivalence.files.runners import runtime_side, side_for, smoke_test

    try:
        smoke_test(side_for(found, weights.spec, options), weights.spec)
    except FileFormatError:
        raise
    except ConversionError as exc:
        raise FileFormatError(args.input, f"--verify is not possible here: {exc}") from exc
    if registry.family(args.target).runs_itself:
        return
    target = FoundLSTM(name="", format=args.target, native=None, source=str(args.output),
                       kind="")
    try:
        runtime_side(target, weights.spec)
    except ConversionError as exc:
        raise FileFormatError(args.output, f"--verify is not possible here: {exc}") from exc


class VerifyFailed(Exception):
    """verify found a difference (exit 1; the folders made for the output are removed)."""


def write_staged(args: argparse.Namespace, row: Any, destination: Path, weights: Any,
                 job: WriteJob) -> list[str]:
    """The family's writer into ``destination``; its failures name ``args.output``
    (``convert`` and ``convert --all``)."""
    try:
        return registry.function(row.writer)(destination, weights, job)
    except FileFormatError:
        raise
    except ConversionError as exc:
        raise FileFormatError(args.output, f"cannot write {args.target}: {exc}") from exc
    except OSError as exc:  # permissions, a full disk: the temporary file is already gone
        raise FileFormatError(args.output, f"cannot be written ({exc})") from exc


def staged_files(output: Path, destination: Path) -> list[Path]:
    """Every file written for ``destination`` (a checkpoint's .index and shards too)."""
    if destination == output:
        return []
    tag = destination.name[: len(destination.name) - len(output.name)]
    return sorted(output.parent.glob(glob.escape(tag) + "*"))


def publish_staged(args: argparse.Namespace, destination: Path) -> None:
    tag = destination.name[: len(destination.name) - len(args.output.name)]
    for staged in staged_files(args.output, destination):
        publish(staged, args.output.parent / staged.name[len(tag):], args.force)


def verify_written(args: argparse.Namespace, found: FoundLSTM, options: dict[str, Any],
                   stored_notes: list[str], written_path: Path) -> bool:
    """``--verify`` of the file at ``written_path`` (staged) against ``found``, its messages
    naming the output it will be published as (``convert`` and ``convert --all``)."""
    from equivalence.artefacts.verify import verify

    def say(text: str) -> None:
        print(text.replace(str(written_path), str(args.output)), flush=True)

    written = read(written_path, args.target, args.out_forget_bias, debug=args.debug)
    ok = verify(found, select_lstm(written, None, args.output), examples=args.examples,
                seed=args.seed, out=say, options=options)
    for note in stored_notes:  # the reason a dropped input fails verification, said again
        print(note)
    return ok


def spec_summary(spec: Any) -> str:
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
