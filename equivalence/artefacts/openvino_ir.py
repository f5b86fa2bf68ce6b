"""A compare side for an OpenVINO IR (``model.xml`` with ``model.bin`` beside it).

The IR runs in OpenVINO's CPU plugin at float32 inference precision
(``INFERENCE_PRECISION_HINT=f32``: the plugin's default is bf16 on CPUs with
AVX512-BF16 or AMX, see :mod:`equivalence.runtimes.openvino`). OpenVINO is given
the bytes of the pair, so it opens no other file. The weights are read from the
``.bin`` without OpenVINO (:mod:`.openvino_xml`).

Roles: each input and output is matched to x, h0, c0, lengths / y, h, c by its
tensor names (``ov.convert_model`` of a torch module names the inputs after
``forward``'s arguments and leaves the outputs unnamed), then by shape, then by
position (outputs y, h, c in that order); ``--map-a``/``--map-b`` override.
Layout: x is traced to the first LSTMSequence through Transposes, so a
time-major IR is fed (T, B, I) and its y read back as (T, B, ...); states are
taken as (L*D, B, H), the layout torch's exporter keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.artefacts.openvino_xml import (
    Graph,
    ReadWeights,
    input_axes,
    lstm_outputs_reached,
    output_axes,
    read_weights,
    read_xml,
)
from equivalence.artefacts.side import Feed, Refused, Returned, Shape, Side
from equivalence.errors import ConversionError
from equivalence.files._base import FileFormatError

# Names (lowercased) that say a role; a port matching two roles is read as unnamed.
_INPUT_NAMES = {
    "x": {"x", "input", "inputs", "inp", "input_1", "seq", "sequence", "data"},
    "h0": {"h0", "h_0", "hx", "h", "initial_h", "h_init", "hidden", "hidden_state", "state_h"},
    "c0": {"c0", "c_0", "cx", "c", "initial_c", "c_init", "cell", "cell_state", "state_c"},
    "lengths": {"lengths", "length", "lens", "seq_len", "seq_lens", "sequence_lens",
                "sequence_lengths"},
}
_OUTPUT_NAMES = {
    "y": {"y", "output", "outputs", "out", "output_0"},
    "h": {"h", "hn", "h_n", "y_h", "hidden", "h_out", "state_h"},
    "c": {"c", "cn", "c_n", "y_c", "cell", "c_out", "state_c"},
}
_MAP_HINT = "give the roles with --map-a/--map-b, e.g. x=input,h0=h0,c0=c0,y=out,h=h_n,c=c_n"


@dataclass
class _Port:
    """One model input or output as OpenVINO reports it."""

    index: int
    names: frozenset[str]
    node: str  # the Parameter's or Result's layer name
    dims: tuple[int | None, ...] | None  # None: dynamic rank
    dtype: np.dtype

    @property
    def label(self) -> str:
        return min(self.names) if self.names else self.node

    def matches(self, name: str) -> bool:
        return name in self.names or name == self.node


def openvino_side(path: Path, *, mapping: dict[str, str] | None = None) -> Side:
    """The network an OpenVINO IR defines, run in OpenVINO's CPU plugin at f32."""
    path = Path(path)
    bin_path = path.with_suffix(".bin")
    text, graph = read_xml(path)
    if not bin_path.is_file():
        raise FileFormatError(path, f"no {bin_path.name} beside it (ov.save_model writes "
                              "the .xml and its .bin together)")
    read = read_weights(graph, bin_path)  # before OpenVINO: our checks name the layer
    _refuse_cell(path, read)
    model = _read_model(path, text, bin_path)
    inputs = [_port(k, p) for k, p in enumerate(model.inputs)]
    outputs = [_port(k, p) for k, p in enumerate(model.outputs)]
    shape = _shape(read, graph)
    mapping = dict(mapping or {})
    roles_in = _assign(inputs, _INPUT_NAMES, mapping, shape, outputs=False, where=path)
    roles_out = _assign(outputs, _OUTPUT_NAMES, mapping, shape, outputs=True, where=path)
    notes = list(read.notes)
    time_major = _time_major(graph, read, bin_path, roles_in["x"], notes)
    batch_major = _batch_major_states(graph, read, bin_path, roles_in, roles_out, notes)
    notes += _state_notes(graph, roles_out)
    x = roles_in["x"]
    batch_axis, time_axis = (1, 0) if time_major else (0, 1)
    notes += _lengths_note(roles_in, _static(x, batch_axis), _static(x, time_axis))
    runner = _Runner(model, inputs, roles_in, roles_out, shape, time_major, batch_major)
    return Side(
        path=str(path), kind="OpenVINO IR", label=f"OpenVINO {_version()} CPU, f32 precision",
        run=runner.run, takes=frozenset(r for r in roles_in if r != "x"),
        returns=frozenset(roles_out), shape=shape,
        names={role: port.label for role, port in {**roles_in, **roles_out}.items()},
        fixed_batch=_static(x, batch_axis) or _state_batch(roles_in),
        fixed_steps=_static(x, time_axis), weights=read.weights, dtype=_dtype(read),
        notes=notes, reader_notes=tuple(read.notes))


def _refuse_cell(path: Path, read: ReadWeights) -> None:
    if not read.lstms:
        raise ConversionError(f"{path}: no LSTMSequence or LSTMCell layer in the IR: "
                              "nothing to compare as an LSTM")
    if read.lstms[0].type == "LSTMCell":
        raise ConversionError(f"{path}: one LSTMCell layer {read.lstms[0].name!r}, a single "
                              "time step on (B, I) inputs: compare runs whole sequences "
                              "(an LSTMSequence IR)")


def _dtype(read: ReadWeights) -> str:
    """float16 where the weights are stored so (ov.save_model's default): the IR computes
    in float32 with f16-rounded weights, about 1e-4 off the float32 original, so it is
    judged at float16's tolerance (a gate swap is still 1e-1 off)."""
    return "float16" if "f16" in read.stored else "float32"


def _read_model(path: Path, text: bytes, bin_path: Path) -> Any:  # -> openvino.Model
    import openvino

    from equivalence.runtimes.openvino import _core

    weights = np.fromfile(bin_path, np.uint8)
    try:
        return _core().read_model(model=text, weights=openvino.Tensor(weights))
    except Exception as exc:  # OpenVINO's own reason, for a graph it cannot read
        raise FileFormatError(path, f"OpenVINO cannot read it: {_first_line(exc)}") from exc


def _port(index: int, port: Any) -> _Port:
    partial = port.get_partial_shape()
    dims = None
    if partial.rank.is_static:
        dims = tuple(d.get_length() if d.is_static else None for d in partial)
    return _Port(index, frozenset(port.get_names()), port.get_node().get_friendly_name(),
                 dims, np.dtype(port.get_element_type().to_dtype()))


def _shape(read: ReadWeights, graph: Graph) -> Shape:
    """The network's shape from the weights read, else from the LSTM layers' ports."""
    if read.weights is not None:
        spec = read.weights.spec
        rows = spec.layers * spec.directions
        return Shape(spec.input_size, spec.directions * spec.units, rows, spec.units,
                     spec.units)
    first = read.lstms[0]
    units = _positive(first.data.get("hidden_size"))
    directions = 2 if first.data.get("direction") == "bidirectional" else 1
    x_dims = first.input_dims[0] if first.input_dims else ()
    width = x_dims[-1] if x_dims and x_dims[-1] > 0 else None
    rows = len(read.lstms) * directions if first.type == "LSTMSequence" else 1
    return Shape(width, units and directions * units, rows, units, units)


def _positive(text: str | None) -> int | None:
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if value > 0 else None


# --- roles ------------------------------------------------------------------------------


def _assign(ports: list[_Port], names: dict[str, set[str]], mapping: dict[str, str],
            shape: Shape, *, outputs: bool, where: Path) -> dict[str, _Port]:
    """Role -> port: the mapping, then names, then shapes and position."""
    roles: dict[str, _Port] = {}
    for role, name in mapping.items():
        if role not in names:
            continue
        match = [p for p in ports if p.matches(name)]
        if not match:
            kind = "outputs" if outputs else "inputs"
            raise ConversionError(f"{where}: --map {role}={name}: no such tensor; the IR's "
                                  f"{kind} are {[p.label for p in ports]}")
        roles[role] = match[0]
    for role in names:
        if role in roles:
            continue
        named = [p for p in _free(ports, roles) if _role_of(p, names) == role]
        if len(named) > 1:
            raise ConversionError(f"{where}: {[p.label for p in named]} all read as {role} "
                                  f"by name; {_MAP_HINT}")
        if named:
            roles[role] = named[0]
    order = ("y", "h", "c") if outputs else ("x", "h0", "c0")
    for port in _free(ports, roles):
        if not outputs and port.dtype.kind in "iu" and "lengths" not in roles:
            roles["lengths"] = port
            continue
        fits = [r for r in order if r not in roles and _fits(port, r, shape)]
        if not fits:
            kind = "output" if outputs else "input"
            raise ConversionError(f"{where}: {kind} {port.label!r} of shape "
                                  f"{_dims_text(port.dims)} is none of the roles left "
                                  f"({', '.join(r for r in order if r not in roles)}); "
                                  f"{_MAP_HINT}")
        roles[fits[0]] = port
    needed = "y" if outputs else "x"
    if needed not in roles:
        raise ConversionError(f"{where}: no {needed} found among "
                              f"{[p.label for p in ports]}; {_MAP_HINT}")
    return roles


def _free(ports: list[_Port], roles: dict[str, _Port]) -> list[_Port]:
    taken = {p.index for p in roles.values()}
    return [p for p in ports if p.index not in taken]


def _role_of(port: _Port, names: dict[str, set[str]]) -> str | None:
    said = {role for role, known in names.items()
            if any(n.lower() in known for n in port.names | {port.node})}
    return said.pop() if len(said) == 1 else None


def _fits(port: _Port, role: str, shape: Shape) -> bool:
    """Whether a port's static dims allow ``role`` (dynamic dims allow anything)."""
    if port.dtype.kind != "f":
        return False
    if port.dims is None:
        return True
    if len(port.dims) != 3:
        return False
    last = {"x": shape.input_size, "y": shape.output_width}.get(role, shape.units)
    # States are (L*D, B, H), or (B, D, H) as LSTMSequence holds them.
    first_ok = role in ("x", "y") or shape.state_rows is None or any(
        d in (None, shape.state_rows) for d in port.dims[:2])
    return first_ok and (last is None or port.dims[-1] in (None, last))


def _dims_text(dims: tuple[int | None, ...] | None) -> str:
    return "(dynamic rank)" if dims is None else "(" + ", ".join(
        "?" if d is None else str(d) for d in dims) + ")"


# --- layout and notes -------------------------------------------------------------------


def _time_major(graph: Graph, read: ReadWeights, bin_path: Path, x: _Port,
                notes: list[str]) -> bool:
    first = read.lstms[0]
    if first.type != "LSTMSequence":
        return False
    traced = input_axes(graph, first, 0, bin_path)
    if traced is None or traced[0] != x.node:
        notes.append("x could not be traced to the LSTM through Transposes: taken as "
                     "(batch, time, features)")
        return False
    if traced[1][:2] == (1, 0):
        notes.append("x is time-major in the IR (T, B, I): fed transposed, y read back")
        return True
    return False


def _batch_major_states(graph: Graph, read: ReadWeights, bin_path: Path,
                        roles_in: dict[str, _Port], roles_out: dict[str, _Port],
                        notes: list[str]) -> frozenset[str]:
    """The state roles the IR holds as LSTMSequence does, (B, D, H), rather than (L*D, B, H):
    a state Parameter or Result wired to the one LSTM through Transposes that keep the batch
    first (an IR built with openvino.opset; exporters transpose to the framework's layout)."""
    first = read.lstms[0]
    if len(read.lstms) != 1 or first.type != "LSTMSequence":
        return frozenset()
    found = set()
    for role, index in (("h0", 1), ("c0", 2)):
        port = roles_in.get(role)
        traced = None if port is None else input_axes(graph, first, index, bin_path)
        if port is not None and traced is not None and traced[0] == port.node \
                and traced[1][:2] == (0, 1):
            found.add(role)
    results = {layer.name: layer for layer in graph.of_type("Result")}
    for role in ("h", "c"):
        port = roles_out.get(role)
        read_back = None if port is None or port.node not in results else output_axes(
            graph, results[port.node], bin_path)
        if read_back is not None and read_back[0] in (1, 2) and read_back[1][:2] == (0, 1):
            found.add(role)
    if found:
        notes.append(f"{', '.join(sorted(found))} batch-major in the IR (B, D, H), as "
                     "LSTMSequence holds states: fed and read back transposed")
    return frozenset(found)


def _state_notes(graph: Graph, roles: dict[str, _Port]) -> list[str]:
    """Where the graph says an output taken as h comes from the LSTM's cell state (or c
    from its hidden state): said, not corrected, since a deployment reads it as named."""
    notes = []
    results = {layer.name: layer for layer in graph.of_type("Result")}
    for role, other in (("h", 2), ("c", 1)):
        port = roles.get(role)
        if port is None or port.node not in results:
            continue
        if lstm_outputs_reached(graph, results[port.node]) == {other}:
            notes.append(f"output {port.label!r}, taken as {role}, is computed from the "
                         f"LSTMSequence's {'Co' if other == 2 else 'Ho'} output")
    return notes


def _lengths_note(roles: dict[str, _Port], batch: int | None, steps: int | None) -> list[str]:
    if "lengths" not in roles or None not in (batch, steps):
        return []
    return ["OpenVINO's CPU plugin ignores sequence lengths where the batch or time "
            "dimension is dynamic (it keeps the sequence op whole there, openvino PR #10710; "
            "measured on 2026.4.1): every sequence runs to its end"]


def _static(port: _Port, axis: int) -> int | None:
    if port.dims is None or len(port.dims) <= axis:
        return None
    return port.dims[axis]


def _state_batch(roles: dict[str, _Port]) -> int | None:
    for role in ("h0", "c0"):
        if role in roles and (batch := _static(roles[role], 1)) is not None:
            return batch
    return None


# --- running ----------------------------------------------------------------------------


class _Runner:
    """Compiles the model once (at first use) and feeds it in the IR's own layout."""

    def __init__(self, model: Any, inputs: list[_Port], roles_in: dict[str, _Port],
                 roles_out: dict[str, _Port], shape: Shape, time_major: bool,
                 batch_major: frozenset[str]) -> None:
        self.model, self.inputs, self.shape, self.time_major = model, inputs, shape, time_major
        self.batch_major = batch_major  # state roles the IR holds as (B, D, H)
        self.roles_in, self.roles_out = roles_in, roles_out
        self.request: Any = None

    def run(self, feed: Feed) -> Returned:
        fed = self._feeds(feed)
        try:
            request = self._request()
            result = request.infer(fed)
            values = [np.array(result[port]) for port in request.model_outputs]
        except Exception as exc:  # the runtime rejected this feed: a refusal, with its reason
            raise Refused(f"OpenVINO: {_first_line(exc)}") from exc
        got = {role: self._swap(role, values[port.index])
               for role, port in self.roles_out.items()}
        y = got["y"]
        if self.time_major and y.ndim == 3:
            y = y.transpose(1, 0, 2)
        return Returned(y, got.get("h"), got.get("c"))

    def _feeds(self, feed: Feed) -> dict[int, np.ndarray]:
        x = feed.x.transpose(1, 0, 2) if self.time_major else feed.x
        fed = {self.roles_in["x"].index: x}
        for role, value in (("h0", feed.h0), ("c0", feed.c0)):
            if role in self.roles_in:
                value = value if value is not None else self._zeros(feed.batch, role)
                fed[self.roles_in[role].index] = self._swap(role, value)
        if "lengths" in self.roles_in:
            lengths = feed.lengths if feed.lengths is not None else np.full(
                feed.batch, feed.steps)
            fed[self.roles_in["lengths"].index] = lengths
        return {k: np.ascontiguousarray(v, dtype=self.inputs[k].dtype) for k, v in fed.items()}

    def _swap(self, role: str, value: np.ndarray) -> np.ndarray:
        """(rows, B, H) <-> (B, rows, H) for a state the IR holds batch-major."""
        return value.transpose(1, 0, 2) if role in self.batch_major and value.ndim == 3 else value

    def _zeros(self, batch: int, role: str) -> np.ndarray:
        # A probe without initial states: the IR takes them, so it gets zeros (torch's default).
        rows, width = self.shape.state_rows, self.shape.units
        if rows is None or width is None:
            raise Refused(f"the IR takes {role} but its shape is unknown, so no zeros can be "
                          "fed in its place")
        return np.zeros((rows, batch, width), np.float32)

    def _request(self) -> Any:
        if self.request is None:
            from equivalence.runtimes.openvino import _core

            # One thread: these graphs are tiny and the machines run several jobs at once.
            config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
            compiled = _core().compile_model(self.model, "CPU", config)
            self.request = compiled.create_infer_request()
        return self.request


def _version() -> str:
    import openvino

    return openvino.__version__.split("-")[0]


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # OpenVINO's messages start with "Exception from src/...": the reason is further down.
    useful = [line for line in lines if not line.startswith(("Exception from", "Check "))]
    return (useful or lines or [type(exc).__name__])[-1][:200]
