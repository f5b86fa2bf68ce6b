"""``convert --verify``: a compare of the input file's LSTM with the file just written.

The one code path that judges both commands: both files' networks become
compare sides (:func:`~.file_side.found_side`, through the verify runners of
:mod:`equivalence.files.runners`) and :func:`~.command.compare_sides` runs every
probe; the lines say ``verify:`` and end in ``PASSED`` or ``FAILED``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from equivalence.artefacts.command import EQUIVALENT, compare_sides
from equivalence.artefacts.file_side import found_side
from equivalence.errors import ConversionError
from equivalence.files._base import FoundLSTM


def verify(source: FoundLSTM, target: FoundLSTM, *, examples: int = 3, seed: int = 0,
           out: Callable[[str], None] | None = None,
           options: dict[str, Any] | None = None) -> bool:
    """``equivalence compare`` of the two files' networks (the one code path that judges
    both commands): every probe with ``examples`` random input batches; print each probe's
    verdict and the diagnosis; True when no probe gave other numbers."""
    if examples < 1:
        raise ConversionError(f"--examples: {examples}, expected at least 1")
    say = out or (lambda text: print(text, file=sys.stderr, flush=True))
    a, b = found_side(source, options or {}), found_side(target, options or {})
    say(f"verify: source = {a.label}")
    say(f"verify: target = {b.label}")
    for name, side in (("source", a), ("target", b)):
        for note in side.notes[len(side.reader_notes):]:
            say(f"verify: the {name} {note}")
    say(f"verify: the probes of `equivalence compare`, {examples} random input batches each "
        "(the first also builds the networks)")
    outcome = compare_sides(a, b, examples=examples, seed=seed,
                            say=lambda line: say(f"verify: {line.strip()}"))
    if outcome.diagnosis:
        say(f"verify: diagnosis: {outcome.diagnosis}")
    ok = outcome.verdict == EQUIVALENT
    matched = sum(r.verdict == "match" for r in outcome.results)
    say(f"verify: {'PASSED' if ok else 'FAILED'} ({matched} of {len(outcome.results)} probes "
        f"matched, {examples} random input batches each)")
    return ok
