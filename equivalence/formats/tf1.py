"""TF1 ``tf.compat.v1.nn.rnn_cell.LSTMCell`` weights and checkpoint variable names.

Native forms:

* one layer, one direction: the list ``LSTMCell.get_weights()`` gives,
  ``[kernel (I+O, 4H), bias (4H)]``, then ``w_f_diag, w_i_diag, w_o_diag`` (H)
  with peepholes, then the projection kernel (H, P) with ``num_proj``;
* any stack: a dict of checkpoint variable names (see :func:`variable_name`).

The kernel stacks the input rows over the recurrent rows; gate columns are
i j f o (j is the cell candidate), so f and g swap against canonical. TF1
adds ``forget_bias`` (default 1.0) to the forget gate at run time: reading
folds it into the bias, writing subtracts it again. State order is (c, h).
``LSTMCell(activation=...)`` (applied to the candidate j and to c before the
output gate) is not in the variables: it travels beside them, as ``cell_clip`` does.

``GRUCell`` (``cell="gru"``; tf_keras 2.21 ``src/layers/rnn/legacy_cells.py``): the list
``[gates/kernel (I+H, 2H), gates/bias (2H), candidate/kernel (I+H, H), candidate/bias (H)]``,
or the same names under ``.../gru_cell/`` in the scopes above. Kernels stack the input rows
over the recurrent rows; gate columns are r then u (canonical z); the candidate's kernel
multiplies concat([x, r * h]) and h' = u * h + (1 - u) * c, so GRUCell is
``reset_after=False`` only (``True`` is refused by name). One bias per gate: writing sums
canonical b_input and b_recurrent, reading gives b_input and a zero b_recurrent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.errors import UnsupportedFeatureError
from equivalence.formats import _common as c
from equivalence.spec import ACTIVATIONS, LSTMSpec, finite_number

NAME = "tf1"
SUPPORTED = frozenset(
    {"stacked layers", "bidirectional", "projection", "projection_clip", "peepholes", "cell_clip"}
    | {f"activation={name}" for name in ACTIVATIONS}
    | {"cell=gru", "reset_after=False"}  # GRUCell: the reset gate on h, before the matmul
)
GATE_ORDER = (0, 2, 1, 3)  # TF1 column block k is canonical block GATE_ORDER[k]: i j f o
PEEPHOLE_PARTS = ("w_i_diag", "w_f_diag", "w_o_diag")  # canonical peephole rows i, f, o
LIST_PARTS = ("kernel", "bias", "w_f_diag", "w_i_diag", "w_o_diag", "projection/kernel")
# GRUCell's variables in creation order (its get_weights() list); gate columns r u.
GRU_PARTS = ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias")
DEFAULT_FORGET_BIAS = 1.0
_CELL_SCOPE = re.compile(r"cell_([0-9]+)")
# Per cell type: the layer's default scope name and its class name (for messages).
_SCOPES = {"lstm": "lstm_cell", "gru": "gru_cell"}
_CLASSES = {"lstm": "LSTMCell", "gru": "GRUCell"}


def _cell_parts(cell: str) -> tuple[str, ...]:
    return GRU_PARTS if cell == "gru" else LIST_PARTS


def variable_name(layer: int, direction: int, part: str, layers: int, directions: int,
                  cell: str = "lstm") -> str:
    """Checkpoint name that ``dynamic_rnn`` / ``bidirectional_dynamic_rnn`` give a variable
    (``cell="gru"``: a GRUCell's, scope ``gru_cell``, in the same stack scopes)."""
    scope = _SCOPES[cell]
    if directions == 1:
        stack = "rnn/" + (f"multi_rnn_cell/cell_{layer}/" if layers > 1 else "")
        return f"{stack}{scope}/{part}"
    side = ("fw", "bw")[direction]
    if layers == 1:
        return f"bidirectional_rnn/{side}/{scope}/{part}"
    return f"stack_bidirectional_rnn/cell_{layer}/bidirectional_rnn/{side}/{scope}/{part}"


def parse_name(name: str, cell: str = "lstm") -> tuple[int, int, str] | None:
    """(layer, direction, part) from a variable name, or None if it is not an LSTMCell's
    (``cell="gru"``: a GRUCell's)."""
    segments = name.split(":")[0].split("/")
    scope_name = _SCOPES[cell]
    cell_index = next((i for i, s in enumerate(segments) if s.startswith(scope_name)), None)
    if cell_index is None:
        return None
    part = "/".join(segments[cell_index + 1 :])
    if part not in _cell_parts(cell):
        return None
    # ASCII digits only (str.isdigit() also admits "²", which int() refuses), and few of them.
    cells = [m[1] for s in segments[:cell_index] if (m := _CELL_SCOPE.fullmatch(s))]
    if cells and len(cells[-1]) > 9:
        return None
    layer = int(cells[-1]) if cells else 0
    scope = segments[:cell_index]
    direction = 1 if "bw" in scope else 0
    return layer, direction, part


def _parts(spec: LSTMSpec) -> tuple[str, ...]:
    parts = ["kernel", "bias"]
    if spec.peepholes:
        parts += ["w_f_diag", "w_i_diag", "w_o_diag"]
    if spec.projection_size is not None:
        parts.append("projection/kernel")
    return tuple(parts)


def _part_shapes(spec: LSTMSpec, layer: int) -> dict[str, tuple[int, ...]]:
    units = spec.units
    shapes = {
        "kernel": (spec.layer_input_size(layer) + spec.output_size, 4 * units),
        "bias": (4 * units,),
    }
    for part in PEEPHOLE_PARTS:
        shapes[part] = (units,)
    if spec.projection_size is not None:
        shapes["projection/kernel"] = (units, spec.projection_size)
    return {part: shapes[part] for part in _parts(spec)}


def _list_to_variables(items: list[Any], cell: str) -> dict[str, Any]:
    """The single-cell list form -> variable dict (the count says which features)."""
    if cell == "gru":
        if len(items) != len(GRU_PARTS):
            raise c.ShapeError(f"{NAME} weights", f"{len(items)} arrays", "4 arrays",
                               "GRUCell.get_weights(): " + ", ".join(GRU_PARTS))
        return {variable_name(0, 0, part, 1, 1, cell): item
                for part, item in zip(GRU_PARTS, items, strict=True)}
    layouts = {
        2: ("kernel", "bias"),
        3: ("kernel", "bias", "projection/kernel"),
        5: ("kernel", "bias", "w_f_diag", "w_i_diag", "w_o_diag"),
        6: LIST_PARTS,
    }
    if len(items) not in layouts:
        raise c.ShapeError(
            f"{NAME} weights",
            f"{len(items)} arrays",
            "2, 3, 5 or 6 arrays",
            "[kernel, bias] + 3 peephole diagonals + projection kernel",
        )
    return {
        variable_name(0, 0, part, 1, 1): item
        for part, item in zip(layouts[len(items)], items, strict=True)
    }


@dataclass
class _Variables:
    """A checkpoint's cell variables grouped by (layer, direction), with their given names."""

    grouped: dict[tuple[int, int], dict[str, np.ndarray]]
    given: dict[tuple[int, int, str], str]
    cell: str = "lstm"

    @property
    def layers(self) -> int:
        return max(layer for layer, _ in self.grouped) + 1

    @property
    def directions(self) -> int:
        return max(direction for _, direction in self.grouped) + 1

    def label(self, layer: int, direction: int, part: str) -> str:
        """The name the caller used, or the conventional one for a variable that is absent."""
        return self.given.get((layer, direction, part)) or variable_name(
            layer, direction, part, self.layers, self.directions, self.cell
        )


def _group(variables: Mapping[str, Any], cell: str) -> _Variables:
    required = GRU_PARTS if cell == "gru" else ("kernel", "bias")
    if not variables:
        raise c.MissingKeyError(
            f"{NAME} variables: none given, expected at least "
            f"{[variable_name(0, 0, part, 1, 1, cell) for part in required]}"
        )
    found = _Variables({}, {}, cell)
    for name, value in variables.items():
        parsed = parse_name(name, cell) if isinstance(name, str) else None
        if parsed is None:
            raise c.UnexpectedKeyError(
                f"{NAME} variables: {name!r} is not a{'n' * (cell == 'lstm')} {_CLASSES[cell]} "
                f"variable (expected .../{_SCOPES[cell]}/{{{', '.join(_cell_parts(cell))}}})"
            )
        if parsed in found.given:  # two scopes naming one cell: which one is meant is unknowable
            raise c.UnexpectedKeyError(
                f"{NAME} variables: {name!r} and {found.given[parsed]!r} are both "
                f"layer {parsed[0]} {('forward', 'backward')[parsed[1]]} {parsed[2]}"
            )
        found.given[parsed] = name
        layer, direction, part = parsed
        found.grouped.setdefault((layer, direction), {})[part] = c.as_weight(value, name)
    return found


def _refuse_independent_stacks(found: _Variables) -> None:
    names = list(found.given.values())
    if (
        any("multi_rnn_cell" in n for n in names)
        and any("/bw/" in f"/{n}" for n in names)
        and found.layers > 1
    ):
        raise c.UnsupportedFeatureError(
            NAME,
            "independent forward/backward MultiRNNCell stacks",
            "bidirectional_dynamic_rnn over MultiRNNCell is not a layer-wise bidirectional stack",
        )


def _first_cell(found: _Variables, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The layer-0 forward cell's variables, each of ``required`` present."""
    first = found.grouped.get((0, 0), {})
    for part in required:
        if part not in first:
            raise c.MissingKeyError(
                f"{NAME} variables: missing the layer-0 forward {part}, "
                f"{found.label(0, 0, part)!r}"
            )
    return first


def _infer_spec(
    found: _Variables, cell_clip: float | None, proj_clip: float | None, activation: str
) -> LSTMSpec:
    _refuse_independent_stacks(found)
    first = _first_cell(found, ("kernel", "bias"))

    def name(part: str) -> str:
        return found.label(0, 0, part)

    c.expect_ndim(first["bias"], name("bias"), 1, "(4H,)")
    units = c.gate_units(first["bias"], name("bias"), axis=0)
    # Any cell's projection kernel decides P (a cell lacking it is then reported as missing).
    projection = next(
        ((key, g["projection/kernel"]) for key, g in sorted(found.grouped.items())
         if "projection/kernel" in g),
        None,
    )
    out = units
    if projection is not None:  # checked first: its last axis decides P
        (layer, direction), kernel = projection
        where = found.label(layer, direction, "projection/kernel")
        c.expect_ndim(kernel, where, 2, "(H, P)")
        if kernel.shape[0] != units:
            raise c.ShapeError(where, kernel.shape, (units, "P"))
        out = kernel.shape[-1]
    c.expect_ndim(first["kernel"], name("kernel"), 2, "(I+O, 4H)")
    input_size = first["kernel"].shape[0] - out
    if input_size < 1:
        raise c.ShapeError(
            name("kernel"),
            first["kernel"].shape,
            f"(I+{out}, {4 * units})",
            "too few rows for input plus recurrent weights",
        )
    return LSTMSpec(
        input_size,
        units,
        found.layers,
        found.directions,
        projection_size=None if projection is None else out,
        peepholes=any(p in g for g in found.grouped.values() for p in PEEPHOLE_PARTS),
        cell_clip=cell_clip,
        projection_clip=proj_clip,
        activation=activation,
    )


def _infer_gru_spec(found: _Variables, activation: str) -> LSTMSpec:
    """A GRUCell stack's spec: H from gates/bias (2H,), I from gates/kernel (I+H, 2H)."""
    _refuse_independent_stacks(found)
    first = _first_cell(found, GRU_PARTS)
    bias, kernel = "gates/bias", "gates/kernel"
    c.expect_ndim(first[bias], found.label(0, 0, bias), 1, "(2H,)")
    units = c.gate_units(first[bias], found.label(0, 0, bias), axis=0, gates=2)
    c.expect_ndim(first[kernel], found.label(0, 0, kernel), 2, "(I+H, 2H)")
    input_size = first[kernel].shape[0] - units
    if input_size < 1:
        raise c.ShapeError(found.label(0, 0, kernel), first[kernel].shape,
                           f"(I+{units}, {2 * units})",
                           "too few rows for input plus recurrent weights")
    return LSTMSpec(input_size, units, found.layers, found.directions, activation=activation,
                    cell="gru", reset_after=False)


def _gru_options(forget_bias: float, reset_after: bool | None) -> None:
    """A GRUCell has no forget gate, and only the reset-before variant."""
    if forget_bias != DEFAULT_FORGET_BIAS:
        raise c.ConversionError(f"forget_bias: {forget_bias}, but GRUCell has no forget gate "
                                f"(expected the default, {DEFAULT_FORGET_BIAS})")
    if reset_after:
        raise UnsupportedFeatureError(NAME, "reset_after=True", "GRUCell applies the reset "
                                      "gate to h before the candidate's matmul")


def to_canonical(
    native: Any,
    *,
    forget_bias: float = DEFAULT_FORGET_BIAS,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    activation: str = "tanh",
    cell: str = "lstm",
    reset_after: bool | None = None,
) -> LSTMWeights:
    """TF1 list or variable dict -> canonical, with ``forget_bias`` folded into the bias.

    ``activation`` is the cells' ``LSTMCell(activation=)`` (the variables do not carry it).
    ``cell="gru"`` reads ``GRUCell`` variables (``reset_after`` False or None: its only
    variant; ``forget_bias`` left at its default, a GRUCell has none)."""
    forget_bias = finite_number("forget_bias", forget_bias)
    cell = c.known_cell(cell, NAME, SUPPORTED)
    if cell == "gru":
        _gru_options(forget_bias, reset_after)
    elif reset_after is False:
        raise c.ConversionError("reset_after: False, but an LSTMCell has no reset gate")
    run_time = (cell_clip, proj_clip, activation, cell)
    if isinstance(native, Mapping):
        return _variables_to_canonical(dict(native), forget_bias, *run_time)
    variables = _list_to_variables(list(c.expect_sequence(native, f"{NAME} weights")), cell)
    try:
        return _variables_to_canonical(variables, forget_bias, *run_time)
    except c.ConversionError as error:  # say which list position each name came from
        positions = ", ".join(f"weights[{n}] = {name}" for n, name in enumerate(variables))
        error.args = (f"{error.args[0]} (list form, {len(variables)} arrays read as "
                      f"{positions})",)
        raise


def _variables_to_canonical(
    variables: dict[str, Any], forget_bias: float, cell_clip: float | None,
    proj_clip: float | None, activation: str, cell: str,
) -> LSTMWeights:
    found = _group(variables, cell)
    if cell == "gru":
        if cell_clip is not None or proj_clip is not None:  # a GRU has no c and no projection
            raise UnsupportedFeatureError(
                NAME, "cell_clip" if cell_clip is not None else "projection_clip",
                "GRUCell has no cell state or projection")
        spec = _infer_gru_spec(found, activation)
    else:
        spec = _infer_spec(found, cell_clip, proj_clip, activation)
    named = [
        (found.label(layer, direction, part), array)
        for (layer, direction), parts in found.grouped.items()
        for part, array in parts.items()
    ]
    spec = spec.replace(dtype=c.common_dtype(named))
    cells = []
    gru = spec.cell == "gru"
    for layer in range(spec.layers):
        shapes = _gru_part_shapes(spec, layer) if gru else _part_shapes(spec, layer)
        for direction in range(spec.directions):
            parts = found.grouped.get((layer, direction), {})
            _check_parts(found, parts, shapes, layer, direction)
            for part, shape in shapes.items():
                c.expect_shape(parts[part], found.label(layer, direction, part), shape)
            cells.append(_gru_cell(parts, spec, layer) if gru else _cell(parts, spec, forget_bias))
    return c.build(spec, cells)


def _gru_part_shapes(spec: LSTMSpec, layer: int) -> dict[str, tuple[int, ...]]:
    rows, units = spec.layer_input_size(layer) + spec.units, spec.units
    return {"gates/kernel": (rows, 2 * units), "gates/bias": (2 * units,),
            "candidate/kernel": (rows, units), "candidate/bias": (units,)}


def _gru_cell(parts: dict[str, np.ndarray], spec: LSTMSpec, layer: int) -> CellWeights:
    """Columns r u of gates/* and the candidate's are canonical r z n; rows x then h."""
    rows = spec.layer_input_size(layer)
    kernel = np.concatenate([parts["gates/kernel"], parts["candidate/kernel"]], axis=1)
    bias = np.concatenate([parts["gates/bias"], parts["candidate/bias"]])
    return CellWeights(w_input=kernel[:rows].T.copy(), w_recurrent=kernel[rows:].T.copy(),
                       b_input=bias, b_recurrent=np.zeros_like(bias))


def _check_parts(found: _Variables, parts: dict[str, np.ndarray],
                 shapes: dict[str, tuple[int, ...]], layer: int, direction: int) -> None:
    """Missing or unexpected variables of one cell, named in full."""
    def names(parts: set[str]) -> list[str]:
        return sorted(found.label(layer, direction, p) for p in parts)

    if missing := set(shapes) - set(parts):
        raise c.MissingKeyError(f"{NAME} variables: missing {names(missing)}")
    if extra := set(parts) - set(shapes):
        raise c.UnexpectedKeyError(f"{NAME} variables: unexpected {names(extra)} (layer 0 "
                                   "decides peepholes and projection for the whole stack)")


def _cell(parts: dict[str, np.ndarray], spec: LSTMSpec, forget_bias: float) -> CellWeights:
    back = c.inverse_order(GATE_ORDER)
    kernel = c.permute_gates(parts["kernel"], back, axis=1)
    rows = kernel.shape[0] - spec.output_size
    bias = c.permute_gates(parts["bias"], back).copy()
    bias[spec.units : 2 * spec.units] += forget_bias
    peephole = None
    if spec.peepholes:
        peephole = np.stack([parts[p] for p in PEEPHOLE_PARTS])
    projection = parts["projection/kernel"].T.copy() if spec.projection_size else None
    return CellWeights(
        w_input=kernel[:rows].T.copy(),
        w_recurrent=kernel[rows:].T.copy(),
        b_input=bias,
        b_recurrent=np.zeros_like(bias),
        peephole=peephole,
        projection=projection,
    )


def from_canonical(
    weights: LSTMWeights, *, forget_bias: float = DEFAULT_FORGET_BIAS, layout: str | None = None
) -> list[np.ndarray] | dict[str, np.ndarray]:
    """Canonical -> TF1 weights made for a cell built with ``forget_bias``.

    ``layout`` is "list" (one layer, one direction only) or "variables";
    the default is "list" when the stack is a single cell. A GRU is written as
    ``GRUCell`` variables (``reset_after=False`` only; its two biases summed).
    """
    spec = weights.spec
    c.refuse_features(spec, NAME, SUPPORTED)
    forget_bias = finite_number("forget_bias", forget_bias)
    if spec.cell == "gru":
        _gru_options(forget_bias, spec.reset_after)
    single = spec.layers == 1 and spec.directions == 1
    layout = layout or ("list" if single else "variables")
    if layout not in ("list", "variables") or (layout == "list" and not single):
        raise c.ConversionError(
            f"layout: {layout!r}, expected 'variables'" + ("" if not single else " or 'list'")
        )
    weights = weights.with_folded_forget_bias()
    variables: dict[str, np.ndarray] = {}
    for layer, direction, cell in weights.iter_cells():
        parts = (_native_gru_parts(cell, spec.units) if spec.cell == "gru"
                 else _native_parts(cell, spec, forget_bias))
        for part, array in parts.items():
            name = variable_name(layer, direction, part, spec.layers, spec.directions, spec.cell)
            variables[name] = array
    return list(variables.values()) if layout == "list" else variables


def _native_gru_parts(cell: CellWeights, units: int) -> dict[str, np.ndarray]:
    """GRUCell's four variables: one bias per gate, canonical b_input + b_recurrent (exact
    for reset_after=False, where b_hn adds outside the reset gate as b_in does)."""
    kernel = np.concatenate([cell.w_input.T, cell.w_recurrent.T], axis=0)
    bias = cell.b_input + cell.b_recurrent
    return {"gates/kernel": c.copy_out(kernel[:, : 2 * units]),
            "gates/bias": c.copy_out(bias[: 2 * units]),
            "candidate/kernel": c.copy_out(kernel[:, 2 * units :]),
            "candidate/bias": c.copy_out(bias[2 * units :])}


def _native_parts(cell: CellWeights, spec: LSTMSpec, forget_bias: float) -> dict[str, np.ndarray]:
    kernel = np.concatenate([cell.w_input.T, cell.w_recurrent.T], axis=0)
    bias = cell.bias().copy()
    bias[spec.units : 2 * spec.units] -= forget_bias
    parts = {
        "kernel": c.copy_out(c.permute_gates(kernel, GATE_ORDER, axis=1)),
        "bias": c.permute_gates(bias, GATE_ORDER),
    }
    if cell.peephole is not None:
        diagonals = dict(zip(PEEPHOLE_PARTS, cell.peephole, strict=True))
        parts.update({p: c.copy_out(diagonals[p]) for p in ("w_f_diag", "w_i_diag", "w_o_diag")})
    if cell.projection is not None:
        parts["projection/kernel"] = c.copy_out(cell.projection.T)
    return parts
