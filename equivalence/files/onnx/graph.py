"""ONNX graphs from strangers: checked tensors, nested scopes, and a restricted constant folder.

* :func:`tensor_array` turns a ``TensorProto`` into numpy only after its
  declared size was checked against the bytes it carries and the cap; external
  data is read only from a plain file inside the model's own folder, within
  that file's size.
* :class:`Scope` is one graph (the model's, or an ``If``/``Loop``/``Scan``
  body) with its producers, constants and parent, so a name in a body
  resolves the way ONNX resolves it: locally, then in the enclosing graphs.
* :class:`Folder` computes a tensor that constant-only subgraphs produce
  (``Constant -> Slice -> Concat -> Unsqueeze`` and the like). It evaluates a
  small allowlist of shape and arithmetic ops with numpy, checks every
  output's size before making it, and raises :class:`NotConstant` naming the
  graph input or the op when a value depends on anything else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.files._base import FileFormatError
from equivalence.files.limits import MAX_ARRAY_BYTES, check_declared, first_repeat, shown

MAX_SCOPE_DEPTH = 16  # real models nest If/Loop 2-3 deep; protobuf stops near 33
MAX_NODES = 1_000_000
MAX_FOLD_DEPTH = 400
MAX_FOLD_NODES = 10_000


class NotConstant(Exception):
    """A value that depends on a graph input or an op the folder does not evaluate."""


# ---------------------------------------------------------------- tensors


def tensor_array(tensor: Any, path: Path, base_dir: Path | None) -> np.ndarray:
    """A TensorProto's values, checked before anything is allocated (see module docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    what = f"tensor {tensor.name!r}"
    dims = tuple(int(d) for d in tensor.dims)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(path, f"{what}: unknown element type {tensor.data_type}") from exc
    if tensor.data_type == TensorProto.STRING:
        raise FileFormatError(path, f"{what}: a string tensor, not numbers")
    nbytes = check_declared(path, what, dims, dtype.itemsize, None)
    if tensor.data_location == TensorProto.EXTERNAL:
        raw = _external_bytes(tensor, path, base_dir, nbytes)
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(dims).astype(dtype)
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != nbytes:
            raise FileFormatError(path, f"{what}: raw_data holds {len(tensor.raw_data):,} bytes, "
                                        f"its dims {list(dims)} need {nbytes:,}")
    else:
        count = int(np.prod(dims, dtype=np.int64)) if dims else 1
        stored = max(len(tensor.float_data), len(tensor.int32_data), len(tensor.int64_data),
                     len(tensor.double_data), len(tensor.uint64_data))
        if stored != count:
            raise FileFormatError(path, f"{what}: {stored} stored values, its dims {list(dims)} "
                                        f"need {count}")
    try:
        return np.asarray(numpy_helper.to_array(tensor))
    except Exception as exc:
        raise FileFormatError(path, f"{what}: unreadable ({type(exc).__name__}: {exc})") from exc


def _external_bytes(tensor: Any, path: Path, base_dir: Path | None, nbytes: int) -> bytes:
    info = {entry.key: entry.value for entry in tensor.external_data}
    what = f"tensor {tensor.name!r}"
    location = info.get("location", "")
    if base_dir is None:
        raise FileFormatError(path, f"{what}: external data in a model read from memory")
    relative = Path(location)
    if (not location or relative.is_absolute() or ".." in relative.parts
            or location.startswith(("\\", "/")) or ":" in location):
        raise FileFormatError(path, f"{what}: external data location {location!r} is not a file "
                                    "name inside the model's folder (refusing to follow it)")
    folder = base_dir.resolve()
    target = (folder / relative).resolve()
    if folder not in target.parents or not target.is_file():
        raise FileFormatError(path, f"{what}: external data {location!r} resolves to "
                                    f"{str(target)!r}, outside the model's folder or not a file")
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", nbytes))
    except ValueError as exc:
        raise FileFormatError(path, f"{what}: external data offset/length not integers") from exc
    size = target.stat().st_size
    if length != nbytes or offset < 0 or offset + length > size:
        raise FileFormatError(path, f"{what}: external data ({offset=}, {length=}) does not fit "
                                    f"its dims ({nbytes:,} bytes) or {location!r} "
                                    f"({size:,} bytes)")
    with open(target, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


# ---------------------------------------------------------------- scopes


@dataclass
class Scope:
    """One graph and where it sits: ``path`` names it, ``parent`` encloses it."""

    graph: Any
    path: str
    parent: Scope | None = None
    depth: int = 0
    producers: dict[str, Any] = field(default_factory=dict)
    initializers: dict[str, Any] = field(default_factory=dict)
    inputs: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.producers = {out: node for node in self.graph.node for out in node.output if out}
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.inputs = {i.name for i in self.graph.input} - set(self.initializers)

    def lookup(self, name: str) -> tuple[Scope, str] | None:
        """(the scope that defines ``name``, how: "initializer", "node" or "input")."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.initializers:
                return scope, "initializer"
            if name in scope.producers:
                return scope, "node"
            if name in scope.inputs:
                return scope, "input"
            scope = scope.parent
        return None


def label(node: Any, index: int) -> str:
    return node.name or f"{node.op_type} node #{index}"


def scopes(graph: Any, path: Path) -> Iterator[Scope]:
    """The model's graph and every subgraph (If/Loop/Scan bodies), outer first."""
    from onnx import AttributeProto

    stack = [Scope(graph, "")]
    nodes = 0
    while stack:
        scope = stack.pop(0)
        _refuse_duplicates(scope, path)
        yield scope
        for index, node in enumerate(scope.graph.node):
            nodes += 1
            if nodes > MAX_NODES:
                raise FileFormatError(path, f"more than {MAX_NODES:,} nodes")
            for attribute in node.attribute:
                bodies = ([attribute.g] if attribute.type == AttributeProto.GRAPH else
                          list(attribute.graphs) if attribute.type == AttributeProto.GRAPHS
                          else [])
                for body in bodies:
                    if scope.depth + 1 > MAX_SCOPE_DEPTH:
                        raise FileFormatError(path, f"subgraphs nested more than "
                                                    f"{MAX_SCOPE_DEPTH} deep")
                    stack.append(Scope(body, f"{scope.path}{label(node, index)}/"
                                             f"{attribute.name}/", scope, scope.depth + 1))


def _refuse_duplicates(scope: Scope, path: Path) -> None:
    """Two initializers or two node outputs of one name: which one a runtime takes is the
    runtime's choice, not the file's, so reading either could be silently wrong."""
    for what, names in (("initializers", [t.name for t in scope.graph.initializer]),
                        ("node outputs", [o for n in scope.graph.node for o in n.output if o])):
        if len(set(names)) != len(names):
            twin = first_repeat(names)
            raise FileFormatError(path, f"two {what} named {shown(twin)} in graph "
                                        f"{shown(scope.path) or 'main'}; refusing to guess "
                                        "which one is meant")


# ---------------------------------------------------------------- folding


class Folder:
    """Constant values of tensor names, computed only from constants (module docstring)."""

    def __init__(self, path: Path, base_dir: Path | None, opset: int) -> None:
        self.path, self.base_dir, self.opset = path, base_dir, opset
        self.cache: dict[tuple[int, str], np.ndarray] = {}
        self.evaluated = 0

    def value(self, name: str, scope: Scope, depth: int = 0) -> np.ndarray:
        found = scope.lookup(name)
        if found is None:
            raise NotConstant(f"{name!r} is defined nowhere in the graph")
        owner, how = found
        key = (id(owner), name)
        if key in self.cache:
            return self.cache[key]
        if how == "input":
            where = f" of {owner.path.rstrip('/')}" if owner.path else ""
            raise NotConstant(f"depends on graph input {name!r}{where}")
        if how == "initializer":
            value = tensor_array(owner.initializers[name], self.path, self.base_dir)
        else:
            if depth > MAX_FOLD_DEPTH:
                raise NotConstant(f"a constant chain deeper than {MAX_FOLD_DEPTH} ops")
            node = owner.producers[name]
            self.evaluated += 1
            if self.evaluated > MAX_FOLD_NODES:
                raise NotConstant(f"more than {MAX_FOLD_NODES} ops to fold")
            for output, result in zip(node.output, self._evaluate(node, owner, depth),
                                      strict=False):
                if output:
                    self.cache[(id(owner), output)] = result
            if key not in self.cache:
                raise NotConstant(f"op {node.op_type} did not produce {name!r}")
            return self.cache[key]
        self.cache[key] = value
        return value

    def _evaluate(self, node: Any, scope: Scope, depth: int) -> list[np.ndarray]:
        from onnx import helper

        operation = FOLDABLE.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if operation is None:
            raise NotConstant(f"computed by op {node.op_type!r}, which the restricted constant "
                              "folder does not evaluate")
        inputs = [self.value(n, scope, depth + 1) if n else None for n in node.input]
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        try:
            results = operation(self, inputs, attributes)
        except NotConstant:
            raise
        except (ValueError, IndexError, TypeError, KeyError) as exc:
            raise NotConstant(f"op {node.op_type} {node.name!r} failed on its constants "
                              f"({type(exc).__name__}: {exc})") from exc
        for result in results:
            if result.nbytes > MAX_ARRAY_BYTES:
                raise NotConstant(f"op {node.op_type} makes {result.nbytes:,} bytes")
        return results

    def check_size(self, shape: Any, itemsize: int) -> None:
        """Refuse (before making it) an output larger than the cap."""
        count = 1
        for n in shape:
            if int(n) < 0:
                raise NotConstant(f"negative dimension in {list(shape)}")
            count *= int(n)
        if count * itemsize > MAX_ARRAY_BYTES:
            raise NotConstant(f"an output of shape {list(shape)} is over the size cap")

    def axes(self, inputs: list[Any], attributes: dict[str, Any], position: int) -> list[int]:
        """Axes given as an attribute (older opsets) or as an input (newer)."""
        if len(inputs) > position and inputs[position] is not None:
            return [int(a) for a in np.asarray(inputs[position]).reshape(-1)]
        return [int(a) for a in attributes.get("axes", [])]


def _constant(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    for key in ("value_float", "value_int"):
        if key in attributes:
            return [np.array(attributes[key], np.float32 if key == "value_float" else np.int64)]
    for key in ("value_floats", "value_ints"):
        if key in attributes:
            return [np.array(attributes[key], np.float32 if key == "value_floats" else np.int64)]
    if "value" in attributes:
        return [tensor_array(attributes["value"], folder.path, folder.base_dir)]
    raise NotConstant("a Constant without a dense value (sparse constants are not folded)")


def _reshape(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    data, shape = inputs[0], [int(s) for s in np.asarray(inputs[1]).reshape(-1)]
    if not attributes.get("allowzero", 0):
        shape = [data.shape[k] if s == 0 else s for k, s in enumerate(shape)]
    return [data.reshape(shape)]


def _squeeze(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    axes = folder.axes(inputs, attributes, 1)
    return [np.squeeze(inputs[0], axis=tuple(axes)) if axes else np.squeeze(inputs[0])]


def _unsqueeze(folder: Folder, inputs: list[Any], attributes: dict[str, Any]
               ) -> list[np.ndarray]:
    return [np.expand_dims(inputs[0], tuple(folder.axes(inputs, attributes, 1)))]


def _slice(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    data = inputs[0]
    if len(inputs) > 1:  # opset >= 10: starts, ends, axes, steps are inputs
        starts, ends = (np.asarray(inputs[k]).reshape(-1) for k in (1, 2))
        axes = (np.asarray(inputs[3]).reshape(-1) if len(inputs) > 3 and inputs[3] is not None
                else np.arange(len(starts)))
        steps = (np.asarray(inputs[4]).reshape(-1) if len(inputs) > 4 and inputs[4] is not None
                 else np.ones(len(starts), np.int64))
    else:
        starts, ends = np.asarray(attributes["starts"]), np.asarray(attributes["ends"])
        axes = np.asarray(attributes.get("axes", range(len(starts))))
        steps = np.ones(len(starts), np.int64)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if int(step) == 0:
            raise ValueError("Slice step 0")
        # Python slices clamp and wrap the way ONNX Slice does (INT64_MAX means "to the end").
        index[int(axis)] = slice(int(start), int(end), int(step))
    return [data[tuple(index)]]


def _gather(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    data, indices = inputs[0], np.asarray(inputs[1]).astype(np.int64)
    axis = int(attributes.get("axis", 0)) % max(1, data.ndim)
    folder.check_size((*data.shape[:axis], *indices.shape, *data.shape[axis + 1:]),
                      data.itemsize)
    return [np.take(data, indices, axis=axis)]


def _split(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    data, axis = inputs[0], int(attributes.get("axis", 0))
    if len(inputs) > 1 and inputs[1] is not None:
        sizes = [int(s) for s in np.asarray(inputs[1]).reshape(-1)]
    elif "split" in attributes:
        sizes = [int(s) for s in attributes["split"]]
    else:
        parts = int(attributes.get("num_outputs", 0)) or 1
        step = -(-data.shape[axis] // parts)
        sizes = [min(step, data.shape[axis] - k * step) for k in range(parts)]
    return list(np.split(data, np.cumsum(sizes)[:-1], axis=axis))


def _cast(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    from onnx import helper

    return [inputs[0].astype(helper.tensor_dtype_to_np_dtype(int(attributes["to"])))]


def _constant_of_shape(folder: Folder, inputs: list[Any], attributes: dict[str, Any]
                       ) -> list[np.ndarray]:
    shape = [int(s) for s in np.asarray(inputs[0]).reshape(-1)]
    value = (tensor_array(attributes["value"], folder.path, folder.base_dir).reshape(-1)
             if "value" in attributes else np.zeros(1, np.float32))
    folder.check_size(shape, value.itemsize)
    return [np.full(shape, value[0], value.dtype)]


def _expand(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    target = np.broadcast_shapes(inputs[0].shape,
                                 tuple(int(s) for s in np.asarray(inputs[1]).reshape(-1)))
    folder.check_size(target, inputs[0].itemsize)
    return [np.array(np.broadcast_to(inputs[0], target))]


def _tile(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    repeats = [int(r) for r in np.asarray(inputs[1]).reshape(-1)]
    folder.check_size([n * r for n, r in zip(inputs[0].shape, repeats, strict=True)],
                      inputs[0].itemsize)
    return [np.tile(inputs[0], repeats)]


def _binary(function: Any) -> Any:
    def evaluate(folder: Folder, inputs: list[Any], attributes: dict[str, Any]
                 ) -> list[np.ndarray]:
        shape = np.broadcast_shapes(inputs[0].shape, inputs[1].shape)
        folder.check_size(shape, max(inputs[0].itemsize, inputs[1].itemsize))
        return [np.asarray(function(inputs[0], inputs[1])).astype(inputs[0].dtype)]

    return evaluate


def _concat(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    return [np.concatenate([i for i in inputs if i is not None], axis=int(attributes["axis"]))]


def _transpose(folder: Folder, inputs: list[Any], attributes: dict[str, Any]
               ) -> list[np.ndarray]:
    perm = attributes.get("perm")
    return [np.ascontiguousarray(np.transpose(inputs[0], perm))]


def _flatten(folder: Folder, inputs: list[Any], attributes: dict[str, Any]) -> list[np.ndarray]:
    axis = int(attributes.get("axis", 1)) % (inputs[0].ndim + 1) if inputs[0].ndim else 0
    outer = int(np.prod(inputs[0].shape[:axis], dtype=np.int64))
    return [inputs[0].reshape(outer, -1)]


FOLDABLE = {
    "Constant": _constant,
    "Identity": lambda folder, inputs, attributes: [inputs[0]],
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Slice": _slice,
    "Gather": _gather,
    "Split": _split,
    "Concat": _concat,
    "Transpose": _transpose,
    "Flatten": _flatten,
    "Cast": _cast,
    "Shape": lambda folder, inputs, attributes: [np.asarray(inputs[0].shape, np.int64)],
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": _tile,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(np.divide),
    "Neg": lambda folder, inputs, attributes: [np.negative(inputs[0])],
}


def opset_version(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def base_folder(path: Path) -> Path:
    return Path(os.path.dirname(os.path.abspath(path)))
