"""What a cell's float64 step reads of the weights and the spec, as protocols.

:class:`equivalence.canonical.CellWeights` and :class:`equivalence.spec.LSTMSpec`
are the implementations; naming them here instead keeps ``cells`` below both in
the import order (``spec`` imports the cell table at run time).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class StepWeights(Protocol):
    """One layer and direction's arrays (G gates: (GH, in), (GH, O), (GH,), (GH,))."""

    @property
    def w_input(self) -> np.ndarray: ...

    @property
    def w_recurrent(self) -> np.ndarray: ...

    @property
    def b_input(self) -> np.ndarray: ...

    @property
    def b_recurrent(self) -> np.ndarray: ...

    @property
    def peephole(self) -> np.ndarray | None: ...

    @property
    def projection(self) -> np.ndarray | None: ...


class StepSpec(Protocol):
    """The spec's run-time semantics a step applies."""

    @property
    def recurrent_activation(self) -> str: ...

    @property
    def activation(self) -> str: ...

    @property
    def forget_bias(self) -> float: ...

    @property
    def gate_clip(self) -> float | None: ...

    @property
    def cell_clip(self) -> float | None: ...

    @property
    def projection_clip(self) -> float | None: ...

    @property
    def input_forget(self) -> bool: ...

    @property
    def reset_after(self) -> bool: ...
