"""NeoML's own network files (``Dnn.store`` / ``Dnn.store_checkpoint``), read without NeoML.

A NeoML network file is a ``CArchive``: little-endian ints and floats,
"small values" (one byte, or 0xFF then an int32), strings (a small-value
length then the bytes), and per layer its registered class name followed by
that class's own ``Serialize`` fields. Nothing in the file says how long a
layer's record is, so only the layer classes below can be read; any other
class stops the reader with its name. Facts from NeoML 2.0.210's sources
(``Dnn.cpp``, ``BaseLayer.cpp``, ``CompositeLayer.cpp``, ``RecurrentLayer.cpp``,
``LstmLayer.cpp``, ``GruLayer.cpp``, ``SubSequenceLayer.cpp``, ``DnnBlob.cpp``) and
checked on files NeoML 2.0.210 wrote:

* network: int version (1001..2000), int log frequency, int layer count,
  the layers, bool learning enabled; a checkpoint then holds the solver;
* every layer: its class versions (one small value per class in its
  hierarchy, most derived first), then the base record: name, inputs
  (name, output number), two bools, three floats, and its parameter blobs;
* a blob: version, int type (1 float, 2 int), int pack, seven int dims,
  uint element count, the raw elements.

This module only decodes; :mod:`equivalence.files.neoml.network` finds the LSTMs.
Every count and size is checked against the bytes left before anything is
allocated, and every failure is a :class:`NeoMLArchiveError` naming what was
being read and where.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from equivalence.errors import ConversionError

MIN_VERSION, MAX_VERSION = 1001, 2001  # CDnn::ArchiveMinSupportedVersion; newest class version
MAX_DEPTH = 8  # composite layers nest (an Lstm holds back links holding capture sinks)
BLOB_DIMS = 7  # BatchLength, BatchWidth, ListSize, Height, Width, Depth, Channels
FLOAT_BLOB, INT_BLOB = 1, 2  # CT_Float, CT_Int


class NeoMLArchiveError(ConversionError):
    """The bytes are not a NeoML network this reader can decode; says what and where."""


@dataclass(frozen=True)
class Blob:
    """A parameter blob: its seven NeoML dims and its elements (float32 or int32)."""

    dims: tuple[int, ...]
    data: np.ndarray


@dataclass
class Layer:
    """One decoded layer: class name, layer name, inputs, blobs, class fields, inner layers."""

    cls: str
    name: str = ""
    inputs: list[tuple[str, int]] = field(default_factory=list)
    blobs: list[Blob | None] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)  # composite layers only


@dataclass(frozen=True)
class Network:
    """A decoded network and how many bytes followed it (a checkpoint's solver state)."""

    version: int
    layers: list[Layer]
    trailing_bytes: int


class _Cursor:
    """Bounds-checked reads over the file's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.where = "the network header"

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def fail(self, problem: str) -> NeoMLArchiveError:
        return NeoMLArchiveError(f"{self.where}, byte {self.pos}: {problem}")

    def take(self, size: int, what: str) -> bytes:
        if size > self.left:
            raise self.fail(f"{what} needs {size} bytes, {self.left} left (truncated file?)")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def int32(self, what: str) -> int:
        return int(struct.unpack("<i", self.take(4, what))[0])

    def float32(self, what: str) -> float:
        return float(struct.unpack("<f", self.take(4, what))[0])

    def boolean(self, what: str) -> bool:
        byte = self.take(1, what)[0]
        if byte not in (0, 1):
            raise self.fail(f"{what}: found byte {byte}, expected 0 or 1")
        return bool(byte)

    def small(self, what: str) -> int:
        first = self.take(1, what)[0]
        return first if first != 0xFF else self.int32(what)

    def string(self, what: str) -> str:
        length = self.small(f"{what} length")
        if length < 0:
            raise self.fail(f"{what}: negative length {length}")
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what}: not UTF-8 text ({raw[:20]!r})") from None

    def count(self, what: str, min_item_bytes: int) -> int:
        """An int32 count whose items (each at least ``min_item_bytes``) fit in the bytes left."""
        found = self.int32(what)
        if found < 0 or found * min_item_bytes > self.left:
            raise self.fail(f"{what} is {found}, but only {self.left} bytes are left "
                            f"(truncated file?)")
        return found

    def version(self, what: str) -> int:
        found = self.small(f"{what} version")
        if not MIN_VERSION <= found <= MAX_VERSION:
            raise self.fail(f"{what} version {found}, expected {MIN_VERSION}..{MAX_VERSION} "
                            f"(NeoML 2.0.210's archive versions)")
        return found


def looks_like_network(head: bytes) -> bool:
    """Whether a file's first 16 bytes start a NeoML network: a version, a log frequency,
    a layer count, then a registered layer class name (they all begin "Fml" or "NeoML")."""
    if len(head) < 16:
        return False
    version = abs(int.from_bytes(head[:4], "little", signed=True))
    return MIN_VERSION <= version <= MAX_VERSION and 3 <= head[12] < 0xFF and head[13:16] in (
        b"Fml", b"Neo")


def read_network(data: bytes) -> Network:
    """Decode a whole network file (``Dnn.store``; a checkpoint's solver part is left unread)."""
    cursor = _Cursor(data)
    version = cursor.int32("network version")
    if not MIN_VERSION <= abs(version) <= MAX_VERSION:
        raise cursor.fail(f"network version {version}, expected {MIN_VERSION}..{MAX_VERSION}: "
                          f"not a NeoML network file")
    cursor.int32("log frequency")
    layers = _layer_list(cursor, "network", depth=0)
    cursor.where = "the network footer"
    cursor.boolean("learning enabled")
    return Network(abs(version), layers, cursor.left)


def _layer_list(cursor: _Cursor, owner: str, depth: int) -> list[Layer]:
    cursor.where = owner
    count = cursor.count("layer count", 2)  # a class name and a version at least
    return [_layer(cursor, f"{owner}'s layer {n}", depth) for n in range(count)]


def _layer(cursor: _Cursor, where: str, depth: int) -> Layer:
    """A registered class name, then that class's record."""
    if depth > MAX_DEPTH:
        raise cursor.fail(f"layers nested deeper than {MAX_DEPTH} levels")
    cursor.where = where
    cls = cursor.string("layer class")
    if cls not in LAYER_READERS:
        raise cursor.fail(
            f"layer class {cls!r} is not one this reader can decode (a NeoML file gives no "
            f"record lengths, so it cannot be skipped); known classes: {sorted(LAYER_READERS)}"
        )
    layer = Layer(cls)
    cursor.where = f"{where} ({cls})"
    LAYER_READERS[cls](cursor, layer, depth)
    return layer


def _base(cursor: _Cursor, layer: Layer) -> None:
    """``CBaseLayer::Serialize``: name, inputs, flags, learning rates, parameter blobs."""
    cursor.version("base layer")
    layer.name = cursor.string("layer name")
    cursor.where += f" {layer.name!r}"
    for n in range(cursor.count("input count", 5)):
        layer.inputs.append((cursor.string(f"input {n} name"),
                             cursor.int32(f"input {n} output number")))
    cursor.boolean("backward forced")
    cursor.boolean("learning enabled")
    for what in ("learning rate", "L2 multiplier", "L1 multiplier"):
        cursor.float32(what)
    layer.blobs = _blobs(cursor)


def _blobs(cursor: _Cursor) -> list[Blob | None]:
    blobs: list[Blob | None] = []
    for n in range(cursor.count("parameter blob count", 1)):
        is_null = cursor.boolean(f"blob {n} null flag")
        blobs.append(None if is_null else _blob(cursor, f"blob {n}"))
    return blobs


def _blob(cursor: _Cursor, what: str) -> Blob:
    """``CDnnBlob::Serialize``: sizes checked against the bytes left before allocating."""
    cursor.version(what)
    kind = cursor.int32(f"{what} type")
    if kind not in (FLOAT_BLOB, INT_BLOB):
        raise cursor.fail(f"{what} type {kind}, expected {FLOAT_BLOB} (float) or {INT_BLOB} (int)")
    cursor.int32(f"{what} pack")
    dims = tuple(cursor.int32(f"{what} dim {d}") for d in range(BLOB_DIMS))
    if any(d < 1 for d in dims):
        raise cursor.fail(f"{what} dims {dims}: every dim must be at least 1")
    size = cursor.int32(f"{what} element count")
    expected = int(np.prod(dims, dtype=np.int64))
    if size != expected:
        raise cursor.fail(f"{what} holds {size} elements, its dims {dims} need {expected}")
    raw = cursor.take(4 * size, f"{what} elements")
    stored, native = ("<f4", np.float32) if kind == FLOAT_BLOB else ("<i4", np.int32)
    return Blob(dims, np.frombuffer(raw, dtype=stored).astype(native))


# ------------------------------------------------------------------ layer classes
# Each reader consumes its class's own Serialize fields, in NeoML's order.

Reader = Callable[[_Cursor, Layer, int], None]


def _versions(*names: str) -> Reader:
    """A class whose record is only its class versions and the base record."""

    def read(cursor: _Cursor, layer: Layer, depth: int) -> None:
        for name in names:
            cursor.version(name)
        _base(cursor, layer)

    return read


def _then(first: Reader, extra: Callable[[_Cursor, Layer], None]) -> Reader:
    def read(cursor: _Cursor, layer: Layer, depth: int) -> None:
        first(cursor, layer, depth)
        extra(cursor, layer)

    return read


def _source(cursor: _Cursor, layer: Layer, depth: int) -> None:
    version = cursor.version("source layer")
    _base(cursor, layer)
    # v2001 may store the source's blob: a flag, a null flag, then the blob
    if (version >= 2001 and cursor.boolean("store blob")
            and not cursor.boolean("stored blob null flag")):
        layer.blobs.append(_blob(cursor, "stored blob"))


def _int_field(name: str) -> Callable[[_Cursor, Layer], None]:
    def read(cursor: _Cursor, layer: Layer) -> None:
        layer.fields[name] = cursor.int32(name)

    return read


def _fully_connected(cursor: _Cursor, layer: Layer) -> None:
    layer.fields["elements"] = cursor.int32("number of elements")
    layer.fields["zero_free_term"] = cursor.boolean("zero free term")


def _split_counts(cursor: _Cursor, layer: Layer) -> None:
    count = cursor.count("output count array size", 4)
    layer.fields["output_counts"] = [cursor.int32(f"output count {n}") for n in range(count)]


def _dropout(cursor: _Cursor, layer: Layer) -> None:
    layer.fields["rate"] = cursor.float32("dropout rate")
    layer.fields["spatial"] = cursor.boolean("spatial")
    layer.fields["batchwise"] = cursor.boolean("batchwise")


def _floats(*names: str) -> Callable[[_Cursor, Layer], None]:
    def read(cursor: _Cursor, layer: Layer) -> None:
        for name in names:
            layer.fields[name] = cursor.float32(name)

    return read


def _lookup(cursor: _Cursor, layer: Layer) -> None:
    count = cursor.count("lookup dimension count", 8)
    layer.fields["dimensions"] = [
        (cursor.int32(f"dimension {n} vector count"), cursor.int32(f"dimension {n} vector size"))
        for n in range(count)
    ]
    cursor.boolean("framework learning")
    layer.blobs += _blobs(cursor)


def _back_link(cursor: _Cursor, layer: Layer, depth: int) -> None:
    cursor.version("back link")
    _base(cursor, layer)
    cursor.int32("pack")
    layer.fields["dims"] = tuple(cursor.int32(f"dim {d}") for d in range(BLOB_DIMS))
    where = cursor.where
    layer.layers = [_layer(cursor, f"{where}'s capture sink", depth + 1)]


def _composite(cursor: _Cursor, layer: Layer, depth: int) -> None:
    """``CCompositeLayer::Serialize``: base, inner layers, output mappings."""
    cursor.version("composite layer")
    _base(cursor, layer)
    where = cursor.where
    layer.layers = _layer_list(cursor, where, depth + 1)
    cursor.where = f"{where} output mappings"
    layer.fields["output_mappings"] = [
        (cursor.string(f"mapping {n} layer"), cursor.int32(f"mapping {n} output"))
        for n in range(cursor.count("output mapping count", 5))
    ]


def _recurrent(cursor: _Cursor, layer: Layer, depth: int) -> None:
    """``CRecurrentLayer``: its version, the composite, its back links, reverse, repeat count."""
    cursor.version("recurrent layer")
    _composite(cursor, layer, depth)
    where = cursor.where
    layer.fields["back_links"] = [
        _layer(cursor, f"{where}'s back link {n}", depth + 1)
        for n in range(cursor.count("back link count", 2))
    ]
    cursor.where = where
    layer.fields["reverse"] = cursor.boolean("reverse sequence")
    layer.fields["repeat_count"] = cursor.int32("repeat count")


def _lstm(cursor: _Cursor, layer: Layer, depth: int) -> None:
    """``CLstmLayer``: versions, the recurrent composite and its back links, the activation."""
    version = cursor.version("lstm layer")
    if version < 2001:
        raise cursor.fail(f"Lstm version {version}: the pre-2001 single fully connected layout "
                          f"is not read; re-save the network with NeoML 2.x")
    _recurrent(cursor, layer, depth)
    layer.fields["recurrent_activation"] = cursor.int32("recurrent activation")


def _gru(cursor: _Cursor, layer: Layer, depth: int) -> None:
    """``CGruLayer``: its version, then the recurrent composite (``GruLayer.cpp``)."""
    cursor.version("gru layer")
    _recurrent(cursor, layer, depth)


_INPLACE = ("in-place layer",)
LAYER_READERS: dict[str, Reader] = {
    "FmlCnnSourceLayer": _source,
    "FmlCnnSinkLayer": _then(_versions("sink layer"), _int_field("sink reserved")),
    "FmlCnnCaptureSink": _then(_versions("capture sink"), _int_field("sink reserved")),
    "FmlCnnBackLink": _back_link,
    "FmlCnnLstmLayer": _lstm,
    "FmlCnnGruLayer": _gru,
    "FmlCnnFullyConnectedLayer": _then(_versions("fully connected"), _fully_connected),
    "FmlCnnSplitChannelsLayer": _then(_versions("split channels", "split"), _split_counts),
    "FmlCnnConcatChannelsLayer": _versions("concat channels", "concat"),
    "FmlCnnConcatObjectLayer": _versions("concat object"),  # no CBaseConcatLayer record
    "FmlCnnEltwiseSumLayer": _versions("eltwise sum", "eltwise"),
    "FmlCnnEltwiseMulLayer": _versions("eltwise mul", "eltwise"),
    "FmlCnnEltwiseNegMulLayer": _versions("eltwise neg mul", "eltwise"),
    "FmlCnnSigmoidLayer": _versions("sigmoid", *_INPLACE),
    "FmlCnnTanhLayer": _versions("tanh", *_INPLACE),
    "FmlCnnSigmoidTanhLayer": _versions("hard sigmoid", *_INPLACE),  # NeoML's name for it
    "FmlCnnHardTanhLayer": _versions("hard tanh", *_INPLACE),
    "FmlCnnAbsLayer": _versions("abs", *_INPLACE),
    "FmlCnnReLULayer": _then(_versions("relu", *_INPLACE), _floats("upper threshold")),
    "FmlCnnLinearLayer": _then(_versions("linear", *_INPLACE), _floats("multiplier", "free term")),
    "FmlCnnDropoutLayer": _then(_versions("dropout", *_INPLACE), _dropout),
    # CSubSequenceLayer (ReverseSequence too): version, base, start position, length
    "FmlCnnSubSequenceLayer": _then(_then(_versions("sub-sequence"), _int_field("start")),
                                    _int_field("length")),
    "FmlCnnMultychannelLookupLayer": _then(_versions("multichannel lookup"), _lookup),
}
