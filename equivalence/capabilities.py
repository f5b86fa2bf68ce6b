"""What a runtime (or a format) can build and run, as data.

A table row declares its runtime's :class:`Capabilities`; the runtime contract
refuses from it, strategies draw from it, and a pair draws from the
:func:`joint_capabilities` of its two sides. Core: numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from equivalence.io_types import LSTMInputs
from equivalence.spec import LSTMSpec


@dataclass(frozen=True)
class Capabilities:
    """The specs and inputs a runtime can build and run."""

    max_layers: int | None = None
    bidirectional: bool = True
    reverse: bool = False
    projection: bool = False
    projection_clip: bool = False
    peepholes: bool = False
    cell_clip: bool = False
    gate_clip: bool = False
    forget_bias: bool = False
    input_forget: bool = False
    recurrent_activations: frozenset[str] = frozenset({"sigmoid"})
    activations: frozenset[str] = frozenset({"tanh"})
    initial_state: bool = True
    lengths: bool = True
    time_major: bool = False
    dtypes: frozenset[str] = frozenset({"float32"})
    cells: frozenset[str] = frozenset({"lstm"})
    # a GRU with reset_after=False (the reset gate on h before the matmul: Keras
    # reset_after=False, TF1 GRUCell, ONNX linear_before_reset=0)
    reset_before: bool = False
    # a GRU with reset_after=True (False where only the reset-before variant runs: TF1 GRUCell)
    reset_after: bool = True

    def refusal(self, spec: LSTMSpec) -> str | None:
        """Why ``spec`` cannot run here, or None when it can."""
        checks = [
            (spec.cell not in self.cells, f"cell={spec.cell}"),
            (not spec.reset_after and not self.reset_before, "reset_after=False"),
            (spec.cell == "gru" and spec.reset_after and not self.reset_after, "reset_after=True"),
            (self.max_layers is not None and spec.layers > self.max_layers,
             f"{spec.layers} layers (max {self.max_layers})"),
            (spec.directions == 2 and not self.bidirectional, "bidirectional"),
            (spec.reverse and not self.reverse, "reverse"),
            (spec.projection_size is not None and not self.projection, "projection"),
            (spec.projection_clip is not None and not self.projection_clip, "projection_clip"),
            (spec.peepholes and not self.peepholes, "peepholes"),
            (spec.cell_clip is not None and not self.cell_clip, "cell_clip"),
            (spec.gate_clip is not None and not self.gate_clip, "gate_clip"),
            (spec.forget_bias != 0.0 and not self.forget_bias, "forget_bias"),
            (spec.input_forget and not self.input_forget, "input_forget"),
            (spec.recurrent_activation not in self.recurrent_activations,
             f"recurrent_activation={spec.recurrent_activation}"),
            (spec.activation not in self.activations, f"activation={spec.activation}"),
            (spec.dtype not in self.dtypes, f"dtype={spec.dtype}"),
        ]
        for failed, reason in checks:
            if failed:
                return reason
        return None

    def input_refusal(self, inputs: LSTMInputs) -> str | None:
        """Why these inputs cannot be fed here, or None when they can."""
        if inputs.h0 is not None and not self.initial_state:
            return "initial state"
        if inputs.lengths is not None and not self.lengths:
            return "sequence lengths"
        if inputs.time_major and not self.time_major:
            return "time-major input"
        return None


def joint_capabilities(capabilities: Iterable[Capabilities]) -> Capabilities:
    """What every runtime of ``capabilities`` supports (a pair draws from this)."""
    caps = list(capabilities)
    if not caps:
        return Capabilities()
    layer_limits = [c.max_layers for c in caps if c.max_layers is not None]
    flags = (
        "bidirectional",
        "reverse",
        "projection",
        "projection_clip",
        "peepholes",
        "cell_clip",
        "gate_clip",
        "forget_bias",
        "input_forget",
        "initial_state",
        "lengths",
        "time_major",
        "reset_before",
        "reset_after",
    )
    joint: dict[str, Any] = {flag: all(getattr(c, flag) for c in caps) for flag in flags}
    return Capabilities(
        max_layers=min(layer_limits) if layer_limits else None,
        **joint,
        recurrent_activations=frozenset.intersection(*(c.recurrent_activations for c in caps)),
        activations=frozenset.intersection(*(c.activations for c in caps)),
        dtypes=frozenset.intersection(*(c.dtypes for c in caps)),
        cells=_joint_cells(caps, joint["reset_before"] or joint["reset_after"]),
    )


def _joint_cells(caps: list[Capabilities], shared_gru_variant: bool) -> frozenset[str]:
    """The cells every runtime runs; a GRU only where they share one of its variants
    (TF1's reset-before GRUCell and PyTorch's reset-after nn.GRU run no GRU in common)."""
    cells = frozenset.intersection(*(c.cells for c in caps))
    return cells if shared_gru_variant else cells - {"gru"}
