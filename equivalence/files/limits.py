"""Limits every reader applies to files from strangers, before it allocates or follows anything.

Owns the caps (array bytes, zip members, JSON depth), the declared-size check
(an array may not declare more bytes than its file could hold, nor more than
the cap), safe zip opening (member names must decode, declared sizes are
capped, a member is read with a byte limit so a zip bomb stops at the cap),
JSON with a depth limit, and the HDF5 walk that refuses anything leading out
of the file (external links, external storage, virtual datasets, soft links
that do not resolve inside it). Only the standard library and numpy at the top.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.errors import FileFormatError

# One array, and everything a reader materializes from one file: far beyond any LSTM people
# ship (a 4096-unit layer is 0.5 GB in float32), far below what hurts a laptop.
MAX_ARRAY_BYTES = 2**30
# Compressed storage (deflate in zips and HDF5 filters) legitimately expands; deflate's
# ceiling is about 1032:1, so more than this from fewer bytes is a bomb, not weights.
MAX_EXPANSION = 1100
# Slack for arrays a format stores with stride 0 (torch expand) or as a fill value.
SMALL_ARRAY_BYTES = 2**20
MAX_ZIP_MEMBERS = 100_000
MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 200
MAX_HDF5_OBJECTS = 200_000
MAX_LAYERS = 10_000  # layer indices in key names (weight_ih_l{k}) beyond this are refused


MAX_NAME_CHARS = 200  # a name echoed in a message or a listing, at most (then "...")


def first_repeat(names: list[str]) -> str:
    """The first name that occurs a second time in ``names`` (which holds a repeat)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    raise ValueError("no name repeats")


def shown(name: object, limit: int = MAX_NAME_CHARS) -> str:
    """``repr(name)`` capped at ``limit`` characters: names come from strangers' files, and a
    200k-character node name must not become 200 KB of terminal output."""
    text = repr(name) if isinstance(name, str) else str(name)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text):,} characters)"


MAX_MESSAGE_CHARS = 2000  # one echoed line (an error, a note) at most


def listed(names: list[str], at_most: int = 10) -> str:
    """The first ``at_most`` names, each :func:`shown`, and how many more: a file may hold
    thousands of LSTMs, and the hint after the list must stay on screen."""
    text = ", ".join(shown(name) for name in names[:at_most])
    more = len(names) - at_most
    return text + (f" and {more:,} more" if more > 0 else "")


def capped(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters with the full length said: every name and message
    the CLI echoes passes through here, so a file's names cannot flood the output."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text):,} characters)"


def file_size(path: str | os.PathLike[str]) -> int:
    """The size of ``path`` (a folder: the sum of its files, for checkpoint shards)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size


def check_declared(path: str | os.PathLike[str], what: str, shape: tuple[int, ...],
                   itemsize: int, stored_bytes: int | None, compressed: bool = False) -> int:
    """Refuse an array declaring more bytes than the cap or than ``stored_bytes`` could hold.

    ``stored_bytes`` is what the file can hold for it (the file size, a zip member's
    size); ``compressed`` allows :data:`MAX_EXPANSION` times that. Returns the bytes.
    """
    if any((not isinstance(n, (int, np.integer))) or n < 0 for n in shape):
        raise FileFormatError(path, f"{what}: invalid declared shape {tuple(shape)}")
    count = 1
    for n in shape:
        count *= int(n)
    nbytes = count * int(itemsize)
    if nbytes > MAX_ARRAY_BYTES:
        raise FileFormatError(path, f"{what}: declared shape {tuple(int(n) for n in shape)} is "
                                    f"{nbytes:,} bytes, over the {MAX_ARRAY_BYTES:,}-byte cap "
                                    "per array")
    if stored_bytes is not None:
        room = stored_bytes * (MAX_EXPANSION if compressed else 1) + SMALL_ARRAY_BYTES
        if nbytes > room:
            raise FileFormatError(path, f"{what}: declared shape {tuple(int(n) for n in shape)} "
                                        f"is {nbytes:,} bytes, but the file holds only "
                                        f"{stored_bytes:,} bytes for it")
    return nbytes


# ---------------------------------------------------------------- zip archives


def open_zip(path: Path, what: str) -> zipfile.ZipFile:
    """A ZipFile whose member list was checked: names decode, counts and sizes are capped."""
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except UnicodeDecodeError as exc:
        raise FileFormatError(path, f"{what}: a zip member name is not valid UTF-8 ({exc.reason})"
                              ) from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise FileFormatError(path, f"corrupted or truncated zip archive ({exc})") from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        archive.close()
        raise FileFormatError(path, f"{what}: {len(infos):,} zip members, over the "
                                    f"{MAX_ZIP_MEMBERS:,} cap")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        archive.close()
        twin = first_repeat(names)
        # zipfile reads the last of two members named alike, torch's reader the first
        raise FileFormatError(path, f"{what}: two zip members named {shown(twin)}; refusing "
                                    "to guess which one is meant")
    return archive


def read_member(archive: zipfile.ZipFile, name: str, path: Path, limit: int = MAX_ARRAY_BYTES
                ) -> bytes:
    """A member's bytes, refusing declared or actual sizes over ``limit`` (a zip bomb stops)."""
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        raise FileFormatError(path, f"the archive has no {name!r}") from exc
    compressed = info.compress_type != zipfile.ZIP_STORED
    check_declared(path, f"zip member {name!r}", (info.file_size,), 1,
                   info.compress_size, compressed)
    if info.file_size > limit:
        raise FileFormatError(path, f"zip member {name!r} declares {info.file_size:,} bytes, "
                                    f"over the {limit:,}-byte cap")
    try:
        with archive.open(info) as stream:
            data = stream.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise FileFormatError(path, f"zip member {name!r} is damaged ({exc})") from exc
    except Exception as exc:  # zlib.error and friends from a damaged deflate stream
        raise FileFormatError(path, f"zip member {name!r} is damaged "
                                    f"({type(exc).__name__}: {exc})") from exc
    if len(data) > limit:
        raise FileFormatError(path, f"zip member {name!r} inflates past the {limit:,}-byte cap")
    return data


# ---------------------------------------------------------------- JSON


def load_json(data: bytes | str, path: str | os.PathLike[str], what: str) -> Any:
    """JSON with a size and nesting cap (deep nesting would exhaust the recursion limit)."""
    if len(data) > MAX_JSON_BYTES:
        raise FileFormatError(path, f"{what}: {len(data):,} bytes of JSON, over the cap")
    depth = _nesting(data if isinstance(data, str) else data.decode("utf-8", "replace"))
    if depth > MAX_JSON_DEPTH:
        raise FileFormatError(path, f"{what}: JSON nested {depth} levels deep (at most "
                                    f"{MAX_JSON_DEPTH})")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FileFormatError(path, f"{what}: not valid JSON ({exc})") from exc


def _nesting(text: str) -> int:
    """The deepest bracket nesting outside strings, without parsing (so without recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
        elif char in "]}":
            depth -= 1
    return deepest


# ---------------------------------------------------------------- HDF5


class H5Guard:
    """The checks for one HDF5 file: walked for outside references once, then every attribute
    and dataset read through it has its declared size checked first."""

    def __init__(self, root: Any, path: Path, file_bytes: int) -> None:
        self.path, self.file_bytes = path, file_bytes
        check_hdf5(root, path)

    def attrs(self, obj: Any) -> dict[str, Any]:
        """Every attribute of ``obj``, each checked against the file's size before reading."""
        out = {}
        for index, name in enumerate(obj.attrs):
            if index > MAX_HDF5_OBJECTS:
                raise FileFormatError(self.path, f"more than {MAX_HDF5_OBJECTS:,} attributes")
            identifier = obj.attrs.get_id(name)
            shape = tuple(int(n) for n in (identifier.shape or ()))
            check_declared(self.path, f"HDF5 attribute {name!r} of {obj.name!r}", shape,
                           identifier.dtype.itemsize, self.file_bytes)
            out[name] = obj.attrs[name]
        return out

    def dataset(self, dataset: Any) -> np.ndarray:
        return read_dataset(dataset, self.path)


def check_hdf5(root: Any, path: Path) -> None:
    """Refuse an HDF5 file with anything that leads out of it, before any dataset is read."""
    import h5py

    count = 0
    for name, link, owner in _links(root):
        count += 1
        if count > MAX_HDF5_OBJECTS:
            raise FileFormatError(path, f"more than {MAX_HDF5_OBJECTS:,} HDF5 objects")
        if isinstance(link, h5py.ExternalLink):
            raise FileFormatError(path, f"HDF5 external link {name!r} -> {link.filename!r}:"
                                        f"{link.path!r} (refusing to follow a reference out of "
                                        "the file)")
        if isinstance(link, h5py.SoftLink):
            target = owner.get(name.rsplit("/", 1)[-1], default=None)
            if target is None:
                raise FileFormatError(path, f"HDF5 soft link {name!r} -> {link.path!r} does not "
                                            "resolve inside the file")
            continue  # its target is walked under its own name
        if isinstance(link, h5py.HardLink):
            _check_object(owner, name, path)


def _links(root: Any) -> Iterator[tuple[str, Any, Any]]:
    """(path, link, parent group) of every link, walked without following soft links."""
    import h5py

    stack = [(root, "")]
    seen: set[Any] = set()
    while stack:
        group, prefix = stack.pop()
        for key in group:
            link = group.get(key, getlink=True)
            name = f"{prefix}/{key}"
            yield name, link, group
            if isinstance(link, h5py.HardLink):
                item = group.get(key)
                if isinstance(item, h5py.Group):
                    ident = item.id.__hash__()
                    if ident not in seen:
                        seen.add(ident)
                        stack.append((item, name))


def _check_object(group: Any, name: str, path: Path) -> None:
    import h5py

    item = group.get(name.rsplit("/", 1)[-1])
    if not isinstance(item, h5py.Dataset):
        return
    if item.external:
        files = ", ".join(repr(e[0]) for e in item.external)
        raise FileFormatError(path, f"HDF5 dataset {name!r} is stored outside the file ({files}); "
                                    "refusing to read external storage")
    if item.is_virtual:
        raise FileFormatError(path, f"HDF5 dataset {name!r} is a virtual dataset mapping other "
                                    "files; refusing to follow it")


def read_dataset(dataset: Any, path: Path) -> np.ndarray:
    """A dataset's values, after its declared size was checked against its storage and the cap."""
    name = dataset.name
    try:
        dtype = dataset.dtype
        shape = tuple(int(n) for n in dataset.shape) if dataset.shape is not None else ()
    except Exception as exc:
        raise FileFormatError(path, f"HDF5 dataset {name!r} has an unreadable type or shape "
                                    f"({type(exc).__name__}: {exc})") from exc
    if dtype.kind not in "fiub":
        raise FileFormatError(path, f"HDF5 dataset {name!r} holds {dtype} values, not numbers")
    _refuse_unavailable_filters(dataset, path)
    stored = int(dataset.id.get_storage_size())
    compressed = bool(dataset.compression) or dataset.chunks is not None
    check_declared(path, f"HDF5 dataset {name!r}", shape, dtype.itemsize, stored, compressed)
    return np.asarray(dataset[()])


def _refuse_unavailable_filters(dataset: Any, path: Path) -> None:
    """HDF5 skips an unavailable filter marked optional and hands back the stored bytes as
    values: silently wrong weights. Every filter in the pipeline must be available here."""
    from h5py import h5z

    plist = dataset.id.get_create_plist()
    for index in range(plist.get_nfilters()):
        code, _flags, _values, label = plist.get_filter(index)
        if not h5z.filter_avail(code):
            name = label.decode("ascii", "replace") if isinstance(label, bytes) else label
            raise FileFormatError(path, f"HDF5 dataset {shown(dataset.name)} is stored through "
                                        f"filter {code} ({shown(name)}), which is not "
                                        "available here; refusing to read its bytes as values")


# ---------------------------------------------------------------- .npz case files


def check_npz(path: Path) -> None:
    """Refuse an .npz before numpy reads it: every member's declared array must fit its bytes
    and the cap, no object (pickled) arrays, and a case file's ``meta`` must be shallow JSON."""
    with open_zip(path, ".npz archive") as archive:
        names = archive.namelist()
        if "meta.npy" not in names:
            raise FileFormatError(path, f"an .npz without 'meta': not an equivalence case file "
                                        f"(members: {names[:5]})")
        for info in archive.infolist():
            if info.filename.endswith(".npy"):
                _check_npy(archive, info, path)
        meta = read_member(archive, "meta.npy", path, MAX_JSON_BYTES * 4 + 4096)
    array = np.lib.format.read_array(io.BytesIO(meta), allow_pickle=False)
    if array.dtype.kind != "U" or array.ndim != 0:
        raise FileFormatError(path, f"meta is a {array.dtype} array of shape {array.shape}, "
                                    "expected one JSON string")
    meta_json = load_json(str(array), path, "the case file's meta")
    if not isinstance(meta_json, dict):
        raise FileFormatError(path, f"meta is JSON {type(meta_json).__name__}, expected an "
                                    "object")


def _check_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> None:
    what = f"npz member {info.filename!r}"
    compressed = info.compress_type != zipfile.ZIP_STORED
    check_declared(path, what, (info.file_size,), 1, info.compress_size, compressed)
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _fortran, dtype = header(stream, max_header_size=10_000)
    except FileFormatError:
        raise
    except Exception as exc:  # a bad magic, header or dtype string
        raise FileFormatError(path, f"{what}: not a valid .npy header ({exc})") from exc
    if dtype.hasobject:
        raise FileFormatError(path, f"{what}: an object array (a pickle); refusing to load it")
    check_declared(path, what, tuple(shape), dtype.itemsize, info.file_size)
