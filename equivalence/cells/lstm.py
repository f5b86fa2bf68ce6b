"""The LSTM cell: gates i f g o, states h and c, and its float64 step.

Every LSTM feature of every format is here: peepholes (i and f see the old c,
o the new one), projection with its clip, TF1's run-time ``forget_bias``, the
cell clip, ONNX's gate clip and coupled input-forget gate.
"""

from __future__ import annotations

import numpy as np

from equivalence.cells.activations import ACTIVATION, RECURRENT_ACTIVATION, gate_clip
from equivalence.cells.step_types import StepSpec, StepWeights

GATES = ("i", "f", "g", "o")
STATES = ("h", "c")
OWN_FEATURES = frozenset({"projection", "projection_clip", "peepholes", "cell_clip",
                          "forget_bias", "input_forget"})


def step(cell: StepWeights, spec: StepSpec, x: np.ndarray, states: tuple[np.ndarray, ...]
         ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """One time step for a batch: the output (the new h) and the new (h, c)."""
    h, c = states
    gate = RECURRENT_ACTIVATION[spec.recurrent_activation]
    act = ACTIVATION[spec.activation]
    z = x @ cell.w_input.T + cell.b_input + h @ cell.w_recurrent.T + cell.b_recurrent
    zi, zf, zg, zo = np.split(z, 4, axis=-1)
    zf = zf + spec.forget_bias  # TF1 adds forget_bias at run time
    if cell.peephole is not None:
        zi = zi + cell.peephole[0] * c
        zf = zf + cell.peephole[1] * c
    zi, zf, zg = (gate_clip(z_, spec.gate_clip) for z_ in (zi, zf, zg))
    input_gate = gate(zi)
    forget_gate = 1.0 - input_gate if spec.input_forget else gate(zf)  # ONNX input_forget
    c_new = forget_gate * c + input_gate * act(zg)
    if spec.cell_clip is not None:
        c_new = np.clip(c_new, -spec.cell_clip, spec.cell_clip)
    if cell.peephole is not None:
        zo = zo + cell.peephole[2] * c_new  # the output peephole sees the new cell state
    h_new = gate(gate_clip(zo, spec.gate_clip)) * act(c_new)
    if cell.projection is not None:
        h_new = h_new @ cell.projection.T
        if spec.projection_clip is not None:
            h_new = np.clip(h_new, -spec.projection_clip, spec.projection_clip)
    return h_new, (h_new, c_new)
