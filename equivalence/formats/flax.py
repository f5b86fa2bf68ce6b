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

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.formats import _common as c
from equivalence.spec import LSTMSpec

NAME = "flax"
SUPPORTED = frozenset({"stacked layers", "bidirectional"})
VARIANTS = ("linen", "linen_optimized", "nnx")
GATES = ("i", "f", "g", "o")


def _leaf(value: Any, field: str) -> np.ndarray:
    return c.as_weight(getattr(value, "value", value), field)


def unwrap(tree: Any, field: str) -> Mapping[str, Any]:
    tree = c.expect_mapping(tree, field)
    if set(tree) == {"params"}:
        return c.expect_mapping(tree["params"], f"{field}['params']")
    return tree


Named = list[tuple[str, np.ndarray]]
Read = tuple[np.ndarray, np.ndarray, np.ndarray, str, Named]


def _majority(values: list[int]) -> int:
    # The most common size decides, so the one odd array is the one named.
    return Counter(values).most_common(1)[0][0]


def _read_linen(tree: Mapping[str, Any], where: str) -> Read:
    """Per-gate denses -> kernel_in (I, 4H), kernel_h (H, 4H), bias (4H), input field, leaves."""
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
    places = [(f"i{g}", "kernel") for g in GATES] + [
        (f"h{g}", part) for g in GATES for part in ("kernel", "bias")
    ]
    leaves = [
        (f"{where} {dense}.{part}", _leaf(tree[dense][part], f"{where} {dense}.{part}"))
        for dense, part in places
    ]
    arrays = dict(leaves)
    kin = [arrays[f"{where} i{g}.kernel"] for g in GATES]
    kh = [arrays[f"{where} h{g}.kernel"] for g in GATES]
    bias = [arrays[f"{where} h{g}.bias"] for g in GATES]
    for g, a in zip(GATES, kin, strict=True):
        c.expect_ndim(a, f"{where} i{g}.kernel", 2, "(I, H)")
    rows = _majority([a.shape[0] for a in kin])
    units = _majority([a.shape[-1] for a in kin + kh + bias if a.ndim])
    for g, a, b, d in zip(GATES, kin, kh, bias, strict=True):
        c.expect_shape(a, f"{where} i{g}.kernel", (rows, units))
        c.expect_shape(b, f"{where} h{g}.kernel", (units, units))
        c.expect_shape(d, f"{where} h{g}.bias", (units,))
    joined = np.concatenate(kin, axis=1), np.concatenate(kh, axis=1), np.concatenate(bias)
    return (*joined, f"{where} ii.kernel", leaves)


def _read_nnx(tree: Mapping[str, Any], where: str) -> Read:
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
    names = [f"{where} dense_i.kernel", f"{where} dense_h.kernel", f"{where} dense_h.bias"]
    kin = _leaf(tree["dense_i"]["kernel"], names[0])
    kh = _leaf(tree["dense_h"]["kernel"], names[1])
    bias = _leaf(tree["dense_h"]["bias"], names[2])
    c.expect_ndim(kin, names[0], 2, "(I, 4H)")
    units = c.gate_units(kin, names[0], axis=1)
    c.expect_shape(kh, names[1], (units, 4 * units))
    c.expect_shape(bias, names[2], (4 * units,))
    return kin, kh, bias, names[0], list(zip(names, (kin, kh, bias), strict=True))


def to_canonical(native: Any) -> LSTMWeights:
    """Flax params (any variant, detected from the tree) -> canonical."""
    layers = c.layer_grid(native, f"{NAME} params", unwrap)
    reader = _read_nnx if "dense_i" in layers[0][0] else _read_linen
    read = [
        reader(tree, f"layer {k}" + ("" if len(p) == 1 else (" forward", " backward")[j]))
        for k, p in enumerate(layers)
        for j, tree in enumerate(p)
    ]
    kin0, kh0 = read[0][:2]
    spec = LSTMSpec(
        kin0.shape[0],
        kh0.shape[0],
        len(layers),
        len(layers[0]),
        dtype=c.common_dtype(leaf for *_, leaves in read for leaf in leaves),
    )
    for n, (kin, _kh, _b, field, _leaves) in enumerate(read):
        layer = n // spec.directions
        c.expect_shape(kin, field, (spec.layer_input_size(layer), 4 * spec.units),
                       "all of a cell's input kernels share this shape" if field.endswith(
                           "ii.kernel") else "")
    cells = [
        CellWeights(
            w_input=kin.T.copy(),
            w_recurrent=kh.T.copy(),
            b_input=bias.copy(),
            b_recurrent=np.zeros_like(bias),
        )
        for kin, kh, bias, _field, _leaves in read
    ]
    return c.build(spec, cells)


def from_canonical(weights: LSTMWeights, *, variant: str = "linen") -> Any:
    """Canonical -> Flax params of ``variant`` (one tree, or a list per layer)."""
    if variant not in VARIANTS:
        raise c.ConversionError(f"variant: {variant!r}, expected one of {VARIANTS}")
    return c.write_grid(weights, NAME, SUPPORTED, _write_nnx if variant == "nnx" else _write_linen)


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
