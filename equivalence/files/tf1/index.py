"""A TF checkpoint's ``.index`` read by hand, checked before TensorFlow ever opens it.

TensorFlow aborts the whole process (exit 134) on an index entry with a negative
dimension or slice. The index is a LevelDB-format table (a footer pointing at an index
block, which points at data blocks of prefix-compressed key/value entries) whose values
are ``BundleEntryProto``s; this module walks it with the standard library and the
bundle proto, read-only, and refuses any entry TensorFlow could not take.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from equivalence.files._base import FileFormatError
from equivalence.files.limits import shown

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER = 5  # compression type byte + crc32c
MAX_INDEX_BYTES = 64 * 2**20
MAX_ENTRIES = 1_000_000


def check_index(index: Path, checkpoint: Path) -> None:
    """Refuse an index whose entries declare negative sizes, dimensions or slices."""
    from tensorflow.core.protobuf import tensor_bundle_pb2

    if not index.is_file():
        raise FileFormatError(checkpoint, f"the index {index.name} is not a regular file")
    size = index.stat().st_size
    if size > MAX_INDEX_BYTES:
        raise FileFormatError(checkpoint, f"an index of {size:,} bytes, over the cap")
    with open(index, "rb") as handle:  # read-only: the input is never opened for writing
        data = handle.read(MAX_INDEX_BYTES + 1)
    for key, value in _table_entries(data, checkpoint):
        if key == b"":
            continue  # the BundleHeaderProto
        entry = tensor_bundle_pb2.BundleEntryProto()
        try:
            entry.ParseFromString(value)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise FileFormatError(checkpoint, f"index entry {shown(key)}: not a bundle entry "
                                              f"({exc})") from exc
        _check_entry(entry, key, checkpoint)


def _check_entry(entry, key: bytes, checkpoint: Path) -> None:
    name = shown(key.decode("utf-8", "replace"))
    dims = [d.size for d in entry.shape.dim]
    if any(n < 0 for n in dims) or entry.offset < 0 or entry.size < 0 or entry.shard_id < 0:
        raise FileFormatError(checkpoint, f"index entry {name}: negative shape {dims}, offset "
                                          f"{entry.offset} or size {entry.size}")
    for piece in entry.slices:
        for extent in piece.extent:
            length = extent.length if extent.HasField("length") else 0
            if extent.start < 0 or length < 0:
                raise FileFormatError(checkpoint, f"index entry {name}: a slice with start "
                                                  f"{extent.start} and length {length}")


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
