"""PyTorch ``nn.LSTM`` and ``nn.GRU`` state_dicts.

Native form: ``{weight_ih_l{k}[_reverse]: (4H, in), weight_hh_l{k}: (4H, O),
bias_ih_l{k}: (4H), bias_hh_l{k}: (4H), weight_hr_l{k}: (P, H)}`` as numpy
arrays or tensors, exactly ``nn.LSTM(...).state_dict()``. Gate order i f g o in
rows; two biases; same orientation as canonical. ``from_canonical`` returns
numpy arrays (``torch.from_numpy`` them, or pass to ``load_state_dict`` after).

``nn.GRU`` has the same keys with 3H rows, gates r z n (canonical order) and
PyTorch's only variant, reset_after=True (b_hn inside r * (...)). The keys do
not say which cell wrote them, so the reader takes ``cell=``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights, expected_shapes
from equivalence.errors import brief
from equivalence.formats import _common as c
from equivalence.spec import MAX_LAYERS, LSTMSpec

NAME = "torch"
SUPPORTED = frozenset({"stacked layers", "bidirectional", "projection", "cell=gru"})
_LAYER_KEY = re.compile(r"_l([0-9]{1,9})(?:_reverse)?$")


def key_names(layer: int, direction: int, projection: bool) -> dict[str, str]:
    """Canonical field -> state_dict key for one layer and direction."""
    suffix = f"l{layer}" + ("_reverse" if direction == 1 else "")
    names = {
        "w_input": f"weight_ih_{suffix}",
        "w_recurrent": f"weight_hh_{suffix}",
        "b_input": f"bias_ih_{suffix}",
        "b_recurrent": f"bias_hh_{suffix}",
    }
    if projection:
        names["projection"] = f"weight_hr_{suffix}"
    return names


def _layer_count(native: dict[Any, Any]) -> int:
    """Layers named by the keys; a gap is reported before any per-layer work.

    (A key such as ``weight_ih_l3000000`` must not make us enumerate three
    million layers' names.)
    """
    strange = [key for key in native if not isinstance(key, str)]
    if strange:
        raise c.UnexpectedKeyError(
            f"{NAME} state_dict: key {strange[0]!r} ({type(strange[0]).__name__}) is not a "
            "string; state_dict keys are parameter names such as 'weight_ih_l0'"
        )
    named = {int(m[1]): key for key in native if (m := _LAYER_KEY.search(key))}
    if not named:
        keys = sorted(native)[:10]
        raise c.MissingKeyError(f"{NAME} state_dict: no layer keys such as 'weight_ih_l0' "
                                f"(keys: {brief(keys)})")
    count = max(named) + 1
    absent = next((k for k in range(count) if k not in named), None)  # at most len(named) steps
    if absent is not None:
        raise c.MissingKeyError(
            f"{NAME} state_dict: missing 'weight_ih_l{absent}' (layer {absent}), "
            f"although {named[count - 1]!r} names layer {count - 1}"
        )
    if count > MAX_LAYERS:  # no gap: as many keys as layers, so this is the spec's own cap
        raise c.UnexpectedKeyError(f"{NAME} state_dict: key {named[count - 1]!r} names layer "
                                   f"{count - 1}, expected at most {MAX_LAYERS} layers")
    return count


def _infer_spec(native: dict[str, Any], cell: str) -> LSTMSpec:
    # Count layers from every key, so one missing key is reported as missing, not as extra.
    layers = _layer_count(native)
    if "weight_ih_l0" not in native:
        raise c.MissingKeyError(
            f"{NAME} state_dict: missing 'weight_ih_l0' (keys: {sorted(native)})"
        )
    directions = 2 if any(key.endswith("_reverse") for key in native) else 1
    first = c.as_weight(native["weight_ih_l0"], "weight_ih_l0")
    gates = LSTMSpec(1, 1, cell=cell).gate_count
    c.expect_ndim(first, "weight_ih_l0", 2, f"({gates}H, I)")
    units = c.gate_units(first, "weight_ih_l0", axis=0, gates=gates)
    # The recurrent width is the output size: H, or P when there is a projection.
    projection = None
    if "weight_hh_l0" in native:
        recurrent = c.as_weight(native["weight_hh_l0"], "weight_hh_l0")
        c.expect_ndim(recurrent, "weight_hh_l0", 2, f"({gates}H, H or P)")
        if cell == "lstm" and ("weight_hr_l0" in native or recurrent.shape[1] < units):
            projection = recurrent.shape[1]  # PyTorch needs P < H
    return LSTMSpec(first.shape[1], units, layers, directions, projection_size=projection,
                    cell=cell)


def to_canonical(native: Any, *, cell: str = "lstm") -> LSTMWeights:
    """state_dict -> canonical (layers, directions and proj_size read from the keys);
    ``cell="gru"`` reads an ``nn.GRU``'s."""
    native = dict(c.expect_mapping(native, f"{NAME} state_dict"))
    spec = _infer_spec(native, c.known_cell(cell, NAME, SUPPORTED))
    projection = spec.projection_size is not None
    expected = [
        key_names(k, d, projection) for k in range(spec.layers) for d in range(spec.directions)
    ]
    c.check_keys(
        native, [key for names in expected for key in names.values()], (), f"{NAME} state_dict"
    )
    arrays = {key: c.as_weight(value, key) for key, value in native.items()}
    spec = spec.replace(dtype=c.common_dtype(arrays.items()))
    cells = []
    for n, names in enumerate(expected):
        shapes = expected_shapes(spec, n // spec.directions)
        for field, key in names.items():
            c.expect_shape(arrays[key], key, shapes[field])
        cells.append(CellWeights(**{field: arrays[key].copy() for field, key in names.items()}))
    return c.build(spec, cells)


def from_canonical(weights: LSTMWeights) -> dict[str, np.ndarray]:
    """Canonical -> state_dict of numpy arrays (forget offset folded into bias_ih)."""
    c.refuse_features(weights.spec, NAME, SUPPORTED)
    weights = weights.with_folded_forget_bias()
    projection = weights.spec.projection_size is not None
    native = {}
    for layer, direction, cell in weights.iter_cells():
        for field, key in key_names(layer, direction, projection).items():
            native[key] = c.copy_out(getattr(cell, field))
    return native
