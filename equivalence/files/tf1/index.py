"""A TF checkpoint's ``.index`` read by hand: its header and one entry per tensor.

The index is a LevelDB-format table (a footer pointing at an index block, which points
at data blocks of prefix-compressed key/value entries). The value under the empty key is
a ``BundleHeaderProto``; every other key is a tensor's name and its value a
``BundleEntryProto`` (dtype, shape, shard, offset, size, masked crc32c, slices). Both
protos are decoded here from the wire format, read-only, and every entry TensorFlow
could not take (negative sizes, dimensions or slices, which make TensorFlow abort the
process) is refused before anything is allocated. Writing lays out the same table and
protos (:func:`table_bytes`, :func:`header_proto`, :func:`entry_proto`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from equivalence.files._base import FileFormatError
from equivalence.files.limits import first_repeat, shown
from equivalence.files.tf1.crc32c import crc32c, masked

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER = 5  # compression type byte + crc32c
MAX_INDEX_BYTES = 64 * 2**20
MAX_ENTRIES = 1_000_000
MAX_SHARDS = 100_000
MAX_DIMS = 64
VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5
# BundleEntryProto's number fields (2 is the shape, 7 the slices)
ENTRY_NUMBERS = {1: "dtype", 3: "shard", 4: "offset", 5: "size", 6: "crc32c"}


@dataclass(frozen=True)
class Entry:
    """One tensor's ``BundleEntryProto``: where its bytes lie and what they are."""

    name: str
    dtype: int  # TensorFlow's DataType enum (1 float32, 2 float64, 19 float16, ...)
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int  # masked, as TensorFlow stores it
    sliced: bool  # a partitioned variable: its bytes are under other keys


@dataclass(frozen=True)
class Index:
    """The header's shard count and byte order, and the tensors' entries in key order."""

    shards: int
    little_endian: bool
    entries: tuple[Entry, ...]


def read_index(index: Path, checkpoint: Path) -> Index:
    """The header and entries of ``index``; refuses a damaged table or an impossible entry."""
    if not index.is_file():
        raise FileFormatError(checkpoint, f"the index {index.name} is not a regular file")
    size = index.stat().st_size
    if size > MAX_INDEX_BYTES:
        raise FileFormatError(checkpoint, f"an index of {size:,} bytes, over the cap")
    with open(index, "rb") as handle:  # read-only: the input is never opened for writing
        data = handle.read(MAX_INDEX_BYTES + 1)
    header: tuple[int, bool] | None = None
    entries = []
    for key, value in _table_entries(data, checkpoint):
        if key == b"":
            header = _header(value, checkpoint)
        elif not key.startswith(b"\0"):  # "\0name\0..." keys hold a partitioned one's slices
            entries.append(_entry(key, value, checkpoint))
    if header is None:
        raise FileFormatError(checkpoint, "the index has no bundle header (the empty key)")
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):  # a crafted table can repeat a key; never guess which
        raise FileFormatError(checkpoint, f"index entry {shown(first_repeat(names))} occurs "
                                          "twice")
    for entry in entries:
        if entry.shard >= header[0]:
            raise FileFormatError(checkpoint, f"index entry {shown(entry.name)}: shard "
                                              f"{entry.shard}, but the header declares "
                                              f"{header[0]} shard(s)")
    return Index(shards=header[0], little_endian=header[1], entries=tuple(entries))


def _header(value: bytes, checkpoint: Path) -> tuple[int, bool]:
    shards, endianness = 1, 0
    for field, _, item in _fields(value, "the bundle header", checkpoint):
        if field == 1:
            shards = _signed(item, "the bundle header", checkpoint)
        elif field == 2:
            endianness = _signed(item, "the bundle header", checkpoint)
    if not 0 < shards <= MAX_SHARDS or endianness not in (0, 1):
        raise FileFormatError(checkpoint, f"the bundle header declares {shards} shard(s) and "
                                          f"byte order {endianness}")
    return shards, endianness == 0


def _entry(key: bytes, value: bytes, checkpoint: Path) -> Entry:
    try:
        name = key.decode("utf-8")
    except UnicodeDecodeError as exc:  # replaced, two names could read as one
        raise FileFormatError(checkpoint, f"index entry {shown(key)}: a name that is not "
                                          "UTF-8") from exc
    what = f"index entry {shown(name)}"
    found = {"dtype": 0, "shard": 0, "offset": 0, "size": 0, "crc32c": 0}
    shape: tuple[int, ...] = ()
    sliced = False
    for field, _, item in _fields(value, what, checkpoint):
        if field == 2:
            shape = _shape(_bytes(item, what, checkpoint), what, checkpoint)
        elif field == 7:
            _check_slice(_bytes(item, what, checkpoint), what, checkpoint)
            sliced = True
        elif field in ENTRY_NUMBERS:
            found[ENTRY_NUMBERS[field]] = _signed(item, what, checkpoint)
    if found["offset"] < 0 or found["size"] < 0 or found["shard"] < 0:
        raise FileFormatError(checkpoint, f"{what}: negative shape {list(shape)}, offset "
                                          f"{found['offset']} or size {found['size']}")
    return Entry(name=name, shape=shape, sliced=sliced, **found)


def _shape(data: bytes, what: str, checkpoint: Path) -> tuple[int, ...]:
    dims = []
    for field, _, item in _fields(data, what, checkpoint):
        if field == 2:
            dim = _fields(_bytes(item, what, checkpoint), what, checkpoint)
            sizes = [_signed(v, what, checkpoint) for f, _, v in dim if f == 1]
            dims.append(sizes[-1] if sizes else 0)
        if len(dims) > MAX_DIMS:
            raise FileFormatError(checkpoint, f"{what}: more than {MAX_DIMS} dimensions")
    if any(n < 0 for n in dims):
        raise FileFormatError(checkpoint, f"{what}: negative shape {dims}")
    return tuple(dims)


def _check_slice(data: bytes, what: str, checkpoint: Path) -> None:
    for field, _, item in _fields(data, what, checkpoint):
        if field != 1:
            continue
        start = length = 0
        for part, _, value in _fields(_bytes(item, what, checkpoint), what, checkpoint):
            if part == 1:
                start = _signed(value, what, checkpoint)
            elif part == 2:
                length = _signed(value, what, checkpoint)
        if start < 0 or length < 0:
            raise FileFormatError(checkpoint, f"{what}: a slice with start {start} and "
                                              f"length {length}")


def _fields(data: bytes, what: str, checkpoint: Path
            ) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a protobuf message, in order."""
    at = 0
    while at < len(data):
        tag, at = _varint(data, at, checkpoint)
        field, wire = tag >> 3, tag & 7
        if wire == VARINT:
            value, at = _varint(data, at, checkpoint)
            yield field, wire, value
            continue
        width = {FIXED64: 8, FIXED32: 4}.get(wire)
        if width is None and wire == BYTES:
            width, at = _varint(data, at, checkpoint)
        if width is None or at + width > len(data):
            raise FileFormatError(checkpoint, f"{what}: not a bundle entry (a damaged "
                                              f"protobuf field {field})")
        raw = data[at:at + width]
        at += width
        yield field, wire, (raw if wire == BYTES else int.from_bytes(raw, "little"))


def _bytes(item: int | bytes, what: str, checkpoint: Path) -> bytes:
    if not isinstance(item, bytes):
        raise FileFormatError(checkpoint, f"{what}: not a bundle entry (a number where a "
                                          "message belongs)")
    return item


def _signed(value: int | bytes, what: str, checkpoint: Path) -> int:
    """An int64 field: protobuf writes negative values as their 64-bit two's complement."""
    if isinstance(value, bytes):
        raise FileFormatError(checkpoint, f"{what}: not a bundle entry (a message where a "
                                          "number belongs)")
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _table_entries(data: bytes, checkpoint: Path) -> Iterator[tuple[bytes, bytes]]:
    if len(data) < FOOTER_BYTES or struct.unpack("<Q", data[-8:])[0] != TABLE_MAGIC:
        raise FileFormatError(checkpoint, "the .index is not a checkpoint index table")
    footer = data[-FOOTER_BYTES:]
    _, at = _handle(footer, 0, checkpoint)  # the metaindex block: unused
    index_block, _ = _handle(footer, at, checkpoint)
    count = 0
    for _, handle in _block_entries(data, index_block, checkpoint):
        block, _ = _handle(handle, 0, checkpoint)
        for entry in _block_entries(data, block, checkpoint):
            count += 1
            if count > MAX_ENTRIES:
                raise FileFormatError(checkpoint, f"more than {MAX_ENTRIES:,} index entries")
            yield entry


def _block_entries(data: bytes, handle: tuple[int, int], checkpoint: Path
                   ) -> Iterator[tuple[bytes, bytes]]:
    offset, size = handle
    end = offset + size
    if offset < 0 or size < 4 or end + BLOCK_TRAILER > len(data):
        raise FileFormatError(checkpoint, f"an index block at {offset} of {size} bytes lies "
                                          "outside the file")
    if data[end] != 0:
        raise FileFormatError(checkpoint, f"a compressed index block (type {data[end]}); "
                                          "TensorFlow writes them uncompressed")
    block = data[offset:end]
    restarts = struct.unpack("<I", block[-4:])[0]
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise FileFormatError(checkpoint, "an index block with a damaged restart array")
    at, key = 0, b""
    while at < limit:
        shared, at = _varint(block, at, checkpoint)
        fresh, at = _varint(block, at, checkpoint)
        length, at = _varint(block, at, checkpoint)
        if shared > len(key) or at + fresh + length > limit:
            raise FileFormatError(checkpoint, "a damaged index block entry")
        key = key[:shared] + block[at:at + fresh]
        at += fresh
        yield key, block[at:at + length]
        at += length


def _handle(data: bytes, at: int, checkpoint: Path) -> tuple[tuple[int, int], int]:
    offset, at = _varint(data, at, checkpoint)
    size, at = _varint(data, at, checkpoint)
    return (offset, size), at


def _varint(data: bytes, at: int, checkpoint: Path) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise FileFormatError(checkpoint, "a damaged varint in the index")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


# ---------------------------------------------------------------- writing


def table_bytes(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A LevelDB table of ``entries`` (sorted keys) as TensorFlow's bundle writer lays it
    out: one data block, an empty metaindex block, an index block, the footer. Every entry
    is a restart point (no key sharing): a valid table, only a little larger."""
    data = _block(entries)
    meta = _block([])
    last = entries[-1][0] if entries else b""
    index = _block([(last, _varint_bytes(0) + _varint_bytes(len(data) - BLOCK_TRAILER))])
    handles = (_varint_bytes(len(data)) + _varint_bytes(len(meta) - BLOCK_TRAILER)
               + _varint_bytes(len(data) + len(meta)) + _varint_bytes(len(index) - BLOCK_TRAILER))
    footer = handles.ljust(FOOTER_BYTES - 8, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    return data + meta + index + footer


def header_proto(shards: int) -> bytes:
    """A ``BundleHeaderProto``: ``shards`` shards, little-endian, format version 1."""
    version = _varint_bytes(1 << 3) + _varint_bytes(1)  # VersionDef.producer = 1
    return (_varint_bytes(1 << 3) + _varint_bytes(shards)
            + _varint_bytes(3 << 3 | BYTES) + _varint_bytes(len(version)) + version)


def entry_proto(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    """A ``BundleEntryProto`` for a whole tensor in shard 0 (``crc`` already masked)."""
    dims = b"".join(_message(2, _varint_bytes(1 << 3) + _varint_bytes(n)) if n else
                    _message(2, b"") for n in shape)
    out = _varint_bytes(1 << 3) + _varint_bytes(dtype) + _message(2, dims)
    if offset:
        out += _varint_bytes(4 << 3) + _varint_bytes(offset)
    if size:
        out += _varint_bytes(5 << 3) + _varint_bytes(size)
    return out + _varint_bytes(6 << 3 | FIXED32) + struct.pack("<I", crc)


def _message(field: int, body: bytes) -> bytes:
    return _varint_bytes(field << 3 | BYTES) + _varint_bytes(len(body)) + body


def _block(items: list[tuple[bytes, bytes]]) -> bytes:
    body, restarts = b"", []
    for key, value in items:
        restarts.append(len(body))
        body += _varint_bytes(0) + _varint_bytes(len(key)) + _varint_bytes(len(value)) + key + value
    restarts = restarts or [0]
    body += struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))
    return body + b"\0" + struct.pack("<I", masked(crc32c(body + b"\0")))


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)
