"""A TF checkpoint's tensors read with numpy alone: the index's entries, their data shards,
their declared sizes and their checksums.

``PREFIX.index`` (:mod:`equivalence.files.tf1.index`) says, for every tensor, its dtype,
shape, shard, offset, byte size and masked CRC-32C; the bytes lie in
``PREFIX.data-SSSSS-of-NNNNN``, little-endian for numbers. Every declared size is checked
against the cap and the shard before anything is read, and every tensor's checksum is
checked after, so a damaged data file is refused instead of read as other weights.
Strings (the object graph), resources and variants are not weights and are left out;
a partitioned variable is refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from equivalence.errors import UnsupportedFeatureError
from equivalence.files._base import FileFormatError
from equivalence.files.limits import check_declared, shown
from equivalence.files.tf1.crc32c import crc32c, masked
from equivalence.files.tf1.index import Entry, entry_proto, header_proto, read_index, table_bytes

# TensorFlow's DataType enum -> numpy, for the dtypes weights come in.
NUMERIC = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
           9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32,
           23: np.uint64}
BFLOAT16 = 14
NOT_WEIGHTS = {7: "string", 20: "resource", 21: "variant"}


def shard_name(prefix: Path, shard: int, shards: int) -> Path:
    return Path(f"{prefix}.data-{shard:05d}-of-{shards:05d}")


def read_tensors(prefix: Path, checkpoint: Path) -> dict[str, np.ndarray]:
    """Every numeric tensor of the checkpoint at ``prefix``, by variable name."""
    index = read_index(Path(f"{prefix}.index"), checkpoint)
    if not index.little_endian:
        raise FileFormatError(checkpoint, "a big-endian checkpoint: not read here")
    wanted = [e for e in index.entries if e.dtype not in NOT_WEIGHTS]
    shard_bytes = {shard: _shard_size(prefix, shard, index.shards, checkpoint)
                   for shard in sorted({e.shard for e in wanted})}
    dtypes = {entry.name: _dtype(entry, checkpoint) for entry in wanted}
    for entry in wanted:  # every declared size first: the index can claim anything
        _check_sizes(entry, dtypes[entry.name], shard_bytes[entry.shard], checkpoint)
    _check_disjoint(wanted, checkpoint)
    by_shard: dict[int, list[Entry]] = {}
    for entry in wanted:  # grouped once: a crafted index may name many shards
        by_shard.setdefault(entry.shard, []).append(entry)
    tensors = {}
    for shard, entries in by_shard.items():
        with open(shard_name(prefix, shard, index.shards), "rb") as handle:  # read-only
            for entry in entries:
                tensors[entry.name] = _tensor(handle, entry, dtypes[entry.name], checkpoint)
    return {entry.name: tensors[entry.name] for entry in wanted}  # the index's order


def _shard_size(prefix: Path, shard: int, shards: int, checkpoint: Path) -> int:
    path = shard_name(prefix, shard, shards)
    if not path.is_file():
        raise FileFormatError(checkpoint, f"the data shard {path.name} is missing or not a "
                                          "regular file")
    return path.stat().st_size


def _dtype(entry: Entry, checkpoint: Path) -> np.dtype:
    if entry.sliced:
        raise FileFormatError(checkpoint, f"variable {shown(entry.name)} is partitioned "
                                          "(saved in slices): not read here")
    if entry.dtype == BFLOAT16:
        try:
            import ml_dtypes
        except ImportError as exc:
            raise FileFormatError(checkpoint, f"variable {shown(entry.name)} is bfloat16, "
                                              "which needs ml_dtypes to read") from exc
        return np.dtype(ml_dtypes.bfloat16)
    if entry.dtype not in NUMERIC:
        raise FileFormatError(checkpoint, f"variable {shown(entry.name)}: dtype "
                                          f"{entry.dtype}, not one TensorFlow stores weights in")
    return np.dtype(NUMERIC[entry.dtype]).newbyteorder("<")


def _check_sizes(entry: Entry, dtype: np.dtype, shard_bytes: int, checkpoint: Path) -> None:
    what = f"checkpoint variable {shown(entry.name)}"
    nbytes = check_declared(checkpoint, what, entry.shape, dtype.itemsize, shard_bytes)
    if entry.size != nbytes:
        raise FileFormatError(checkpoint, f"{what}: shape {entry.shape} of {dtype.name} is "
                                          f"{nbytes:,} bytes, but its entry declares "
                                          f"{entry.size:,}")
    if entry.offset + entry.size > shard_bytes:
        raise FileFormatError(checkpoint, f"{what}: bytes {entry.offset:,} to "
                                          f"{entry.offset + entry.size:,} lie past the end of "
                                          f"its data shard ({shard_bytes:,} bytes)")


def _check_disjoint(entries: list[Entry], checkpoint: Path) -> None:
    """Refuse entries sharing bytes: TensorFlow lays tensors end to end, and entries that
    overlap could make a small shard materialize far more than it holds."""
    end: dict[int, tuple[int, str]] = {}
    for entry in sorted(entries, key=lambda e: (e.shard, e.offset, e.size)):
        previous, name = end.get(entry.shard, (0, ""))
        if entry.size and entry.offset < previous:
            raise FileFormatError(checkpoint, f"checkpoint variables {shown(name)} and "
                                              f"{shown(entry.name)} overlap in their data shard")
        if entry.size:
            end[entry.shard] = (entry.offset + entry.size, entry.name)


def _tensor(handle: BinaryIO, entry: Entry, dtype: np.dtype, checkpoint: Path) -> np.ndarray:
    handle.seek(entry.offset)
    data = handle.read(entry.size)
    if len(data) != entry.size:
        raise FileFormatError(checkpoint, f"checkpoint variable {shown(entry.name)}: its data "
                                          "shard ended early")
    if masked(crc32c(data)) != entry.crc32c:
        raise FileFormatError(checkpoint, f"checkpoint variable {shown(entry.name)}: its bytes "
                                          "do not match the checksum in the index (a damaged "
                                          "data file)")
    return np.frombuffer(data, dtype).reshape(entry.shape).astype(dtype.newbyteorder("="))


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray]) -> list[Path]:
    """Write ``tensors`` as the checkpoint ``PREFIX.index`` + ``PREFIX.data-00000-of-00001``
    (what ``SaveV2`` writes for them); returns the two paths, the index last."""
    codes = {np.dtype(t): code for code, t in NUMERIC.items()}
    data = bytearray()
    entries = [(b"", header_proto(1))]
    for name in sorted(tensors):  # a table's keys are sorted
        array = np.asarray(tensors[name])  # tobytes() below is C order; 0-d stays 0-d
        if array.dtype not in codes:
            raise UnsupportedFeatureError("a TF checkpoint", f"dtype {array.dtype}",
                                          f"variable {name!r}")
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        entries.append((name.encode(), entry_proto(codes[array.dtype], array.shape, len(data),
                                                   len(raw), masked(crc32c(raw)))))
        data += raw
    shard, index = shard_name(prefix, 0, 1), Path(f"{prefix}.index")
    shard.write_bytes(bytes(data))
    index.write_bytes(table_bytes(entries))
    return [shard, index]
