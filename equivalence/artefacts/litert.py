"""A compare side for a LiteRT/TFLite flatbuffer, run in the ai-edge-litert interpreter.

Owns reading a ``.tflite`` file as a :class:`~.side.Side`: its signature (or,
in a flatbuffer without one, its input and output tensors) mapped to roles
by :mod:`.ports`, the way a SavedModel's are, and the weights of its fused
``UNIDIRECTIONAL_SEQUENCE_LSTM`` / ``BIDIRECTIONAL_SEQUENCE_LSTM`` ops read
from the flatbuffer's constant buffers (the schema module ai-edge-litert
ships), so the diagnosis can work in weight space.

Why a fixed dimension is refused here rather than resized: the interpreter's
non-strict resize (the signature runner's) accepts any shape, and a graph
built at 5 steps then runs a 7-step feed and returns 5 steps (a ``WHILE``
whose trip count is a constant), or fails deep inside a kernel. Only the
dimensions the flatbuffer leaves dynamic (-1 in ``shape_signature``) are
resized; the rest refuse by name. Outputs are shape-checked all the same.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from equivalence.artefacts.ports import Port, checked_weights, ported_side
from equivalence.artefacts.side import Refused, Side
from equivalence.canonical import LSTMWeights
from equivalence.errors import ConversionError

_FLOAT32 = 0  # TensorType.FLOAT32
# The fused ops' input slots (TFLite's lstm_shared.h): gates i f g o for weights and biases.
_UNI = {"input": (1, 2, 3, 4), "recurrent": (5, 6, 7, 8), "peephole": (9, 10, 11),
        "bias": (12, 13, 14, 15), "projection": (16, 17)}
_BI_BACKWARD = 17  # the backward direction's slots are the forward's + 17 (18..34)
_ACTIVATIONS = {1: "relu", 4: "tanh", 6: "sigmoid"}  # ActivationFunctionType -> cell activation


def litert_side(path: Path, *, mapping: dict[str, str] | None = None) -> Side:
    """The flatbuffer at ``path`` run through its (only, or serving) signature."""
    from ai_edge_litert.interpreter import Interpreter

    path = Path(path)
    try:
        content = path.read_bytes()
        probe = Interpreter(model_content=content)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConversionError(f"{path}: not a LiteRT flatbuffer the interpreter loads: "
                              f"{str(exc).strip()[:200]}") from exc
    key = _signature_key(probe)
    inputs, outputs = _ports(probe, key)

    def invoke(fed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        _check_fixed(fed, inputs)
        # a fresh interpreter per run: a failed invoke can leave one half-resized
        interpreter = Interpreter(model_content=content)
        if key is not None:
            return dict(interpreter.get_signature_runner(key)(**fed))
        return _invoke_tensors(interpreter, fed)

    from importlib import metadata

    label = f"ai-edge-litert {metadata.version('ai-edge-litert')} interpreter" + (
        f", signature {key!r}" if key else "")
    side = ported_side(str(path), "LiteRT flatbuffer", label, inputs, outputs, invoke,
                       mapping or {})
    ops = _op_names(content)
    side.notes.append(f"ops: {', '.join(ops)}")
    prepared = _prepares(content)
    if prepared is not None:
        side.notes.append(f"the interpreter cannot prepare this graph: {prepared}")
        side.notes.append("weights not read (the graph does not run to check them)")
        return side
    weights, note = checked_weights(side, _fused_weights(content))
    side.weights = weights
    side.notes.append(note)
    return side


def _signature_key(interpreter: Any) -> str | None:
    keys = list(interpreter.get_signature_list())
    if not keys:
        return None
    return next((k for k in ("serving_default", "serve") if k in keys), keys[0])


def _ports(interpreter: Any, key: str | None) -> tuple[list[Port], list[Port]]:
    """Inputs and outputs, named as the signature names them (else the tensor's name)."""
    if key is not None:
        runner = interpreter.get_signature_runner(key)
        ins, outs = runner.get_input_details(), runner.get_output_details()
        return ([_port(name, d) for name, d in sorted(ins.items())],
                [_port(name, d) for name, d in sorted(outs.items())])
    return ([_port(d["name"], d) for d in interpreter.get_input_details()],
            [_port(d["name"], d) for d in interpreter.get_output_details()])


def _port(name: str, detail: dict[str, Any]) -> Port:
    shape = tuple(None if int(d) < 0 else int(d) for d in detail["shape_signature"])
    return Port(name, shape, np.dtype(detail["dtype"]).name)


def _check_fixed(fed: dict[str, np.ndarray], ports: list[Port]) -> None:
    for port in ports:
        found = fed[port.name].shape
        wrong = [(k, d, found[k]) for k, d in enumerate(port.shape)
                 if d is not None and k < len(found) and found[k] != d]
        if len(found) != len(port.shape) or wrong:
            axis = ", ".join(f"axis {k} is {d}, fed {f}" for k, d, f in wrong)
            raise Refused(f"input {port.describe()} is fixed in the flatbuffer ({axis or 'rank'}"
                          f"): fed {tuple(found)}")


def _invoke_tensors(interpreter: Any, fed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a flatbuffer without a signature through its input and output tensors."""
    details = {d["name"]: d for d in interpreter.get_input_details()}
    for name, value in fed.items():
        interpreter.resize_tensor_input(details[name]["index"], value.shape, strict=True)
    interpreter.allocate_tensors()
    for name, value in fed.items():
        interpreter.set_tensor(details[name]["index"], value.astype(details[name]["dtype"]))
    interpreter.invoke()
    return {d["name"]: np.array(interpreter.get_tensor(d["index"]))
            for d in interpreter.get_output_details()}


def _prepares(content: bytes) -> str | None:
    """None if the interpreter allocates the graph at its exported shapes, else why not."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_content=content).allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        text = str(exc).strip()
        return text.split(". ")[0][:200]
    return None


# --- the flatbuffer ----------------------------------------------------------------


def _schema() -> Any:
    try:
        return importlib.import_module("ai_edge_litert.schema_py_generated")
    except ImportError:
        return importlib.import_module("tensorflow.lite.python.schema_py_generated")


def _op_names(content: bytes) -> list[str]:
    schema = _schema()
    model = schema.Model.GetRootAsModel(content, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    found = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for k in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(k).OpcodeIndex())
            if code.CustomCode():
                found.add(f"CUSTOM:{code.CustomCode().decode()}")
            else:
                builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                found.add(names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(found)


def _fused_weights(content: bytes) -> tuple[LSTMWeights | None, str]:
    """Canonical weights of the main graph's fused LSTM ops (a stack, in op order), or why not."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(content, 0)
    graph = model.Subgraphs(0)
    fused = _fused_ops(schema, model, graph)
    if not fused:
        return None, "no fused UNIDIRECTIONAL/BIDIRECTIONAL_SEQUENCE_LSTM op in the graph"
    if len({is_bi for _, is_bi, _ in fused}) != 1:
        return None, "fused LSTM ops of both kinds: their stack order is not read"
    try:
        slots, directions, kind = _directions(fused)
        native: list[np.ndarray] = []
        spec_changes: dict[str, Any] = {}
        for op, is_bi, offset in slots:
            native += _keras_arrays(model, graph, op, offset, is_bi)
            spec_changes = _op_spec(schema, op, is_bi, spec_changes)
    except _Unread as exc:
        return None, str(exc)
    from equivalence.convert import to_canonical

    try:
        weights = to_canonical(native, "keras", directions=directions,
                               activation=spec_changes.pop("activation", "tanh"))
        weights = LSTMWeights(weights.spec.replace(**spec_changes), weights.cells)
    except ConversionError as exc:
        return None, f"the fused ops' weights are not an LSTM stack: {str(exc)[:200]}"
    return weights, f"{len(fused)} fused {kind} op(s)"


def _fused_ops(schema: Any, model: Any, graph: Any) -> list[tuple[Any, bool, bool]]:
    """(op, is BIDIRECTIONAL, reads a REVERSE_V2 of its input) for each fused LSTM op."""
    codes = schema.BuiltinOperator
    producers: dict[int, int] = {}
    ops = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        producers.update({op.Outputs(j): builtin for j in range(op.OutputsLength())})
        ops.append((op, builtin))
    return [(op, builtin == codes.BIDIRECTIONAL_SEQUENCE_LSTM,
             producers.get(op.Inputs(0)) == codes.REVERSE_V2) for op, builtin in ops
            if builtin in (codes.UNIDIRECTIONAL_SEQUENCE_LSTM, codes.BIDIRECTIONAL_SEQUENCE_LSTM)]


def _directions(fused: list[tuple[Any, bool, bool]]) -> tuple[list[tuple[Any, bool, int]],
                                                               int, str]:
    """The (op, is_bi, slot offset) of each direction in Keras order, directions, op kind.

    A Keras ``Bidirectional`` converts to two UNIDIRECTIONAL ops per layer, the
    backward one reading a REVERSE_V2 of the layer's input: paired here, forward first.
    """
    if fused[0][1]:
        slots = [(op, True, offset) for op, _, _ in fused for offset in (0, _BI_BACKWARD)]
        return slots, 2, "BIDIRECTIONAL_SEQUENCE_LSTM"
    if not any(reverse for _, _, reverse in fused):
        return [(op, False, 0) for op, _, _ in fused], 1, "UNIDIRECTIONAL_SEQUENCE_LSTM"
    pairs = [fused[k:k + 2] for k in range(0, len(fused), 2)]
    if any(len(p) != 2 or p[0][2] == p[1][2] for p in pairs):
        raise _Unread("weights not taken: the fused ops reading a REVERSE_V2 do not pair with "
                      "forward ones layer by layer")
    slots = [(op, False, 0) for pair in pairs for op, _, _ in sorted(pair, key=lambda f: f[2])]
    return slots, 2, "UNIDIRECTIONAL_SEQUENCE_LSTM (forward/backward pairs)"


class _Unread(Exception):
    """A fused op whose weights this reader does not take (the message says why)."""


def _keras_arrays(model: Any, graph: Any, op: Any, offset: int, bidirectional: bool
                  ) -> list[np.ndarray]:
    """One direction's kernel (I, 4H), recurrent kernel (H, 4H), bias (4H), Keras layout."""
    for part in ("peephole", "projection"):
        if any(_constant(model, graph, op, k + offset, optional=True) is not None
               for k in _UNI[part]):
            raise _Unread(f"weights not taken: the fused op has {part} weights")
    if op.Inputs(_UNI["input"][0] + offset) < 0:
        raise _Unread("weights not taken: the fused op couples input and forget gates (CIFG)")
    if not bidirectional and any(op.Inputs(k) >= 0 for k in range(20, op.InputsLength())):
        raise _Unread("weights not taken: the fused op has layer-norm coefficients")
    parts = {}
    for part in ("input", "recurrent", "bias"):
        parts[part] = [_constant(model, graph, op, k + offset) for k in _UNI[part]]
    return [np.concatenate(parts["input"], axis=0).T, np.concatenate(parts["recurrent"],
            axis=0).T, np.concatenate(parts["bias"])]


def _op_spec(schema: Any, op: Any, is_bi: bool, seen: dict[str, Any]) -> dict[str, Any]:
    """The spec fields the op's options set (cell activation, cell clip), one for all ops."""
    kind = schema.BidirectionalSequenceLSTMOptions if is_bi else \
        schema.UnidirectionalSequenceLSTMOptions
    table = op.BuiltinOptions()
    if table is None:
        raise _Unread("weights not taken: the fused op has no options")
    options = kind()
    options.Init(table.Bytes, table.Pos)
    activation = _ACTIVATIONS.get(options.FusedActivationFunction())
    if activation is None:
        raise _Unread(f"weights not taken: fused activation {options.FusedActivationFunction()}")
    if options.ProjClip():
        raise _Unread("weights not taken: the fused op clips a projection")
    if is_bi and not options.MergeOutputs():
        raise _Unread("weights not taken: the bidirectional op does not merge its outputs")
    # TF's Keras LSTM conversion sets cell_clip 10 (the fused op clips c to +-10)
    found = {"activation": activation, "cell_clip": float(options.CellClip()) or None}
    if seen and seen != found:
        raise _Unread("weights not taken: the fused ops differ in activation or cell clip")
    return found


@overload
def _constant(model: Any, graph: Any, op: Any, slot: int,
              optional: Literal[False] = False) -> np.ndarray: ...


@overload
def _constant(model: Any, graph: Any, op: Any, slot: int,
              optional: bool) -> np.ndarray | None: ...


def _constant(model: Any, graph: Any, op: Any, slot: int, optional: bool = False
              ) -> np.ndarray | None:
    """The float32 constant in the op's input ``slot`` (None for an absent optional one)."""
    index = op.Inputs(slot) if slot < op.InputsLength() else -1
    if index < 0:
        if optional:
            return None
        raise _Unread(f"weights not taken: fused op input {slot} is absent")
    tensor = graph.Tensors(index)
    buffer = model.Buffers(tensor.Buffer())
    if tensor.Type() != _FLOAT32 or buffer.DataLength() == 0:
        # int8/float16 weights dequantized in-graph, or a buffer stored past the flatbuffer
        raise _Unread(f"weights not taken: fused op input {slot} ({tensor.Name().decode()}) "
                      f"is not a float32 constant in the flatbuffer")
    data = buffer.DataAsNumpy().view(np.float32)
    return data.reshape(tuple(int(d) for d in tensor.ShapeAsNumpy())).copy()
