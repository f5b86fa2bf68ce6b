"""A bounded protobuf wire-format reader for CoreML ``.mlmodel`` files, and the schema pieces
every layer reader shares (``WeightParams``, ``ActivationParams``).

No protobuf schema is loaded and no code runs: fields are walked from the bytes, each
checked to end inside its message, with caps on how many are walked, and nothing is
allocated from a declared size before it is checked against the bytes present.
Field numbers are coremltools' ``NeuralNetwork.proto``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from equivalence.files._base import FileFormatError
from equivalence.files.limits import check_declared

MAX_TOP_FIELDS = 10_000


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


MAX_MESSAGE_FIELDS = 500_000  # fields of one message walked, at most
# Fields walked in one file, at most: kraken's holds a few thousand (each weight array is
# one packed field); millions of tiny fields are a file built to make the walk slow.
MAX_WALKED_FIELDS = 500_000


# ActivationParams' oneof: the one field present names the function.
ACTIVATIONS = {5: "linear", 10: "ReLU", 15: "leakyReLU", 20: "thresholdedReLU", 25: "PReLU",
               30: "tanh", 31: "scaledTanh", 40: "sigmoid", 41: "sigmoidHard", 50: "ELU",
               60: "softsign", 70: "softplus", 71: "parametricSoftplus"}


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


class Reader:
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

    def activations(self, message: Message, number: int, what: str
                    ) -> list[tuple[str, Message]]:
        """Each ``ActivationParams`` of repeated field ``number``: the function's name (the
        oneof's one field) and its parameters; a malformed one is named by what it holds."""
        found: list[tuple[str, Message]] = []
        for activation in self.subs(message, number, f"{what} activations"):
            kinds = sorted(activation)
            if len(kinds) != 1:
                found.append((f"{len(kinds)} fields", {}))
                continue
            name = ACTIVATIONS.get(kinds[0], f"field {kinds[0]}")
            found.append((name, self.sub(activation, kinds[0], f"{what} {name}")))
        return found

    def weights(self, message: Message, shape: tuple[int, ...], what: str) -> np.ndarray:
        """A WeightParams' values of ``shape``: its bytes must hold exactly that many."""
        stored = [n for n in (30, 31, 40) if n in message]
        if stored:
            names = {30: "rawValue", 31: "int8RawValue", 40: "quantization"}
            raise Unreadable(f"{what} is stored as {names[stored[0]]} (custom or quantized "
                              "bytes), which is not read")
        half = self.one(message, 2, 2, f"{what} float16Value")
        if any(item.wire == 5 for item in message.get(1, [])):
            raise Unreadable(f"{what} floatValue is stored unpacked, which is not read")
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


class Unreadable(Exception):
    """Why one recurrent layer cannot be converted (it is still listed)."""
