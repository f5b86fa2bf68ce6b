"""ONNX ``LSTM`` node activations <-> the spec's recurrent and cell activations.

An LSTM node's ``activations`` list holds f, g, h per direction (f the gates, g the
candidate, h the cell state before the output gate); ``activation_alpha`` and
``activation_beta`` are consumed in that order, each by the functions that take one
(the ONNX operator spec). The spec has one cell activation, so g must equal h.
A ``GRU`` node's list holds f, g per direction (f on z and r, g on the candidate).
"""

from __future__ import annotations

from typing import Any

# spec recurrent_activation -> (ONNX name, alpha, beta)
GATES = {"sigmoid": ("Sigmoid", None, None),
         "hard_sigmoid_tf_keras": ("HardSigmoid", 0.2, 0.5),
         "hard_sigmoid_keras3": ("HardSigmoid", 1.0 / 6.0, 0.5)}
# spec activation -> (ONNX name, alpha, beta): linear is Affine(1, 0), elu Keras's alpha 1
CELLS = {"tanh": ("Tanh", None, None), "relu": ("Relu", None, None),
         "linear": ("Affine", 1.0, 0.0), "sigmoid": ("Sigmoid", None, None),
         "softsign": ("Softsign", None, None), "softplus": ("Softplus", None, None),
         "elu": ("Elu", 1.0, None)}
# What each ONNX activation takes, and its defaults (the ONNX operator spec).
PARAMETERS = {"affine": (1.0, 0.0), "leakyrelu": (0.01, None), "thresholdedrelu": (1.0, None),
              "scaledtanh": (1.0, 1.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, None)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def per_direction(cell: str) -> int:
    """Activations per direction: f, g, h for an LSTM node, f, g for a GRU node."""
    return 2 if cell == "gru" else 3


def read(attrs: dict[str, Any], directions: int, cell: str = "lstm"
         ) -> tuple[dict[str, str], str | None]:
    """(spec changes, a problem) from a node's activations and their alpha/beta."""
    names = [_text(a) for a in attrs.get("activations", [])]
    if not names:
        return {}, None
    count = per_direction(cell)
    if len(names) != count * directions:
        return {}, f"{len(names)} activations for {directions} direction(s), expected " \
                   f"{count * directions}"
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    called = []
    for name in names:
        alpha, beta = PARAMETERS.get(name.lower(), (None, None))
        alpha = (alphas.pop(0) if alphas else alpha) if alpha is not None else None
        beta = (betas.pop(0) if betas else beta) if beta is not None else None
        called.append((name, alpha, beta))
    found = set()
    for k in range(directions):
        part = called[count * k: count * k + count]
        f, g, h = part[0], part[1], part[-1]  # a GRU has no h: its g stands in
        gate = _match(f, GATES)
        if gate is None:
            return {}, f"gate activation {_show(f)} (the spec knows Sigmoid, HardSigmoid " \
                       "0.2/0.5 and 1/6/0.5)"
        cell_activation = _match(g, CELLS)
        if cell_activation is None or _match(h, CELLS) != cell_activation:
            return {}, f"cell activations g={_show(g)}, h={_show(h)} (the spec holds one, " \
                       f"g = h, among {', '.join(_show((n, a, b)) for n, a, b in CELLS.values())})"
        found.add((gate, cell_activation))
    if len(found) > 1:
        return {}, f"the directions use different activations {sorted(found)}"
    gate, cell_activation = found.pop()
    changes = {"recurrent_activation": gate} if gate != "sigmoid" else {}
    return changes | ({"activation": cell_activation} if cell_activation != "tanh" else {}), None


def write(spec: Any) -> dict[str, Any]:
    """The activations attributes for ``spec`` (none when it is ONNX's default)."""
    if spec.recurrent_activation == "sigmoid" and spec.activation == "tanh":
        return {}
    triple = [GATES[spec.recurrent_activation], CELLS[spec.activation], CELLS[spec.activation]]
    triple = triple[:per_direction(spec.cell)] * spec.directions
    attributes: dict[str, Any] = {"activations": [name for name, _, _ in triple]}
    alphas = [a for _, a, _ in triple if a is not None]
    betas = [b for _, _, b in triple if b is not None]
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    return attributes


def _match(called: tuple[str, float | None, float | None], table: dict[str, tuple]) -> str | None:
    name, alpha, beta = called
    for spec_name, (onnx_name, want_alpha, want_beta) in table.items():
        if name.lower() == onnx_name.lower() and _near(alpha, want_alpha) and _near(beta,
                                                                                    want_beta):
            return spec_name
    return None


def _near(found: float | None, wanted: float | None) -> bool:
    if found is None or wanted is None:
        return found is None and wanted is None
    return abs(found - wanted) < 1e-6


def _show(called: tuple[str, float | None, float | None]) -> str:
    name, alpha, beta = called
    shown = [f"{k}={v:.4g}" for k, v in (("alpha", alpha), ("beta", beta)) if v is not None]
    return f"{name[:40]}({', '.join(shown)})" if shown else name[:40]
