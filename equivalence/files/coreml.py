"""CoreML ``.mlmodel`` files told apart from ONNX by their protobuf fields, so one is named.

Both are protobuf messages whose field 1 is a varint, so the bytes alone do not say
which; the top-level field numbers do. A CoreML ``Model`` (coremltools'
``Model.proto``) has ``specificationVersion`` (1), ``description`` (2) and its
model type at field numbers 200 and up (``neuralNetwork`` 500, ``pipeline`` 201,
...); an ONNX ``ModelProto`` keeps its graph at field 7 and nothing above 30.
:func:`coreml_facts` walks the top level only, with a bounded wire-format reader
of its own (no protobuf schema, nothing allocated from declared sizes). Reading
CoreML's LSTM layers is not done yet: such a file is refused naming it.
"""

from __future__ import annotations

from pathlib import Path

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
    try:
        fields = top_fields(path.read_bytes())
    except (OSError, WireError):
        return None
    numbers = {number for number, _, _ in fields}
    kinds = [MODEL_TYPES[n] for n in sorted(numbers) if n in MODEL_TYPES]
    version = next((v for n, w, v in fields if n == 1 and w == 0), None)
    if not kinds or 7 in numbers or version is None:
        return None
    return f"a CoreML model (specification version {version}, {', '.join(kinds)})"
