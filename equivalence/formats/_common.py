"""Checks and small transforms shared by every format module.

Everything that touches user-supplied arrays goes through :func:`as_weight`
first, so every format reports bad input the same way, and nothing here
writes into a caller's array.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Integral
from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.errors import (
    ConversionError,
    MissingKeyError,
    ShapeError,
    UnexpectedKeyError,
    UnsupportedFeatureError,
    WeightValueError,
    describe,
)
from equivalence.spec import DTYPES, MAX_ELEMENTS, LSTMSpec, all_finite, dtype_name

# Narrow float types no LSTM runs in (ml_dtypes / torch float8, float6, float4): widened
# to float32, which holds every one of their values exactly.
_NARROW_FLOATS = ("float8_", "float6_", "float4_")


def as_weight(value: Any, field: str) -> np.ndarray:
    """A float numpy array from an array, tensor or nested list; refuse anything else.

    Accepts float16, bfloat16 (ml_dtypes), float32 and float64, numpy or torch;
    float8 and narrower are widened to float32 (exactly).
    """
    if _is_torch_tensor(value):
        value = _torch_to_numpy(value, field)
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists, self-referential lists, odd objects
        what = "an object whose __array__ raised" if hasattr(type(value), "__array__") else (
            f"a {type(value).__name__} that raised")
        raise WeightValueError(f"{field}: cannot be read as an array ({what} "
                               f"{describe(exc)})") from exc
    # Sized by the shape, before any element is touched: a broadcast view of 4e12
    # elements takes no memory, but reducing or copying it would never end.
    check_elements(array.shape, field)
    if array.dtype.kind == "V" and dtype_name(array.dtype).startswith(_NARROW_FLOATS):
        array = array.astype(np.float32)
    if dtype_name(array.dtype) not in DTYPES:
        expected = "a floating dtype" if array.dtype.kind != "f" else f"one of {DTYPES}"
        raise WeightValueError(f"{field}: dtype {array.dtype}, expected {expected}")
    if array.size == 0:
        raise ShapeError(field, tuple(array.shape), "a non-empty array",
                         "every LSTM weight has at least one element")
    if not all_finite(array):
        raise WeightValueError(f"{field}: contains NaN or infinity")
    return array


def _is_torch_tensor(value: Any) -> bool:
    # Duck typing keeps torch out of the import graph.
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def _torch_to_numpy(tensor: Any, field: str) -> np.ndarray:
    """A CPU numpy copy of a dense tensor; bfloat16 stays bfloat16 (through float32, exact)."""
    try:
        tensor = tensor.detach()
        shape = tuple(int(n) for n in tensor.shape)
    except Exception as exc:  # a tensor subclass that refuses even this much
        raise WeightValueError(f"{field}: tensor cannot be read ({describe(exc)})") from exc
    check_elements(shape, field)  # before .float() or .cpu() copies an expand()ed tensor
    if getattr(tensor, "is_meta", False):
        raise WeightValueError(f"{field}: a meta tensor holds no values (load the real weights)")
    layout = str(getattr(tensor, "layout", "torch.strided"))
    if layout != "torch.strided" or getattr(tensor, "is_nested", False):
        raise WeightValueError(
            f"{field}: {layout} tensor, expected a dense (strided) tensor; call .to_dense() first"
        )
    if getattr(tensor, "is_quantized", False):
        raise WeightValueError(f"{field}: quantized tensor, expected floating weights; "
                               "call .dequantize() first")
    dtype = str(tensor.dtype).removeprefix("torch.")
    try:
        tensor = tensor.cpu().resolve_conj().resolve_neg()
        if dtype == "bfloat16" or dtype.startswith(_NARROW_FLOATS):
            array = tensor.float().numpy()
            return array.astype(_ml_dtype("bfloat16")) if dtype == "bfloat16" else array
        return tensor.numpy()
    except Exception as exc:  # whatever else a tensor subclass refuses to hand over
        raise WeightValueError(f"{field}: {dtype} tensor cannot be read ({describe(exc)})"
                               ) from exc


def check_elements(shape: tuple[int, ...], field: str) -> None:
    """Refuse an array of more than :data:`MAX_ELEMENTS` elements, counted from its shape."""
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise ShapeError(field, shape, f"at most {MAX_ELEMENTS:.3g} elements (MAX_ELEMENTS)",
                         f"{count:.3g} elements, more than any LSTM weight")


def _ml_dtype(name: str) -> np.dtype:
    import ml_dtypes  # only needed for bfloat16 input, which already implies it is installed

    return np.dtype(getattr(ml_dtypes, name))


def expect_shape(array: np.ndarray, field: str, expected: tuple[int, ...], why: str = "") -> None:
    if tuple(array.shape) != tuple(expected):
        raise ShapeError(field, tuple(array.shape), tuple(expected), why)


def expect_ndim(array: np.ndarray, field: str, ndim: int, layout: str) -> None:
    if array.ndim != ndim:
        raise ShapeError(field, tuple(array.shape), layout, f"expected {ndim} dimensions")


def gate_units(array: np.ndarray, field: str, axis: int, gates: int = 4) -> int:
    """H from a dimension that must hold ``gates`` gate blocks (4 for an LSTM, 3 for a GRU)."""
    if array.ndim <= axis:
        raise ShapeError(field, tuple(array.shape), f"{gates}*H along axis {axis}",
                         f"expected at least {axis + 1} dimension(s)")
    size = array.shape[axis]
    if size == 0 or size % gates:
        raise ShapeError(
            field,
            tuple(array.shape),
            f"{gates}*H along axis {axis}",
            f"the gate dimension must be a positive multiple of {gates}",
        )
    return size // gates


def expect_mapping(native: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(native, Mapping):
        raise ConversionError(f"{field}: got {type(native).__name__}, expected a dict")
    return native


def expect_sequence(native: Any, field: str) -> Sequence[Any]:
    if isinstance(native, (str, bytes, Mapping)) or not isinstance(native, Sequence):
        raise ConversionError(f"{field}: got {type(native).__name__}, expected a list")
    return native


def layer_grid(
    native: Any, field: str, tree: Any = expect_mapping
) -> list[list[Mapping[str, Any]]]:
    """``cells[layer][direction]`` from one cell's tree or a list over layers of ``[forward]``
    or ``[forward, backward]`` trees (the neoml, flax and mlx stacks); ``tree(value, field)``
    checks (and may unwrap) each one."""
    if isinstance(native, Mapping):
        return [[tree(native, field)]]
    layers = expect_sequence(native, field)
    if not layers:
        raise ShapeError(field, "0 layers", "at least 1 layer")
    grid = [
        [tree(item, f"{field}[{k}][{j}]")
         for j, item in enumerate(expect_sequence(row, f"{field}[{k}]"))]
        for k, row in enumerate(layers)
    ]
    counts = [len(row) for row in grid]
    if set(counts) - {1, 2} or len(set(counts)) != 1:
        raise ShapeError(field, counts, "1 or 2 directions, the same in every layer")
    return grid


def write_grid(
    weights: LSTMWeights, target: str, supported: Iterable[str],
    write_cell: Callable[[CellWeights], Any],
) -> Any:
    """Canonical -> one cell's tree (a single cell) or a list over layers of direction lists
    (the neoml, flax and mlx stacks), each cell written by ``write_cell`` with the forget
    offset folded in; a feature ``target`` cannot hold is refused by name."""
    refuse_features(weights.spec, target, supported)
    weights = weights.with_folded_forget_bias()
    layers = [[write_cell(cell) for cell in per_direction] for per_direction in weights.cells]
    return layers[0][0] if len(layers) == 1 and len(layers[0]) == 1 else layers


def read_grid(
    layers: Sequence[Sequence[Any]], spec: LSTMSpec,
    read_cell: Callable[[Any, str, LSTMSpec, int], tuple[CellWeights, list[tuple[str, Any]]]],
) -> LSTMWeights:
    """A list over layers of direction lists (the neoml and mlx stacks) -> canonical: each
    cell read by ``read_cell(item, where, spec, layer)``, which returns its weights and its
    arrays by name, so the stack's one dtype is checked across every cell."""
    cells, named = [], []
    for k, per_direction in enumerate(layers):
        for j, item in enumerate(per_direction):
            where = f"layer {k}" + ("" if spec.directions == 1 else (" forward", " backward")[j])
            weights, arrays = read_cell(item, where, spec, k)
            cells.append(weights)
            named += arrays
    return build(spec.replace(dtype=common_dtype(named)), cells)


def check_keys(
    found: Iterable[str], required: Iterable[str], optional: Iterable[str], where: str
) -> None:
    """Missing required keys and keys outside required+optional are both errors."""
    found, required = set(found), set(required)
    missing = sorted(required - found, key=str)
    if missing:
        raise MissingKeyError(f"{where}: missing {missing}")
    extra = sorted(found - required - set(optional), key=str)
    if extra:
        raise UnexpectedKeyError(
            f"{where}: unexpected {extra}, expected only {sorted(required | set(optional))}"
        )


def common_dtype(named: Iterable[tuple[str, np.ndarray]]) -> str:
    """The one dtype the native arrays share (mixing is an error: it hides precision loss).

    ``named`` yields ``(field, array)``; the message names the first array whose
    dtype differs from the majority and one array of the majority (so a tie is clear too).
    """
    named = list(named)
    counts = Counter(dtype_name(array.dtype) for _, array in named)
    majority = counts.most_common(1)[0][0]
    if len(counts) > 1:
        odd, dtype = next((f, a.dtype.name) for f, a in named if a.dtype.name != majority)
        usual = next(f for f, a in named if a.dtype.name == majority)
        more = counts[majority] - 1
        others = f"{usual!r}" + (f" and {more} other weights are" if more else " is")
        raise WeightValueError(
            f"{odd}: dtype {dtype}, but {others} {majority}; convert them to one dtype first"
        )
    return majority


def known_cell(cell: object, fmt: str, supported: Iterable[str]) -> str:
    """``cell`` checked: a cell type the format declares (``cell=gru`` in ``supported``)."""
    held = {"lstm"} | {f.split("=", 1)[1] for f in supported if f.startswith("cell=")}
    if not isinstance(cell, str) or cell not in held:
        raise UnsupportedFeatureError(fmt, f"cell={str(cell)[:40]}")
    return cell


def refuse_features(spec: LSTMSpec, target: str, supported: Iterable[str]) -> None:
    """Raise UnsupportedFeatureError for the first spec feature ``target`` cannot hold.

    ``supported`` uses the names of :meth:`LSTMSpec.features`; forget_bias is
    always acceptable because writers fold it into the bias.
    """
    allowed = set(supported) | {"forget_bias"}
    for feature in spec.features():
        if feature not in allowed:
            raise UnsupportedFeatureError(target, feature)


def copy_out(array: np.ndarray) -> np.ndarray:
    """A fresh contiguous array, so callers never share memory with our inputs."""
    return np.array(array, copy=True, order="C")


def grouped(
    cells: Sequence[CellWeights], spec_layers: int, directions: int
) -> tuple[tuple[CellWeights, ...], ...]:
    """Flat layer-major list of cells -> ``cells[layer][direction]``."""
    return tuple(tuple(cells[k * directions : (k + 1) * directions]) for k in range(spec_layers))


def build(spec: LSTMSpec, cells: Sequence[CellWeights]) -> LSTMWeights:
    """Assemble and validate canonical weights from a flat layer-major cell list."""
    return LSTMWeights(spec, grouped(cells, spec.layers, spec.directions))


def permute_gates(array: np.ndarray, order: Sequence[int], axis: int = 0) -> np.ndarray:
    """Reorder the 4 gate blocks along ``axis``: block k of the result is block order[k]."""
    blocks = np.split(array, len(order), axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


def inverse_order(order: Sequence[int]) -> list[int]:
    inverse = [0] * len(order)
    for position, source in enumerate(order):
        inverse[source] = position
    return inverse


def check_layer_count(count: int, per_layer: int, directions: int, field: str) -> int:
    """Number of layers from a flat list of ``count`` items, ``per_layer`` per direction."""
    group = per_layer * directions
    if count == 0 or count % group:
        raise ShapeError(
            field,
            f"{count} arrays",
            f"a positive multiple of {group}",
            f"{per_layer} arrays per LSTM and {directions} direction(s) per layer",
        )
    return count // group


def check_directions(directions: Any) -> int:
    if isinstance(directions, bool) or not isinstance(directions, Integral) or (
        directions not in (1, 2)
    ):
        raise ConversionError(f"directions: {directions!r}, expected 1 or 2")
    return int(directions)
