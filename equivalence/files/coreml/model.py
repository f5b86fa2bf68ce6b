"""CoreML ``.mlmodel`` files: told apart from ONNX, and their recurrent layers found.

Both are protobuf messages whose field 1 is a varint, so the bytes alone do not say
which; the top-level field numbers do. A CoreML ``Model`` (coremltools'
``Model.proto``) has ``specificationVersion`` (1), ``description`` (2) and its
model type at field numbers 200 and up (``neuralNetwork`` 500, ``pipeline`` 201,
...); an ONNX ``ModelProto`` keeps its graph at field 7 and nothing above 30.

:func:`read_coreml` walks ``Model`` -> ``neuralNetwork`` (or the classifier or
regressor variants) -> ``layers`` -> ``NeuralNetworkLayer`` {name 1, input 2,
output 3, the layer type a oneof from 100}, and hands each recurrent layer to the
reader of its kind (:data:`LAYER_KINDS`: LSTM layers to
:mod:`~equivalence.files.coreml.lstm`, GRU layers to
:mod:`~equivalence.files.coreml.gru`). Each becomes an ONNX-layout node,
which the onnx format turns into canonical weights and onnxruntime runs for
``--verify`` (nothing here runs CoreML itself).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from equivalence.files._base import FileFormatError, FoundLSTM, counted
from equivalence.files.coreml import gru, lstm
from equivalence.files.coreml.wire import Message, Reader, Unreadable, WireError, top_fields
from equivalence.files.limits import MAX_ARRAY_BYTES, first_repeat, listed, shown

MODEL_TYPES = {200: "pipelineClassifier", 201: "pipelineRegressor", 202: "pipeline",
               300: "glmRegressor", 301: "supportVectorRegressor",
               302: "treeEnsembleRegressor", 303: "neuralNetworkRegressor",
               400: "glmClassifier", 401: "supportVectorClassifier",
               402: "treeEnsembleClassifier", 403: "neuralNetworkClassifier",
               500: "neuralNetwork", 555: "itemSimilarityRecommender",
               556: "mlProgram", 2000: "customModel", 2001: "linkedModel"}
MAX_FILE_BYTES = 4 * MAX_ARRAY_BYTES  # an .mlmodel holds its weights inline
NETWORKS = {500: "neuralNetwork", 403: "neuralNetworkClassifier", 303: "neuralNetworkRegressor"}

LayerRead = Callable[[Reader, Message, int, str, list[str]],
                     tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]]


class LayerKind(NamedTuple):
    """One recurrent layer type: its name, cell, reader and what its found entry says."""

    name: str
    cell: str
    read: LayerRead
    biases: str
    layout: str


# The layer oneof's field number -> its kind; adding a layer type is one module and one row.
LAYER_KINDS = {
    **{n: LayerKind(name, "lstm", lstm.read, lstm.BIASES, lstm.LAYOUT)
       for n, name in lstm.LAYERS.items()},
    **{n: LayerKind(name, "gru", gru.read, gru.BIASES, gru.LAYOUT)
       for n, name in gru.LAYERS.items()},
}


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


def read_coreml(path: Path) -> list[FoundLSTM]:
    """Every uniDirectionalLSTM, biDirectionalLSTM and gru layer of a CoreML neural network."""
    facts = coreml_facts(path)
    if facts is None:  # a file named .mlmodel whose top level does not parse
        raise FileFormatError(path, f"named {path.suffix} but not a well-formed CoreML model "
                                    f"({_top_problem(path)})")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise FileFormatError(path, f"{facts}: {size:,} bytes, over the {MAX_FILE_BYTES:,}-"
                                    "byte cap")
    reader = Reader(path, path.read_bytes())
    try:
        layers = _layers(reader, facts)
        found = [_layer(reader, layer, facts) for layer in layers
                 if any(n in layer for n in LAYER_KINDS)]
    except WireError as exc:
        raise FileFormatError(path, f"{facts}, damaged: {exc}") from exc
    if not found:
        kinds = ", ".join(k.name for k in LAYER_KINDS.values())
        raise FileFormatError(path, f"{facts} with {len(layers)} layers, none of them a "
                                    f"recurrent layer read here ({kinds})")
    names = [f.name for f in found]
    if len(set(names)) != len(names):
        raise FileFormatError(path, f"{facts}: {counted(found, '{n} {cell}{s}')} found, two "
                                    "layers named "
                                    f"{shown(first_repeat(names))}")
    return found


def _layers(reader: Reader, facts: str) -> list[Message]:
    model = reader.parse(0, len(reader.data))
    network = [n for n in NETWORKS if n in model]
    if len([n for n in model if n in MODEL_TYPES]) > 1:
        raise FileFormatError(reader.path, f"{facts}: more than one model type (a oneof: "
                                           "protobuf would keep the last); refusing to guess")
    if not network:
        raise FileFormatError(reader.path, f"{facts}: only neural networks are read (not "
                                           "pipelines or other model types)")
    return reader.subs(reader.sub(model, network[0], NETWORKS[network[0]]), 1, "layers")


def _top_problem(path: Path) -> str:
    try:
        top_fields(path.read_bytes())
    except WireError as exc:
        return f"truncated or damaged: {exc}"
    return "no specificationVersion and model type among its top-level protobuf fields"


def _layer(reader: Reader, layer: Message, facts: str) -> FoundLSTM:
    names = reader.strings(layer, 1, "layer name")
    name = names[-1] if names else ""
    # The layer type is a oneof (field numbers from 100): protobuf keeps the last one set,
    # so a layer holding two is refused rather than guessed.
    if len({n for n in layer if n >= 100}) > 1 or len(names) > 1:
        raise reader.fail(f"layer {shown(name)}", "holds more than one layer type or name")
    inputs, outputs = reader.strings(layer, 2, "layer input"), reader.strings(layer, 3, "output")
    number = next(n for n in LAYER_KINDS if n in layer)
    kind = LAYER_KINDS[number]
    params = reader.sub(layer, number, kind.name)
    notes = [kind.layout]
    try:
        native, options, changes = kind.read(reader, params, number,
                                             f"layer {shown(name)} ({kind.name})", notes)
        problem = None
    except Unreadable as exc:
        native, options, changes, problem = {}, {"cell": kind.cell}, {}, str(exc)
    if len(inputs) > 1:
        notes.append(f"{len(inputs)} inputs: initial states come from other blobs at run "
                     "time (the weights are read, not those states)")
    wiring = f"{listed(inputs, 3)} -> {listed(outputs, 3)}"
    run_options = {k: v for k, v in options.items() if k not in ("cell", "reset_after")}
    return FoundLSTM(name=name, format="onnx", native=native, source=str(reader.path),
                     kind=f"{facts.removeprefix('a ')}, {kind.name} layer ({wiring})",
                     read_options=options, run_options=run_options, spec_changes=changes,
                     biases=kind.biases, notes=tuple(notes), problem=problem)
