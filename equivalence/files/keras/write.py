"""Writing Keras files: ``.keras`` (a Keras 3 model: input (batch, time, I) -> the top
layer's output sequence), ``.weights.h5`` (the same model's weights), ``.h5`` (the same
network as a tf_keras HDF5 model). ``--with-states``: a ``.keras`` functional model taking
and returning the states (:mod:`.keras_states`), LSTMs only. Reading is
:mod:`equivalence.files.keras.read`.

The layers are the spec's cell: ``LSTM``, or ``GRU`` with the spec's ``reset_after``
(whose bias, (2, 3H) or (3H,), the format's writer already shaped), stacked and
``Bidirectional`` the same way.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.errors import UnsupportedFeatureError
from equivalence.files._base import FileFormatError, atomic_output
from equivalence.formats import get as get_format


def keras_output_kind(path: Path) -> str:
    """'keras' (.keras), 'weights' (.weights.h5) or 'tf_keras_h5' (.h5)."""
    name = path.name
    if name.endswith(".keras"):
        return "keras"
    if name.endswith(".weights.h5"):
        return "weights"
    if name.endswith(".h5"):
        return "tf_keras_h5"
    raise FileFormatError(path, "a keras output must end in .keras (Keras 3 model), "
                                ".weights.h5 (its weights) or .h5 (tf_keras HDF5 model)")


def _layer_names(spec: Any) -> list[str]:
    base = "bidirectional" if spec.directions == 2 else spec.cell
    return [base if k == 0 else f"{base}_{k}" for k in range(spec.layers)]


def model_code(weights: LSTMWeights, flavour: str) -> str:
    """The Python that builds the written network (printed, so users can rebuild it)."""
    spec = weights.spec
    act = "" if spec.recurrent_activation == "sigmoid" else ', recurrent_activation="hard_sigmoid"'
    act += "" if spec.activation == "tanh" else f', activation="{spec.activation}"'
    module = "keras" if flavour != "tf_keras_h5" else "tf_keras"
    if spec.cell == "gru":
        act += "" if spec.reset_after else ", reset_after=False"
    lines = [f"{module}.Sequential([{module}.Input((None, {spec.input_size})),"]
    for _ in range(spec.layers):
        lstm = f"{module}.layers.{_layer_class(spec)}({spec.units}, return_sequences=True{act})"
        if spec.directions == 2:
            lstm = f"{module}.layers.Bidirectional({lstm})"
        lines.append(f"    {lstm},")
    lines.append("])")
    return "\n".join(lines)


def write_keras(path: Path, weights: LSTMWeights, job: Any) -> list[str]:
    """Write ``weights`` as ``path``'s ending asks; return lines to print."""
    flavour = keras_output_kind(path)
    spec = weights.spec
    if getattr(job, "with_states", False):
        _check_states_flavour(path, flavour)
        _check_states_cell(spec)
    wanted = "hard_sigmoid_tf_keras" if flavour == "tf_keras_h5" else "hard_sigmoid_keras3"
    if spec.recurrent_activation not in ("sigmoid", wanted):
        target = "tf_keras (.h5)" if flavour == "tf_keras_h5" else "Keras 3 (.keras/.weights.h5)"
        other = ".keras" if flavour == "tf_keras_h5" else ".h5"
        raise UnsupportedFeatureError(
            target, f"recurrent_activation={spec.recurrent_activation}",
            f"its hard_sigmoid is a different function; write {other} instead")
    native = get_format("keras").from_canonical(weights)
    with atomic_output(path, job.replace) as temporary:
        if flavour == "tf_keras_h5":
            _save_tf_keras(spec, native, temporary)
        elif getattr(job, "with_states", False):
            build_states_model(spec, native).save(temporary)
        else:
            model = build_keras3(spec, native)
            if flavour == "keras":
                model.save(temporary)
            else:
                model.save_weights(temporary)
    what = {"keras": "Keras 3 model", "weights": "Keras 3 weights",
            "tf_keras_h5": "tf_keras HDF5 model"}[flavour]
    lines = [f"wrote {path} ({what})"]
    if getattr(job, "with_states", False):
        from equivalence.files.keras.states import usage

        lines.append(usage(path, spec))
    elif flavour == "keras":
        lines.append(f'model = keras.models.load_model("{path}")  '
                     f"# (batch, time, {spec.input_size}) -> (batch, time, "
                     f"{spec.directions * spec.units})")
    else:
        lines.append("the network it fits:\n" + model_code(weights, flavour))
    return lines


def build_keras3(spec: Any, native: list[np.ndarray]) -> Any:
    """The Keras 3 Sequential of (Bidirectional) LSTMs for ``spec``, weights set."""
    from equivalence.runtimes.keras import import_keras3

    keras = import_keras3()
    return _sequential(keras, keras.Input((None, spec.input_size), dtype=spec.dtype), spec,
                       native, "hard_sigmoid_keras3")


def build_states_model(spec: Any, native: list[np.ndarray]) -> Any:
    """The ``--with-states`` functional model (:mod:`.keras_states`), weights set."""
    from equivalence.files.keras.states import build_model

    return build_model(spec, native, _layer_names(spec),
                       spec.recurrent_activation == "hard_sigmoid_keras3")


def _check_states_cell(spec: Any) -> None:
    # The --with-states signature is h0 and c0 per layer (states.py); a GRU has no c.
    if spec.cell != "lstm":
        raise UnsupportedFeatureError("keras files with --with-states", f"cell={spec.cell}",
                                      "write it without --with-states")


def _check_states_flavour(path: Path, flavour: str) -> None:
    if flavour != "keras":
        raise FileFormatError(path, "--with-states: only a .keras model takes states as "
                                    f"inputs, not a {path.suffix} file")


def _save_tf_keras(spec: Any, native: list[np.ndarray], path: Path) -> None:
    import tf_keras

    first = tf_keras.layers.InputLayer((None, spec.input_size), dtype=spec.dtype)
    model = _sequential(tf_keras, first, spec, native, "hard_sigmoid_tf_keras")
    with warnings.catch_warnings():  # "HDF5 is legacy": asked for on purpose
        warnings.simplefilter("ignore", UserWarning)
        model.save(os.fspath(path), save_format="h5")


def _sequential(module: Any, first: Any, spec: Any, native: list[np.ndarray],
                hard_sigmoid: str) -> Any:
    """``module``'s (keras or tf_keras) Sequential of the spec's LSTM or GRU layers after
    ``first``, weights set; its "hard_sigmoid" is the spec's ``hard_sigmoid`` flavour."""
    act = "hard_sigmoid" if spec.recurrent_activation == hard_sigmoid else "sigmoid"
    build = getattr(module.layers, _layer_class(spec))
    extra = {"reset_after": spec.reset_after} if spec.cell == "gru" else {}
    layers: list[Any] = [first]
    for name in _layer_names(spec):
        layer = build(spec.units, return_sequences=True, recurrent_activation=act,
                      activation=spec.activation, dtype=spec.dtype,
                      name=name if spec.directions == 1 else None, **extra)
        if spec.directions == 2:
            layer = module.layers.Bidirectional(layer, name=name, dtype=spec.dtype)
        layers.append(layer)
    model = module.Sequential(layers, name=f"converted_{spec.cell}")
    model.set_weights([np.asarray(a) for a in native])
    return model


def _layer_class(spec: Any) -> str:
    """The Keras layer class of the spec's cell (keras and tf_keras name them alike)."""
    return {"lstm": "LSTM", "gru": "GRU"}[spec.cell]


def check_writable(weights: LSTMWeights) -> None:
    """Raise what a Keras file cannot hold: the format's refusals (an LSTM or a GRU of
    either variant; the cells the format knows are the layers written)."""
    get_format("keras").from_canonical(weights)
