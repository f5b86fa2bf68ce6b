"""Layers and directions named as a format names them, for diagnoses a user reads in their terms.

The weight diagnosis names cells canonically ("layer 1 backward"). Someone who
wrote a torch -> keras converter thinks in ``weights[9:12]``; one who wrote the
reverse thinks in ``weight_ih_l1_reverse``. :func:`in_target_terms` leads each
finding with its cell and says where the target holds that cell. Pure text.
"""

from __future__ import annotations

import re

from equivalence.spec import LSTMSpec

_TF1_ARRAYS = ("kernel", "bias")


def cell_names(spec: LSTMSpec) -> dict[tuple[int, int], str]:
    """The canonical cell names the diagnosis uses, by (layer, direction)."""
    names = {}
    for layer in range(spec.layers):
        for direction in range(spec.directions):
            parts = [f"layer {layer}"] if spec.layers > 1 else []
            parts += [("forward", "backward")[direction]] if spec.directions > 1 else []
            names[(layer, direction)] = " ".join(parts)
    return names


def native_cell(fmt: str, spec: LSTMSpec, layer: int, direction: int) -> str:
    """Where ``fmt`` holds one layer and direction, in its own names."""
    if fmt in ("keras", "cudnn"):
        first = (layer * spec.directions + direction) * 3
        return f"weights[{first}:{first + 3}]"
    if fmt == "torch":
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names = [f"weight_ih{suffix}", f"weight_hh{suffix}", f"bias_ih{suffix}",
                 f"bias_hh{suffix}"]
        return ", ".join(names + ([f"weight_hr{suffix}"] if spec.projection_size else []))
    if fmt == "tf1":
        return f"{_tf1_scope(spec, layer, direction)}/lstm_cell/{{{','.join(_TF1_ARRAYS)}}}"
    if fmt == "onnx":
        node = f"[{layer}]" if spec.layers > 1 else ""
        return f"{node}['W'|'R'|'B'][{direction}]"
    return f"[{layer}][{direction}]"  # neoml, flax, mlx: a list over layers of directions


def _tf1_scope(spec: LSTMSpec, layer: int, direction: int) -> str:
    side = ("fw", "bw")[direction]
    if spec.directions == 2:
        if spec.layers == 1:
            return f"bidirectional_rnn/{side}"
        return f"stack_bidirectional_rnn/cell_{layer}/bidirectional_rnn/{side}"
    return "rnn" if spec.layers == 1 else f"rnn/multi_rnn_cell/cell_{layer}"


def in_target_terms(message: str, spec: LSTMSpec, fmt: str) -> str:
    """``message`` with each finding led by its cell, and where ``fmt`` holds the cells named.

    ``i and o blocks swapped in kernel (layer 1 backward)`` becomes
    ``layer 1 backward: i and o blocks swapped in kernel``, and the message ends
    ``(keras: layer 1 backward is weights[9:12])``. A single cell is left as it is.
    """
    names = {name: key for key, name in cell_names(spec).items() if name}
    if not names:
        return message
    pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    findings = [_lead(part, pattern) for part in message.split("; ")]
    seen = [n for n in names if re.search(rf"\b{re.escape(n)}\b", message)]
    if not seen:
        return "; ".join(findings)
    where = ", ".join(f"{n} is {native_cell(fmt, spec, *names[n])}" for n in seen)
    return f"{'; '.join(findings)} ({fmt}: {where})"


def _lead(finding: str, pattern: str) -> str:
    """``text (cell)`` as ``cell: text`` when the finding is about one cell."""
    match = re.fullmatch(rf"(.*) \(({pattern})\)", finding, re.S)
    return f"{match.group(2)}: {match.group(1)}" if match else finding
