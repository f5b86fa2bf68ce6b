"""torch pickles read without torch and without running them: tensors and plain data only.

``torch.save`` files (zip archives and the legacy single-stream format) and
TorchScript archives store their objects as pickles. Unpickling a stranger's
pickle can run any Python, so this module never lets the pickle reach a real
class or function: :class:`SafeUnpickler` resolves only an allowlist of names
to stand-ins defined here (a tensor is rebuilt as numpy from its storage
bytes; ``OrderedDict``; TorchScript's list helpers), turns TorchScript module
classes (``__torch__.*``) into inert :class:`ScriptObject` records, and refuses
every other name by name. Tensors stay :class:`LazyTensor` (storage, offset,
size, stride, checked against the storage and the caps) until a reader asks for
one, so memory follows what is used, not what a file declares.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from equivalence.files._base import FileFormatError
from equivalence.files.limits import MAX_ARRAY_BYTES, check_declared, read_member, shown
from equivalence.files.torch import module_pickle, numpy_pickle
from equivalence.files.torch.tensor_records import LazyTensor, Storage, StorageType

STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
    "ComplexFloatStorage": "<c8", "ComplexDoubleStorage": "<c16",
}
TORCH_DTYPES = {"float32": "<f4", "float": "<f4", "float64": "<f8", "double": "<f8",
                "float16": "<f2", "half": "<f2", "bfloat16": "bfloat16", "int64": "<i8",
                "long": "<i8", "int32": "<i4", "int": "<i4", "int16": "<i2", "int8": "i1",
                "uint8": "u1", "bool": "?"}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_CLASSES = 10_000


class ScriptObject:
    """An inert stand-in for a TorchScript object (a module, a custom class)."""

    qualified_name: ClassVar[str] = ""

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def attributes(self) -> dict[str, Any]:
        state = getattr(self, "state", None)
        return state if isinstance(state, dict) else {}


def _restore_type_tag(value: Any, _type: Any = None) -> Any:
    return value


def _build_list(items: Any) -> list[Any]:
    return list(items) if isinstance(items, (list, tuple)) else []


def _device(*args: Any) -> str:
    return ":".join(str(a) for a in args)


def _size(items: Any = ()) -> tuple[Any, ...]:
    return tuple(items)


def _whole_module_hint(module: str) -> str:
    """What to do when the class is a model saved whole (``torch.save(model)``)."""
    if module.startswith("torch.nn.") or module == "__main__":  # not os.system & co.
        return ("; a model saved whole with torch.save(model) is not read: save "
                "`model.state_dict()` instead")
    return ""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can only build data: see the module docstring."""

    def __init__(self, stream: Any, source: str, storage: Callable[[tuple], Storage],
                 file_bytes: int, script_objects: bool = False) -> None:
        super().__init__(stream)
        self.source, self._storage, self.file_bytes = source, storage, file_bytes
        self.script_objects = script_objects
        self.classes: dict[str, type] = {}
        self.module_records = not script_objects  # TorchScript's names are its own
        self.records: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2",
                                                 "_rebuild_tensor_v3"):
            return self._rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter",
                                                 "_rebuild_parameter_with_state"):
            return lambda data, *_rest: data
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name, STORAGE_DTYPES[name])
        if module == "torch" and name in TORCH_DTYPES:
            return StorageType(name, TORCH_DTYPES[name])
        if module == "torch" and name == "Size":
            return _size
        if module == "torch" and name == "device":
            return _device
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle":
            if name == "restore_type_tag":
                return _restore_type_tag
            if name.startswith("build_") and name.endswith("list"):
                return _build_list
        if self.script_objects and (module == "__torch__" or module.startswith("__torch__.")):
            return self._script_class(qualified)
        numpy_stand_in = numpy_pickle.find(module, name, self.source, self.file_bytes)
        if numpy_stand_in is not None:  # numpy's own array reconstruction, as data
            return numpy_stand_in
        refused = module_pickle.refusal(module, name)
        if refused is None and self.module_records:  # torch.save(model): inert records
            return module_pickle.stand_in(module, name, self.records)
        raise pickle.UnpicklingError(refused or
            f"the pickle names {qualified}, which a file of tensors has no need for "
            "(refused: unpickling it could run code)" + _whole_module_hint(module))

    def persistent_load(self, pid: Any) -> Storage:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]}")
        return self._storage(pid)

    def _script_class(self, qualified: str) -> type:
        if qualified not in self.classes:
            if len(self.classes) >= MAX_CLASSES:
                raise pickle.UnpicklingError(f"more than {MAX_CLASSES} TorchScript classes")
            short = qualified.rsplit(".", 1)[-1] or "ScriptObject"
            self.classes[qualified] = type(short, (ScriptObject,), {"qualified_name": qualified})
        return self.classes[qualified]

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any,
                        *rest: Any) -> LazyTensor:
        if not isinstance(storage, Storage):
            raise pickle.UnpicklingError("a tensor without a storage")
        for item in rest[:3]:  # _rebuild_tensor_v3 names its dtype after the hooks
            if isinstance(item, StorageType):
                storage.type = item
        shape, strides = _ints(size, "size"), _ints(stride, "stride")
        if len(shape) != len(strides) or not isinstance(offset, int) or offset < 0:
            raise pickle.UnpicklingError(f"tensor size {shape} / stride {strides} / offset "
                                         f"{offset!r} do not fit together")
        check_declared(self.source, f"tensor of storage {storage.key!r}", shape,
                       storage.type.itemsize, self.file_bytes)
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True) if n > 0)
        if all(n > 0 for n in shape) and last >= storage.numel:
            raise pickle.UnpicklingError(
                f"a tensor of size {shape} and stride {strides} at offset {offset} reaches "
                f"element {last}, past its storage's {storage.numel}")
        return LazyTensor(storage, offset, shape, strides, self.source)


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > 64 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise pickle.UnpicklingError(f"tensor {what} {str(values)[:80]} is not a tuple of "
                                     "non-negative ints")
    return tuple(values)


def _storage_record(pid: tuple, known: dict[str, Storage], file_bytes: int, source: str
                    ) -> Storage:
    _, kind, key, _location, numel = pid[:5]
    if not isinstance(kind, StorageType) or not isinstance(key, str):
        raise pickle.UnpicklingError(f"a storage record of unknown type ({str(kind)[:60]})")
    if not isinstance(numel, int) or numel < 0:
        raise pickle.UnpicklingError(f"storage {key!r} declares {numel!r} elements")
    if len(pid) > 5 and pid[5] is not None:
        raise pickle.UnpicklingError("storage views (a pre-1.0 torch file) are not read")
    check_declared(source, f"storage {key!r}", (numel,), kind.itemsize, file_bytes)
    if key not in known:
        known[key] = Storage(key, kind, numel)
    return known[key]


def unpickle(data: bytes, source: str, known: dict[str, Storage], file_bytes: int,
             script_objects: bool = False) -> Any:
    """One pickle, safely (see :class:`SafeUnpickler`); errors become FileFormatError."""
    stream = io.BytesIO(data)
    unpickler = SafeUnpickler(
        stream, source, lambda pid: _storage_record(pid, known, file_bytes, source),
        file_bytes, script_objects)
    return _load(unpickler, source)


def _load(unpickler: SafeUnpickler, source: str) -> Any:
    try:
        return unpickler.load()
    except FileFormatError:
        raise
    except pickle.UnpicklingError as exc:
        raise FileFormatError(source, f"cannot be loaded as tensors: {exc}") from exc
    except RecursionError as exc:
        raise FileFormatError(source, "the pickle nests too deeply") from exc
    except Exception as exc:  # a damaged stream fails in many ways (EOFError, KeyError, ...)
        raise FileFormatError(source, f"corrupted or truncated pickle ({type(exc).__name__}: "
                                      f"{str(exc)[:200]})") from exc


# ---------------------------------------------------------------- containers


def load_archive(archive: Any, path: Path, member: str, script_objects: bool = False
                 ) -> tuple[Any, dict[str, Storage]]:
    """Unpickle ``member`` (e.g. ``data.pkl``) of a torch zip archive, storages attached."""
    names = archive.namelist()
    matches = [n for n in names if n.endswith(f"/{member}") and n.count("/") == 1]
    if not matches:
        raise FileFormatError(path, f"a torch archive without {member}")
    root = matches[0].split("/", 1)[0]
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1:  # torch.load refuses these too
        raise FileFormatError(path, f"a torch archive with {len(roots)} root folders "
                                    f"({shown(sorted(roots)[:3])}), expected one")
    file_bytes = path.stat().st_size
    known: dict[str, Storage] = {}
    tree = unpickle(read_member(archive, matches[0], path), str(path), known, file_bytes,
                    script_objects)
    order = "little"
    if f"{root}/byteorder" in names:
        order = read_member(archive, f"{root}/byteorder", path, 16).decode("ascii", "replace")
    for storage in known.values():
        data = read_member(archive, f"{root}/data/{storage.key}", path)
        if order.strip() == "big" and storage.type.itemsize > 1:
            dtype = np.dtype(storage.type.dtype if storage.type.dtype != "bfloat16" else "<u2")
            data = np.frombuffer(data, dtype.newbyteorder(">")).astype(dtype).tobytes()
        storage.data = data
    return tree, known


def load_legacy(path: Path) -> Any:
    """A legacy (non-zip) ``torch.save`` stream: magic, version, sys info, data, storages."""
    file_bytes = path.stat().st_size
    source = str(path)
    known: dict[str, Storage] = {}
    with open(path, "rb") as handle:
        def next_pickle() -> Any:
            unpickler = SafeUnpickler(
                handle, source, lambda pid: _storage_record(pid, known, file_bytes, source),
                file_bytes)
            return _load(unpickler, source)

        magic = next_pickle()
        if isinstance(magic, Mapping) and handle.read(1) == b"":
            return magic  # one plain pickle of arrays (pickle.dump of a dict), not torch.save
        if magic != LEGACY_MAGIC:
            raise FileFormatError(path, "a pickle, but not a torch.save file (no torch magic "
                                        "number)")
        if next_pickle() != LEGACY_PROTOCOL:
            raise FileFormatError(path, "an unknown torch.save protocol version")
        info = next_pickle()
        if not isinstance(info, Mapping) or not info.get("little_endian", True):
            raise FileFormatError(path, "a big-endian or malformed legacy torch file")
        tree = next_pickle()
        keys = next_pickle()
        if not isinstance(keys, list) or any(k not in known for k in keys):
            raise FileFormatError(path, "the storage list does not match the tensors")
        for key in keys:
            storage = known[key]
            header = handle.read(8)
            if len(header) < 8:
                raise FileFormatError(path, f"truncated before storage {key!r}")
            (numel,) = struct.unpack("<q", header)
            size = numel * storage.type.itemsize
            if numel != storage.numel or size > file_bytes - handle.tell():
                raise FileFormatError(path, f"storage {key!r} declares {numel} elements; the "
                                            f"file holds {file_bytes - handle.tell():,} more "
                                            "bytes")
            if size > MAX_ARRAY_BYTES:
                raise FileFormatError(path, f"storage {key!r} is over the size cap")
            storage.data = handle.read(size)
    return tree


MAX_VISITS = 1_000_000
MAX_KEY_CHARS = 10_000  # a dotted key (module path and parameter name), far past real ones


def flatten(tree: Any, source: str) -> dict[str, LazyTensor]:
    """Dotted keys -> LazyTensor for every tensor in nested dicts, lists and script objects.

    A pickle can share one list many times over (a few bytes that expand to 2**100
    paths), so the walk has a visit budget and a depth cap.
    """
    out: dict[str, LazyTensor] = {}
    # Depth-first, in the file's order (the stack pops the last pushed item first).
    stack: list[tuple[Any, str, int]] = [(tree, "", 0)]
    visits = 0
    while stack:
        item, prefix, depth = stack.pop()
        visits += 1
        if visits > MAX_VISITS:
            raise FileFormatError(source, f"the pickle's objects expand to more than "
                                          f"{MAX_VISITS:,} entries")
        if depth > 100:
            continue
        if len(prefix) > MAX_KEY_CHARS:  # else each deeper key copies a longer string
            raise FileFormatError(source, f"a key of {len(prefix):,} characters "
                                          f"({shown(prefix[:60])}...), over the "
                                          f"{MAX_KEY_CHARS:,}-character cap")
        if isinstance(item, (ScriptObject, module_pickle.ModuleRecord)):
            item = item.attributes()
        if isinstance(item, LazyTensor):
            out[prefix[:-1]] = item
        elif isinstance(item, Mapping):
            stack.extend(reversed([(v, f"{prefix}{k}.", depth + 1) for k, v in item.items()]))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed([(v, f"{prefix}{i}.", depth + 1) for i, v in enumerate(item)]))
    return out
