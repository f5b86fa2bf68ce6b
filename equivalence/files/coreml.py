"""CoreML ``.mlmodel`` files: told apart from ONNX, and their LSTM layers read, without macOS.

Both are protobuf messages whose field 1 is a varint, so the bytes alone do not say
which; the top-level field numbers do. A CoreML ``Model`` (coremltools'
``Model.proto``) has ``specificationVersion`` (1), ``description`` (2) and its
model type at field numbers 200 and up (``neuralNetwork`` 500, ``pipeline`` 201,
...); an ONNX ``ModelProto`` keeps its graph at field 7 and nothing above 30.

:func:`read_coreml` walks, with a bounded wire-format reader of its own (no
protobuf schema, no code run, nothing allocated from a declared size before it
is checked against the bytes present), ``Model`` -> ``neuralNetwork``
(or the classifier/regressor variants) -> ``layers`` -> ``NeuralNetworkLayer``
{name 1, input 2, output 3, ``uniDirectionalLSTM`` 420, ``biDirectionalLSTM``
430}, and each LSTM's ``LSTMParams`` and ``LSTMWeightParams`` (field numbers
from coremltools' ``NeuralNetwork.proto``). CoreML's gates are i, f, z (block
input), o, each matrix ``[outputVectorSize, inputVectorSize]`` row-major, one
bias per gate; they become ONNX-layout weights (i o f c), which the onnx
format turns into canonical weights and onnxruntime runs for ``--verify``
(nothing here runs CoreML itself). Activations other than [sigmoid, tanh,
tanh], unidirectional ``reverseInput``, and weights stored other than as
float32/float16 values are refused by name.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from equivalence.files._base import FileFormatError, FoundLSTM
from equivalence.files.limits import MAX_ARRAY_BYTES, check_declared, first_repeat, listed, shown

MAX_TOP_FIELDS = 10_000
MODEL_TYPES = {200: "pipelineClassifier", 201: "pipelineRegressor", 202: "pipeline",
               300: "glmRegressor", 301: "supportVectorRegressor",
               302: "treeEnsembleRegressor", 303: "neuralNetworkRegressor",
               400: "glmClassifier", 401: "supportVectorClassifier",
               402: "treeEnsembleClassifier", 403: "neuralNetworkClassifier",
               500: "neuralNetwork", 555: "itemSimilarityRecommender",
               556: "mlProgram", 2000: "customModel", 2001: "linkedModel"}


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, next offset) of the varint at ``at``; at most 10 bytes, as protobuf allows."""
    value = 0
    for shift in range(0, 70, 7):
        if at >= len(data):
            raise WireError("a varint runs past the end")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
    raise WireError("a varint longer than 10 bytes")


def top_fields(data: bytes) -> list[tuple[int, int, int]]:
    """(field number, wire type, value) per top-level field; a length-delimited field's value
    is its length (its bytes are skipped, never copied)."""
    fields: list[tuple[int, int, int]] = []
    at = 0
    while at < len(data):
        if len(fields) >= MAX_TOP_FIELDS:
            raise WireError(f"more than {MAX_TOP_FIELDS} top-level fields")
        key, at = varint(data, at)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, at = varint(data, at)
        elif wire == 1:
            value, at = 8, at + 8
        elif wire == 5:
            value, at = 4, at + 4
        elif wire == 2:
            value, at = varint(data, at)
            at += value
        else:
            raise WireError(f"wire type {wire} of field {number}")
        if at > len(data):
            raise WireError(f"field {number} runs past the end")
        fields.append((number, wire, value))
    return fields


def coreml_facts(path: Path) -> str | None:
    """'CoreML model (specification version N, neuralNetwork)' when ``path`` is one, else None."""
    try:  # mapped, not read: every ONNX file is asked this too, and may be large
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0,
                                                   access=mmap.ACCESS_READ) as view:
            fields = top_fields(view)  # type: ignore[arg-type]  # indexes like bytes
    except (OSError, ValueError):  # WireError is a ValueError; so is mapping an empty file
        return None
    numbers = {number for number, _, _ in fields}
    kinds = [MODEL_TYPES[n] for n in sorted(numbers) if n in MODEL_TYPES]
    version = next((v for n, w, v in fields if n == 1 and w == 0), None)
    if not kinds or 7 in numbers or version is None:
        return None
    return f"a CoreML model (specification version {version}, {', '.join(kinds)})"


# ---------------------------------------------------------------- reading LSTM layers

MAX_MESSAGE_FIELDS = 500_000  # fields of one message walked, at most
# Fields walked in one file, at most: kraken's holds a few thousand (each weight array is
# one packed field); millions of tiny fields are a file built to make the walk slow.
MAX_WALKED_FIELDS = 500_000
MAX_FILE_BYTES = 4 * MAX_ARRAY_BYTES  # an .mlmodel holds its weights inline
NETWORKS = {500: "neuralNetwork", 403: "neuralNetworkClassifier", 303: "neuralNetworkRegressor"}
LSTM_LAYERS = {420: "uniDirectionalLSTM", 430: "biDirectionalLSTM"}
# ActivationParams' oneof: the one field present names the function.
ACTIVATIONS = {5: "linear", 10: "ReLU", 15: "leakyReLU", 20: "thresholdedReLU", 25: "PReLU",
               30: "tanh", 31: "scaledTanh", 40: "sigmoid", 41: "sigmoidHard", 50: "ELU",
               60: "softsign", 70: "softplus", 71: "parametricSoftplus"}
READ_ACTIVATIONS = ["sigmoid", "tanh", "tanh"]  # [f(), g(), h()] the canonical form holds
# LSTMWeightParams fields per CoreML gate (i, f, z = block input, o): input matrix,
# recursion matrix, bias vector; peepholes exist for i, f, o only.
GATES = {"i": (1, 20, 40), "f": (2, 21, 41), "z": (3, 22, 42), "o": (4, 23, 43)}
PEEPHOLES = {"i": 60, "f": 61, "o": 62}
DEFAULT_CELL_CLIP = 50.0  # LSTMParams.cellClipThreshold 0 means this
# A cell clip at T cannot act before |c_t| can reach T; with sigmoid gates and a tanh block
# input |c_t| <= |c_0| + t, so from this threshold on it is inert for any sequence people
# run (and is dropped with a note); below it, it is carried as the spec's cell_clip.
INERT_CELL_CLIP = 10_000.0


class Field(NamedTuple):
    """One field of a message: a varint's value, or where a length-delimited or fixed
    field's bytes lie (``begin``..``end`` in the file)."""

    number: int
    wire: int
    value: int
    begin: int
    end: int


Message = dict[int, list[Field]]


def fields(data: bytes, begin: int, end: int) -> Iterator[Field]:
    """The fields of the message in ``data[begin:end]``, each checked to end inside it."""
    at = begin
    count = 0
    while at < end:
        count += 1
        if count > MAX_MESSAGE_FIELDS:
            raise WireError(f"a message with more than {MAX_MESSAGE_FIELDS:,} fields")
        key, at = varint(data, at)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        start = at
        if wire == 0:
            value, at = varint(data, at)
            start = at
        elif wire in (1, 5):
            value = 8 if wire == 1 else 4
            start, at = at, at + value
        elif wire == 2:
            value, at = varint(data, at)
            start, at = at, at + value
        else:
            raise WireError(f"wire type {wire} of field {number}")
        if at > end:
            raise WireError(f"field {number} runs past the end of its message")
        yield Field(number, wire, value, start, at)


def parse(data: bytes, begin: int, end: int) -> Message:
    out: Message = {}
    for item in fields(data, begin, end):
        out.setdefault(item.number, []).append(item)
    return out


class _Reader:
    """One file's bytes and the checks every field read goes through."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data = path, data
        self.walked = 0

    def parse(self, begin: int, end: int) -> Message:
        message = parse(self.data, begin, end)
        self.walked += sum(len(items) for items in message.values())
        if self.walked > MAX_WALKED_FIELDS:
            raise WireError(f"more than {MAX_WALKED_FIELDS:,} protobuf fields walked")
        return message

    def fail(self, what: str, problem: str) -> FileFormatError:
        return FileFormatError(self.path, f"CoreML {what}: {problem}")

    def one(self, message: Message, number: int, wire: int, what: str) -> Field | None:
        """The single field ``number``; twice (protobuf would merge or pick) is refused."""
        found = message.get(number, [])
        if len(found) > 1:
            raise self.fail(what, f"appears {len(found)} times, expected once")
        if found and found[0].wire != wire:
            raise self.fail(what, f"wire type {found[0].wire}, expected {wire}")
        return found[0] if found else None

    def sub(self, message: Message, number: int, what: str) -> Message:
        item = self.one(message, number, 2, what)
        return {} if item is None else self.parse(item.begin, item.end)

    def subs(self, message: Message, number: int, what: str) -> list[Message]:
        items = message.get(number, [])
        if any(item.wire != 2 for item in items):
            raise self.fail(what, "not a message (wire type is not 2)")
        return [self.parse(item.begin, item.end) for item in items]

    def uint(self, message: Message, number: int, what: str) -> int:
        item = self.one(message, number, 0, what)
        return 0 if item is None else item.value

    def flag(self, message: Message, number: int, what: str) -> bool:
        return self.uint(message, number, what) != 0

    def float32(self, message: Message, number: int, what: str) -> float:
        item = self.one(message, number, 5, what)
        if item is None:
            return 0.0
        return float(struct.unpack_from("<f", self.data, item.begin)[0])

    def strings(self, message: Message, number: int, what: str) -> list[str]:
        items = message.get(number, [])
        if any(item.wire != 2 for item in items):
            raise self.fail(what, "not a string (wire type is not 2)")
        return [self.data[i.begin:i.end].decode("utf-8", "replace") for i in items]

    def weights(self, message: Message, shape: tuple[int, ...], what: str) -> np.ndarray:
        """A WeightParams' values of ``shape``: its bytes must hold exactly that many."""
        stored = [n for n in (30, 31, 40) if n in message]
        if stored:
            names = {30: "rawValue", 31: "int8RawValue", 40: "quantization"}
            raise _Unreadable(f"{what} is stored as {names[stored[0]]} (custom or quantized "
                              "bytes), which is not read")
        half = self.one(message, 2, 2, f"{what} float16Value")
        if any(item.wire == 5 for item in message.get(1, [])):
            raise _Unreadable(f"{what} floatValue is stored unpacked, which is not read")
        packed = self.one(message, 1, 2, f"{what} floatValue")
        if half is not None and half.end > half.begin:
            if packed is not None and packed.end > packed.begin:
                raise self.fail(what, "holds both floatValue and float16Value")
            return self._array(half, shape, 2, "<f2", f"{what} float16Value")
        if packed is None:
            packed = Field(1, 2, 0, 0, 0)
        return self._array(packed, shape, 4, "<f4", f"{what} floatValue")

    def _array(self, item: Field, shape: tuple[int, ...], size: int, dtype: str, what: str
               ) -> np.ndarray:
        nbytes = item.end - item.begin
        check_declared(self.path, f"CoreML {what}", shape, size, nbytes)
        count = int(np.prod(shape, dtype=object))
        if nbytes != count * size:
            raise self.fail(what, f"{nbytes:,} bytes ({nbytes / size:,.6g} values), expected "
                                  f"shape {shape} = {count:,} values")
        values = np.frombuffer(self.data, dtype, count, item.begin)
        return values.astype(np.float32).reshape(shape)


class _Unreadable(Exception):
    """Why one LSTM layer cannot be converted (it is still listed)."""


def read_coreml(path: Path) -> list[FoundLSTM]:
    """Every uniDirectionalLSTM and biDirectionalLSTM layer of a CoreML neural network."""
    facts = coreml_facts(path)
    if facts is None:  # a file named .mlmodel whose top level does not parse
        raise FileFormatError(path, f"named {path.suffix} but not a well-formed CoreML model "
                                    f"({_top_problem(path)})")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise FileFormatError(path, f"{facts}: {size:,} bytes, over the {MAX_FILE_BYTES:,}-"
                                    "byte cap")
    reader = _Reader(path, path.read_bytes())
    try:
        model = reader.parse(0, len(reader.data))
        network = [n for n in NETWORKS if n in model]
        if len([n for n in model if n in MODEL_TYPES]) > 1:
            raise FileFormatError(path, f"{facts}: more than one model type (a oneof: "
                                        "protobuf would keep the last); refusing to guess")
        if not network:
            raise FileFormatError(path, f"{facts}: only neural networks are read (not "
                                        "pipelines or other model types)")
        layers = reader.subs(reader.sub(model, network[0], NETWORKS[network[0]]), 1, "layers")
        found = [_layer(reader, layer, facts) for layer in layers
                 if any(n in layer for n in LSTM_LAYERS)]
    except WireError as exc:
        raise FileFormatError(path, f"{facts}, damaged: {exc}") from exc
    if not found:
        raise FileFormatError(path, f"{facts} with {len(layers)} layers, none of them a "
                                    "uniDirectionalLSTM or biDirectionalLSTM")
    names = [f.name for f in found]
    if len(set(names)) != len(names):
        raise FileFormatError(path, f"{facts}: two LSTM layers named "
                                    f"{shown(first_repeat(names))}")
    return found


def _top_problem(path: Path) -> str:
    try:
        top_fields(path.read_bytes())
    except WireError as exc:
        return f"truncated or damaged: {exc}"
    return "no specificationVersion and model type among its top-level protobuf fields"


def _layer(reader: _Reader, layer: Message, facts: str) -> FoundLSTM:
    names = reader.strings(layer, 1, "layer name")
    name = names[-1] if names else ""
    kinds = [n for n in LSTM_LAYERS if n in layer]
    # The layer type is a oneof (field numbers from 100): protobuf keeps the last one set,
    # so a layer holding two is refused rather than guessed.
    if len({n for n in layer if n >= 100}) > 1 or len(names) > 1:
        raise reader.fail(f"layer {shown(name)}", "holds more than one layer type or name")
    inputs, outputs = reader.strings(layer, 2, "layer input"), reader.strings(layer, 3, "output")
    kind = LSTM_LAYERS[kinds[0]]
    params = reader.sub(layer, kinds[0], kind)
    what = f"layer {shown(name)} ({kind})"
    notes = ["weights in the ONNX node layout (gates i o f c; onnxruntime runs them for "
             "--verify)"]
    try:
        native, options, changes = _lstm(reader, params, kinds[0] == 430, what, notes)
        problem = None
    except _Unreadable as exc:
        native, options, changes, problem = {}, {}, {}, str(exc)
    if len(inputs) > 1:
        notes.append(f"{len(inputs)} inputs: initial states come from other blobs at run "
                     "time (the weights are read, not those states)")
    wiring = f"{listed(inputs, 3)} -> {listed(outputs, 3)}"
    return FoundLSTM(name=name, format="onnx", native=native, source=str(reader.path),
                     kind=f"{facts.removeprefix('a ')}, {kind} layer ({wiring})",
                     read_options=options, run_options=options, spec_changes=changes,
                     biases="one per gate (b_i b_f b_z b_o)", notes=tuple(notes),
                     problem=problem)


def _lstm(reader: _Reader, params: Message, bidirectional: bool, what: str, notes: list[str]
          ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """ONNX-layout weights, the onnx format's options and spec changes of one layer."""
    size_in = reader.uint(params, 1, f"{what} inputVectorSize")
    size_out = reader.uint(params, 2, f"{what} outputVectorSize")
    if size_in < 1 or size_out < 1:
        raise reader.fail(what, f"inputVectorSize {size_in}, outputVectorSize {size_out}, "
                                "expected both at least 1")
    lstm = reader.sub(params, 15, f"{what} params")
    _activations(reader, params, bidirectional, what)
    if not bidirectional and reader.flag(params, 100, f"{what} reverseInput"):
        raise _Unreadable("reverseInput is set (right to left, and the order CoreML returns "
                          "its outputs in is not documented); not read")
    sets = reader.subs(params, 20, f"{what} weightParams")
    if not bidirectional:
        sets = [reader.sub(params, 20, f"{what} weightParams")]
    elif len(sets) != 2:
        raise reader.fail(what, f"{len(sets)} weightParams, expected 2 (forward, backward)")
    flags = {name: reader.flag(lstm, number, f"{what} {name}") for name, number in
             (("hasBiasVectors", 20), ("forgetBias", 30), ("hasPeepholeVectors", 40),
              ("coupledInputAndForgetGate", 50), ("sequenceOutput", 10))}
    if flags["forgetBias"] and not flags["hasBiasVectors"]:
        raise _Unreadable("forgetBias without hasBiasVectors (whether the 1 is added is not "
                          "documented); not read")
    shapes = (size_out, size_in), (size_out, size_out), (size_out,)
    directions = [_direction(reader, weights, shapes, flags, f"{what} direction {k}")
                  for k, weights in enumerate(sets)]
    native = {key: np.stack([d[key] for d in directions]) for key in directions[0]}
    changes = _cell_clip(reader.float32(lstm, 60, f"{what} cellClipThreshold"), notes)
    notes.append("CoreML clips gate pre-activations to [-50, 50]; through sigmoid and tanh "
                 "that moves a gate by under 2e-22, so it is not carried")
    if not flags["sequenceOutput"]:
        notes.append("sequenceOutput is false: the layer passes on only its last step")
    if flags["forgetBias"]:
        notes.append("forgetBias: 1 added to b_f (folded into the bias)")
    coupled = flags["coupledInputAndForgetGate"]
    if coupled:
        notes.append("coupledInputAndForgetGate: f = 1 - i")
    return native, {"clip": None, "reverse": False, "input_forget": coupled}, changes


def _activations(reader: _Reader, params: Message, bidirectional: bool, what: str) -> None:
    for number in ((10, 11) if bidirectional else (10,)):
        found = []
        for activation in reader.subs(params, number, f"{what} activations"):
            kinds = sorted(activation)
            found.append(ACTIVATIONS.get(kinds[0], f"field {kinds[0]}") if len(kinds) == 1
                         else f"{len(kinds)} fields")
        if found != READ_ACTIVATIONS:
            raise _Unreadable(f"activations {found}: the canonical form holds "
                              f"{READ_ACTIVATIONS} only (f(), g(), h())")


def _direction(reader: _Reader, weights: Message, shapes: tuple[tuple[int, ...], ...],
               flags: dict[str, bool], what: str) -> dict[str, np.ndarray]:
    """One direction's W (4H, I), R (4H, H), B (8H) and P (3H) in ONNX order i o f c."""
    read: dict[str, list[np.ndarray]] = {"W": [], "R": [], "Wb": []}
    for gate in ("i", "o", "f", "z"):
        for key, number, shape in zip(("W", "R", "Wb"), GATES[gate], shapes, strict=True):
            if key == "Wb" and not flags["hasBiasVectors"]:
                read[key].append(np.zeros(shape, np.float32))
                continue
            field_what = f"{what} gate {gate} field {number}"
            values = reader.weights(reader.sub(weights, number, field_what), shape, field_what)
            if key == "Wb" and gate == "f" and flags["forgetBias"]:
                values = values + np.float32(1.0)
            read[key].append(values)
    bias = np.concatenate([*read["Wb"], np.zeros(4 * shapes[2][0], np.float32)])
    out = {"W": np.concatenate(read["W"]), "R": np.concatenate(read["R"]), "B": bias}
    if flags["hasPeepholeVectors"]:
        out["P"] = np.concatenate([
            reader.weights(reader.sub(weights, PEEPHOLES[g], f"{what} peephole {g}"),
                           shapes[2], f"{what} peephole {g}") for g in ("i", "o", "f")])
    return out


def _cell_clip(threshold: float, notes: list[str]) -> dict[str, Any]:
    if not np.isfinite(threshold) or threshold < 0:
        raise _Unreadable(f"cellClipThreshold {threshold}, expected a positive number")
    threshold = threshold or DEFAULT_CELL_CLIP
    if threshold >= INERT_CELL_CLIP:
        notes.append(f"cellClipThreshold {threshold:g} not carried: with sigmoid gates and a "
                     f"tanh block input |c_t| <= |c_0| + t, so it cannot act within "
                     f"{threshold - 1:,.0f} steps")
        return {}
    notes.append(f"cellClipThreshold {threshold:g}: carried as cell_clip")
    return {"cell_clip": threshold}
