"""A compare side for a whole ONNX model file, as users export it (torch.onnx.export, tf2onnx...).

Not the LSTM nodes cut out of the file (``convert --verify``'s runner): the whole
graph, run in onnxruntime, through the file's own graph inputs and outputs.
The file is read by the project's reader (:func:`equivalence.files.registry.read`)
for the LSTM stack, its weights and the graph; the model onnxruntime gets has
every external tensor already read through the reader's checked
:func:`~equivalence.files.onnx.graph.tensor_array` (a reference out of the
model's folder is refused), so onnxruntime opens no path the file names.

The roles (which port is x, h0, ... y, h, c) are :mod:`.onnx_roles`'s; the
layouts, decided by an instrumented probe run, :mod:`.onnx_layouts`'s; the
onnxruntime session :mod:`.onnx_runtime`'s. This module reads the file and
puts them together as a :class:`~.side.Side`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from equivalence.artefacts.onnx_layouts import (
    Layout,
    fixed_dims,
    from_graph,
    probe_layout,
    to_graph,
)
from equivalence.artefacts.onnx_roles import GraphPort, assign_roles, graph_ports, trace
from equivalence.artefacts.onnx_runtime import (
    as_elem,
    dtype_name,
    first_line,
    open_session,
    run_options,
)
from equivalence.artefacts.side import (
    INPUT_ROLES,
    OUTPUT_ROLES,
    Feed,
    Refused,
    Returned,
    Shape,
    Side,
)
from equivalence.errors import ConversionError
from equivalence.files._base import FoundLSTM, counted, select
from equivalence.files.limits import listed, shown


def onnx_side(path: Path, *, mapping: dict[str, str] | None = None,
              layer: str | None = None) -> Side:
    """The whole model in ``path`` as a compare side (the modules named above); ``mapping`` (role ->
    name, from --map) overrides the roles read, ``layer`` picks the LSTM stack."""
    from equivalence.files.registry import read

    path = Path(path)
    found = _stack(read(path, "onnx"), layer, path)
    notes: list[str] = list(found.notes)
    weights = _weights(found, notes)
    model = _inlined(found.definition.model, path)
    traced = not found.definition.scope.path  # a subgraph's values are not graph outputs
    inputs, outputs = graph_ports(model)
    if traced:
        trace(model, found.definition.chain, inputs, outputs)
    mapping = mapping or {}
    taken = assign_roles(inputs, INPUT_ROLES, mapping, traced, notes, "input", path)
    returned = assign_roles(outputs, OUTPUT_ROLES, mapping, traced, notes, "output", path)
    if "x" not in taken:
        raise ConversionError(f"{path}: no graph input is x; pass --map-a/--map-b x=NAME")
    if "y" not in returned:
        raise ConversionError(f"{path}: no graph output is y; pass --map-a/--map-b y=NAME")
    ports = {p.name: p for p in inputs + outputs}
    layout = probe_layout(model, found, weights, taken, returned, ports, traced, path, notes)
    return _side(path, found, weights, model, taken, returned, ports, layout, notes)


# ---------------------------------------------------------------- reading


def _stack(found: list[FoundLSTM], layer: str | None, path: Path) -> FoundLSTM:
    """The one LSTM stack (or the one ``layer`` names); the whole graph runs all its layers,
    so a single layer of a stack is no side."""
    if layer is None and len(found) > 1:
        raise ConversionError(f"{path}: {counted(found, '{n} {cell} stack{s}')} found "
                              f"({listed([f.name for f in found])}); choose one with "
                              "--layer-a/--layer-b NAME")
    chosen = select(found, layer, path)
    if not any(chosen is f for f in found):
        whole = next(f.name for f in found if any(chosen is p for p in f.parts))
        raise ConversionError(f"{path}: {shown(layer)} is one layer of the stack "
                              f"{shown(whole)}; the whole model runs the stack: name it")
    if chosen.runner != "onnx" or chosen.definition is None:
        raise ConversionError(f"{path}: LSTM {shown(chosen.name)} is not an ONNX node stack")
    return chosen


def _weights(found: FoundLSTM, notes: list[str]) -> Any:
    try:
        return found.canonical()
    except ConversionError as exc:  # the graph still runs; the diagnosis works from outputs
        notes.append(f"weights not read ({exc}); compared by outputs only")
        return None


def _inlined(model: Any, path: Path) -> Any:
    """``model`` with every external tensor read in through the reader's checks (a copy;
    the reader's model is left as it is)."""
    from onnx import TensorProto, numpy_helper

    from equivalence.files.onnx.graph import base_folder, tensor_array

    tensors = list(_tensors(model.graph))
    if not any(t.data_location == TensorProto.EXTERNAL for t in tensors):
        return model
    copy = type(model)()
    copy.CopyFrom(model)
    for tensor in _tensors(copy.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            array = tensor_array(tensor, path, base_folder(path))
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    return copy


def _tensors(graph: Any) -> Any:
    """Every TensorProto of ``graph`` and its subgraphs (initializers, Constant values)."""
    from onnx import AttributeProto

    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == AttributeProto.TENSOR:
                yield attribute.t
            yield from attribute.tensors
            if attribute.type == AttributeProto.GRAPH:
                yield from _tensors(attribute.g)
            for body in attribute.graphs:
                yield from _tensors(body)

# ---------------------------------------------------------------- the side


def _side(path: Path, found: FoundLSTM, weights: Any, model: Any, taken: dict[str, str],
          returned: dict[str, str], ports: dict[str, GraphPort], layout: Layout,
          notes: list[str]) -> Side:
    session = open_session(model, path)
    spec = weights.spec if weights is not None else None
    rows = spec.layers * spec.directions if spec else layout.rows
    units = spec.units if spec else layout.units
    width = spec.output_size if spec else units
    fixed_batch, fixed_steps = fixed_dims(taken, ports, layout)
    x_port = ports[taken["x"]]
    outputs = list(returned.items())

    def run(feed: Feed) -> Returned:
        graph_feed = {taken["x"]: as_elem(to_graph(layout.x, feed.x), x_port.elem)}
        for role, value, size in (("h0", feed.h0, width), ("c0", feed.c0, units)):
            if role not in taken:
                if value is not None:
                    raise Refused(f"the model takes no {role}")
                continue
            if value is None:
                value = np.zeros((rows or 1, feed.batch, size or 1), np.float32)
            graph_feed[taken[role]] = as_elem(to_graph(layout.states, value),
                                              ports[taken[role]].elem)
        if "lengths" in taken:
            lengths = feed.lengths if feed.lengths is not None else np.full(feed.batch,
                                                                            feed.steps)
            graph_feed[taken["lengths"]] = as_elem(np.asarray(lengths),
                                                   ports[taken["lengths"]].elem)
        elif feed.lengths is not None:
            raise Refused("the model takes no sequence lengths")
        try:
            results = session.run([n for _, n in outputs], graph_feed, run_options())
            got = {r: np.asarray(from_graph(getattr(layout, r), v))
                   for (r, _), v in zip(outputs, results, strict=True)}
        except Exception as exc:  # onnxruntime said no (a fixed dim, a shape it cannot do)
            raise Refused(first_line(exc)) from exc
        return Returned(got["y"], got.get("h"), got.get("c"))

    if spec and layout.input_size != spec.input_size:
        notes.append(f"x has {layout.input_size} features, the LSTM's X {spec.input_size} "
                     "(the graph computes X from x)")
    shape = Shape(layout.input_size,
                  spec.directions * spec.output_size if spec else layout.width, rows, units,
                  width)
    names = {**taken, **returned}
    label = (f"the whole model {path} in onnxruntime (" + ", ".join(
        f"{r}={shown(n)}" for r, n in names.items()) + f"; x {_words(layout.x)})")
    if fixed_batch or fixed_steps:
        notes.append(f"the graph fixes batch={fixed_batch or 'any'}, "
                     f"steps={fixed_steps or 'any'}")
    return Side(path=str(path), kind="ONNX model", label=label, run=run,
                takes=frozenset(set(taken) - {"x"}), returns=frozenset(returned), shape=shape,
                names=names, fixed_batch=fixed_batch, fixed_steps=fixed_steps,
                weights=weights, dtype=dtype_name(x_port.elem), notes=notes,
                reader_notes=tuple(found.notes), stored=_stored(found, taken))


def _stored(found: FoundLSTM, taken: dict[str, str]) -> Feed | None:
    """The initial states and lengths the file stores (initializers), as a Feed's."""
    stored = found.stored
    if stored is None:
        return None

    def flat(value: np.ndarray | None) -> np.ndarray | None:
        return None if value is None else value.reshape(-1, *value.shape[2:])

    return Feed(np.zeros((0, 0, 0)), flat(stored.h0), flat(stored.c0), stored.lengths)


def _words(kind: str) -> str:
    return {"bt": "batch-first", "tb": "time-major"}.get(kind, kind)
