"""The role mapping and running the TF-family sides share (:mod:`.savedmodel`,
:mod:`.litert`): a graph with named inputs and outputs (a signature) as a
:class:`~.side.Side`.

Which input is ``x``, ``h0``, ``c0`` or ``lengths`` and which output is ``y``,
``h`` or ``c``: by ``--map`` first, then names, then shapes, then position
(Keras returns ``[output, h, c]`` for ``return_state=True`` as
``output_0..2``). And the weights a side reads kept only where they
reproduce the graph's own ``y`` (:func:`checked_weights`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from equivalence.artefacts.side import (
    INPUT_ROLES,
    OUTPUT_ROLES,
    Feed,
    Refused,
    Returned,
    Shape,
    Side,
)
from equivalence.canonical import LSTMWeights
from equivalence.errors import ConversionError

_H_NAMES = frozenset({"h", "h0", "hx", "hn", "hidden", "hy"})
_C_NAMES = frozenset({"c", "c0", "cx", "cn", "cell", "cy"})
_LENGTH_NAMES = frozenset({"len", "lens", "length", "lengths", "seqlen", "seqlens"})
_CHECK_TOLERANCE = 1e-4  # float32 graph vs float64 reference, small probe input


@dataclass(frozen=True)
class Port:
    """One signature input or output: its name, static shape (None: dynamic), dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"  # numpy's name for the dtype the graph takes or returns

    @property
    def floating(self) -> bool:
        return bool(np.issubdtype(np.dtype(self.dtype), np.floating))

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name!r} ({dims})"


# --- roles ---------------------------------------------------------------------------


def _tokens(name: str) -> set[str]:
    # "serving_default_h0:0" -> {"serving", "default", "h0", "0"}; the whole name too
    lowered = name.lower()
    return set(re.split(r"[^a-z0-9]+", lowered)) | {lowered}


def _named(port: Port, names: frozenset[str]) -> bool:
    return bool(_tokens(port.name) & names)


def _position(port: Port) -> int:
    """The trailing index of a name: ``output_2`` -> 2, ``lstm`` -> 0, and a tensor's output
    index first (``StatefulPartitionedCall_1:2`` -> 2, a flatbuffer without a signature)."""
    found = re.search(r":(\d+)$", port.name) or re.search(r"(\d+)$", port.name)
    return int(found.group(1)) if found else 0


def _pair(ports: list[Port], first: str, second: str, kind: str, flag: str) -> dict[str, Port]:
    """Two state ports told apart by names, else by their trailing index (Keras's h, c)."""
    found: dict[str, Port] = {}
    for port in ports:
        is_h, is_c = _named(port, _H_NAMES), _named(port, _C_NAMES)
        if is_h != is_c:
            found.setdefault(first if is_h else second, port)
    rest = [p for p in ports if p not in found.values()]
    missing = [r for r in (first, second) if r not in found]
    if len(rest) == 1 and len(missing) == 1:
        found[missing[0]] = rest[0]
    elif rest and len(missing) == 2 and len(rest) == 2:
        positions = [_position(p) for p in rest]
        if positions[0] == positions[1]:
            raise ConversionError(
                f"{kind} {rest[0].describe()} and {rest[1].describe()}: which is {first} and "
                f"which {second} cannot be told from names or positions; say it with "
                f"{flag}, e.g. {first}={rest[0].name},{second}={rest[1].name}")
        ordered = sorted(rest, key=_position)
        found[first], found[second] = ordered
    elif rest:
        raise ConversionError(
            f"{kind} {', '.join(p.describe() for p in rest)}: roles {first}/{second} "
            f"ambiguous; say them with {flag}")
    return found


def assign_inputs(ports: Sequence[Port], mapping: Mapping[str, str]) -> dict[str, Port]:
    """{role: port} for the signature's inputs; every input needs a role (it must be fed)."""
    flag = "--map-a/--map-b"
    roles = _mapped(ports, mapping, INPUT_ROLES, "input")
    rest = [p for p in ports if p not in roles.values()]
    if "lengths" not in roles:
        lengths = [p for p in rest if not p.floating and len(p.shape) == 1] or \
                  [p for p in rest if _named(p, _LENGTH_NAMES) and len(p.shape) == 1]
        if len(lengths) == 1:
            roles["lengths"] = lengths[0]
    rest = [p for p in ports if p not in roles.values()]
    if "x" not in roles:
        xs = [p for p in rest if p.floating and len(p.shape) == 3
              and not (_named(p, _H_NAMES) or _named(p, _C_NAMES))]
        xs = xs if len(xs) == 1 else [p for p in xs if _named(p, frozenset({"x", "input"}))]
        if len(xs) != 1:
            raise ConversionError(f"inputs {', '.join(p.describe() for p in ports)}: no single "
                                  f"(B, T, I) input to take as x; say it with {flag}, e.g. x=NAME")
        roles["x"] = xs[0]
    rest = [p for p in ports if p not in roles.values()]
    states = [p for p in rest if p.floating and len(p.shape) in (2, 3)]
    todo = [r for r in ("h0", "c0") if r not in roles]
    if len(todo) == 2:
        roles.update(_pair(states, "h0", "c0", "inputs", flag))
    elif todo and len(states) == 1:
        roles[todo[0]] = states[0]
    left = [p for p in ports if p not in roles.values()]
    if left:
        raise ConversionError(f"inputs {', '.join(p.describe() for p in left)}: no role "
                              f"(x, h0, c0, lengths) for them, yet the signature needs them fed; "
                              f"say it with {flag}")
    return roles


def assign_outputs(ports: Sequence[Port], mapping: Mapping[str, str]) -> dict[str, Port]:
    """{role: port} for the signature's outputs (outputs without a role are left out)."""
    flag = "--map-a/--map-b"
    roles = _mapped(ports, mapping, OUTPUT_ROLES, "output")
    rest = [p for p in ports if p not in roles.values() and p.floating]
    if "y" not in roles:
        ys = [p for p in rest if len(p.shape) == 3 and not (_named(p, _H_NAMES)
                                                           or _named(p, _C_NAMES))]
        if len(ys) > 1:
            ys = sorted(ys, key=_position)[:1] if len({_position(p) for p in ys}) == len(ys) \
                else ys
        if len(ys) != 1:
            raise ConversionError(f"outputs {', '.join(p.describe() for p in ports)}: no single "
                                  f"(B, T, W) output to take as y; say it with {flag}, e.g. y=NAME")
        roles["y"] = ys[0]
    rest = [p for p in rest if p not in roles.values() and len(p.shape) in (2, 3)]
    todo = [r for r in ("h", "c") if r not in roles]
    if len(todo) == 2:
        roles.update(_pair(rest, "h", "c", "outputs", flag))
    elif todo and len(rest) == 1:
        roles[todo[0]] = rest[0]
    return roles


def _mapped(ports: Sequence[Port], mapping: Mapping[str, str], roles: tuple[str, ...],
            kind: str) -> dict[str, Port]:
    by_name = {p.name: p for p in ports}
    found = {}
    for role, name in mapping.items():
        if role not in roles:
            continue
        if name not in by_name:
            raise ConversionError(f"--map {role}={name}: no {kind} named {name!r}; the "
                                  f"{kind}s are {', '.join(sorted(by_name))}")
        found[role] = by_name[name]
    return found


# --- running ---------------------------------------------------------------------------


def ported_side(path: str, kind: str, label: str, inputs: Sequence[Port],
                outputs: Sequence[Port], invoke: Callable[[dict[str, np.ndarray]],
                                                          dict[str, np.ndarray]],
                mapping: Mapping[str, str]) -> Side:
    """A Side for a graph with named inputs and outputs (SavedModel, LiteRT signature)."""
    ins, outs = assign_inputs(inputs, mapping), assign_outputs(outputs, mapping)
    x = ins["x"]

    def run(feed: Feed) -> Returned:
        fed = _fed(feed, ins)
        try:
            returned = invoke(fed)
        except Refused:
            raise
        except Exception as exc:  # the runtime said no: a refusal with its reason
            raise Refused(f"{type(exc).__name__}: {first_line(exc)}") from exc
        return _returned(returned, outs, feed)

    state = outs.get("h") or outs.get("c") or ins.get("h0") or ins.get("c0")
    rows = None if state is None else (1 if len(state.shape) == 2 else state.shape[0])
    shape = Shape(input_size=x.shape[-1], output_width=outs["y"].shape[-1], state_rows=rows,
                  units=outs["c"].shape[-1] if "c" in outs else None,
                  state_width=outs["h"].shape[-1] if "h" in outs else None)
    names = {role: port.name for role, port in {**ins, **outs}.items()}
    notes = [f"unused output {p.describe()}" for p in outputs if p not in outs.values()]
    return Side(path=path, kind=kind, label=label, run=run,
                takes=frozenset(r for r in ins if r != "x"), returns=frozenset(outs),
                shape=shape, names=names, fixed_batch=x.shape[0], fixed_steps=x.shape[1],
                dtype=x.dtype, notes=notes)


def _fed(feed: Feed, ins: dict[str, Port]) -> dict[str, np.ndarray]:
    fed = {ins["x"].name: feed.x.astype(ins["x"].dtype)}
    for role in ("h0", "c0"):
        if role in ins:
            fed[ins[role].name] = _state_in(getattr(feed, role), ins[role], feed.batch, role)
    if "lengths" in ins:
        lengths = feed.lengths if feed.lengths is not None else np.full(feed.batch, feed.steps)
        fed[ins["lengths"].name] = np.asarray(lengths).astype(ins["lengths"].dtype)
    return fed


def _state_in(value: np.ndarray | None, port: Port, batch: int, role: str) -> np.ndarray:
    """The Feed's (rows, B, H) state in the file's layout: (B, H) for one row (Keras)."""
    if value is None:  # the file needs it fed: zeros, every LSTM's default
        width = port.shape[-1]
        if width is None:
            raise Refused(f"{role} {port.describe()}: not fed and its width is dynamic")
        rows = () if len(port.shape) == 2 else (port.shape[0] or 1,)
        return np.zeros((*rows, batch, width), port.dtype)
    if len(port.shape) == 2:
        if value.shape[0] != 1:
            raise Refused(f"{role} {port.describe()} takes one state row (B, H); the feed "
                          f"has {value.shape[0]} rows")
        return value[0].astype(port.dtype)
    return value.astype(port.dtype)


def _returned(returned: dict[str, np.ndarray], outs: dict[str, Port], feed: Feed) -> Returned:
    y = returned[outs["y"].name]
    # A graph resized past the shape it was built at can run and return the old shape
    # (LiteRT's WHILE kept 5 steps for a 7-step feed): that is a refusal, not numbers.
    if y.ndim != 3 or y.shape[:2] != (feed.batch, feed.steps):
        raise Refused(f"the graph ran a feed of batch {feed.batch}, {feed.steps} steps and "
                      f"returned y {outs['y'].name!r} of shape {tuple(y.shape)}: it fixes "
                      f"{outs['y'].describe()}")
    states = {}
    for role in ("h", "c"):
        if role in outs:
            value = returned[outs[role].name]
            value = value[None] if value.ndim == 2 else value
            if value.shape[1] != feed.batch:
                raise Refused(f"{role} {outs[role].describe()} came back {tuple(value.shape)} "
                              f"for a feed of batch {feed.batch}")
            states[role] = value
    return Returned(y, states.get("h"), states.get("c"))


def first_line(exc: BaseException) -> str:
    # TF's errors open with "Graph execution error:" and say what failed further on
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return text[:300] or "(no message)"


# --- weights ---------------------------------------------------------------------------


def checked_weights(side: Side, found: tuple[LSTMWeights | None, str]) -> tuple[
        LSTMWeights | None, str]:
    """``found`` weights kept only if they reproduce the side's own y; and a note saying."""
    weights, why = found
    if weights is None:
        return None, f"weights not read ({why}); the diagnosis works from outputs"
    from equivalence.reference import lstm

    spec = weights.spec
    if side.shape.input_size not in (None, spec.input_size):
        return None, (f"weights not used: {why} take input {spec.input_size}, the graph "
                      f"{side.shape.input_size}")
    rng = np.random.default_rng(0)
    feed = Feed(rng.standard_normal((side.fixed_batch or 2, side.fixed_steps or 3,
                                     spec.input_size)).astype(np.float32))
    try:
        ran = side.run(feed).y
    except Refused as exc:
        return None, f"weights not used: the graph did not run to check them ({exc})"
    expected = lstm(weights, feed.x).outputs
    diff = float(np.max(np.abs(ran - expected))) if ran.shape == expected.shape else np.inf
    if not diff <= _CHECK_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
        return None, (f"weights not used: {why} do not reproduce the graph's y "
                      f"(max abs diff {diff:.3g}); the diagnosis works from outputs")
    return weights, f"weights read from {why}, checked against the graph's y ({diff:.2g})"

