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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..canonical import CellWeights, LSTMWeights
from ..spec import LSTMSpec
from . import _common as c

NAME = "tf1"
SUPPORTED = frozenset(
    {"stacked layers", "bidirectional", "projection", "projection_clip", "peepholes", "cell_clip"}
)
GATE_ORDER = (0, 2, 1, 3)  # TF1 column block k is canonical block GATE_ORDER[k]: i j f o
PEEPHOLE_PARTS = ("w_i_diag", "w_f_diag", "w_o_diag")  # canonical peephole rows i, f, o
LIST_PARTS = ("kernel", "bias", "w_f_diag", "w_i_diag", "w_o_diag", "projection/kernel")
DEFAULT_FORGET_BIAS = 1.0


def variable_name(layer: int, direction: int, part: str, layers: int, directions: int) -> str:
    """Checkpoint name that ``dynamic_rnn`` / ``bidirectional_dynamic_rnn`` give a variable."""
    if directions == 1:
        stack = "rnn/" + (f"multi_rnn_cell/cell_{layer}/" if layers > 1 else "")
        return f"{stack}lstm_cell/{part}"
    side = ("fw", "bw")[direction]
    if layers == 1:
        return f"bidirectional_rnn/{side}/lstm_cell/{part}"
    return f"stack_bidirectional_rnn/cell_{layer}/bidirectional_rnn/{side}/lstm_cell/{part}"


def parse_name(name: str) -> tuple[int, int, str] | None:
    """(layer, direction, part) from a variable name, or None if it is not an LSTMCell's."""
    segments = name.split(":")[0].split("/")
    cell_index = next((i for i, s in enumerate(segments) if s.startswith("lstm_cell")), None)
    if cell_index is None:
        return None
    part = "/".join(segments[cell_index + 1 :])
    if part not in LIST_PARTS:
        return None
    scope = segments[:cell_index]
    layer = next(
        (int(s[5:]) for s in reversed(scope) if s.startswith("cell_") and s[5:].isdigit()), 0
    )
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


def _list_to_variables(items: list[Any]) -> dict[str, Any]:
    """The single-cell list form -> variable dict (the count says which features)."""
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


def _group(variables: Mapping[str, Any]) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    grouped: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for name, value in variables.items():
        parsed = parse_name(str(name))
        if parsed is None:
            raise c.UnexpectedKeyError(
                f"{NAME} variables: {name!r} is not an LSTMCell variable "
                f"(expected .../lstm_cell/{{{', '.join(LIST_PARTS)}}})"
            )
        layer, direction, part = parsed
        grouped.setdefault((layer, direction), {})[part] = c.as_weight(value, str(name))
    return grouped


def _infer_spec(
    grouped: dict[tuple[int, int], dict[str, np.ndarray]],
    names: list[str],
    cell_clip: float | None,
    proj_clip: float | None,
) -> LSTMSpec:
    if (
        any("multi_rnn_cell" in n for n in names)
        and any("/bw/" in f"/{n}" for n in names)
        and max(layer for layer, _ in grouped) > 0
    ):
        raise c.UnsupportedFeatureError(
            NAME,
            "independent forward/backward MultiRNNCell stacks",
            "bidirectional_dynamic_rnn over MultiRNNCell is not a layer-wise bidirectional stack",
        )
    first = grouped.get((0, 0), {})
    layers, directions = max(k for k, _ in grouped) + 1, max(d for _, d in grouped) + 1
    for part in ("kernel", "bias"):
        if part not in first:
            raise c.MissingKeyError(
                f"{NAME} variables: missing the layer-0 forward {part}, "
                f"{variable_name(0, 0, part, layers, directions)!r}"
            )

    def name(part: str) -> str:
        return variable_name(0, 0, part, layers, directions)

    units = c.gate_units(first["bias"], name("bias"), axis=0)
    # Any cell's projection kernel decides P (a cell lacking it is then reported as missing).
    projection = next((g["projection/kernel"] for _, g in sorted(grouped.items())
                       if "projection/kernel" in g), None)
    if projection is not None:  # checked first: its last axis decides P
        c.expect_ndim(projection, name("projection/kernel"), 2, "(H, P)")
        if projection.shape[0] != units:
            raise c.ShapeError(name("projection/kernel"), projection.shape, (units, "P"))
    out = units if projection is None else projection.shape[-1]
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
        layers,
        directions,
        projection_size=None if projection is None else out,
        peepholes=any(p in g for g in grouped.values() for p in PEEPHOLE_PARTS),
        cell_clip=cell_clip,
        projection_clip=proj_clip,
    )


def to_canonical(
    native: Any,
    *,
    forget_bias: float = DEFAULT_FORGET_BIAS,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
) -> LSTMWeights:
    """TF1 list or variable dict -> canonical, with ``forget_bias`` folded into the bias."""
    if isinstance(native, Mapping):
        return _variables_to_canonical(dict(native), forget_bias, cell_clip, proj_clip)
    variables = _list_to_variables(list(c.expect_sequence(native, f"{NAME} weights")))
    try:
        return _variables_to_canonical(variables, forget_bias, cell_clip, proj_clip)
    except c.ConversionError as error:  # say which list position each name came from
        positions = ", ".join(f"weights[{n}] = {name}" for n, name in enumerate(variables))
        error.args = (f"{error.args[0]} (list form, {len(variables)} arrays read as "
                      f"{positions})",)
        raise


def _variables_to_canonical(
    variables: dict[str, Any], forget_bias: float, cell_clip: float | None, proj_clip: float | None
) -> LSTMWeights:
    grouped = _group(variables)
    spec = _infer_spec(grouped, [str(n) for n in variables], cell_clip, proj_clip)
    spec = spec.replace(dtype=c.common_dtype(a for g in grouped.values() for a in g.values()))
    cells = []
    for layer in range(spec.layers):
        shapes = _part_shapes(spec, layer)
        for direction in range(spec.directions):
            parts = grouped.get((layer, direction), {})
            _check_parts(parts, shapes, layer, direction, spec)
            for part, shape in shapes.items():
                c.expect_shape(
                    parts[part],
                    variable_name(layer, direction, part, spec.layers, spec.directions),
                    shape,
                )
            cells.append(_cell(parts, spec, forget_bias))
    return c.build(spec, cells)


def _check_parts(parts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], layer: int,
                 direction: int, spec: LSTMSpec) -> None:
    """Missing or unexpected variables of one cell, named in full."""
    def names(found: set[str]) -> list[str]:
        return sorted(variable_name(layer, direction, p, spec.layers, spec.directions)
                      for p in found)

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
    the default is "list" when the stack is a single cell.
    """
    spec = weights.spec
    c.refuse_features(spec, NAME, SUPPORTED)
    single = spec.layers == 1 and spec.directions == 1
    layout = layout or ("list" if single else "variables")
    if layout not in ("list", "variables") or (layout == "list" and not single):
        raise c.ConversionError(
            f"layout: {layout!r}, expected 'variables'" + ("" if not single else " or 'list'")
        )
    weights = weights.with_folded_forget_bias()
    variables: dict[str, np.ndarray] = {}
    for layer, direction, cell in weights.iter_cells():
        for part, array in _native_parts(cell, spec, forget_bias).items():
            variables[variable_name(layer, direction, part, spec.layers, spec.directions)] = array
    return list(variables.values()) if layout == "list" else variables


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
