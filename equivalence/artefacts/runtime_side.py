"""A compare side for canonical weights run by a table row's runtime (the harness's own run).

The exporters' judge (the converters package's ``exporter`` module) compares what an
exporter wrote against the network it was given: that network is the source
row's runtime (``torch``, ``keras``...) running the case's weights, exactly as
the matrix runs it.
"""

from __future__ import annotations

import numpy as np

from equivalence.artefacts.side import Feed, Refused, Returned, Shape, Side, returned
from equivalence.canonical import LSTMWeights
from equivalence.capabilities import INITIAL_STATE, LENGTHS
from equivalence.errors import ConversionError


def runtime_side(row_name: str, weights: LSTMWeights) -> Side:
    """The table row ``row_name`` running ``weights`` (refused by name where it cannot)."""
    from equivalence.convert import from_canonical
    from equivalence.formats.options import writer_options
    from equivalence.io_types import LSTMInputs
    from equivalence.table import entry

    row = entry(row_name)
    runtime = row.load()
    spec = weights.spec
    reason = runtime.unavailable_reason() or runtime.capabilities.refusal(spec)
    if reason:
        raise ConversionError(f"{row_name} cannot run this network: {reason}")
    native = from_canonical(weights, row.format, **writer_options(row.format,
                                                                  dict(row.format_options)))
    rows = spec.layers * spec.directions

    def state(value: np.ndarray | None) -> np.ndarray | None:
        return None if value is None else value.reshape(spec.layers, spec.directions,
                                                        *value.shape[1:])

    gru = spec.cell == "gru"  # one state, h

    def run(feed: Feed) -> Returned:
        inputs = LSTMInputs(feed.x.astype(np.dtype(spec.dtype), copy=False), state(feed.h0),
                            None if gru else state(feed.c0), feed.lengths)
        try:
            result = runtime.run(spec, native, inputs, **dict(row.format_options))
        except Exception as exc:  # the runtime said no: a refusal, with its reason
            raise Refused(f"{type(exc).__name__}: {str(exc).strip()[:200]}") from exc
        return returned(result, rows)

    caps = runtime.capabilities
    states = {"h0"} if gru else {"h0", "c0"}
    takes = (states if INITIAL_STATE in caps else set()) | (
        {"lengths"} if LENGTHS in caps else set())
    return Side(path=f"({row_name} runtime)", kind=f"{row_name} runtime",
                label=f"{row_name} running the case's weights", run=run,
                takes=frozenset(takes),
                returns=frozenset({"y", "h"} if gru else {"y", "h", "c"}),
                shape=Shape(spec.input_size, spec.directions * spec.output_size, rows,
                            spec.units, spec.output_size),
                weights=weights, dtype=spec.dtype, tolerance_scale=row.tolerance_scale)
