"""An OpenVINO IR's graph and LSTM weights, read from its ``.xml`` and ``.bin`` without OpenVINO.

The IR is an XML graph (``<layers>`` and ``<edges>``) whose ``Const`` layers
point into the ``.bin`` by ``offset`` and ``size``. This module parses the XML
with the standard library (refusing a DOCTYPE or entity declarations, and a
file past :data:`MAX_XML_BYTES`), finds the ``LSTMSequence`` layers (or one
``LSTMCell``), follows their W, R and B inputs back through Convert and
reshaping nodes to their Const layers, checks each Const against the
``.bin`` before reading it, and builds canonical weights.

Facts relied on (OpenVINO op spec, opset5 ``LSTMSequence``; checked numerically
against torch in tests/test_artefact_openvino.py):

* gate blocks in the order f, i, c, o; W (D, 4H, I), R (D, 4H, H), one bias
  B (D, 4H) (no separate recurrent bias); inputs X, H0, C0, seq_lengths, W, R,
  B in that order; outputs Y (B, D, T, H), Ho (B, D, H), Co (B, D, H);
* ``ov.save_model`` compresses float32 Consts to f16 by default
  (``compress_to_fp16=True``): the Const is f16 and a Convert to f32 follows.

Nothing outside the given ``.xml``/``.bin`` pair is opened.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.errors import ConversionError
from equivalence.files._base import FileFormatError
from equivalence.formats import _common as c
from equivalence.spec import ACTIVATIONS, LSTMSpec

MAX_XML_BYTES = 64 << 20  # IR graphs of LSTM models are kilobytes; weights live in the .bin
GATE_ORDER = (1, 0, 2, 3)  # OpenVINO block k is canonical block GATE_ORDER[k]: f i c o
_FLOATS: dict[str, np.dtype] = {"f32": np.dtype(np.float32), "f16": np.dtype(np.float16),
                                "f64": np.dtype(np.float64)}
_INTEGERS: dict[str, np.dtype] = {"i64": np.dtype(np.int64), "i32": np.dtype(np.int32)}
# Nodes a weight may pass through on its way to the LSTM without changing its values.
_PASS_THROUGH = ("Convert", "Reshape", "Squeeze", "Unsqueeze")
_CELL_TYPES = ("LSTMSequence", "LSTMCell")
_WEIGHT_PORTS = {"LSTMSequence": (4, 5, 6), "LSTMCell": (3, 4, 5)}  # W, R, B input indices
_WEIGHT_NAMES = ("W", "R", "B")


@dataclass
class Layer:
    """One ``<layer>``: its attributes, ``<data>``, and the dims of each input/output port."""

    id: str
    name: str
    type: str
    data: dict[str, str]
    input_ports: list[str]  # port ids, in input order
    input_dims: list[tuple[int, ...]]
    output_ports: list[str]
    output_names: list[str]  # the ``names`` attribute of each output port

    def input_index(self, port: str) -> int:
        return self.input_ports.index(port)


@dataclass
class Graph:
    """The IR's top-level graph: layers by id, and the source of each (layer, input index)."""

    path: Path
    layers: dict[str, Layer]
    sources: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)

    def source(self, layer: Layer, index: int) -> tuple[Layer, int] | None:
        """The layer and output index feeding input ``index`` of ``layer`` (None: unconnected)."""
        found = self.sources.get((layer.id, index))
        return None if found is None else (self.layers[found[0]], found[1])

    def of_type(self, *types: str) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.type in types]

    def ancestors(self, layer: Layer) -> set[str]:
        """Ids of every layer ``layer`` depends on."""
        seen: set[str] = set()
        todo = [layer]
        while todo:
            current = todo.pop()
            for index in range(len(current.input_ports)):
                found = self.source(current, index)
                if found is not None and found[0].id not in seen:
                    seen.add(found[0].id)
                    todo.append(found[0])
        return seen


def read_xml(path: Path) -> tuple[bytes, Graph]:
    """The XML's bytes (what OpenVINO is given) and its parsed graph."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileFormatError(path, f"cannot be read ({exc.strerror})") from exc
    if size > MAX_XML_BYTES:
        raise FileFormatError(path, f"{size} bytes, expected at most {MAX_XML_BYTES} for an "
                              "IR graph (the weights belong in the .bin)")
    text = path.read_bytes()
    # The IR format has no use for them; refusing them rules out entity expansion.
    for marker in (b"<!DOCTYPE", b"<!ENTITY"):
        if marker in text:
            raise FileFormatError(path, f"contains {marker.decode()}, which an OpenVINO IR "
                                  "never has (refused: entity expansion)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise FileFormatError(path, f"not well-formed XML ({exc})") from exc
    if root.tag != "net" or root.find("layers") is None:
        raise FileFormatError(path, f"root <{root.tag}>, expected an OpenVINO IR <net> "
                              "with <layers>")
    return text, _graph(path, root)


def _graph(path: Path, root: ET.Element) -> Graph:
    layers = {}
    for element in root.findall("layers/layer"):
        layer = _layer(element)
        layers[layer.id] = layer
    graph = Graph(path, layers)
    for edge in root.findall("edges/edge"):
        src, dst = layers.get(edge.get("from-layer", "")), layers.get(edge.get("to-layer", ""))
        if src is None or dst is None:
            raise FileFormatError(path, f"edge {dict(edge.attrib)} names a layer that is "
                                  "not in <layers>")
        try:
            key = (dst.id, dst.input_index(edge.get("to-port", "")))
            graph.sources[key] = (src.id, src.output_ports.index(edge.get("from-port", "")))
        except ValueError as exc:
            raise FileFormatError(path, f"edge {dict(edge.attrib)} names a port that its "
                                  "layer does not have") from exc
    return graph


def _layer(element: ET.Element) -> Layer:
    data = element.find("data")
    inputs = element.findall("input/port")
    outputs = element.findall("output/port")
    return Layer(
        id=element.get("id", ""), name=element.get("name", ""), type=element.get("type", ""),
        data=dict(data.attrib) if data is not None else {},
        input_ports=[p.get("id", "") for p in inputs],
        input_dims=[tuple(_int(d.text) for d in p.findall("dim")) for p in inputs],
        output_ports=[p.get("id", "") for p in outputs],
        output_names=[p.get("names", "") for p in outputs])


def _int(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        return -1  # an unreadable dim reads as dynamic


# --- Const layers and the .bin -------------------------------------------------------------


def read_const(graph: Graph, layer: Layer, bin_path: Path, bin_size: int,
               kinds: dict[str, np.dtype], role: str = "") -> np.ndarray | None:
    """The array a Const layer points to, after checking it against the .bin (None: an
    element type outside ``kinds``). A declared size or range that the .bin cannot hold
    raises FileFormatError naming the layer and the sizes."""
    data = layer.data
    kind = data.get("element_type", "")
    if kind not in kinds:
        return None
    dtype = kinds[kind]
    where = f"Const layer {layer.name!r} (id {layer.id}{', ' + role if role else ''})"
    try:
        shape = tuple(int(n) for n in data.get("shape", "").replace(" ", "").split(",") if n)
        offset, size = int(data["offset"]), int(data["size"])
    except (KeyError, ValueError) as exc:
        raise FileFormatError(graph.path, f"{where}: shape/offset/size {data!r} unreadable"
                              ) from exc
    c.check_elements(shape, where)
    expected = math.prod(shape) * dtype.itemsize
    if size != expected or offset < 0 or any(n < 0 for n in shape):
        raise FileFormatError(graph.path, f"{where}: size {size} bytes at offset {offset}, "
                              f"expected {expected} bytes ({kind} of shape {shape})")
    if offset + size > bin_size:
        raise FileFormatError(bin_path, f"{where}: bytes {offset}..{offset + size} past the "
                              f"end of the .bin ({bin_size} bytes): truncated, or not this "
                              "IR's weights")
    with bin_path.open("rb") as handle:
        handle.seek(offset)
        raw = handle.read(size)
    return np.frombuffer(raw, dtype).reshape(shape).copy()


@dataclass
class Weight:
    """A weight input resolved to its Const: the values and what was passed through."""

    array: np.ndarray
    stored: str  # the Const's element type, e.g. "f16"
    path: list[str]  # types of the nodes between the Const and the LSTM


def resolve_weight(graph: Graph, lstm: Layer, index: int, bin_path: Path,
                   bin_size: int) -> Weight | str:
    """Input ``index`` of ``lstm`` traced back to a float Const, shaped as the LSTM's input
    port says; or a sentence saying why it cannot be (the weights are then not read)."""
    found = graph.source(lstm, index)
    passed: list[str] = []
    while found is not None and found[0].type in _PASS_THROUGH:
        passed.append(found[0].type)
        found = graph.source(found[0], 0)
    if found is None or found[0].type != "Const":
        what = "nothing" if found is None else f"a {found[0].type} layer {found[0].name!r}"
        return f"input {index} of {lstm.name!r} comes from {what}, not a Const"
    const = found[0]
    role = f"{_WEIGHT_NAMES[index - _WEIGHT_PORTS[lstm.type][0]]} of {lstm.name!r}"
    array = read_const(graph, const, bin_path, bin_size, _FLOATS, role)
    if array is None:
        return (f"Const {const.name!r} holds {const.data.get('element_type')} values "
                "(quantized or compressed weights; only f32, f16 and f64 are read)")
    dims = lstm.input_dims[index]
    if math.prod(dims) != array.size or any(n < 0 for n in dims):
        return (f"Const {const.name!r} of shape {array.shape} reaches input {index} of "
                f"{lstm.name!r} as {dims}")
    return Weight(array.reshape(dims), const.data.get("element_type", ""), passed)


# --- LSTM layers -> canonical weights ----------------------------------------------------


@dataclass
class ReadWeights:
    """What the .bin gave: the stacked LSTM layers (bottom-up), their weights or None, notes,
    and the element types the weight Consts are stored in (e.g. {"f16"})."""

    lstms: list[Layer]
    weights: LSTMWeights | None
    notes: list[str]
    stored: frozenset[str] = frozenset()


def lstm_layers(graph: Graph) -> list[Layer] | str:
    """The LSTM layers, bottom-up (each one's input depends on all before it), or why
    they are not one stack."""
    sequences = graph.of_type("LSTMSequence")
    if not sequences:
        cells = graph.of_type("LSTMCell")
        return cells[:1] if len(cells) == 1 else (
            f"{len(cells)} LSTMCell layers (an unrolled loop): not read as a stack" if cells
            else "no LSTMSequence or LSTMCell layer")
    ids = {layer.id for layer in sequences}
    depth = {layer.id: len(graph.ancestors(layer) & ids) for layer in sequences}
    ordered = sorted(sequences, key=lambda layer: depth[layer.id])
    if sorted(depth.values()) != list(range(len(sequences))):
        return f"{len(sequences)} LSTMSequence layers that are not one chain (parallel LSTMs)"
    return ordered


def read_weights(graph: Graph, bin_path: Path) -> ReadWeights:
    """The IR's LSTM stack as canonical weights (None with a note where it cannot be read)."""
    found = lstm_layers(graph)
    if isinstance(found, str):
        return ReadWeights(graph.of_type(*_CELL_TYPES), None, [f"weights not read: {found}"])
    bin_size = bin_path.stat().st_size
    layers = []
    for lstm in found:
        read = [resolve_weight(graph, lstm, k, bin_path, bin_size)
                for k in _WEIGHT_PORTS[lstm.type]]
        problem = next((r for r in read if isinstance(r, str)), None)
        if problem is not None:
            return ReadWeights(found, None, [f"weights not read: {problem}"])
        layers.append([r for r in read if isinstance(r, Weight)])  # all of them, by now
    try:
        weights, notes = _canonical(found, layers)
    except ConversionError as exc:
        return ReadWeights(found, None, [f"weights not read: {exc}"])
    stored = frozenset(w.stored for layer in layers for w in layer)
    return ReadWeights(found, weights, notes, stored)


def _canonical(lstms: list[Layer], layers: list[list[Weight]]) -> tuple[LSTMWeights, list[str]]:
    notes = []
    stored = sorted({w.stored for layer in layers for w in layer})
    if stored != ["f32"]:
        notes.append(f"weights stored as {'/'.join(stored)} in the .bin (ov.save_model "
                     "compresses to f16 unless compress_to_fp16=False); read and widened to "
                     "float32 exactly, as the runtime computes with them")
    arrays = [[_sequence_form(lstm, w.array.astype(np.float32)) for w in layer]
              for lstm, layer in zip(lstms, layers, strict=True)]
    spec = _spec(lstms, arrays)
    back = c.inverse_order(GATE_ORDER)
    cells = [CellWeights(
        w_input=c.permute_gates(w[d], back), w_recurrent=c.permute_gates(r[d], back),
        b_input=c.permute_gates(b[d], back), b_recurrent=np.zeros_like(b[d]))
        for w, r, b in arrays for d in range(spec.directions)]
    notes.append("one bias per gate in the IR (B): read as the input bias, recurrent bias 0")
    return c.build(spec, cells), notes


def _sequence_form(lstm: Layer, array: np.ndarray) -> np.ndarray:
    """An LSTMCell's W (4H, I), R, B as the sequence's (1, 4H, ...)."""
    return array[None] if lstm.type == "LSTMCell" else array


def _spec(lstms: list[Layer], arrays: list[list[np.ndarray]]) -> LSTMSpec:
    first = lstms[0]
    directions = arrays[0][0].shape[0]
    units = c.gate_units(arrays[0][0], f"{first.name} W", axis=1)
    direction = first.data.get("direction", "forward")
    activation = _activation(first)
    clip = float(first.data.get("clip", "0") or 0)
    for k, (lstm, (w, r, b)) in enumerate(zip(lstms, arrays, strict=True)):
        where = f"LSTM layer {k} ({lstm.name!r})"
        width = w.shape[2] if k == 0 else directions * units
        c.expect_shape(w, f"{where} W", (directions, 4 * units, width))
        c.expect_shape(r, f"{where} R", (directions, 4 * units, units))
        c.expect_shape(b, f"{where} B", (directions, 4 * units))
        same = (lstm.data.get("direction", "forward"), _activation(lstm),
                float(lstm.data.get("clip", "0") or 0))
        if same != (direction, activation, clip):
            raise ConversionError(f"{where}: direction/activation/clip {same}, but layer 0 "
                                  f"has {(direction, activation, clip)}")
    if (direction == "bidirectional") != (directions == 2):
        raise ConversionError(f"{first.name!r}: direction {direction!r} with W of "
                              f"{directions} direction(s)")
    return LSTMSpec(arrays[0][0].shape[2], units, len(lstms), directions,
                    gate_clip=clip or None, reverse=direction == "reverse",
                    activation=activation)


def _activation(lstm: Layer) -> str:
    names = [n.strip() for n in lstm.data.get("activations", "sigmoid,tanh,tanh").split(",")]
    if len(names) != 3 or names[0] != "sigmoid" or names[1] != names[2] or (
            names[1] not in ACTIVATIONS):
        raise ConversionError(f"{lstm.name!r}: activations {names}, expected sigmoid then "
                              f"one of {ACTIVATIONS} twice")
    if lstm.data.get("activations_alpha") or lstm.data.get("activations_beta"):
        raise ConversionError(f"{lstm.name!r}: activations_alpha/beta set (not read)")
    return names[1]


# --- tracing ---------------------------------------------------------------------------


def trace_axes(graph: Graph, layer: Layer, index: int,
               bin_path: Path) -> tuple[Layer, int, tuple[int, ...]] | None:
    """Input ``index`` of ``layer`` followed back through Transpose and Convert to the
    first other layer: that layer, its output index, and which of its axes become the
    input's three axes (None where a Transpose's order is not a constant 3-D one)."""
    axes: tuple[int, ...] = (0, 1, 2)
    found = graph.source(layer, index)
    while found is not None and found[0].type in ("Transpose", "Convert"):
        node = found[0]
        if node.type == "Transpose":
            order = graph.source(node, 1)
            if order is None or order[0].type != "Const":
                return None
            perm = read_const(graph, order[0], bin_path, bin_path.stat().st_size, _INTEGERS)
            if perm is None or sorted(perm.reshape(-1).tolist()) != [0, 1, 2]:
                return None
            axes = tuple(int(perm.reshape(-1)[k]) for k in axes)
        found = graph.source(node, 0)
    return None if found is None else (found[0], found[1], axes)


def input_axes(graph: Graph, lstm: Layer, index: int,
               bin_path: Path) -> tuple[str, tuple[int, ...]] | None:
    """The Parameter feeding input ``index`` of the LSTM (0 X, 1 H0, 2 C0) and which of
    its axes become the LSTM's (batch, time or direction, feature) axes; None where the
    path holds anything but Transposes and Converts."""
    traced = trace_axes(graph, lstm, index, bin_path)
    if traced is None or traced[0].type != "Parameter":
        return None
    return traced[0].name, traced[2]


def output_axes(graph: Graph, result: Layer, bin_path: Path) -> tuple[int, tuple[int, ...]] | None:
    """The LSTMSequence output (1 Ho, 2 Co) a Result shows through Transposes and Converts
    alone, and which of its (batch, direction, feature) axes become the Result's."""
    traced = trace_axes(graph, result, 0, bin_path)
    if traced is None or traced[0].type != "LSTMSequence":
        return None
    return traced[1], traced[2]


def lstm_outputs_reached(graph: Graph, result: Layer) -> set[int]:
    """Which LSTM outputs (0 Y, 1 Ho, 2 Co) a Result is computed from (through any nodes)."""
    reached: set[int] = set()
    todo, seen = [result], {result.id}
    while todo:
        current = todo.pop()
        for index in range(len(current.input_ports)):
            found = graph.source(current, index)
            if found is None or found[0].id in seen:
                continue
            if found[0].type in _CELL_TYPES:
                reached.add(found[1])
                continue  # what feeds the LSTM is not what the Result shows
            seen.add(found[0].id)
            todo.append(found[0])
    return reached
