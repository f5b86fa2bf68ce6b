"""The canonical weight form every format converts to and from.

One :class:`CellWeights` per layer and direction, gates in the cell's canonical
order (LSTM i f g o, GRU r z n: :mod:`equivalence.cells`), matrices
left-multiplying (``W @ x``, PyTorch's orientation). Input and recurrent biases
are kept apart so that two-bias formats round-trip exactly; one-bias formats
read and write their sum.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from equivalence.errors import ConversionError, ShapeError, SpecError, WeightValueError
from equivalence.spec import DTYPES, LSTMSpec, all_finite, dtype_name, finite_number

GATES = ("i", "f", "g", "o")


@dataclass(frozen=True)
class CellWeights:
    """One layer, one direction.

    With G gates (4 for an LSTM, 3 for a GRU): ``w_input`` (GH, in),
    ``w_recurrent`` (GH, O), ``b_input`` (GH), ``b_recurrent`` (GH); LSTMs only:
    ``peephole`` (3, H) rows i, f, o or None, ``projection`` (P, H) or None.
    """

    w_input: np.ndarray
    w_recurrent: np.ndarray
    b_input: np.ndarray
    b_recurrent: np.ndarray
    peephole: np.ndarray | None = None
    projection: np.ndarray | None = None

    def bias(self) -> np.ndarray:
        """The summed bias a one-bias format stores."""
        return self.b_input + self.b_recurrent

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays that are present (for iteration and comparison)."""
        names = ("w_input", "w_recurrent", "b_input", "b_recurrent", "peephole", "projection")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True)
class LSTMWeights:
    """A whole stack: ``cells[layer][direction]`` plus the spec they follow."""

    spec: LSTMSpec
    cells: tuple[tuple[CellWeights, ...], ...]

    def __post_init__(self) -> None:
        validate(self)

    def cell(self, layer: int, direction: int) -> CellWeights:
        return self.cells[layer][direction]

    def iter_cells(self):
        """Yield ``(layer, direction, cell)`` bottom-up, forward first."""
        for layer, per_direction in enumerate(self.cells):
            for direction, cell in enumerate(per_direction):
                yield layer, direction, cell

    def map_cells(self, fn) -> LSTMWeights:
        """A copy with ``fn(layer, direction, cell) -> cell`` applied to every cell."""
        cells = tuple(
            tuple(fn(layer, d, cell) for d, cell in enumerate(per_direction))
            for layer, per_direction in enumerate(self.cells)
        )
        return LSTMWeights(self.spec, cells)

    def astype(self, dtype: str) -> LSTMWeights:
        """Every array cast to ``dtype``; the spec's dtype follows."""

        def cast(_layer: int, _direction: int, cell: CellWeights) -> CellWeights:
            return replace(
                cell, **{k: v.astype(_numpy_dtype(dtype)) for k, v in cell.arrays().items()}
            )

        return LSTMWeights(self.spec.replace(dtype=dtype), self.map_cells(cast).cells)

    def with_folded_forget_bias(self) -> LSTMWeights:
        """Fold ``spec.forget_bias`` into the f slice of ``b_input`` (spec offset becomes 0)."""
        offset = self.spec.forget_bias
        if offset == 0.0:
            return self
        units = self.spec.units

        def fold(_layer: int, _direction: int, cell: CellWeights) -> CellWeights:
            b_input = cell.b_input.copy()
            b_input[units : 2 * units] += offset
            return replace(cell, b_input=b_input)

        folded = self.map_cells(fold)
        return LSTMWeights(self.spec.replace(forget_bias=0.0), folded.cells)

    def with_merged_biases(self) -> LSTMWeights:
        """Biases summed into ``b_input`` (how a one-bias format sees these weights)."""

        def merge(_layer: int, _direction: int, cell: CellWeights) -> CellWeights:
            return replace(cell, b_input=cell.bias(), b_recurrent=np.zeros_like(cell.b_recurrent))

        return self.map_cells(merge)


def expected_shapes(spec: LSTMSpec, layer: int) -> dict[str, tuple[int, ...]]:
    """Canonical shape of every array of ``layer`` under ``spec``."""
    units, out = spec.units, spec.output_size
    rows = spec.gate_count * units
    shapes = {
        "w_input": (rows, spec.layer_input_size(layer)),
        "w_recurrent": (rows, out),
        "b_input": (rows,),
        "b_recurrent": (rows,),
    }
    if spec.peepholes:
        shapes["peephole"] = (3, units)
    if spec.projection_size is not None:
        shapes["projection"] = (spec.projection_size, units)
    return shapes


def validate(weights: LSTMWeights) -> None:
    """Raise a ConversionError naming the first field that disagrees with the spec.

    Runs on every construction, so hand-built weights are checked like read ones;
    nested lists of cells become tuples.
    """
    spec = weights.spec
    if not isinstance(spec, LSTMSpec):
        raise SpecError(f"spec: got {type(spec).__name__}, expected LSTMSpec")
    cells = _as_tuple(weights.cells, "cells", f"{spec.layers} layers")
    if len(cells) != spec.layers:
        raise ShapeError("cells", f"{len(cells)} layers", f"{spec.layers} layers")
    rows = []
    for layer, per_direction in enumerate(cells):
        row = _as_tuple(per_direction, f"cells[{layer}]", f"{spec.directions} directions")
        if len(row) != spec.directions:
            raise ShapeError(
                f"cells[{layer}]", f"{len(row)} directions", f"{spec.directions} directions"
            )
        shapes = expected_shapes(spec, layer)
        for direction, cell in enumerate(row):
            _validate_cell(cell, shapes, f"cells[{layer}][{direction}]")
        rows.append(row)
    object.__setattr__(weights, "cells", tuple(rows))


def _as_tuple(value: object, field: str, expected: str) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise ConversionError(f"{field}: got {type(value).__name__}, expected a tuple of {expected}")


def _validate_cell(cell: object, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    if not isinstance(cell, CellWeights):
        raise ConversionError(f"{where}: got {type(cell).__name__}, expected CellWeights")
    present = cell.arrays()
    for name in ("peephole", "projection"):
        if name in present and name not in shapes:
            raise SpecError(f"{where}.{name}: present, but the spec does not enable it")
    for name, shape in shapes.items():
        if name not in present:
            raise ShapeError(f"{where}.{name}", "missing", shape)
        _validate_array(present[name], f"{where}.{name}", shape)


def _validate_array(array: object, field: str, shape: tuple[int, ...]) -> None:
    if not isinstance(array, np.ndarray):
        raise WeightValueError(f"{field}: got {type(array).__name__}, expected a numpy array")
    if dtype_name(array.dtype) not in DTYPES:
        raise WeightValueError(f"{field}: dtype {array.dtype}, expected one of {DTYPES}")
    if array.shape != shape:
        raise ShapeError(field, tuple(array.shape), shape)
    if not all_finite(array):
        raise WeightValueError(f"{field}: contains NaN or infinity")


def _numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes  # bfloat16 is not a numpy dtype; ml_dtypes ships with jax/tf

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def random_weights(spec: LSTMSpec, rng: np.random.Generator, scale: float = 0.5) -> LSTMWeights:
    """Uniform(-scale, scale) weights for ``spec`` in float64 (tests and benchmarks).

    The spec's size is capped when it is built (:data:`~equivalence.spec.MAX_ELEMENTS`),
    so nothing here allocates more than that.
    """
    if not isinstance(spec, LSTMSpec):
        raise SpecError(f"spec: got {type(spec).__name__}, expected LSTMSpec")
    if not isinstance(rng, np.random.Generator):
        raise ConversionError(
            f"rng: got {type(rng).__name__}, expected a numpy Generator (np.random.default_rng)"
        )
    scale = finite_number("scale", scale)
    cells = []
    for layer in range(spec.layers):
        shapes = expected_shapes(spec, layer)
        cells.append(
            tuple(
                CellWeights(**{n: rng.uniform(-scale, scale, s) for n, s in shapes.items()})
                for _ in range(spec.directions)
            )
        )
    return LSTMWeights(spec.replace(dtype="float64"), tuple(cells))
