"""CoreML LSTM layers (``uniDirectionalLSTM``, ``biDirectionalLSTM``) as ONNX LSTM nodes.

CoreML's gates are i, f, z (block input), o, each matrix ``[outputVectorSize,
inputVectorSize]`` row-major, one bias per gate; they become ONNX-layout weights
(i o f c). Activations other than [sigmoid, tanh, tanh], unidirectional
``reverseInput``, and weights stored other than as float32/float16 values are
refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.files.coreml.wire import Message, Reader, Unreadable

LAYERS = {420: "uniDirectionalLSTM", 430: "biDirectionalLSTM"}
BIASES = "one per gate (b_i b_f b_z b_o)"
LAYOUT = "weights in the ONNX node layout (gates i o f c; onnxruntime runs them for --verify)"
READ_ACTIVATIONS = ["sigmoid", "tanh", "tanh"]  # [f(), g(), h()] the canonical form holds
# LSTMWeightParams fields per CoreML gate (i, f, z = block input, o): input matrix,
# recursion matrix, bias vector; peepholes exist for i, f, o only.
GATES = {"i": (1, 20, 40), "f": (2, 21, 41), "z": (3, 22, 42), "o": (4, 23, 43)}
PEEPHOLES = {"i": 60, "f": 61, "o": 62}
DEFAULT_CELL_CLIP = 50.0  # LSTMParams.cellClipThreshold 0 means this
# A cell clip at T cannot act before |c_t| can reach T; with sigmoid gates and a tanh block
# input |c_t| <= |c_0| + t, so from this threshold on it is inert for any sequence people
# run (and is dropped with a note); below it, it is carried as the spec's cell_clip.
INERT_CELL_CLIP = 10_000.0


def read(reader: Reader, params: Message, layer_number: int, what: str, notes: list[str]
         ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """ONNX-layout weights, the onnx format's options and spec changes of one layer."""
    bidirectional = layer_number == 430
    size_in = reader.uint(params, 1, f"{what} inputVectorSize")
    size_out = reader.uint(params, 2, f"{what} outputVectorSize")
    if size_in < 1 or size_out < 1:
        raise reader.fail(what, f"inputVectorSize {size_in}, outputVectorSize {size_out}, "
                                "expected both at least 1")
    lstm = reader.sub(params, 15, f"{what} params")
    _activations(reader, params, bidirectional, what)
    if not bidirectional and reader.flag(params, 100, f"{what} reverseInput"):
        raise Unreadable("reverseInput is set (right to left, and the order CoreML returns "
                         "its outputs in is not documented); not read")
    sets = reader.subs(params, 20, f"{what} weightParams")
    if not bidirectional:
        sets = [reader.sub(params, 20, f"{what} weightParams")]
    elif len(sets) != 2:
        raise reader.fail(what, f"{len(sets)} weightParams, expected 2 (forward, backward)")
    flags = {name: reader.flag(lstm, number, f"{what} {name}") for name, number in
             (("hasBiasVectors", 20), ("forgetBias", 30), ("hasPeepholeVectors", 40),
              ("coupledInputAndForgetGate", 50), ("sequenceOutput", 10))}
    if flags["forgetBias"] and not flags["hasBiasVectors"]:
        raise Unreadable("forgetBias without hasBiasVectors (whether the 1 is added is not "
                         "documented); not read")
    shapes = (size_out, size_in), (size_out, size_out), (size_out,)
    directions = [_direction(reader, weights, shapes, flags, f"{what} direction {k}")
                  for k, weights in enumerate(sets)]
    native = {key: np.stack([d[key] for d in directions]) for key in directions[0]}
    changes = _cell_clip(reader.float32(lstm, 60, f"{what} cellClipThreshold"), notes)
    notes.append("CoreML clips gate pre-activations to [-50, 50]; through sigmoid and tanh "
                 "that moves a gate by under 2e-22, so it is not carried")
    if not flags["sequenceOutput"]:
        notes.append("sequenceOutput is false: the layer passes on only its last step")
    if flags["forgetBias"]:
        notes.append("forgetBias: 1 added to b_f (folded into the bias)")
    coupled = flags["coupledInputAndForgetGate"]
    if coupled:
        notes.append("coupledInputAndForgetGate: f = 1 - i")
    return native, {"clip": None, "reverse": False, "input_forget": coupled}, changes


def _activations(reader: Reader, params: Message, bidirectional: bool, what: str) -> None:
    for number in ((10, 11) if bidirectional else (10,)):
        found = [name for name, _ in reader.activations(params, number, what)]
        if found != READ_ACTIVATIONS:
            raise Unreadable(f"activations {found}: the canonical form holds "
                             f"{READ_ACTIVATIONS} only (f(), g(), h())")


def _direction(reader: Reader, weights: Message, shapes: tuple[tuple[int, ...], ...],
               flags: dict[str, bool], what: str) -> dict[str, np.ndarray]:
    """One direction's W (4H, I), R (4H, H), B (8H) and P (3H) in ONNX order i o f c."""
    read: dict[str, list[np.ndarray]] = {"W": [], "R": [], "Wb": []}
    for gate in ("i", "o", "f", "z"):
        for key, number, shape in zip(("W", "R", "Wb"), GATES[gate], shapes, strict=True):
            if key == "Wb" and not flags["hasBiasVectors"]:
                read[key].append(np.zeros(shape, np.float32))
                continue
            field_what = f"{what} gate {gate} field {number}"
            values = reader.weights(reader.sub(weights, number, field_what), shape, field_what)
            if key == "Wb" and gate == "f" and flags["forgetBias"]:
                values = values + np.float32(1.0)
            read[key].append(values)
    bias = np.concatenate([*read["Wb"], np.zeros(4 * shapes[2][0], np.float32)])
    out = {"W": np.concatenate(read["W"]), "R": np.concatenate(read["R"]), "B": bias}
    if flags["hasPeepholeVectors"]:
        out["P"] = np.concatenate([
            reader.weights(reader.sub(weights, PEEPHOLES[g], f"{what} peephole {g}"),
                           shapes[2], f"{what} peephole {g}") for g in ("i", "o", "f")])
    return out


def _cell_clip(threshold: float, notes: list[str]) -> dict[str, Any]:
    if not np.isfinite(threshold) or threshold < 0:
        raise Unreadable(f"cellClipThreshold {threshold}, expected a positive number")
    threshold = threshold or DEFAULT_CELL_CLIP
    if threshold >= INERT_CELL_CLIP:
        notes.append(f"cellClipThreshold {threshold:g} not carried: with sigmoid gates and a "
                     f"tanh block input |c_t| <= |c_0| + t, so it cannot act within "
                     f"{threshold - 1:,.0f} steps")
        return {}
    notes.append(f"cellClipThreshold {threshold:g}: carried as cell_clip")
    return {"cell_clip": threshold}
