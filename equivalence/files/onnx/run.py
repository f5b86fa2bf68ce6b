"""Run an ONNX file's LSTM (or GRU) nodes as the file defines them (``--verify``'s .onnx side).

Not a network rebuilt from extracted weights: the file's own nodes, copied with
all their attributes, and every tensor they consume as the file computes it.
The graph is cut out backwards from the stack's outputs: constants (folded
by the file's :class:`~equivalence.files.onnx.graph.Folder`) become
initializers, the first node's X becomes the input, and the nodes in between
(the file's own Transpose/Reshape/... between layers) are copied. An
``initial_h``/``initial_c``/``sequence_lens`` the file feeds from a graph input
becomes an input of the cut graph, fed by the verify inputs; a stored one stays
stored. Anything else a node depends on (another graph input, a node with
subgraphs) makes the cut impossible and is said. onnxruntime runs the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.errors import ConversionError
from equivalence.files._base import FoundLSTM
from equivalence.files.onnx.graph import NotConstant, Scope
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec

RUNTIME_SLOTS = {4: "sequence_lens", 5: "initial_h", 6: "initial_c"}
MAX_CUT_NODES = 10_000


class _Cut:
    """The nodes, initializers and fed inputs of the graph cut out for one stack."""

    def __init__(self, definition: Any) -> None:
        self.folder = definition.folder
        self.scope: Scope = definition.scope
        self.x_name: str = definition.chain[0].input[0]
        self.layer_of = {id(n): k for k, n in enumerate(definition.chain)}
        self.nodes: list[Any] = []
        self.added: set[int] = set()
        self.initializers: dict[str, np.ndarray] = {}
        self.inputs: dict[str, tuple[str, int]] = {}  # fed name -> (role, layer)
        self.pending: list[str] = []
        self.done: set[str] = set()

    def add(self, node: Any) -> None:
        """Copy ``node`` into the cut; its inputs become pending (an LSTM's optional run-time
        inputs become stored initializers or fed inputs instead)."""
        if id(node) in self.added:
            return
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            raise ConversionError(f"the path between the LSTM nodes holds a {node.op_type} "
                                  "with subgraphs, which verify does not cut out")
        if len(self.nodes) >= MAX_CUT_NODES:
            raise ConversionError(f"more than {MAX_CUT_NODES} nodes between the LSTM nodes")
        self.added.add(id(node))
        self.nodes.append(node)
        layer = self.layer_of.get(id(node))
        for index, source in enumerate(node.input):
            if layer is not None and index in RUNTIME_SLOTS and source:
                self.done.add(source)
                try:
                    self.initializers[source] = self.folder.value(source, self.scope)
                except NotConstant:
                    self.inputs[source] = (RUNTIME_SLOTS[index], layer)
            else:
                self.pending.append(source)

    def close(self) -> None:
        """Resolve every pending name: X, a folded constant, or the node that makes it."""
        while self.pending:
            name = self.pending.pop()
            if not name or name in self.done or name == self.x_name:
                continue
            self.done.add(name)
            try:
                self.initializers[name] = self.folder.value(name, self.scope)
                continue
            except NotConstant as exc:
                reason = str(exc)
            found = self.scope.lookup(name)
            if found is None or found[1] != "node":
                raise ConversionError(f"the LSTM nodes depend on {name!r} ({reason}), which "
                                      "verify cannot feed")
            self.add(found[0].producers[name])


def _model(found: FoundLSTM) -> tuple[Any, list[str], dict[str, tuple[str, int]]]:
    """The cut model, its output names (Y, then Y_h and Y_c per layer) and its fed inputs."""
    from onnx import helper, numpy_helper

    definition = found.definition
    cut = _Cut(definition)
    for node in definition.chain:
        cut.add(node)
    cut.close()
    copies = {}
    roles = _output_roles(definition.chain[0])
    for k, node in enumerate(definition.chain):
        copy = type(node)()
        copy.CopyFrom(node)
        while len(copy.output) < len(roles):
            copy.output.append("")
        for slot, role in enumerate(roles):
            if not copy.output[slot]:
                copy.output[slot] = f"__verify_{role}_{k}"
        copies[id(node)] = copy
    top = copies[id(definition.chain[-1])]
    outputs = [top.output[0]] + [copies[id(n)].output[s] for n in definition.chain
                                 for s in range(1, len(roles))]
    nodes = [copies.get(id(n), n) for n in cut.nodes]
    order = _topological(nodes, cut.x_name, set(cut.initializers) | set(cut.inputs))
    first = found.native[0] if isinstance(found.native, list) else found.native
    elem = helper.np_dtype_to_tensor_dtype(np.asarray(first["W"]).dtype)
    graph_inputs = [helper.make_tensor_value_info(cut.x_name, elem, None)]
    for name, (role, _layer) in cut.inputs.items():
        kind = 6 if role == "sequence_lens" else elem  # 6: INT32, what sequence_lens takes
        graph_inputs.append(helper.make_tensor_value_info(name, kind, None))
    graph = helper.make_graph(
        order, "verify_cut", graph_inputs,
        [helper.make_tensor_value_info(name, elem, None) for name in outputs],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(v), n)
                     for n, v in cut.initializers.items()])
    model = helper.make_model(graph, opset_imports=list(definition.model.opset_import))
    model.ir_version = definition.model.ir_version
    return model, outputs, cut.inputs


def _output_roles(node: Any) -> tuple[str, ...]:
    """The node's outputs: Y, Y_h, Y_c (an LSTM), Y, Y_h (a GRU)."""
    return ("Y", "Y_h") if node.op_type == "GRU" else ("Y", "Y_h", "Y_c")


def _topological(nodes: list[Any], x_name: str, known: set[str]) -> list[Any]:
    available = {x_name, "", *known}
    ordered, remaining = [], list(nodes)
    while remaining:
        ready = [n for n in remaining if all(i in available for i in n.input)]
        if not ready:
            raise ConversionError("the LSTM nodes' graph has a cycle or an unfed input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
            remaining.remove(node)
    return ordered


def runner(found: FoundLSTM, spec: LSTMSpec, options: dict[str, Any]) -> Any:
    """A verify side running ``found``'s nodes in onnxruntime (see the module docstring)."""
    import onnxruntime

    from equivalence.files.onnx.states import has_signature, signature_side
    from equivalence.files.runners import Side, SideAbilities

    if has_signature(found.definition.model) and not found.definition.scope.path:
        return signature_side(found, spec)  # --with-states: the whole model, h0/c0 in
    model, outputs, fed = _model(found)
    session_options = onnxruntime.SessionOptions()
    session_options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), session_options,
                                               providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime cannot run the file's LSTM nodes "
                              f"({str(exc).strip().splitlines()[0][:200]})") from exc
    layout = found.definition.layout
    x_name = found.definition.chain[0].input[0]
    quiet = onnxruntime.RunOptions()
    quiet.log_severity_level = 4  # a failed run is raised and said once, not logged in red too

    def run(inputs: LSTMInputs) -> LSTMResult:
        x = inputs.x if layout == 1 else inputs.x.transpose(1, 0, 2)
        feeds = {x_name: np.ascontiguousarray(x)}
        for name, (role, layer) in fed.items():
            feeds[name] = _feed(role, layer, spec, inputs, layout)
        results = session.run(outputs, feeds, quiet)
        return _result(results, spec, inputs, layout)

    stored = found.stored
    fed_roles = {role for role, _ in fed.values()}
    # The file's function takes an initial state (or lengths) only where it feeds one in.
    states = {"initial_h"} if spec.cell == "gru" else {"initial_h", "initial_c"}
    abilities = SideAbilities(initial_state=states <= fed_roles,
                              lengths="sequence_lens" in fed_roles)
    op = found.definition.chain[0].op_type
    label = f"the file's own {op} node(s) {found.name!r} of {found.source} in onnxruntime"
    return Side(label, run, abilities, stored=stored)


def _feed(role: str, layer: int, spec: LSTMSpec, inputs: LSTMInputs, layout: int
          ) -> np.ndarray:
    if role == "sequence_lens":
        lengths = inputs.lengths if inputs.lengths is not None else np.full(
            inputs.batch, inputs.steps)
        return np.asarray(lengths, np.int32)
    states = inputs.h0 if role == "initial_h" else inputs.c0
    if states is None:
        state = np.zeros((spec.directions, inputs.batch, spec.units), inputs.x.dtype)
    else:
        state = states[layer]
    return np.ascontiguousarray(state.transpose(1, 0, 2) if layout == 1 else state)


def _result(results: list[np.ndarray], spec: LSTMSpec, inputs: LSTMInputs, layout: int
            ) -> LSTMResult:
    y = results[0]
    if layout == 0:  # (T, D, B, H) -> (B, T, D*H)
        y = y.transpose(2, 0, 1, 3)
    outputs = y.reshape(inputs.batch, inputs.steps, -1)
    states = []
    for array in results[1:]:
        states.append(array.transpose(1, 0, 2) if layout == 1 else array)  # (D, B, H)
    if spec.cell == "gru":  # Y_h per node, no Y_c
        return LSTMResult(outputs, np.stack(states), None)
    return LSTMResult(outputs, np.stack(states[0::2]), np.stack(states[1::2]))
