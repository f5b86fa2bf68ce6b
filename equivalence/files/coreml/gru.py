"""CoreML ``gru`` layers (``GRULayerParams``) as ONNX GRU nodes, ``linear_before_reset=0``.

CoreML documents its GRU as (``NeuralNetwork.proto``)::

    z = f(clip(W_z x + R_z h + b_z))          update gate
    r = f(clip(W_r x + R_r h + b_r))          reset gate
    o = g(clip(W_o x + R_o (h * r) + b_o))    output (the candidate)
    h' = (1 - z) * o + z * h

The reset gate scales ``h`` before ``R_o``: ONNX ``linear_before_reset=0``, Keras
``reset_after=False``. ONNX's gates are z r h and its update has the same
``(1 - z)``, so the blocks keep their meaning; CoreML's single bias per gate is
ONNX's input half, the recurrent half zero. ``clip`` bounds pre-activations to
[-50, 50]: inert through the saturating functions read here (sigmoid, tanh and
the two hard sigmoids), which is why only those are read; f and g of any other
function, ``reverseInput`` and weights not stored as float32/float16 values are
refused by name. There is no bidirectional CoreML GRU layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.files.coreml.wire import Message, Reader, Unreadable

LAYERS = {410: "gru"}
BIASES = "one per gate (b_z b_r b_o); ONNX's recurrent half is zero"
LAYOUT = ("weights in the ONNX GRU node layout (gates z r h, linear_before_reset=0: the reset "
          "gate scales h before R_o; onnxruntime runs them for --verify)")
# GRULayerParams field numbers per gate, in ONNX's z r h order: input matrix, recursion
# matrix, bias vector (CoreML's output gate o is the candidate h).
GATES = {"z": (30, 50, 70), "r": (31, 51, 71), "o": (32, 52, 72)}
# ActivationSigmoidHard (alpha, beta) -> the spec's recurrent activation; CoreML writes both
# as float32, so they are compared as float32.
HARD_SIGMOIDS = {(np.float32(0.2), np.float32(0.5)): "hard_sigmoid_tf_keras",
                 (np.float32(1 / 6), np.float32(0.5)): "hard_sigmoid_keras3"}
SATURATING_G = ("tanh", "sigmoid")  # the clip at +-50 moves them by under 2e-22


def read(reader: Reader, params: Message, layer_number: int, what: str, notes: list[str]
         ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """ONNX GRU node weights (D = 1), the onnx format's options and spec changes."""
    size_in = reader.uint(params, 1, f"{what} inputVectorSize")
    size_out = reader.uint(params, 2, f"{what} outputVectorSize")
    if size_in < 1 or size_out < 1:
        raise reader.fail(what, f"inputVectorSize {size_in}, outputVectorSize {size_out}, "
                                "expected both at least 1")
    recurrent, cell = _activations(reader, params, what)
    if reader.flag(params, 100, f"{what} reverseInput"):
        raise Unreadable("reverseInput is set (right to left, and the order CoreML returns "
                         "its outputs in is not documented); not read")
    biased = reader.flag(params, 20, f"{what} hasBiasVectors")
    shapes = (size_out, size_in), (size_out, size_out), (size_out,)
    read_blocks: dict[str, list[np.ndarray]] = {"W": [], "R": [], "Wb": []}
    for gate, numbers in GATES.items():
        for key, number, shape in zip(("W", "R", "Wb"), numbers, shapes, strict=True):
            if key == "Wb" and not biased:
                read_blocks[key].append(np.zeros(shape, np.float32))
                continue
            field_what = f"{what} gate {gate} field {number}"
            read_blocks[key].append(
                reader.weights(reader.sub(params, number, field_what), shape, field_what))
    bias = np.concatenate([*read_blocks["Wb"], np.zeros(3 * size_out, np.float32)])
    native = {"W": np.concatenate(read_blocks["W"])[None],
              "R": np.concatenate(read_blocks["R"])[None], "B": bias[None]}
    notes.append("CoreML clips gate pre-activations to [-50, 50]; through the functions read "
                 "that moves a gate by under 2e-22, so it is not carried")
    if not reader.flag(params, 15, f"{what} sequenceOutput"):
        notes.append("sequenceOutput is false: the layer passes on only its last step")
    if not biased:
        notes.append("hasBiasVectors is false: zero biases")
    changes = {} if recurrent == "sigmoid" else {"recurrent_activation": recurrent}
    if recurrent != "sigmoid":
        notes.append(f"sigmoidHard gates: {recurrent}")
    options = {"cell": "gru", "reset_after": False, "clip": None, "reverse": False,
               **({} if cell == "tanh" else {"activation": cell})}
    return native, options, changes


def _activations(reader: Reader, params: Message, what: str) -> tuple[str, str]:
    """The spec's (recurrent_activation, activation) for CoreML's [f, g]."""
    found = reader.activations(params, 10, what)
    names = [name for name, _ in found]
    if len(found) != 2:
        raise Unreadable(f"activations {names}: a GRU has two (f for z and r, g for o)")
    (f_name, f_params), (g_name, _) = found
    if f_name == "sigmoid":
        recurrent = "sigmoid"
    elif f_name == "sigmoidHard":
        pair = (np.float32(reader.float32(f_params, 1, f"{what} sigmoidHard alpha")),
                np.float32(reader.float32(f_params, 2, f"{what} sigmoidHard beta")))
        if pair not in HARD_SIGMOIDS:
            raise Unreadable(f"f is sigmoidHard with alpha {pair[0]:g}, beta {pair[1]:g}; the "
                             "canonical form holds alpha 0.2 or 1/6 with beta 0.5 only (and "
                             "what CoreML does with unset parameters is not documented)")
        recurrent = HARD_SIGMOIDS[pair]
    else:
        raise Unreadable(f"activations {names}: f must be sigmoid or sigmoidHard")
    if g_name not in SATURATING_G:
        raise Unreadable(f"activations {names}: g {g_name} is not read (CoreML clips its "
                         "input to [-50, 50], which the canonical form cannot carry for a "
                         "function that does not saturate)")
    return recurrent, g_name
