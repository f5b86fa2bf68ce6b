"""A compare side for a TF SavedModel directory, run through its serving signature.

Owns reading a SavedModel (Keras 3 ``model.export``, ``tf.saved_model.save``)
as a :class:`~.side.Side`: its signature's inputs and outputs, mapped to roles
by :mod:`.ports` (the role mapping the TF-family sides share), and the Keras
LSTM weights guessed from its variables.

Why the weights are checked before they are given out: a SavedModel holds
variables, not the layer's config, so the activations (and even which
variables are the LSTM's) are a guess from the variable names. The guessed
weights are run in the float64 reference and kept only when they reproduce
the signature's own ``y``; otherwise the side says so and carries none
(the diagnosis then works from outputs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from equivalence.artefacts.ports import Port, checked_weights, first_line, ported_side
from equivalence.artefacts.savedmodel_screen import screen
from equivalence.artefacts.side import Side
from equivalence.canonical import LSTMWeights
from equivalence.errors import ConversionError


def savedmodel_side(
    path: Path, *, mapping: dict[str, str] | None = None, signature: str | None = None
) -> Side:
    """The SavedModel at ``path`` run through ``signature`` (or its serving one)."""
    import tensorflow as tf

    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise ConversionError(f"{path}: not a SavedModel directory (no saved_model.pb)")
    screen(path)  # no graph that reads or writes files or calls Python is loaded
    with tf.device("/CPU:0"):
        loaded = tf.saved_model.load(str(path))
    key, function = _signature(loaded, signature, path)
    inputs = [_port(name, spec) for name, spec in sorted(function.structured_input_signature[1]
                                                         .items())]
    outputs = [_port(name, spec) for name, spec in sorted(function.structured_outputs.items())]

    def invoke(fed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with tf.device("/CPU:0"):
            returned = function(**{name: tf.constant(value) for name, value in fed.items()})
        return {name: np.asarray(value) for name, value in returned.items()}

    side = ported_side(str(path), "TF SavedModel", f"TensorFlow {tf.__version__}, signature "
                       f"{key!r}", inputs, outputs, invoke, mapping or {})
    weights, note = checked_weights(side, _variable_weights(loaded))
    side.weights = weights
    side.notes.append(note)
    return side


def _signature(loaded: Any, name: str | None, path: Path) -> tuple[str, Any]:
    signatures = dict(loaded.signatures)
    if name is None:
        name = next((n for n in ("serving_default", "serve") if n in signatures), None)
        if name is None and len(signatures) == 1:
            name = next(iter(signatures))
    if name is None or name not in signatures:  # None: no serving one, and not only one
        raise ConversionError(f"{path}: signature {name!r} not found; it has "
                              f"{sorted(signatures) or 'none'}")
    return name, signatures[name]


def _port(name: str, spec: Any) -> Port:
    shape = tuple(None if d is None else int(d) for d in spec.shape.as_list())
    return Port(name, shape, np.dtype(spec.dtype.as_numpy_dtype).name)


# --- weights ---------------------------------------------------------------------------


def _variable_weights(loaded: Any) -> tuple[LSTMWeights | None, str]:
    """Keras LSTM weights from the SavedModel's variables by their Keras names, or why not."""
    groups: dict[str, dict[str, Any]] = {}
    for variable in getattr(loaded, "variables", ()):
        prefix, _, last = variable.name.rpartition("/")
        last = last.split(":")[0]
        if last in ("kernel", "recurrent_kernel", "bias") and prefix:
            groups.setdefault(prefix, {})[last] = variable
    cells = [g for g in groups.values() if set(g) == {"kernel", "recurrent_kernel", "bias"}]
    if not cells:
        return None, "no Keras LSTM variables (kernel, recurrent_kernel, bias) found"
    native = [np.asarray(g[k].numpy()) for g in cells for k in ("kernel", "recurrent_kernel",
                                                                "bias")]
    directions = 2 if any("backward" in p for p in groups) else 1
    from equivalence.convert import to_canonical

    try:
        weights = to_canonical(native, "keras", directions=directions)
    except ConversionError as exc:
        return None, f"Keras-named variables not an LSTM stack: {first_line(exc)}"
    return weights, f"{len(cells)} Keras LSTM variable group(s), tanh/sigmoid assumed"
