"""Flax LSTM cell parameters.

Native form for one layer and direction, by ``variant``:

* ``"linen"`` (``nn.LSTMCell``) and ``"linen_optimized"``
  (``nn.OptimizedLSTMCell``, same tree): one dense per gate,
  ``{ii, if, ig, io: {kernel (I, H)}, hi, hf, hg, ho: {kernel (H, H), bias (H)}}``;
* ``"nnx"`` (``nnx.OptimizedLSTMCell``): ``{dense_i: {kernel (I, 4H)},
  dense_h: {kernel (H, 4H), bias (4H)}}``, gate columns i f g o.

One bias, on the hidden side. A stack is a list over layers of ``[forward]``
or ``[forward, backward]`` trees. Reading detects the variant; a top-level
``{"params": ...}`` wrapper and nnx ``Variable`` leaves are unwrapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..canonical import CellWeights, LSTMWeights
from ..spec import LSTMSpec
from . import _common as c

NAME = "flax"
SUPPORTED = frozenset({"stacked layers", "bidirectional"})
VARIANTS = ("linen", "linen_optimized", "nnx")
GATES = ("i", "f", "g", "o")


def _leaf(value: Any, field: str) -> np.ndarray:
    return c.as_weight(getattr(value, "value", value), field)


def _unwrap(tree: Any, field: str) -> Mapping[str, Any]:
    tree = c.expect_mapping(tree, field)
    return tree["params"] if set(tree) == {"params"} else tree


def _layers(native: Any) -> list[list[Mapping[str, Any]]]:
    if isinstance(native, Mapping):
        return [[_unwrap(native, f"{NAME} params")]]
    layers = c.expect_sequence(native, f"{NAME} params")
    if not layers:
        raise c.ShapeError(f"{NAME} params", "0 layers", "at least 1 layer")
    result = [
        [
            _unwrap(t, f"{NAME} params[{k}][{j}]")
            for j, t in enumerate(c.expect_sequence(d, f"{NAME} params[{k}]"))
        ]
        for k, d in enumerate(layers)
    ]
    if {len(p) for p in result} - {1, 2} or len({len(p) for p in result}) != 1:
        raise c.ShapeError(
            f"{NAME} params", [len(p) for p in result], "1 or 2 directions, the same in every layer"
        )
    return result


def _read_linen(tree: Mapping[str, Any], where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kernel_in (I, 4H), kernel_h (H, 4H), bias (4H)) from per-gate denses."""
    c.check_keys(tree, [f"{s}{g}" for s in "ih" for g in GATES], (), f"{NAME} {where}")
    for g in GATES:
        c.check_keys(
            c.expect_mapping(tree[f"i{g}"], f"{where} i{g}"), ["kernel"], (), f"{where} i{g}"
        )
        c.check_keys(
            c.expect_mapping(tree[f"h{g}"], f"{where} h{g}"),
            ["kernel", "bias"],
            (),
            f"{where} h{g}",
        )
    kin = [_leaf(tree[f"i{g}"]["kernel"], f"{where} i{g}.kernel") for g in GATES]
    kh = [_leaf(tree[f"h{g}"]["kernel"], f"{where} h{g}.kernel") for g in GATES]
    bias = [_leaf(tree[f"h{g}"]["bias"], f"{where} h{g}.bias") for g in GATES]
    # H by majority over the 12 arrays, so the one odd array is the one named
    sizes = [a.shape[-1] for a in kin + kh + bias if a.ndim]
    units = max(set(sizes), key=sizes.count)
    for g, a, b, d in zip(GATES, kin, kh, bias, strict=True):
        c.expect_ndim(a, f"{where} i{g}.kernel", 2, "(I, H)")
        c.expect_shape(a, f"{where} i{g}.kernel", (kin[0].shape[0], units))
        c.expect_shape(b, f"{where} h{g}.kernel", (units, units))
        c.expect_shape(d, f"{where} h{g}.bias", (units,))
    return np.concatenate(kin, axis=1), np.concatenate(kh, axis=1), np.concatenate(bias)


def _read_nnx(tree: Mapping[str, Any], where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c.check_keys(tree, ["dense_i", "dense_h"], (), f"{NAME} {where}")
    c.check_keys(
        c.expect_mapping(tree["dense_i"], f"{where} dense_i"), ["kernel"], (), f"{where} dense_i"
    )
    c.check_keys(
        c.expect_mapping(tree["dense_h"], f"{where} dense_h"),
        ["kernel", "bias"],
        (),
        f"{where} dense_h",
    )
    kin = _leaf(tree["dense_i"]["kernel"], f"{where} dense_i.kernel")
    kh = _leaf(tree["dense_h"]["kernel"], f"{where} dense_h.kernel")
    bias = _leaf(tree["dense_h"]["bias"], f"{where} dense_h.bias")
    c.expect_ndim(kin, f"{where} dense_i.kernel", 2, "(I, 4H)")
    units = c.gate_units(kin, f"{where} dense_i.kernel", axis=1)
    c.expect_shape(kh, f"{where} dense_h.kernel", (units, 4 * units))
    c.expect_shape(bias, f"{where} dense_h.bias", (4 * units,))
    return kin, kh, bias


def to_canonical(native: Any) -> LSTMWeights:
    """Flax params (any variant, detected from the tree) -> canonical."""
    layers = _layers(native)
    reader = _read_nnx if "dense_i" in layers[0][0] else _read_linen
    read = [
        reader(tree, f"layer {k}" + ("" if len(p) == 1 else (" forward", " backward")[j]))
        for k, p in enumerate(layers)
        for j, tree in enumerate(p)
    ]
    kin0, kh0, _ = read[0]
    spec = LSTMSpec(
        kin0.shape[0],
        kh0.shape[0],
        len(layers),
        len(layers[0]),
        dtype=c.common_dtype(a for triple in read for a in triple),
    )
    for n, (kin, _kh, _b) in enumerate(read):
        layer = n // spec.directions
        c.expect_shape(
            kin, f"layer {layer} input kernel", (spec.layer_input_size(layer), 4 * spec.units)
        )
    cells = [
        CellWeights(
            w_input=kin.T.copy(),
            w_recurrent=kh.T.copy(),
            b_input=bias.copy(),
            b_recurrent=np.zeros_like(bias),
        )
        for kin, kh, bias in read
    ]
    return c.build(spec, cells)


def from_canonical(weights: LSTMWeights, *, variant: str = "linen") -> Any:
    """Canonical -> Flax params of ``variant`` (one tree, or a list per layer)."""
    if variant not in VARIANTS:
        raise c.ConversionError(f"variant: {variant!r}, expected one of {VARIANTS}")
    c.refuse_features(weights.spec, NAME, SUPPORTED)
    weights = weights.with_folded_forget_bias()
    write = _write_nnx if variant == "nnx" else _write_linen
    layers = [[write(cell) for cell in per_direction] for per_direction in weights.cells]
    return layers[0][0] if len(layers) == 1 and len(layers[0]) == 1 else layers


def _write_linen(cell: CellWeights) -> dict[str, dict[str, np.ndarray]]:
    kin, kh, bias = (
        np.split(a, 4, axis=-1) for a in (cell.w_input.T, cell.w_recurrent.T, cell.bias())
    )
    tree = {f"i{g}": {"kernel": c.copy_out(kin[n])} for n, g in enumerate(GATES)}
    tree.update(
        {
            f"h{g}": {"kernel": c.copy_out(kh[n]), "bias": c.copy_out(bias[n])}
            for n, g in enumerate(GATES)
        }
    )
    return tree


def _write_nnx(cell: CellWeights) -> dict[str, dict[str, np.ndarray]]:
    return {
        "dense_i": {"kernel": c.copy_out(cell.w_input.T)},
        "dense_h": {"kernel": c.copy_out(cell.w_recurrent.T), "bias": c.copy_out(cell.bias())},
    }
