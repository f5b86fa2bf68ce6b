"""``equivalence convert INPUT --all --to FMT -o OUTPUT``: every LSTM of a file in one call.

One output per LSTM, for every target: ``-o out/model.pt`` writes ``out/model_<name>.pt``
for each LSTM ``equivalence inspect`` lists, ``<name>`` its name made safe for a file
name (letters, digits, ``.``, ``_``, ``-``; at most :data:`NAME_LIMIT` characters; a
``_2``, ``_3`` suffix where two would meet, ignoring case). Separate files keep each
LSTM loadable on its own and keep TF1 variable names from colliding (each checkpoint
holds one ``rnn/...`` scope).

All or nothing, like a single convert: every output is checked (never an input,
an existing one only with ``--force``, what the target cannot represent) before
anything is written; every output is written under a temporary name, verified
with ``--verify``, and only when all of them are done are they moved into place.
An error on the third of four leaves nothing behind. The per-LSTM steps are
:mod:`equivalence.cli.files`'s.
"""

from __future__ import annotations

import argparse
import glob
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equivalence.cli import convert_steps as steps
from equivalence.errors import ConversionError
from equivalence.files import registry
from equivalence.files._base import (
    FileFormatError,
    FoundLSTM,
    parent_folders,
    publish,
    refuse_output,
    temporary_name,
)
from equivalence.files.registry import WriteJob, read

NAME_LIMIT = 48  # keeps -o's stem plus the name well under a file system's 255 bytes
MULTI_ENDINGS = (".weights.h5",)  # endings of more than one suffix that must stay whole
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """``name`` as a file-name part: unsafe runs become ``_``, capped at :data:`NAME_LIMIT`."""
    text = _UNSAFE.sub("_", name).strip("._-")[:NAME_LIMIT].rstrip("._-")
    return text or "lstm"


def _split_ending(output: Path) -> tuple[str, str]:
    for ending in MULTI_ENDINGS:
        if output.name.endswith(ending) and output.name != ending:
            return output.name[: -len(ending)], ending
    return output.stem, output.suffix


def output_names(output: Path, names: list[str],
                 files: Callable[[Path], list[Path]] = lambda path: [path]) -> list[Path]:
    """One path per LSTM name, beside ``output``: ``<stem>_<safe name><ending>``, whose
    ``files`` (a checkpoint's .index for a prefix) are distinct even on a case-insensitive
    file system (``a`` and ``a.index`` would both be checkpoint ``a``)."""
    stem, ending = _split_ending(output)
    used: set[str] = set()
    paths = []
    for name in names:
        base = safe_name(name)
        candidate, count = base, 1
        while True:
            path = output.with_name(f"{stem}_{candidate}{ending}" if stem else
                                    f"{candidate}{ending}")
            keys = {str(f).lower() for f in files(path)}
            if not keys & used:
                break
            count += 1
            candidate = f"{base}_{count}"
        used |= keys
        paths.append(path)
    return paths


class _VerifyFailed(Exception):
    """A verify found a difference (exit 1; nothing published without --keep-failed)."""


@dataclass
class _Plan:
    """One LSTM's conversion, checked before anything is written."""

    args: argparse.Namespace  # the command's arguments with this LSTM's output
    found: FoundLSTM
    weights: Any
    stored: Any
    stored_notes: list[str]
    staged: Path | None = None


def convert_all(args: argparse.Namespace) -> int:
    """Convert every LSTM of ``args.input``; 0, 2 (nothing written), 1 (verify failed)."""
    if args.layer is not None:
        raise ConversionError("--all converts every LSTM and --layer picks one; pass one of "
                              "them")
    options = {"run_torchscript": getattr(args, "run_torchscript", False)}
    steps.refuse_with_states(args)
    found = read(args.input, None if args.source == "auto" else args.source, args.forget_bias,
                 debug=args.debug)
    if not found:
        raise FileFormatError(args.input, "no LSTM found in this file")
    paths = output_names(args.output, [f.name for f in found],
                         lambda path: steps.output_files(args.target, path))
    steps.torch_first(args)  # before the plans' --verify sides, which may import TensorFlow
    plans = [_plan(args, item, path, options) for item, path in zip(found, paths, strict=True)]
    return _write_all(args, plans, options)


def _plan(args: argparse.Namespace, found: FoundLSTM, output: Path,
          options: dict[str, Any]) -> _Plan:
    one = argparse.Namespace(**{**vars(args), "output": output})
    row = registry.family(args.target)
    if row.check_output is not None:
        registry.function(row.check_output)(output)
    weights = found.canonical()
    refuse_output(output, steps.input_files(args.input), args.force,
                  steps.output_files(args.target, output))
    try:
        registry.refuse_unwritable(args.target, weights)
    except ConversionError as exc:
        raise FileFormatError(output, f"cannot write {args.target}: {exc}") from exc
    stored, notes = steps.stored_plan(one, found)
    if args.verify and args.target != "neoml":
        steps.check_verifiable(one, found, weights, options)
    return _Plan(one, found, weights, stored, notes)


def _write_all(args: argparse.Namespace, plans: list[_Plan], options: dict[str, Any]) -> int:
    row = registry.family(args.target)
    verifying = args.verify and args.target != "neoml"
    failed: list[str] = []
    try:
        with parent_folders(args.output):  # folders made here go when anything fails
            try:
                for plan in plans:
                    if not _write_one(plan, row, verifying, options):
                        failed.append(plan.found.name)
                if failed and not args.keep_failed:
                    raise _VerifyFailed
                _publish_all(args, plans)
            finally:  # the temporaries, before the folders they are in are removed
                _remove_staged(plans)
    except _VerifyFailed:
        print(f"verify: FAILED for {failed}: nothing written (pass --keep-failed to keep the "
              "outputs)")
        return 1
    if failed:
        print(f"verify: FAILED for {failed}: the outputs were kept (--keep-failed)")
        return 1
    if args.verify and not verifying:
        print("verify: NeoML runs in its own environment; the commands above check these files")
    print(f"wrote {len(plans)} outputs, one per LSTM")
    return 0


def _remove_staged(plans: list[_Plan]) -> None:
    for plan in plans:
        if plan.staged is not None:
            for staged in _staged_files(plan.args.output, plan.staged):
                staged.unlink(missing_ok=True)


def _write_one(plan: _Plan, row: Any, verifying: bool, options: dict[str, Any]) -> bool:
    """Write ``plan`` under a temporary name (and verify it); whether it passed."""
    args, found = plan.args, plan.found
    print(f"read {found.name!r} from {args.input}: {found.kind}, "
          f"{steps.spec_summary(plan.weights.spec)}")
    for note in [*found.notes, *plan.stored_notes]:
        print(f"  note: {note}" if not note.startswith("note:") else note)
    job = WriteJob(found=found, replace=args.force, stored=plan.stored,
                   forget_bias=args.out_forget_bias, seed=args.seed, options=options,
                   with_states=getattr(args, "with_states", False))
    plan.staged = temporary_name(args.output)
    lines = steps.write_staged(args, row, plan.staged, plan.weights, job)
    print("\n".join(lines).replace(str(plan.staged), str(args.output)))
    if not verifying:
        return True
    return steps.verify_written(args, found, options, plan.stored_notes, plan.staged)


def _staged_files(output: Path, staged: Path) -> list[Path]:
    """Every file written for ``staged`` (a checkpoint's .index and shards too)."""
    tag = staged.name[: len(staged.name) - len(output.name)]
    return sorted(output.parent.glob(glob.escape(tag) + "*"))


def _publish_all(args: argparse.Namespace, plans: list[_Plan]) -> None:
    """Move every staged file into place; if one cannot be (a racing run took its name),
    remove the ones this run already published, so the run leaves nothing."""
    published: list[Path] = []
    try:
        for plan in plans:
            assert plan.staged is not None
            tag = plan.staged.name[: len(plan.staged.name) - len(plan.args.output.name)]
            for staged in _staged_files(plan.args.output, plan.staged):
                target = staged.parent / staged.name[len(tag):]
                publish(staged, target, args.force)
                published.append(target)
    except BaseException:
        if not args.force:  # without --force, everything published here was new
            for path in published:
                path.unlink(missing_ok=True)
        raise
