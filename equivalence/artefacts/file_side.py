"""A compare side for any file ``inspect`` reads, run the way ``convert --verify`` runs it.

The verify runners (:func:`equivalence.files.runners.side_for`) already run each
file kind as the file defines itself: an ONNX file's LSTM nodes, a Keras
file's layers rebuilt from its config, a TorchScript archive's module (only
with ``--run-torchscript``), weights-only files in their format's runtime.
This module wraps such a runner in the :class:`~.side.Side` interface: the
contract's ``(L, D, B, H)`` states become the Feed's ``(L*D, B, H)`` rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from equivalence.artefacts.side import Feed, Refused, Returned, Shape, Side, returned
from equivalence.capabilities import INITIAL_STATE, LENGTHS
from equivalence.files._base import FoundLSTM
from equivalence.files._base import select as select_lstm
from equivalence.io_types import LSTMInputs


def file_side(path: Path, *, layer: str | None = None, run_torchscript: bool = False) -> Side:
    """The LSTM ``layer`` names in ``path`` (or the only one), ready to run."""
    from equivalence.files.registry import read

    found = select_lstm(read(path), layer, path)
    return found_side(found, {"run_torchscript": run_torchscript})


def found_side(found: FoundLSTM, options: dict[str, Any]) -> Side:
    """A Side running ``found`` through its verify runner (its weights known)."""
    from equivalence.files.runners import side_for, smoke_test

    weights = found.canonical()
    spec = weights.spec
    runner = side_for(found, spec, options)
    rows = spec.layers * spec.directions
    stored = runner.stored
    only = smoke_test(runner, spec)  # the batch its inputs or graph fix (None: any)
    takes = set()
    gru = spec.cell == "gru"  # one state, h
    if INITIAL_STATE in runner.capabilities and (stored is None or stored.h0 is None):
        takes |= {"h0"} if gru else {"h0", "c0"}
    if LENGTHS in runner.capabilities and (stored is None or stored.lengths is None):
        takes.add("lengths")

    def run(feed: Feed) -> Returned:
        def state(value: np.ndarray | None) -> np.ndarray | None:
            return None if value is None else value.reshape(
                spec.layers, spec.directions, *value.shape[1:])

        inputs = LSTMInputs(feed.x.astype(np.dtype(spec.dtype), copy=False), state(feed.h0),
                            None if gru else state(feed.c0), feed.lengths)
        try:
            result = runner.run(inputs)
        except Exception as exc:  # the side's runtime said no: a refusal, with its reason
            raise Refused(f"{type(exc).__name__}: {_first_line(exc)}") from exc
        return returned(result, rows)

    shape = Shape(spec.input_size, spec.directions * spec.output_size, rows, spec.units,
                  spec.output_size)
    notes = list(found.notes)
    if stored is not None:
        notes.append(f"stores {', '.join(stored.names())}: both networks run with batch "
                     f"{stored.batch}, the file's inputs as stored")
    elif only is not None:
        notes.append(f"graph runs batch {only} only (it fails on batch 2, e.g. a Squeeze of "
                     f"the batch axis): both networks run with batch {only}")
    return Side(path=found.source, kind=found.kind, label=runner.label, run=run,
                takes=frozenset(takes),
                returns=frozenset({"y", "h"} if gru else {"y", "h", "c"}), shape=shape,
                layer=found.name, fixed_batch=only, weights=weights,
                dtype=spec.dtype, notes=notes, reader_notes=tuple(found.notes),
                tolerance_scale=runner.tolerance_scale, stored=_stored_feed(stored, rows))


def _stored_feed(stored: Any, rows: int) -> Feed | None:
    if stored is None:
        return None

    def flat(value: np.ndarray | None) -> np.ndarray | None:
        return None if value is None else value.reshape(rows, *value.shape[2:])

    return Feed(np.zeros((0, 0, 0)), flat(stored.h0), flat(stored.c0), stored.lengths)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
