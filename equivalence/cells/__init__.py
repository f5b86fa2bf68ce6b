"""Cell types as rows: what an LSTM or a GRU is, so the hub is written once for both.

A :class:`Cell` names its gates (canonical order), its states, the spec features
it can carry and its float64 step. The spec, the canonical weights and the
reference read the row for ``spec.cell``; a format or runtime that has not
declared a cell refuses it by name (``torch cannot represent cell=gru``).
Adding a cell is one module here and one row in :data:`CELLS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from equivalence.cells import gru, lstm


@dataclass(frozen=True)
class Cell:
    """One recurrent cell type."""

    name: str
    gates: tuple[str, ...]
    states: tuple[str, ...]
    # spec features (names as LSTMSpec.features() gives them) only this cell can carry
    own_features: frozenset[str]
    step: Callable[..., tuple[Any, tuple[Any, ...]]]
    summary: str

    @property
    def gate_count(self) -> int:
        return len(self.gates)

    @property
    def features(self) -> frozenset[str]:
        """Every spec feature a spec of this cell can carry (shared ones and its own)."""
        return SHARED_FEATURES | self.own_features


# Spec features every cell type can carry (names as LSTMSpec.features() gives them).
SHARED_FEATURES = frozenset({"stacked layers", "bidirectional", "reverse", "gate_clip"})

CELLS: dict[str, Cell] = {
    c.name: c
    for c in (
        Cell("lstm", lstm.GATES, lstm.STATES, lstm.OWN_FEATURES, lstm.step,
             "i f g o gates; states h and c; peepholes, projection, clips, forget_bias"),
        Cell("gru", gru.GATES, gru.STATES, gru.OWN_FEATURES, gru.step,
             "r z n gates; state h; reset_after (ONNX linear_before_reset) or before"),
    )
}
NAMES = tuple(CELLS)


def cell(name: str) -> Cell:
    """The cell row called ``name`` (the spec has already checked it exists)."""
    return CELLS[name]


def foreign_features(name: str) -> frozenset[str]:
    """The features other cells own, which a ``name`` spec cannot carry."""
    return frozenset().union(*(c.own_features for c in CELLS.values() if c.name != name))
