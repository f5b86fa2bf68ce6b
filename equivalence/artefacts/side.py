"""What one side of ``equivalence compare`` is: a file's network, run as the file defines it.

A side is built by a reader in this package (one per artefact kind: a whole
ONNX model, a TF SavedModel, a LiteRT flatbuffer, an OpenVINO IR, or any file
``inspect`` reads, through ``convert --verify``'s runners) and knows:

* how to run: :attr:`Side.run` takes a :class:`Feed` and returns a
  :class:`Returned`, both in one layout whatever the file's own (batch-first
  x; torch-style ``(L*D, B, H)`` states), so the probes never see a layout;
* which roles it takes (``h0``, ``c0``, ``lengths`` beside ``x``) and which it
  returns (``y``, ``h``, ``c``), and the name each role has in the file;
* the shapes it fixes (an exporter that baked in the batch or time length);
* the shape of its network where the file says it (:class:`Shape`);
* its canonical weights where they can be read (weight-space diagnosis),
  else None (the diagnosis then works from outputs alone).

A side that cannot run a feed raises :class:`Refused` with the runtime's own
reason: the probe that asked is then *refused*, never *silently wrong*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.errors import ConversionError

INPUT_ROLES = ("x", "h0", "c0", "lengths")
OUTPUT_ROLES = ("y", "h", "c")


class Refused(ConversionError):
    """The side's runtime rejected a feed (a shape it fixes, an input it lacks)."""


@dataclass(frozen=True)
class Feed:
    """One input batch: ``x`` (B, T, I); ``h0`` (L*D, B, O) and ``c0`` (L*D, B, H), rows
    ordered layer by layer, forward direction first (torch's order); ``lengths`` (B,)
    int, right padding. States and lengths are None where the probe feeds none."""

    x: np.ndarray
    h0: np.ndarray | None = None
    c0: np.ndarray | None = None
    lengths: np.ndarray | None = None

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])

    @property
    def steps(self) -> int:
        return int(self.x.shape[1])


@dataclass(frozen=True)
class Returned:
    """What a side returned, in the Feed's layout: ``y`` (B, T, D*O), ``h`` (rows, B, O),
    ``c`` (rows, B, H). A role the side does not return is None."""

    y: np.ndarray
    h: np.ndarray | None = None
    c: np.ndarray | None = None

    def get(self, role: str) -> np.ndarray | None:
        return {"y": self.y, "h": self.h, "c": self.c}[role]


def returned(result: Any, rows: int) -> Returned:
    """A contract result (states (L, D, B, *)) in the Feed's layout (rows = L*D); a GRU's
    has no c."""
    def rows_first(state: Any) -> np.ndarray | None:
        return None if state is None else np.asarray(state).reshape(rows, *state.shape[2:])

    return Returned(np.asarray(result.outputs), rows_first(result.h), rows_first(result.c))


@dataclass(frozen=True)
class Shape:
    """The network's shape as the file states it (None: the file does not say)."""

    input_size: int | None = None
    output_width: int | None = None  # D * O, the last axis of y
    state_rows: int | None = None  # L * D, the first axis of h and c
    units: int | None = None  # H, the last axis of c
    state_width: int | None = None  # O, the last axis of h

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("input", self.input_size), ("y width",
                 self.output_width), ("state rows", self.state_rows), ("units", self.units))
                 if v is not None]
        return ", ".join(parts) or "shape unknown"


@dataclass
class Side:
    """One file's network, ready to run (see the module docstring)."""

    path: str
    kind: str  # e.g. "ONNX model", "TF SavedModel", "LiteRT flatbuffer"
    label: str  # what runs, for the printout
    run: Callable[[Feed], Returned]
    takes: frozenset[str]  # of "h0", "c0", "lengths"
    returns: frozenset[str]  # of "y", "h", "c"
    shape: Shape
    names: dict[str, str] = field(default_factory=dict)  # role -> name in the file
    layer: str = ""  # the LSTM's name in the file, where it has one
    fixed_batch: int | None = None
    fixed_steps: int | None = None
    weights: LSTMWeights | None = None
    dtype: str = "float32"
    notes: list[str] = field(default_factory=list)
    reader_notes: tuple[str, ...] = ()  # the notes that came from reading the file
    tolerance_scale: float = 1.0
    stored: Feed | None = None  # inputs the file stores (its x unused), part of its function

    def as_run(self, feed: Feed) -> Feed:
        """``feed`` with the inputs the file stores in place of the fed ones: what the
        file's network actually computes on (for the float64 reference)."""
        if self.stored is None:
            return feed
        stored = self.stored
        h0 = stored.h0 if stored.h0 is not None else feed.h0
        c0 = stored.c0 if stored.c0 is not None else feed.c0
        # one stored, the other zeros (ONNX's default); a side without c (a GRU) gets none
        if (h0 is None) != (c0 is None) and (c0 is not None or "c0" in self.takes):
            h0 = h0 if h0 is not None else np.zeros_like(c0)
            c0 = c0 if c0 is not None else np.zeros_like(h0)
        lengths = feed.lengths
        if stored.lengths is not None:
            lengths = np.minimum(stored.lengths, feed.steps)
        return Feed(feed.x, h0, c0, lengths)

    def describe(self) -> dict[str, Any]:
        """What was found in the file, for ``--json``'s ``a`` and ``b``."""
        return {
            "path": self.path, "kind": self.kind, "runs_as": self.label,
            "layer": self.layer or None,
            "inputs": {r: self.names.get(r, r) for r in INPUT_ROLES if r == "x" or r in self.takes},
            "outputs": {r: self.names.get(r, r) for r in OUTPUT_ROLES if r in self.returns},
            "fixed": {"batch": self.fixed_batch, "steps": self.fixed_steps},
            "shape": {k: v for k, v in vars(self.shape).items() if v is not None},
            "weights_read": self.weights is not None, "dtype": self.dtype, "notes": self.notes,
        }


def parse_map(text: str | None) -> dict[str, str]:
    """``--map-a x=input,h=h0,c=c0`` as {role: name}; a wrong role or form raises
    ConversionError naming it."""
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for item in text.split(","):
        role, sep, name = item.partition("=")
        role, name = role.strip(), name.strip()
        if not sep or not name:
            raise ConversionError(f"--map: {item!r}, expected role=name, e.g. x=input,h=h_n")
        if role not in INPUT_ROLES + OUTPUT_ROLES:
            raise ConversionError(f"--map: role {role!r}, expected one of "
                                  f"{', '.join(INPUT_ROLES + OUTPUT_ROLES)}")
        mapping[role] = name
    return mapping
