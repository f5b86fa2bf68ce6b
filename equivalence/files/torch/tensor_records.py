"""Tensors read from pickles as records: storage type, storage, and a checked lazy view.

Both pickle readers build these: the torch one (:mod:`equivalence.files.torch.unpickler`)
and the numpy one (:mod:`equivalence.files.torch.numpy_pickle`), so a dict of numpy
arrays reads as a state_dict does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from equivalence.errors import FileFormatError


@dataclass(frozen=True)
class StorageType:
    """A storage class named in a pickle: only its element type matters."""

    name: str
    dtype: str

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


@dataclass
class Storage:
    """One storage record: its key, element type and declared element count."""

    key: str
    type: StorageType
    numel: int
    data: bytes | None = None


@dataclass
class LazyTensor:
    """A tensor's view of a storage, checked, materialized only by :meth:`array`."""

    storage: Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    source: str

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise FileFormatError(self.source, f"storage {self.storage.key!r} has no data")
        itemsize = self.storage.type.itemsize
        if len(data) < self.storage.numel * itemsize:
            raise FileFormatError(self.source, f"storage {self.storage.key!r} holds "
                                               f"{len(data):,} bytes, declared "
                                               f"{self.storage.numel * itemsize:,}")
        raw_dtype = "<u2" if self.storage.type.dtype == "bfloat16" else self.storage.type.dtype
        flat = np.frombuffer(data, dtype=raw_dtype, count=self.storage.numel)
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], self.shape, tuple(s * itemsize for s in self.stride),
            writeable=False)
        array = np.array(view)  # a copy: the file's buffer is not kept alive
        if self.storage.type.dtype == "bfloat16":  # bf16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="), copy=False)
