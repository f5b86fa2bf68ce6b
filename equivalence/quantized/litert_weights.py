"""What a quantized ``.tflite`` flatbuffer holds: its quantized weights and activation steps.

Owns reading the flatbuffer (every subgraph, loop bodies included) with the
LiteRT schema: the constant tensors that carry quantization parameters are
dequantized and matched to the canonical weight they approximate (same
shape, every element within half its own step of the float weight), which
tells which weight each int8 tensor is without trusting tensor names; the
steps of the quantized activations are gathered by the op that produces them
(for the full-integer bound of :class:`.oracle.Allowance`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.errors import ConversionError

_INTEGER_TYPES = {9: np.int8, 7: np.int16, 2: np.int32, 4: np.int64, 3: np.uint8}


@dataclass(frozen=True)
class QuantizedConstant:
    """One constant tensor with quantization parameters, dequantized to float64."""

    name: str
    values: np.ndarray
    step: np.ndarray  # the scale, broadcast to ``values``
    dtype: str


def _schema():
    from equivalence.runtimes.tflite import _schema as schema

    return schema()


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def constants(content: bytes) -> list[QuantizedConstant]:
    """Every constant tensor of an integer type with scales (each buffer once)."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(content, 0)
    found, seen = [], set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            buffer = model.Buffers(tensor.Buffer())
            quant = tensor.Quantization()
            if (tensor.Type() not in _INTEGER_TYPES or buffer.DataLength() == 0
                    or quant is None or quant.ScaleLength() == 0 or tensor.Buffer() in seen):
                continue
            seen.add(tensor.Buffer())
            found.append(_dequantize(tensor, buffer, quant))
    return found


def _dequantize(tensor, buffer, quant) -> QuantizedConstant:
    dtype = _INTEGER_TYPES[tensor.Type()]
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    raw = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype).astype(np.float64).reshape(shape)
    scales = quant.ScaleAsNumpy().astype(np.float64)
    zeros = (quant.ZeroPointAsNumpy().astype(np.float64) if quant.ZeroPointLength()
             else np.zeros_like(scales))
    axis = quant.QuantizedDimension() if scales.size > 1 else None
    view = [1] * len(shape)
    if axis is not None:
        view[axis] = scales.size
    step = np.broadcast_to(scales.reshape(view or [1]), shape) if shape else scales
    zero = np.broadcast_to(zeros.reshape(view or [1]), shape) if shape else zeros
    return QuantizedConstant(tensor.Name().decode(), (raw - zero) * step, np.asarray(step),
                             np.dtype(dtype).name)


def _candidates(weights: LSTMWeights) -> list[tuple[int, str, slice, np.ndarray]]:
    """(layer, field, rows, float values) that a quantized tensor may hold: whole or per gate."""
    units = weights.spec.units
    found = []
    for layer, _d, cell in weights.iter_cells():
        arrays = {"w_input": cell.w_input, "w_recurrent": cell.w_recurrent, "bias": cell.bias()}
        for name, array in arrays.items():
            found.append((layer, name, slice(None), array))
            for gate in range(4):
                rows = slice(gate * units, (gate + 1) * units)
                found.append((layer, name, rows, array[rows]))
    return found


def dequantized_weights(content: bytes, weights: LSTMWeights) -> tuple[LSTMWeights, int]:
    """``weights`` with each part the flatbuffer quantized replaced by its dequantized value.

    Returns the weights (float parts as float32 holds them) and how many quantized
    constants were matched. A quantized constant that matches no weight and is not
    all zeros raises a ConversionError naming it.
    """
    merged = weights.with_merged_biases().astype("float32").astype("float64")
    arrays = {(layer, name): getattr(cell, "b_input" if name == "bias" else name).copy()
              for layer, _d, cell in merged.iter_cells()
              for name in ("w_input", "w_recurrent", "bias")}
    matched = 0
    for constant in constants(content):
        hit = _match(constant, _candidates(weights))
        if hit is None:
            if np.any(constant.values != 0):
                raise ConversionError(f"tflite constant {constant.name!r}: shape "
                                      f"{constant.values.shape} matches no weight")
            continue
        layer, name, rows = hit
        arrays[(layer, name)][rows] = constant.values
        matched += 1

    def rebuilt(layer: int, _direction: int, cell):
        return replace(cell, w_input=arrays[(layer, "w_input")],
                       w_recurrent=arrays[(layer, "w_recurrent")],
                       b_input=arrays[(layer, "bias")])

    return merged.map_cells(rebuilt), matched


def _match(constant: QuantizedConstant, candidates) -> tuple[int, str, slice] | None:
    for layer, name, rows, array in candidates:
        if array.shape != constant.values.shape:
            continue
        slack = np.abs(constant.values - array) - constant.step / 2
        if np.all(slack <= 1e-6 * (1.0 + np.abs(array))):
            return layer, name, rows
    return None


def activation_steps(content: bytes) -> dict[str, float]:
    """The largest step of the quantized non-constant tensors, by the op that writes them."""
    schema = _schema()
    names = _op_names(schema)
    model = schema.Model.GetRootAsModel(content, 0)
    steps: dict[str, float] = defaultdict(float)
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            for k in range(op.OutputsLength()):
                quant = graph.Tensors(op.Outputs(k)).Quantization()
                if quant is not None and quant.ScaleLength():
                    steps[name] = max(steps[name], float(quant.ScaleAsNumpy().max()))
    return dict(steps)
