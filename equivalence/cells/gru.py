"""The GRU cell: gates r z n (PyTorch's order), state h, and its float64 step.

Two variants, by where the reset gate meets the recurrent term of the candidate:

* ``reset_after=True`` (PyTorch ``nn.GRU``, Keras ``reset_after=True``, ONNX
  ``linear_before_reset=1``, cuDNN): n = act(W_n x + b_in + r * (R_n h + b_hn));
* ``reset_after=False`` (Keras ``reset_after=False``, TF1 ``GRUCell``, ONNX's
  default ``linear_before_reset=0``): n = act(W_n x + b_in + R_n (r * h) + b_hn).

Then h' = (1 - z) * n + z * h everywhere. The two biases are kept apart, as for
the LSTM: under ``reset_after=True`` b_hn sits inside r * (...), so a one-bias
format cannot hold the candidate's recurrent bias there.
"""

from __future__ import annotations

import numpy as np

from equivalence.cells.activations import ACTIVATION, RECURRENT_ACTIVATION, gate_clip
from equivalence.cells.step_types import StepSpec, StepWeights

GATES = ("r", "z", "n")
STATES = ("h",)
# reset_after=True is the default variant, so no spec lists it, but a runtime may lack it
# (TF1 GRUCell runs reset-before only): the capability names both variants.
OWN_FEATURES = frozenset({"reset_after=False", "reset_after=True"})


def step(cell: StepWeights, spec: StepSpec, x: np.ndarray, states: tuple[np.ndarray, ...]
         ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """One time step for a batch: the output (the new h) and the new (h,)."""
    (h,) = states
    gate = RECURRENT_ACTIVATION[spec.recurrent_activation]
    act = ACTIVATION[spec.activation]
    xr, xz, xn = np.split(x @ cell.w_input.T + cell.b_input, 3, axis=-1)
    w_r, w_z, w_n = np.split(cell.w_recurrent, 3, axis=0)
    b_r, b_z, b_n = np.split(cell.b_recurrent, 3)
    r = gate(gate_clip(xr + h @ w_r.T + b_r, spec.gate_clip))
    z = gate(gate_clip(xz + h @ w_z.T + b_z, spec.gate_clip))
    recurrent_n = r * (h @ w_n.T + b_n) if spec.reset_after else (r * h) @ w_n.T + b_n
    n = act(gate_clip(xn + recurrent_n, spec.gate_clip))
    h_new = (1.0 - z) * n + z * h
    return h_new, (h_new,)
