"""Inputs given to an LSTM and the results every runtime normalizes to.

The contract (shared by the reference and every runtime):

* ``x`` is batch-major ``(B, T, I)``; ``lengths`` are right-padded valid lengths.
* ``outputs`` is ``(B, T, D*O)`` with O the output size (projection or units),
  forward direction first; positions past a sequence's length are zero.
* ``h`` is ``(L, D, B, O)`` and ``c`` is ``(L, D, B, H)``: the state after each
  sequence's last valid step (for the reverse direction: after step 0). A GRU
  has no ``c``: its result holds None there, and ``c0`` is never given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LSTMInputs:
    """One batch of inputs. ``time_major`` asks a runtime to use its time-major path."""

    x: np.ndarray
    h0: np.ndarray | None = None
    c0: np.ndarray | None = None
    lengths: np.ndarray | None = None
    time_major: bool = False

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])

    @property
    def steps(self) -> int:
        return int(self.x.shape[1])

    def valid_mask(self) -> np.ndarray:
        """Boolean ``(B, T)``: True where a step is inside its sequence."""
        steps = np.arange(self.steps)[None, :]
        if self.lengths is None:
            return np.ones((self.batch, self.steps), dtype=bool)
        return steps < np.asarray(self.lengths)[:, None]


@dataclass(frozen=True)
class LSTMResult:
    """Outputs and final states in the contract's layout."""

    outputs: np.ndarray
    h: np.ndarray
    c: np.ndarray | None = None

    @property
    def states(self) -> dict[str, np.ndarray]:
        """The final states the cell has: h and c for an LSTM, h for a GRU."""
        return {"h": self.h} if self.c is None else {"h": self.h, "c": self.c}

    def tensors(self) -> dict[str, np.ndarray]:
        return {"output": self.outputs, **self.states}
