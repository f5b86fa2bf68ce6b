"""Work shared across checks in one process: a run is keyed by exactly what determines it.

A runtime's result depends on its row (name, format options), the spec, the
inputs and the native weights, nothing else: runtimes are deterministic on
the CPU. So when two checks of one process ask the same runtime to run the
same bytes (a source shared by many pairs, a target fed converted weights
bit-identical to weights it has already run, the float64 reference of a case
already judged), the second gets the first's result. Keys are content hashes
of every array (dtype, shape and bytes), so a verdict is exactly as strict as
without the cache; values are made read-only so that no caller can change a
result another check will read.

``EQUIVALENCE_NO_CACHE=1`` turns sharing off (the naive baseline of
``python -m equivalence.harness.bench --suite``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
MAX_ENTRIES = 4096  # results are small (a few KB); this bounds memory at tens of MB
MAX_COPIED = 1 << 22  # elements a key may copy from a non-contiguous array (16 MB of float32)


class Unhashable(Exception):
    """A value with no content hash here (e.g. a framework tensor): do not share its run."""


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))


def _feed(digest: Any, value: Any) -> None:
    # exact built-in containers first: most of a key is lists and dicts of arrays, and an
    # exact type test is much cheaper than the abstract-class checks further down
    kind = type(value)
    if kind is np.ndarray or kind.__module__ == "numpy":
        _feed_array(digest, value)
    elif kind is list or kind is tuple:
        _feed_sequence(digest, value)
    elif kind is dict or isinstance(value, Mapping):
        keys = sorted(value, key=repr)
        if all(type(key) is str for key in keys):  # names in one update: a list repr is unambiguous
            digest.update(f"n{keys!r}".encode())
            for key in keys:
                _feed(digest, value[key])
            return
        digest.update(f"m{len(value)}".encode())
        for key in keys:
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, np.ndarray):
        _feed_array(digest, value)
    elif isinstance(value, (list, tuple)):
        _feed_sequence(digest, value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(kind.__name__.encode())
        for name in _field_names(kind):  # type: ignore[arg-type]  # a dataclass type: hashable
            _feed(digest, getattr(value, name))
    elif value is None or isinstance(value, (bool, int, float, str, bytes)):
        digest.update(f"s{kind.__name__}{value!r}".encode())
    else:
        raise Unhashable(kind.__name__)


def _feed_array(digest: Any, value: Any) -> None:
    # a contiguous array is hashed in place (its buffer), others through one contiguous copy
    contiguous = type(value) is np.ndarray and value.flags.c_contiguous
    if not contiguous and np.size(value) > MAX_COPIED:  # a broadcast view may stand for terabytes
        raise Unhashable("large non-contiguous array")
    array = value if contiguous else np.ascontiguousarray(value)
    if array.dtype.hasobject:  # no stable bytes; the run itself names such arrays
        raise Unhashable("object array")
    digest.update(f"a{array.dtype.str}{array.shape}".encode())
    if array.size:
        try:
            digest.update(array)  # a C-contiguous buffer: its bytes, without a copy
        except (BufferError, TypeError, ValueError):  # a dtype the buffer protocol lacks
            digest.update(array.reshape(-1).view(np.uint8).data)


def _feed_sequence(digest: Any, value: list[Any] | tuple[Any, ...]) -> None:
    digest.update(f"l{type(value).__name__}{len(value)}".encode())
    for item in value:
        _feed(digest, item)


def fingerprint(*parts: Any) -> bytes:
    """A content hash of ``parts`` (arrays by dtype, shape and bytes); raises Unhashable."""
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        _feed(digest, part)
    return digest.digest()


def _freeze(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            _freeze(getattr(value, field.name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _freeze(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            _freeze(item)
    return value


class Memo:
    """A bounded, least-recently-used map from content keys to computed values."""

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self.size = size
        self._values: OrderedDict[tuple[str, bytes], Any] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def enabled() -> bool:
        return os.environ.get("EQUIVALENCE_NO_CACHE") != "1"

    def get(
        self, kind: str, parts: tuple[Any, ...], compute: Callable[[], T], freeze: bool = True
    ) -> T:
        """``compute()``, or the value already computed for the same ``kind`` and content.

        ``freeze=False`` for values handed to frameworks that want writable buffers
        (native weights): callers must then treat them as read-only by convention.
        """
        if not self.enabled():
            return compute()
        try:
            key = (kind, fingerprint(*parts))
        except Unhashable:
            return compute()
        if key in self._values:
            self.hits += 1
            self._values.move_to_end(key)
            return self._values[key]
        self.misses += 1
        value = compute()
        if freeze:
            _freeze(value)
        self._values[key] = value
        while len(self._values) > self.size:
            self._values.popitem(last=False)
        return value

    def clear(self) -> None:
        self._values.clear()
        self.hits = self.misses = 0


SHARED = Memo()
