"""Flax LSTM and GRU cell parameters.

Native form for one layer and direction, by ``variant``:

* ``"linen"`` (``nn.LSTMCell``) and ``"linen_optimized"``
  (``nn.OptimizedLSTMCell``, same tree): one dense per gate,
  ``{ii, if, ig, io: {kernel (I, H)}, hi, hf, hg, ho: {kernel (H, H), bias (H)}}``;
* ``"nnx"`` (``nnx.OptimizedLSTMCell``): ``{dense_i: {kernel (I, 4H)},
  dense_h: {kernel (H, 4H), bias (4H)}}``, gate columns i f g o.

One LSTM bias, on the hidden side. A stack is a list over layers of ``[forward]``
or ``[forward, backward]`` trees. Reading detects the variant; a top-level
``{"params": ...}`` wrapper and nnx ``Variable`` leaves are unwrapped.

GRUs (``cell="gru"``), gates r z n, reset_after=True only (flax 0.12.8 ``GRUCell``,
linen and nnx: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h):

* ``"linen"`` (``nn.GRUCell``): ``{ir, iz, in: {kernel (I, H), bias (H)},
  hr, hz: {kernel (H, H)}, hn: {kernel (H, H), bias (H)}}``. The input-side biases are
  canonical ``b_input``, ``hn.bias`` is ``b_hn``; reading is exact. Writing sums the r
  and z recurrent biases into ``ir.bias`` and ``iz.bias`` (``hr``, ``hz`` have none).
* ``"nnx"`` (``nnx.GRUCell``): ``{dense_i: {kernel (I, 3H), bias (3H)},
  dense_h: {kernel (H, 3H)}}``. No bias inside r * (...): a nonzero b_hn is refused
  by name on writing, never dropped. ``"linen_optimized"`` has no GRU: refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.errors import UnsupportedFeatureError
from equivalence.formats import _common as c
from equivalence.spec import LSTMSpec

NAME = "flax"
SUPPORTED = frozenset({"stacked layers", "bidirectional", "cell=gru"})
VARIANTS = ("linen", "linen_optimized", "nnx")
GATES = ("i", "f", "g", "o")
_GATES = {"lstm": GATES, "gru": ("r", "z", "n")}
_KB, _K = ("kernel", "bias"), ("kernel",)
# Each cell type's linen denses and their leaves, input side first (the order errors name).
_LINEN = {
    "lstm": {**{f"i{g}": _K for g in GATES}, **{f"h{g}": _KB for g in GATES}},
    "gru": {"ir": _KB, "iz": _KB, "in": _KB, "hr": _K, "hz": _K, "hn": _KB},
}
_NNX = {
    "lstm": {"dense_i": _K, "dense_h": _KB},
    "gru": {"dense_i": _KB, "dense_h": _K},
}


def _leaf(value: Any, field: str) -> np.ndarray:
    # an nnx Variable: get_value() where it exists (flax 0.12 deprecates .value), else .value
    getter = getattr(value, "get_value", None)
    return c.as_weight(getter() if callable(getter) else getattr(value, "value", value), field)


def unwrap(tree: Any, field: str) -> Mapping[str, Any]:
    tree = c.expect_mapping(tree, field)
    if set(tree) == {"params"}:
        return c.expect_mapping(tree["params"], f"{field}['params']")
    return tree


Named = list[tuple[str, np.ndarray]]
# kernel_in (I, gH), kernel_h (H, gH), canonical b_input and b_recurrent, input field, leaves
Read = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str, Named]


def _majority(values: list[int]) -> int:
    # The most common size decides, so the one odd array is the one named.
    return Counter(values).most_common(1)[0][0]


def _leaves(tree: Mapping[str, Any], layout: Mapping[str, tuple[str, ...]], where: str) -> Named:
    """Every leaf of ``layout`` in ``tree``, keys checked dense by dense."""
    c.check_keys(tree, layout, (), f"{NAME} {where}")
    for dense, parts in layout.items():
        c.check_keys(c.expect_mapping(tree[dense], f"{where} {dense}"), parts, (),
                     f"{where} {dense}")
    return [(f"{where} {dense}.{part}", _leaf(tree[dense][part], f"{where} {dense}.{part}"))
            for dense, parts in layout.items() for part in parts]


def _canonical_biases(cell: str, input_side: np.ndarray, hidden_side: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(b_input, b_recurrent): an LSTM's one bias stands as b_input; a GRU's sides map as
    they are (b_hr and b_hz are zeros: flax puts those biases on the input side)."""
    return (hidden_side, input_side) if cell == "lstm" else (input_side, hidden_side)


def _read_linen(tree: Mapping[str, Any], where: str, cell: str) -> Read:
    """Per-gate denses -> joined kernels and biases, checked gate by gate."""
    gates, layout = _GATES[cell], _LINEN[cell]
    leaves = _leaves(tree, layout, where)
    arrays = dict(leaves)
    kin = [arrays[f"{where} i{g}.kernel"] for g in gates]
    kh = [arrays[f"{where} h{g}.kernel"] for g in gates]
    biases = [(field, a) for field, a in leaves if field.endswith(".bias")]
    for g, a in zip(gates, kin, strict=True):
        c.expect_ndim(a, f"{where} i{g}.kernel", 2, "(I, H)")
    rows = _majority([a.shape[0] for a in kin])
    units = _majority([a.shape[-1] for a in kin + kh + [b for _, b in biases] if a.ndim])
    for g, a, b in zip(gates, kin, kh, strict=True):
        c.expect_shape(a, f"{where} i{g}.kernel", (rows, units))
        c.expect_shape(b, f"{where} h{g}.kernel", (units, units))
    for field, b in biases:
        c.expect_shape(b, field, (units,))
    zero = np.zeros(units, kin[0].dtype)

    def side(prefix: str) -> np.ndarray:  # one side's biases in gate order, zeros where none
        return np.concatenate([arrays.get(f"{where} {prefix}{g}.bias", zero) for g in gates])

    b_input, b_recurrent = _canonical_biases(cell, side("i"), side("h"))
    return (np.concatenate(kin, axis=1), np.concatenate(kh, axis=1), b_input, b_recurrent,
            f"{where} i{gates[0]}.kernel", leaves)


def _read_nnx(tree: Mapping[str, Any], where: str, cell: str) -> Read:
    """Two fused denses -> kernels and biases, the gate dimension checked."""
    gates = len(_GATES[cell])
    leaves = _leaves(tree, _NNX[cell], where)
    arrays = dict(leaves)
    names = [f"{where} dense_i.kernel", f"{where} dense_h.kernel"]
    kin, kh = arrays[names[0]], arrays[names[1]]
    c.expect_ndim(kin, names[0], 2, f"(I, {gates}H)")
    units = c.gate_units(kin, names[0], axis=1, gates=gates)
    c.expect_shape(kh, names[1], (units, gates * units))
    zero = np.zeros(gates * units, kin.dtype)
    sides = []
    for side in ("i", "h"):
        field = f"{where} dense_{side}.bias"
        if field in arrays:
            c.expect_shape(arrays[field], field, (gates * units,))
        sides.append(arrays.get(field, zero))
    b_input, b_recurrent = _canonical_biases(cell, *sides)
    return kin, kh, b_input, b_recurrent, names[0], leaves


def to_canonical(native: Any, *, cell: str = "lstm") -> LSTMWeights:
    """Flax params (any variant, detected from the tree) -> canonical; ``cell="gru"`` reads
    ``GRUCell`` params."""
    cell = c.known_cell(cell, NAME, SUPPORTED)
    layers = c.layer_grid(native, f"{NAME} params", unwrap)
    reader = _read_nnx if "dense_i" in layers[0][0] else _read_linen
    read = [
        reader(tree, f"layer {k}" + ("" if len(p) == 1 else (" forward", " backward")[j]), cell)
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
        cell=cell,
    )
    for n, (kin, _kh, _bi, _br, field, _leaves) in enumerate(read):
        layer = n // spec.directions
        c.expect_shape(kin, field, (spec.layer_input_size(layer), spec.gate_count * spec.units),
                       "" if field.endswith("dense_i.kernel") else
                       "all of a cell's input kernels share this shape")
    cells = [
        CellWeights(
            w_input=kin.T.copy(),
            w_recurrent=kh.T.copy(),
            b_input=b_input.copy(),
            b_recurrent=b_recurrent.copy(),
        )
        for kin, kh, b_input, b_recurrent, _field, _leaves in read
    ]
    return c.build(spec, cells)


def from_canonical(weights: LSTMWeights, *, variant: str = "linen") -> Any:
    """Canonical -> Flax params of ``variant`` (one tree, or a list per layer)."""
    if variant not in VARIANTS:
        raise c.ConversionError(f"variant: {variant!r}, expected one of {VARIANTS}")
    cell = weights.spec.cell
    if cell == "gru" and variant == "linen_optimized":
        raise UnsupportedFeatureError(NAME, "cell=gru", "variant 'linen_optimized' is "
                                      "nn.OptimizedLSTMCell's tree; nn.GRUCell's is 'linen'")
    write: Callable[[CellWeights], dict[str, dict[str, np.ndarray]]] = (
        (lambda one: _write_nnx(one, cell)) if variant == "nnx"
        else (lambda one: _write_linen(one, cell)))
    return c.write_grid(weights, NAME, SUPPORTED, write)


def _side_biases(cell: CellWeights, cell_type: str) -> dict[str, np.ndarray]:
    """The biases each side's denses carry ("i", "h"), gate blocks in canonical order."""
    if cell_type == "lstm":
        return {"h": cell.bias()}
    units = cell.w_recurrent.shape[1]
    # flax has no bias on hr and hz: the r and z recurrent biases join the input side's,
    # which sums with them before the gate; b_hn stays on hn, inside r * (...).
    moved = np.concatenate([cell.b_recurrent[:2 * units],
                            np.zeros_like(cell.b_recurrent[2 * units:])])
    return {"i": cell.b_input + moved, "h": cell.b_recurrent}


def _write_linen(cell: CellWeights, cell_type: str) -> dict[str, dict[str, np.ndarray]]:
    gates = _GATES[cell_type]
    blocks = {"i": np.split(cell.w_input.T, len(gates), axis=-1),
              "h": np.split(cell.w_recurrent.T, len(gates), axis=-1)}
    biases = {side: np.split(b, len(gates)) for side, b in _side_biases(cell, cell_type).items()}
    tree = {}
    for dense, parts in _LINEN[cell_type].items():
        side, gate = dense[0], gates.index(dense[1])
        tree[dense] = {"kernel": c.copy_out(blocks[side][gate])}
        if "bias" in parts:
            tree[dense]["bias"] = c.copy_out(biases[side][gate])
    return tree


def _write_nnx(cell: CellWeights, cell_type: str) -> dict[str, dict[str, np.ndarray]]:
    biases = _side_biases(cell, cell_type)
    units = cell.w_recurrent.shape[1]
    if cell_type == "gru" and np.any(cell.b_recurrent[2 * units:]):
        raise UnsupportedFeatureError(NAME, "b_hn (variant 'nnx')", "nnx.GRUCell's dense_h has "
                                      "no bias, and b_hn, inside r * (...), sums with nothing "
                                      "else; write variant 'linen' (nn.GRUCell)")
    kernels = {"dense_i": cell.w_input.T, "dense_h": cell.w_recurrent.T}
    tree = {}
    for dense, parts in _NNX[cell_type].items():
        tree[dense] = {"kernel": c.copy_out(kernels[dense])}
        if "bias" in parts:
            tree[dense]["bias"] = c.copy_out(biases[dense[-1]])
    return tree
