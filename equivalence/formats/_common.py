"""Checks and small transforms shared by every format module.

Everything that touches user-supplied arrays goes through :func:`as_weight`
first, so every format reports bad input the same way, and nothing here
writes into a caller's array.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..canonical import CellWeights, LSTMWeights
from ..errors import (
    ConversionError,
    MissingKeyError,
    ShapeError,
    UnexpectedKeyError,
    UnsupportedFeatureError,
    WeightValueError,
)
from ..spec import LSTMSpec


def as_weight(value: Any, field: str) -> np.ndarray:
    """A float numpy array from an array, tensor or nested list; refuse anything else."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and odd objects
        raise WeightValueError(f"{field}: cannot be read as an array ({exc})") from exc
    if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
        raise WeightValueError(f"{field}: dtype {array.dtype}, expected a floating dtype")
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise WeightValueError(f"{field}: contains NaN or infinity")
    return array


def expect_shape(array: np.ndarray, field: str, expected: tuple[int, ...], why: str = "") -> None:
    if tuple(array.shape) != tuple(expected):
        raise ShapeError(field, tuple(array.shape), tuple(expected), why)


def expect_ndim(array: np.ndarray, field: str, ndim: int, layout: str) -> None:
    if array.ndim != ndim:
        raise ShapeError(field, tuple(array.shape), layout, f"expected {ndim} dimensions")


def gate_units(array: np.ndarray, field: str, axis: int) -> int:
    """H from a dimension that must hold 4 gate blocks."""
    size = array.shape[axis]
    if size == 0 or size % 4:
        raise ShapeError(
            field,
            tuple(array.shape),
            f"4*H along axis {axis}",
            "the gate dimension must be a positive multiple of 4",
        )
    return size // 4


def expect_mapping(native: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(native, Mapping):
        raise ConversionError(f"{field}: got {type(native).__name__}, expected a dict")
    return native


def expect_sequence(native: Any, field: str) -> Sequence[Any]:
    if isinstance(native, (str, bytes, Mapping)) or not isinstance(native, Sequence):
        raise ConversionError(f"{field}: got {type(native).__name__}, expected a list")
    return native


def check_keys(
    found: Iterable[str], required: Iterable[str], optional: Iterable[str], where: str
) -> None:
    """Missing required keys and keys outside required+optional are both errors."""
    found, required = set(found), set(required)
    missing = sorted(required - found)
    if missing:
        raise MissingKeyError(f"{where}: missing {missing}")
    extra = sorted(found - required - set(optional))
    if extra:
        raise UnexpectedKeyError(
            f"{where}: unexpected {extra}, expected only {sorted(required | set(optional))}"
        )


def common_dtype(arrays: Iterable[np.ndarray]) -> str:
    """The one dtype the native arrays share (mixing is an error: it hides precision loss)."""
    names = sorted({a.dtype.name for a in arrays})
    if len(names) != 1:
        raise WeightValueError(f"weights mix dtypes {names}; convert them to one dtype first")
    return names[0]


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
    if directions not in (1, 2):
        raise ConversionError(f"directions: {directions!r}, expected 1 or 2")
    return int(directions)
