"""How an ONNX model lays out x, the initial states and its outputs, and the probe run
that decides it; the conversions between a layout and the Feed/Returned one.

The probe: a run of a copy of the model that also returns the stack's own X,
initial_h, Y, Y_h and Y_c, once per hypothesis (x batch-first or time-major,
states (rows, B, H) or (B, rows, H)), decides by content; by shape where the
content is not a rearrangement (a layer before the LSTM). The declared static
dims of x, and the batch of the state inputs, are the shape the graph fixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.artefacts.onnx_roles import GraphPort
from equivalence.artefacts.onnx_runtime import as_elem, first_line, open_session, run_options
from equivalence.errors import ConversionError
from equivalence.files._base import FoundLSTM
from equivalence.files.limits import shown


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


def probe_layout(model: Any, found: FoundLSTM, weights: Any, taken: dict[str, str],
                 returned: dict[str, str], ports: dict[str, GraphPort], traced: bool, path: Path,
                 notes: list[str]) -> Layout:
    """The layouts, from one run of an instrumented copy per hypothesis (module docstring)."""
    probe = _Probe(model, found, weights, taken, returned, ports, traced, path)
    return probe.decide(notes)


class _Probe:
    """Runs hypotheses about the input layouts and reads the stack's own tensors back."""

    def __init__(self, model: Any, found: FoundLSTM, weights: Any, taken: dict[str, str],
                 returned: dict[str, str], ports: dict[str, GraphPort], traced: bool,
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
        input_size = (x_dims[2] if x_dims and x_dims[2] else None) or (
            spec.input_size if spec else None)
        if input_size is None:
            raise ConversionError(f"{path}: the input size is unknown (weights unread, "
                                  f"{shown(taken['x'])} declares no feature axis)")
        self.input_size: int = input_size
        self.rows = spec.layers * spec.directions if spec else None
        self.units = spec.units if spec else None
        self.state_width = spec.output_size if spec else None
        self.directions = spec.directions if spec else None
        self.extra = self._extra_outputs() if traced else {}
        self.fed = {i.name for i in model.graph.input}
        self.hint: int | None = None  # the batch to try where no dim fixes it
        self.session = open_session(_instrumented(model, self.extra) if traced else model, path)

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
        best: tuple[tuple[int, int], Layout] | None = None
        failures: list[str] = []
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
        if fixed_dims(self.taken, self.ports, layout)[0] is not None:
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
        batches = {batch} if batch is not None else set()
        for role in ("h0", "c0", "lengths"):
            if role in self.taken:
                dims = self.ports[self.taken[role]].dims
                axis = 0 if role == "lengths" or state_kind in ("brh", "bh") else 1
                declared = dims[axis] if dims and len(dims) > axis else None
                if declared is not None:
                    batches.add(declared)
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
        graph_feed = {self.taken[r]: as_elem(to_graph(x_kind if r == "x" else state_kind, v),
                                             self.ports[self.taken[r]].elem)
                      for r, v in feed.items()}
        if "lengths" in self.taken:
            graph_feed[self.taken["lengths"]] = as_elem(np.full(b, t),
                                                        self.ports[self.taken["lengths"]].elem)
        names = [n for n in dict.fromkeys([*self.returned.values(), *self.extra.values()])
                 if n not in self.fed]
        try:
            values = dict(zip(names, self.session.run(names, graph_feed, run_options()),
                              strict=True))
        except Exception as exc:
            failures.append(first_line(exc))
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


def fixed_dims(taken: dict[str, str], ports: dict[str, GraphPort], layout: Layout
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
