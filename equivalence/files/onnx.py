"""ONNX model files: ``LSTM`` nodes and the initializers (or Constants) holding W, R, B, P.

Reading: each ``LSTM`` node whose W and R are stored in the file (an
initializer or a ``Constant`` node; weights fed as graph inputs cannot be
read). A node whose input X comes from another LSTM node's Y through shape-only
ops (Transpose, Reshape, Squeeze, ...) is stacked on it, as exporters write
``nn.LSTM(num_layers=L)``: one node per layer. Attributes: ``hidden_size``,
``direction`` (``reverse`` alone is refused: a reversed LSTM), ``clip`` (the
spec's gate_clip), default activations only, ``input_forget=0`` only.

Writing: input ``input`` (batch, time, I); one LSTM node per layer with its
weights as initializers; outputs ``output`` (batch, time, D*H), ``h_n`` and
``c_n`` (L*D, batch, H), the layout of a batch-first ``nn.LSTM``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..canonical import LSTMWeights
from ..formats import get as get_format
from ..runtimes.onnxruntime import IR_VERSION, OPSET  # one choice for files and runtime
from ._base import FileFormatError, FoundLSTM, atomic_output

SHAPE_OPS = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Dropout"}
DEFAULT_ACTIVATIONS = [b"Sigmoid", b"Tanh", b"Tanh"]


def read_onnx(path: Path) -> list[FoundLSTM]:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=True)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise FileFormatError(path, f"corrupted or truncated ONNX file ({exc})") from exc
    graph = model.graph
    if not graph.node and not graph.initializer:
        raise FileFormatError(path, "not an ONNX model (empty graph: wrong or damaged file?)")
    stored = _stored_arrays(graph)
    lstms = [node for node in graph.node if node.op_type == "LSTM"]
    producers = {out: node for node in graph.node for out in node.output}
    below = {id(n): _lstm_below(n, producers) for n in lstms}
    above: dict[int, list[Any]] = {}
    for node in lstms:
        if below[id(node)] is not None:
            above.setdefault(id(below[id(node)]), []).append(node)
    found = []
    for node in lstms:
        lower = below[id(node)]
        if lower is not None and len(above.get(id(lower), [])) == 1 and _compatible(lower, node):
            continue  # it belongs to the stack of the node below it
        chain = [node]
        while len(nxt := above.get(id(chain[-1]), [])) == 1 and _compatible(chain[-1], nxt[0]):
            chain.append(nxt[0])
        found.append(_entry(chain, stored, path, lstms))
    return found


def _stored_arrays(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    arrays[node.output[0]] = numpy_helper.to_array(attr.t)
    return arrays


def _lstm_below(node: Any, producers: dict[str, Any]) -> Any:
    """The LSTM node whose Y reaches ``node``'s X through shape-only ops, if any."""
    name = node.input[0]
    for _ in range(16):
        producer = producers.get(name)
        if producer is None:
            return None
        if producer.op_type == "LSTM":
            return producer if producer.output and producer.output[0] == name else None
        if producer.op_type not in SHAPE_OPS:
            return None
        name = producer.input[0]
    return None


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _compatible(lower: Any, upper: Any) -> bool:
    a, b = _attributes(lower), _attributes(upper)
    keys = ("hidden_size", "direction", "clip", "activations")
    return all(a.get(k) == b.get(k) for k in keys)


def _label(node: Any, lstms: list[Any]) -> str:
    return node.name or f"LSTM node #{lstms.index(node)}"


def _entry(chain: list[Any], stored: dict[str, np.ndarray], path: Path, lstms: list[Any]
           ) -> FoundLSTM:
    names = [_label(n, lstms) for n in chain]
    name = "+".join(names)
    attrs = _attributes(chain[0])
    problem = _problem(attrs)
    nodes = []
    for node, label in zip(chain, names, strict=True):
        weights, missing = {}, []
        for index, key in ((1, "W"), (2, "R"), (3, "B"), (7, "P")):
            source = node.input[index] if len(node.input) > index else ""
            if not source:
                continue
            if source in stored:
                weights[key] = stored[source]
            else:
                missing.append(f"{key} ({source!r})")
        if missing:
            problem = problem or (f"{label}: {', '.join(missing)} not stored in the file "
                                  "(a graph input or computed)")
        if "B" not in weights and "W" in weights:  # absent B means zeros (ONNX spec)
            weights["B"] = np.zeros((weights["W"].shape[0], 8 * weights["W"].shape[1] // 4),
                                    weights["W"].dtype)
        nodes.append(weights)
    clip = attrs.get("clip")
    notes = [f"clip={clip} (gate pre-activation clip)"] if clip is not None else []
    if attrs.get("layout", 0) == 1:
        notes.append("layout=1 (batch-major) nodes")
    d = 2 if attrs.get("direction", b"forward") == b"bidirectional" else 1
    return FoundLSTM(
        name=name, format="onnx", native=nodes if len(nodes) > 1 else (nodes[0] if nodes else {}),
        source=str(path), kind=f"ONNX model, {len(chain)} LSTM node(s), D={d}",
        read_options={"clip": clip}, run_options={"clip": clip},
        biases="two (B = [Wb, Rb], 8H)", notes=tuple(notes), problem=problem)


def _problem(attrs: dict[str, Any]) -> str | None:
    direction = attrs.get("direction", b"forward")
    if direction == b"reverse":
        return "direction=reverse (a single reversed LSTM)"
    activations = attrs.get("activations")
    if activations and [a.lower() for a in activations] != [a.lower() for a in
                                                           DEFAULT_ACTIVATIONS * len(activations)
                                                           ][: len(activations)]:
        return f"activations {[a.decode() for a in activations]} (only Sigmoid, Tanh, Tanh)"
    if attrs.get("input_forget", 0):
        return "input_forget=1 (coupled input and forget gates)"
    return None


# ---------------------------------------------------------------- writing


def build_model(weights: LSTMWeights) -> Any:
    """The ONNX model described in the module docstring, weights as initializers."""
    from onnx import helper, numpy_helper

    spec = weights.spec
    native = get_format("onnx").from_canonical(weights)
    layers = native if isinstance(native, list) else [native]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(spec.dtype))
    inits = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "keep_two")]
    nodes = [helper.make_node("Transpose", ["input"], ["X_0"], perm=[1, 0, 2])]
    d, h = spec.directions, spec.units
    for k, layer in enumerate(layers):
        names = [f"X_{k}"]
        for key in ("W", "R", "B"):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(layer[key]), f"{key}_{k}"))
            names.append(f"{key}_{k}")
        if "P" in layer:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(layer["P"]), f"P_{k}"))
            names += ["", "", "", f"P_{k}"]
        attributes: dict[str, Any] = {"hidden_size": h, "direction":
                                      "bidirectional" if d == 2 else "forward"}
        if spec.gate_clip is not None:
            attributes["clip"] = float(spec.gate_clip)
        nodes.append(helper.make_node("LSTM", names, [f"Y_{k}", f"Y_h_{k}", f"Y_c_{k}"],
                                      name=f"lstm_{k}", **attributes))
        # Y (T, D, B, H) -> (T, B, D*H): the next layer's X (forward features first).
        nodes.append(helper.make_node("Transpose", [f"Y_{k}"], [f"Y_{k}_tbdh"],
                                      perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Y_{k}_tbdh", "keep_two"], [f"X_{k + 1}"]))
    top = len(layers)
    nodes.append(helper.make_node("Transpose", [f"X_{top}"], ["output"], perm=[1, 0, 2]))
    nodes.append(helper.make_node("Concat", [f"Y_h_{k}" for k in range(top)], ["h_n"], axis=0))
    nodes.append(helper.make_node("Concat", [f"Y_c_{k}" for k in range(top)], ["c_n"], axis=0))
    graph = helper.make_graph(
        nodes, "converted_lstm",
        [helper.make_tensor_value_info("input", elem, ["batch", "time", spec.input_size])],
        [helper.make_tensor_value_info("output", elem, ["batch", "time", d * h]),
         helper.make_tensor_value_info("h_n", elem, [spec.layers * d, "batch", h]),
         helper.make_tensor_value_info("c_n", elem, [spec.layers * d, "batch", h])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="equivalence")
    model.ir_version = IR_VERSION
    return model


def write_onnx(path: Path, weights: LSTMWeights) -> list[str]:
    import onnx

    model = build_model(weights)
    onnx.checker.check_model(model)
    with atomic_output(path) as temporary:
        onnx.save(model, str(temporary))
    spec = weights.spec
    return [f"wrote {path} (ONNX opset {OPSET}, {spec.layers} LSTM node(s))",
            f"inputs: input (batch, time, {spec.input_size}); outputs: output (batch, time, "
            f"{spec.directions * spec.units}), h_n and c_n ({spec.layers * spec.directions}, "
            f"batch, {spec.units})"]
