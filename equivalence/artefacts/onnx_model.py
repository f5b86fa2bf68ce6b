"""A compare side for a whole ONNX model file, as users export it (torch.onnx.export, tf2onnx...).

Not the LSTM nodes cut out of the file (``convert --verify``'s runner): the whole
graph, run in onnxruntime, through the file's own graph inputs and outputs.
The file is read by the project's reader (:func:`equivalence.files.registry.read`)
for the LSTM stack, its weights and the graph; the model onnxruntime gets has
every external tensor already read through the reader's checked
:func:`~equivalence.files.onnx_graph.tensor_array` (a reference out of the
model's folder is refused), so onnxruntime opens no path the file names.

Roles (``x``, ``h0``, ``c0``, ``lengths`` in; ``y``, ``h``, ``c`` out), in order:
``--map``; the tensor's whole name (``hn``, ``initial_h``: what the user's code
reads, so it wins over the dataflow, with a note where they disagree); the
dataflow (the LSTM input slot a graph input reaches, past value-free ops such as
Shape; the LSTM output slot a graph output comes from), which beats a generic
word inside a name (``input_2``); position, only where the dataflow cannot be
traced (an LSTM inside a subgraph). Every input must get a role (it must be
fed); an output without one is left out, with a note.

Layouts: a run of a copy of the model that also returns the stack's own X,
initial_h, Y, Y_h and Y_c, once per hypothesis (x batch-first or time-major,
states (rows, B, H) or (B, rows, H)), decides by content; by shape where the
content is not a rearrangement (a layer before the LSTM). The declared static
dims of x, and the batch of the state inputs, are the shape the graph fixes.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from ..files._base import FoundLSTM, select
from ..files.limits import listed, shown
from .side import INPUT_ROLES, OUTPUT_ROLES, Feed, Refused, Returned, Shape, Side

IN_SLOTS = {0: "x", 4: "lengths", 5: "h0", 6: "c0"}
OUT_SLOTS = {0: "y", 1: "h", 2: "c"}
VALUE_FREE = {"Shape", "Size"}  # their outputs carry none of their input's values
IN_NAMES = {
    "x": {"x", "input", "inputs", "xs", "src", "features", "data", "inputsequence"},
    "h0": {"h0", "h", "hx", "hidden", "initialh", "hin", "hidden0", "hprev", "hstate"},
    "c0": {"c0", "c", "cx", "cell", "initialc", "cin", "cell0", "cprev", "cstate"},
    "lengths": {"lengths", "length", "lens", "seqlens", "seqlen", "sequencelens",
                "sequencelengths", "seqlengths", "sequencelength"},
}
OUT_NAMES = {
    "y": {"y", "output", "outputs", "out", "ys", "sequence"},
    "h": {"hn", "h", "hy", "yh", "stateh", "hidden", "hout", "hiddenstate", "hfinal", "hnext"},
    "c": {"cn", "c", "cy", "yc", "statec", "cell", "cout", "cellstate", "cfinal", "cnext"},
}
# Names an exporter makes up (TorchScript's "334" and "/l/LSTM_output_1", dynamo's
# "val_12"): they say nothing about the role.
GENERATED = re.compile(r"^(\d+|val_\d+|onnx::.*|.*/.*_output_\d+)$")


@dataclass
class Port:
    """One graph input or output: its name, declared dims (None: symbolic) and type."""

    name: str
    dims: list[int | None] | None
    elem: int
    by_name: str | None = None
    by_flow: set[str] = field(default_factory=set)
    params: list[str] = field(default_factory=list)  # the symbolic dims' names


def onnx_side(path: Path, *, mapping: dict[str, str] | None = None,
              layer: str | None = None) -> Side:
    """The whole model in ``path`` as a compare side (module docstring); ``mapping`` (role ->
    name, from --map) overrides the roles read, ``layer`` picks the LSTM stack."""
    from ..files.registry import read

    path = Path(path)
    found = _stack(read(path, "onnx"), layer, path)
    notes: list[str] = list(found.notes)
    weights = _weights(found, notes)
    model = _inlined(found.definition.model, path)
    traced = not found.definition.scope.path  # a subgraph's values are not graph outputs
    inputs, outputs = _ports(model)
    if traced:
        _trace(model, found.definition.chain, inputs, outputs)
    mapping = mapping or {}
    taken = _assign(inputs, INPUT_ROLES, mapping, traced, notes, "input", path)
    returned = _assign(outputs, OUTPUT_ROLES, mapping, traced, notes, "output", path)
    if "x" not in taken:
        raise ConversionError(f"{path}: no graph input is x; pass --map-a/--map-b x=NAME")
    if "y" not in returned:
        raise ConversionError(f"{path}: no graph output is y; pass --map-a/--map-b y=NAME")
    ports = {p.name: p for p in inputs + outputs}
    layout = _probe(model, found, weights, taken, returned, ports, traced, path, notes)
    return _side(path, found, weights, model, taken, returned, ports, layout, notes)


# ---------------------------------------------------------------- reading


def _stack(found: list[FoundLSTM], layer: str | None, path: Path) -> FoundLSTM:
    """The one LSTM stack (or the one ``layer`` names); the whole graph runs all its layers,
    so a single layer of a stack is no side."""
    if layer is None and len(found) > 1:
        raise ConversionError(f"{path}: {len(found)} LSTM stacks found "
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

    from ..files.onnx_graph import base_folder, tensor_array

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


def _ports(model: Any) -> tuple[list[Port], list[Port]]:
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [_port(i) for i in graph.input if i.name not in initializers]
    return inputs, [_port(o) for o in graph.output]


def _port(info: Any) -> Port:
    tensor = info.type.tensor_type
    dims = ([d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
            if tensor.HasField("shape") else None)
    params = ([d.dim_param for d in tensor.shape.dim] if tensor.HasField("shape") else [])
    return Port(info.name, dims, int(tensor.elem_type), params=params)


# ---------------------------------------------------------------- roles


def name_role(name: str, table: dict[str, set[str]]) -> str | None:
    """The role ``name`` says (``h_n`` -> h, ``initial_c`` -> c0), or None."""
    return name_claim(name, table)[0]


def name_claim(name: str, table: dict[str, set[str]]) -> tuple[str | None, bool]:
    """(the role ``name`` says, whether the whole name says it): ``hn`` and ``initial_h``
    are strong; a word inside a longer name (``input_2``, ``lstm_output``) is weak."""
    if GENERATED.match(name):
        return None, False
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    tokens = [t for t in re.split(r"[^a-z0-9]+", spaced) if t]
    whole = "".join(tokens)
    for role, spellings in table.items():
        if whole in spellings:
            return role, True
    words = tokens + ["".join(pair) for pair in itertools.pairwise(tokens)]
    roles = {role for word in words for role, spellings in table.items() if word in spellings}
    return (roles.pop(), False) if len(roles) == 1 else (None, False)


def _trace(model: Any, chain: list[Any], inputs: list[Port], outputs: list[Port]) -> None:
    """Each port's dataflow roles: the LSTM input slots a graph input reaches, the LSTM
    output slots a graph output comes from."""
    graph = model.graph
    chain_ids = {_key(n): k for k, n in enumerate(chain)}
    consumers: dict[str, list[Any]] = {}
    producers = {o: n for n in graph.node for o in n.output if o}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for port in inputs:
        port.by_flow = _forward(port.name, consumers, chain_ids)
    for port in outputs:
        port.by_flow = _backward(port.name, producers, chain_ids, len(chain) - 1)


def _key(node: Any) -> tuple[str, ...]:
    return (node.op_type, *node.output)


def _forward(start: str, consumers: dict[str, list[Any]], chain: dict[tuple, int]) -> set[str]:
    roles, seen, pending = set(), {start}, [start]
    while pending:
        name = pending.pop()
        for node in consumers.get(name, []):
            if node.op_type == "LSTM":  # stop there: its outputs carry other values
                if _key(node) in chain:
                    roles |= {IN_SLOTS[k] for k, i in enumerate(node.input)
                              if i == name and k in IN_SLOTS}
                continue
            if node.op_type in VALUE_FREE:
                continue
            for out in node.output:
                if out and out not in seen:
                    seen.add(out)
                    pending.append(out)
    return roles


def _backward(start: str, producers: dict[str, Any], chain: dict[tuple, int], top: int
              ) -> set[str]:
    roles, seen, pending = set(), {start}, [start]
    while pending:
        name = pending.pop()
        node = producers.get(name)
        if node is None or node.op_type in VALUE_FREE:
            continue
        if node.op_type == "LSTM":
            layer = chain.get(_key(node))
            slot = list(node.output).index(name)
            if layer is not None and (slot > 0 or layer == top):
                roles.add(OUT_SLOTS[slot])
            continue
        for source in node.input:
            if source and source not in seen:
                seen.add(source)
                pending.append(source)
    return roles


def _assign(ports: list[Port], roles: tuple[str, ...], mapping: dict[str, str], traced: bool,
            notes: list[str], what: str, path: Path) -> dict[str, str]:
    """role -> port name: --map, then names, then the dataflow, then position; an input
    left without a role, or a role two ports claim, is a ConversionError naming them."""
    table = IN_NAMES if what == "input" else OUT_NAMES
    known = {p.name for p in ports}
    chosen: dict[str, str] = {}
    for role, name in mapping.items():
        if role in roles:
            if name not in known:
                raise ConversionError(f"{path}: --map {role}={shown(name)}: no graph {what} of "
                                      f"that name; its {what}s: {listed(sorted(known))}")
            chosen[role] = name
    claims: dict[str, list[Port]] = {}
    loose = []
    for port in ports:
        if port.name in chosen.values():
            continue
        role = _claim(port, table, traced, notes, what)
        if role is None or role in chosen:
            loose.append(port)
        else:
            claims.setdefault(role, []).append(port)
    for role, claimants in claims.items():
        chosen[role] = _one(role, claimants, chosen, ports, what, path)
    loose = [p for p in loose if p.name not in chosen.values()]
    _leftovers(loose, ports, roles, chosen, traced, notes, what, path)
    return chosen


def _claim(port: Port, table: dict[str, set[str]], traced: bool, notes: list[str],
           what: str) -> str | None:
    """The role ``port`` claims: a strong name over the dataflow (it is what the user's code
    reads; the disagreement is noted), the dataflow over a weak name (``input_2``)."""
    role, strong = name_claim(port.name, table)
    port.by_name = role
    flow = next(iter(port.by_flow)) if len(port.by_flow) == 1 else None
    if role and port.by_flow and role not in port.by_flow:
        if not strong and flow:
            port.by_name = None
            return flow
        notes.append(f"{what} {shown(port.name)} is read as {role} by its name; the dataflow "
                     f"says {'/'.join(sorted(port.by_flow))}")
    elif role and traced and not port.by_flow:
        notes.append(f"{what} {shown(port.name)} is read as {role} by its name; the dataflow "
                     f"{'reaches' if what == 'input' else 'comes from'} no slot of this LSTM "
                     "stack")
    return role or flow


def _one(role: str, claimants: list[Port], chosen: dict[str, str], ports: list[Port],
         what: str, path: Path) -> str:
    if len(claimants) > 1:  # a name and the dataflow agreeing beats either alone
        agreed = [p for p in claimants if p.by_name == role and role in p.by_flow]
        claimants = agreed if len(agreed) == 1 else claimants
    if len(claimants) == 1:
        return claimants[0].name
    raise _ambiguous(f"{what}s {listed([p.name for p in claimants])} all read as {role}",
                     {**chosen, role: claimants[0].name}, ports, what, path)


def _leftovers(loose: list[Port], ports: list[Port], roles: tuple[str, ...],
               chosen: dict[str, str],
               traced: bool, notes: list[str], what: str, path: Path) -> None:
    """Ports neither --map, name nor dataflow decided: by position where the dataflow could
    not be traced; an input must be fed, so one left over is refused; an output is left."""
    free = [r for r in roles if r not in chosen]
    for port in loose:
        role = next((r for r in free if _fits(port, r)), None)
        if not traced and role is not None and not port.by_flow:
            free.remove(role)
            chosen[role] = port.name
            notes.append(f"{what} {shown(port.name)} read as {role} by its position")
        elif what == "input":
            flow = sorted(port.by_flow)
            why = (f"reaches several LSTM inputs ({'/'.join(flow)})" if len(flow) > 1 else
                   f"reaches the LSTM's {flow[0]}, already {shown(chosen[flow[0]])}"
                   if flow else "reaches no input of the LSTM stack")
            example = {**chosen, **({free[0]: port.name} if free else {})}
            raise _ambiguous(f"input {shown(port.name)} {why}", example, ports, what, path)
        else:
            notes.append(f"output {shown(port.name)} not compared (no role: "
                         f"{'/'.join(sorted(port.by_flow)) or 'not an LSTM output'})")


INTEGER_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # onnx.TensorProto's (u)int8...(u)int64


def _fits(port: Port, role: str) -> bool:
    """Whether ``port``'s element type can play ``role`` (lengths integer, others not)."""
    return (role == "lengths") == (port.elem in INTEGER_TYPES)


def _ambiguous(problem: str, example: dict[str, str], ports: list[Port], what: str,
               path: Path) -> ConversionError:
    """The roles cannot be read: name the ports and say how to give them."""
    order = INPUT_ROLES if what == "input" else OUTPUT_ROLES
    given = ",".join(f"{r}={example[r]}" for r in order if r in example)
    return ConversionError(f"{path}: cannot tell the {what} roles: {problem} (the graph's "
                           f"{what}s: {listed([p.name for p in ports])}); pass --map-a or "
                           f"--map-b role=NAME for this file, e.g. --map-b {given}")


# ---------------------------------------------------------------- layouts


@dataclass
class Layout:
    """How the graph lays out each role: x "bt"/"tb"; states "rbh"/"brh"/"bh"; y "bt"/"tb"/
    "tdbh"/"btdh"; returned states "rbh"/"brh"/"bh"/"ldbh"."""

    x: str = "bt"
    states: str = "rbh"
    y: str = "bt"
    h: str = "rbh"
    c: str = "rbh"
    rows: int | None = None
    units: int | None = None
    width: int | None = None
    input_size: int | None = None
    batch: int = 2  # the batch the probe ran at
    only_batch: int | None = None  # the one batch a graph declared dynamic runs at


def to_graph(kind: str, array: np.ndarray) -> np.ndarray:
    """A Feed array (x (B, T, I) or states (rows, B, H)) in the graph's ``kind``."""
    if kind in ("tb", "brh"):
        return np.ascontiguousarray(array.transpose(1, 0, 2))
    if kind == "bh":
        return np.ascontiguousarray(array[0])
    return np.ascontiguousarray(array)


def from_graph(kind: str, array: np.ndarray) -> np.ndarray:
    """A graph output in the Returned layout (y (B, T, W), states (rows, B, H))."""
    if kind in ("tb", "brh"):
        return array.transpose(1, 0, 2)
    if kind == "tdbh":
        return array.transpose(2, 0, 1, 3).reshape(array.shape[2], array.shape[0], -1)
    if kind == "btdh":
        return array.reshape(array.shape[0], array.shape[1], -1)
    if kind == "bh":
        return array[None]
    if kind == "ldbh":
        return array.reshape(-1, *array.shape[2:])
    return array


def _probe(model: Any, found: FoundLSTM, weights: Any, taken: dict[str, str],
           returned: dict[str, str], ports: dict[str, Port], traced: bool, path: Path,
           notes: list[str]) -> Layout:
    """The layouts, from one run of an instrumented copy per hypothesis (module docstring)."""
    probe = _Probe(model, found, weights, taken, returned, ports, traced, path)
    return probe.decide(notes)


class _Probe:
    """Runs hypotheses about the input layouts and reads the stack's own tensors back."""

    def __init__(self, model: Any, found: FoundLSTM, weights: Any, taken: dict[str, str],
                 returned: dict[str, str], ports: dict[str, Port], traced: bool,
                 path: Path) -> None:
        self.found, self.taken, self.returned, self.ports = found, taken, returned, ports
        self.path, self.traced = path, traced
        self.chain = found.definition.chain
        self.node_layout = found.definition.layout
        spec = weights.spec if weights is not None else None
        x_dims = ports[taken["x"]].dims
        if x_dims is not None and len(x_dims) != 3:
            raise ConversionError(f"{path}: input {shown(taken['x'])} has {len(x_dims)} axes "
                                  f"{x_dims}, expected 3 (batch, time, features)")
        # what x is fed with: the graph's feature axis (a layer before the LSTM may change
        # it), else the weights'
        self.input_size = (x_dims[2] if x_dims and x_dims[2] else None) or (
            spec.input_size if spec else None)
        if self.input_size is None:
            raise ConversionError(f"{path}: the input size is unknown (weights unread, "
                                  f"{shown(taken['x'])} declares no feature axis)")
        self.rows = spec.layers * spec.directions if spec else None
        self.units = spec.units if spec else None
        self.state_width = spec.output_size if spec else None
        self.directions = spec.directions if spec else None
        self.extra = self._extra_outputs() if traced else {}
        self.fed = {i.name for i in model.graph.input}
        self.hint: int | None = None  # the batch to try where no dim fixes it
        self.session = _session(_instrumented(model, self.extra) if traced else model, path)

    def _extra_outputs(self) -> dict[str, str]:
        """what -> tensor name for the stack's X, initial_h, Y and each node's Y_h/Y_c."""
        first, top = self.chain[0], self.chain[-1]
        extra = {"X": first.input[0], "Y": top.output[0] if top.output else ""}
        if len(first.input) > 5 and first.input[5]:
            extra["initial_h"] = first.input[5]
        for k, node in enumerate(self.chain):
            for slot, role in ((1, "Y_h"), (2, "Y_c")):
                extra[f"{role}_{k}"] = node.output[slot] if len(node.output) > slot else ""
        return {k: v for k, v in extra.items() if v}

    def decide(self, notes: list[str]) -> Layout:
        # A batch the graph declares dynamic may still be baked in (TorchScript's zero
        # initial states are Expand(constant (D, export batch, H))): try others too.
        hints = [None, 1, 3, 4, 8, 16, 32, 64]
        if self.found.stored is not None:
            hints.insert(0, self.found.stored.batch)
        best, failures = None, []
        for hint in hints:
            self.hint = hint
            best = self._best(failures)
            if best is not None:
                break
        if best is None:
            raise ConversionError(f"{self.path}: onnxruntime cannot run the model on any "
                                  f"layout tried ({failures[0] if failures else 'no feed'})")
        score, layout = best
        self._only_batch(layout, notes)
        if score[0] == 0 and self.traced:
            notes.append("the graph's x is not a rearrangement of the LSTM's X: its "
                         f"layout ({layout.x}) was read from the shapes")
        if not self.traced:
            notes.append("the LSTM sits in a subgraph: layouts read from shapes and dim names only")
        return layout

    def _best(self, failures: list[str]) -> tuple[tuple[int, int], Layout] | None:
        """The best-scoring hypothesis that runs at the current batch hint."""
        states = {"h0", "c0"} & set(self.taken)
        kinds = ("rbh", "brh") + (("bh",) if self.rows in (1, None) else ())
        best = None
        for x_kind in self._x_order():
            for state_kind in kinds if states else ("rbh",):
                tried = self._try(x_kind, state_kind, failures)
                if tried is not None and (best is None or tried[0] > best[0]):
                    best = tried
        return best

    def _only_batch(self, layout: Layout, notes: list[str]) -> None:
        """Where no dim fixes the batch, whether the graph runs another one than the probe's
        (else that batch is the one it takes, as a fixed one)."""
        if _fixed(self.taken, self.ports, layout)[0] is not None:
            return
        failures: list[str] = []
        self.hint = layout.batch + 1
        if self._try(layout.x, layout.states, failures) is None:
            layout.only_batch = layout.batch
            notes.append(f"the graph declares a dynamic batch but runs batch {layout.batch} "
                         f"only (batch {layout.batch + 1}: {failures[0] if failures else '?'})")

    def _x_order(self) -> tuple[str, str]:
        """Batch-first first, unless x's first axis is named as time (``seq``, ``time``):
        where the stack's X cannot be read back, the first hypothesis that runs is kept."""
        params = self.ports[self.taken["x"]].params
        first = params[0].lower() if params else ""
        timed = re.fullmatch(r"time\w*|seq\w*|steps?|t|len|length|num_steps", first)
        return ("tb", "bt") if timed else ("bt", "tb")

    def _dims(self, x_kind: str, state_kind: str) -> tuple[int, int] | None:
        """(B, T) for a hypothesis: the static dims it implies, else distinct small ones;
        None where two static dims disagree about the batch."""
        x_dims = self.ports[self.taken["x"]].dims or [None, None, None]
        batch, steps = (x_dims[0], x_dims[1]) if x_kind == "bt" else (x_dims[1], x_dims[0])
        batches = {batch} - {None}
        for role in ("h0", "c0", "lengths"):
            if role in self.taken:
                dims = self.ports[self.taken[role]].dims
                axis = 0 if role == "lengths" or state_kind in ("brh", "bh") else 1
                if dims and len(dims) > axis and dims[axis] is not None:
                    batches.add(dims[axis])
        if len(batches) > 1:
            return None
        b = batches.pop() if batches else (self.hint or 2)
        return b, steps if steps is not None else (3 if b != 3 else 4)

    def _try(self, x_kind: str, state_kind: str, failures: list[str]
             ) -> tuple[tuple[int, int], Layout] | None:
        dims = self._dims(x_kind, state_kind)
        if dims is None:
            return None
        b, t = dims
        rng = np.random.default_rng(0)
        feed = {"x": rng.standard_normal((b, t, self.input_size)).astype(np.float32)}
        for role in ("h0", "c0"):
            if role in self.taken:
                width = self.units if role == "c0" else self.state_width
                shape = self._state_shape(role, state_kind, b, width)
                feed[role] = rng.standard_normal(shape).astype(np.float32)
        graph_feed = {self.taken[r]: _cast(to_graph(x_kind if r == "x" else state_kind, v),
                                           self.ports[self.taken[r]].elem)
                      for r, v in feed.items()}
        if "lengths" in self.taken:
            graph_feed[self.taken["lengths"]] = _cast(np.full(b, t),
                                                      self.ports[self.taken["lengths"]].elem)
        names = [n for n in dict.fromkeys([*self.returned.values(), *self.extra.values()])
                 if n not in self.fed]
        try:
            values = dict(zip(names, self.session.run(names, graph_feed, _quiet()),
                              strict=True))
        except Exception as exc:
            failures.append(_first_line(exc))
            return None
        values.update(graph_feed)  # a stack tensor that is a graph input is what was fed
        return self._score(x_kind, state_kind, feed, values, b, t)

    def _state_shape(self, role: str, kind: str, b: int, width: int | None
                     ) -> tuple[int, ...]:
        dims = self.ports[self.taken[role]].dims
        rows = self.rows or (dims[0 if kind == "rbh" else 1] if dims and kind != "bh"
                             else None) or 1
        width = width or (dims[-1] if dims else None)
        if width is None:
            raise ConversionError(f"{self.path}: the width of {shown(self.taken[role])} is "
                                  "unknown (weights unread, no static last axis)")
        return (rows, b, width)

    def _score(self, x_kind: str, state_kind: str, feed: dict[str, np.ndarray],
               values: dict[str, np.ndarray], b: int, t: int
               ) -> tuple[tuple[int, int], Layout] | None:
        """(content matches, shape matches) of the stack's X (and initial_h) with the feed,
        and the output layouts read from the same run; None where the stack's X has
        another batch and time than the hypothesis fed."""
        score = [0, 0]
        x_node = self._node_x(values)
        expected = feed["x"] if self.node_layout == 1 else feed["x"].transpose(1, 0, 2)
        if x_node is not None:
            if x_node.shape[:2] != expected.shape[:2]:
                return None  # it ran, but read the batch as time: not this layout
            score[1] += 1
            score[0] += x_node.shape == expected.shape and np.array_equal(x_node, expected)
        if "initial_h" in self.extra and "h0" in feed and self.directions:
            got = values[self.extra["initial_h"]]
            want = feed["h0"][:self.directions]
            want = want if self.node_layout == 0 else want.transpose(1, 0, 2)
            score[1] += got.shape == want.shape
            score[0] += got.shape == want.shape and np.array_equal(got, want)
        elif x_node is None:  # nothing to judge by: the hypothesis that ran
            score[1] += 1
        layout = Layout(x=x_kind, states=state_kind, input_size=self.input_size, batch=b)
        self._outputs(layout, values, b, t)
        return (score[0] * 2, score[1]), layout

    def _node_x(self, values: dict[str, np.ndarray]) -> np.ndarray | None:
        name = self.extra.get("X")
        return None if name is None else values.get(name)

    def _outputs(self, layout: Layout, values: dict[str, np.ndarray], b: int, t: int) -> None:
        canon = self._canonical(values, b, t)
        for role in ("y", "h", "c"):
            if role not in self.returned:
                continue
            got = values[self.returned[role]]
            kinds = (("bt", "tb", "tdbh", "btdh") if role == "y" else
                     ("rbh", "brh", "bh", "ldbh"))
            tensors = canon["y"] if role == "y" else canon["h"] + canon["c"]
            setattr(layout, role, _pick(got, kinds, tensors, role, b, t, layout.x))
        y = from_graph(layout.y, values[self.returned["y"]])
        layout.width = int(y.shape[-1])
        for role in ("h", "c"):
            if role in self.returned:
                state = from_graph(getattr(layout, role), values[self.returned[role]])
                layout.rows = int(state.shape[0])
                if role == "c":
                    layout.units = int(state.shape[-1])

    def _canonical(self, values: dict[str, np.ndarray], b: int, t: int
                   ) -> dict[str, list[np.ndarray]]:
        """The stack's own y (B, T, W) and h, c (rows, B, H): the whole stack's and the top
        node's, what a graph output may equal."""
        found: dict[str, list[np.ndarray]] = {"y": [], "h": [], "c": []}
        if "Y" in self.extra:
            y = values[self.extra["Y"]]
            found["y"].append(from_graph("tdbh" if self.node_layout == 0 else "btdh", y))
        for role, key in (("h", "Y_h"), ("c", "Y_c")):
            parts = [values[self.extra[f"{key}_{k}"]] for k in range(len(self.chain))
                     if f"{key}_{k}" in self.extra]
            if len(parts) == len(self.chain):
                if self.node_layout == 1:
                    parts = [p.transpose(1, 0, 2) for p in parts]
                found[role] += [np.concatenate(parts), parts[-1]]
        return found


RANK = {"bt": 3, "tb": 3, "tdbh": 4, "btdh": 4, "rbh": 3, "brh": 3, "bh": 2, "ldbh": 4}


def _pick(got: np.ndarray, kinds: tuple[str, ...], tensors: list[np.ndarray], role: str,
          b: int, t: int, x_kind: str) -> str:
    """The kind under which ``got`` equals one of the stack's own tensors; else one whose
    shape fits (batch and time, where they differ), x's own layout first."""
    fits = []
    for kind in kinds:
        if got.ndim != RANK[kind]:
            continue
        try:
            arranged = from_graph(kind, got)
        except ValueError:
            continue
        if any(arranged.shape == c.shape and np.array_equal(arranged, c) for c in tensors):
            return kind
        if (arranged.shape[:2] == (b, t)) if role == "y" else (arranged.shape[1] == b):
            fits.append(kind)
    if x_kind in fits:
        return x_kind
    return fits[0] if fits else (x_kind if role == "y" else "rbh")


def _instrumented(model: Any, extra: dict[str, str]) -> Any:
    """A copy of ``model`` that also returns the ``extra`` tensors (none that is a graph
    input: those are known, they are what was fed)."""
    from onnx import helper

    copy = type(model)()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output} | {i.name for i in copy.graph.input}
    for name in dict.fromkeys(extra.values()):
        if name not in present:
            copy.graph.output.append(helper.make_empty_tensor_value_info(name))
    return copy


def _session(model: Any, path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"{path}: onnxruntime cannot load the model "
                              f"({_first_line(exc)})") from exc


def _cast(array: np.ndarray, elem: int) -> np.ndarray:
    from onnx import helper

    try:
        dtype = helper.tensor_dtype_to_np_dtype(elem) if elem else array.dtype
    except (KeyError, TypeError, ValueError):
        dtype = array.dtype
    return np.ascontiguousarray(array.astype(dtype, copy=False))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# ---------------------------------------------------------------- the side


def _side(path: Path, found: FoundLSTM, weights: Any, model: Any, taken: dict[str, str],
          returned: dict[str, str], ports: dict[str, Port], layout: Layout,
          notes: list[str]) -> Side:
    session = _session(model, path)
    spec = weights.spec if weights is not None else None
    rows = spec.layers * spec.directions if spec else layout.rows
    units = spec.units if spec else layout.units
    width = spec.output_size if spec else units
    fixed_batch, fixed_steps = _fixed(taken, ports, layout)
    x_port = ports[taken["x"]]
    outputs = list(returned.items())

    def run(feed: Feed) -> Returned:
        graph_feed = {taken["x"]: _cast(to_graph(layout.x, feed.x), x_port.elem)}
        for role, value, size in (("h0", feed.h0, width), ("c0", feed.c0, units)):
            if role not in taken:
                if value is not None:
                    raise Refused(f"the model takes no {role}")
                continue
            if value is None:
                value = np.zeros((rows or 1, feed.batch, size or 1), np.float32)
            graph_feed[taken[role]] = _cast(to_graph(layout.states, value),
                                            ports[taken[role]].elem)
        if "lengths" in taken:
            lengths = feed.lengths if feed.lengths is not None else np.full(feed.batch,
                                                                            feed.steps)
            graph_feed[taken["lengths"]] = _cast(np.asarray(lengths),
                                                 ports[taken["lengths"]].elem)
        elif feed.lengths is not None:
            raise Refused("the model takes no sequence lengths")
        try:
            results = session.run([n for _, n in outputs], graph_feed, _quiet())
            got = {r: np.asarray(from_graph(getattr(layout, r), v))
                   for (r, _), v in zip(outputs, results, strict=True)}
        except Exception as exc:  # onnxruntime said no (a fixed dim, a shape it cannot do)
            raise Refused(_first_line(exc)) from exc
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
                weights=weights, dtype=_dtype_name(x_port.elem), notes=notes,
                reader_notes=tuple(found.notes), stored=_stored(found, taken))


def _fixed(taken: dict[str, str], ports: dict[str, Port], layout: Layout
           ) -> tuple[int | None, int | None]:
    """The batch and time length the graph's declared dims fix (x, and the batch of the
    state and length inputs: onnxruntime refuses any other)."""
    dims = ports[taken["x"]].dims or [None, None, None]
    batch, steps = (dims[0], dims[1]) if layout.x == "bt" else (dims[1], dims[0])
    for role in ("h0", "c0", "lengths"):
        state = ports[taken[role]].dims if role in taken else None
        axis = 0 if role == "lengths" or layout.states in ("brh", "bh") else 1
        if batch is None and state and len(state) > axis:
            batch = state[axis]
    return batch or layout.only_batch or None, steps or None


def _stored(found: FoundLSTM, taken: dict[str, str]) -> Feed | None:
    """The initial states and lengths the file stores (initializers), as a Feed's."""
    stored = found.stored
    if stored is None:
        return None

    def flat(value: np.ndarray | None) -> np.ndarray | None:
        return None if value is None else value.reshape(-1, *value.shape[2:])

    return Feed(np.zeros((0, 0, 0)), flat(stored.h0), flat(stored.c0), stored.lengths)


def _quiet() -> Any:
    import onnxruntime

    options = onnxruntime.RunOptions()
    options.log_severity_level = 4  # a refusal is raised and said once, not logged too
    return options


def _words(kind: str) -> str:
    return {"bt": "batch-first", "tb": "time-major"}.get(kind, kind)


def _dtype_name(elem: int) -> str:
    from onnx import helper

    try:
        return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem)))
    except (KeyError, TypeError, ValueError):
        return "float32"
