"""Which graph input of an ONNX model is ``x``, ``h0``, ``c0``, ``lengths`` and which output
is ``y``, ``h``, ``c``: the ports read from the graph, the dataflow traced to the LSTM
stack's slots, and the assignment.

In order: ``--map``; the tensor's whole name (``hn``, ``initial_h``: what the user's code
reads, so it wins over the dataflow, with a note where they disagree); the
dataflow (the LSTM input slot a graph input reaches, past value-free ops such as
Shape; the LSTM output slot a graph output comes from), which beats a generic
word inside a name (``input_2``); position, only where the dataflow cannot be
traced (an LSTM inside a subgraph). Every input must get a role (it must be
fed); an output without one is left out, with a note.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equivalence.artefacts.side import INPUT_ROLES, OUTPUT_ROLES
from equivalence.errors import ConversionError
from equivalence.files.limits import listed, shown

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
class GraphPort:
    """One graph input or output: its name, declared dims (None: symbolic) and type."""

    name: str
    dims: list[int | None] | None
    elem: int
    by_name: str | None = None
    by_flow: set[str] = field(default_factory=set)
    params: list[str] = field(default_factory=list)  # the symbolic dims' names


def graph_ports(model: Any) -> tuple[list[GraphPort], list[GraphPort]]:
    """The graph's inputs (initializers aside: they are not fed) and outputs."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [_port(i) for i in graph.input if i.name not in initializers]
    return inputs, [_port(o) for o in graph.output]


def _port(info: Any) -> GraphPort:
    tensor = info.type.tensor_type
    dims = ([d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
            if tensor.HasField("shape") else None)
    params = ([d.dim_param for d in tensor.shape.dim] if tensor.HasField("shape") else [])
    return GraphPort(info.name, dims, int(tensor.elem_type), params=params)


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


def trace(model: Any, chain: list[Any], inputs: list[GraphPort], outputs: list[GraphPort]) -> None:
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


def assign_roles(ports: list[GraphPort], roles: tuple[str, ...], mapping: dict[str, str],
                 traced: bool, notes: list[str], what: str, path: Path) -> dict[str, str]:
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
    claims: dict[str, list[GraphPort]] = {}
    loose = []
    for port in ports:
        if port.name in chosen.values():
            continue
        claimed = _claim(port, table, traced, notes, what)
        if claimed is None or claimed in chosen:
            loose.append(port)
        else:
            claims.setdefault(claimed, []).append(port)
    for role, claimants in claims.items():
        chosen[role] = _one(role, claimants, chosen, ports, what, path)
    loose = [p for p in loose if p.name not in chosen.values()]
    _leftovers(loose, ports, roles, chosen, traced, notes, what, path)
    return chosen


def _claim(port: GraphPort, table: dict[str, set[str]], traced: bool, notes: list[str],
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


def _one(role: str, claimants: list[GraphPort], chosen: dict[str, str], ports: list[GraphPort],
         what: str, path: Path) -> str:
    if len(claimants) > 1:  # a name and the dataflow agreeing beats either alone
        agreed = [p for p in claimants if p.by_name == role and role in p.by_flow]
        claimants = agreed if len(agreed) == 1 else claimants
    if len(claimants) == 1:
        return claimants[0].name
    raise _ambiguous(f"{what}s {listed([p.name for p in claimants])} all read as {role}",
                     {**chosen, role: claimants[0].name}, ports, what, path)


def _leftovers(loose: list[GraphPort], ports: list[GraphPort], roles: tuple[str, ...],
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


def _fits(port: GraphPort, role: str) -> bool:
    """Whether ``port``'s element type can play ``role`` (lengths integer, others not)."""
    return (role == "lengths") == (port.elem in INTEGER_TYPES)


def _ambiguous(problem: str, example: dict[str, str], ports: list[GraphPort], what: str,
               path: Path) -> ConversionError:
    """The roles cannot be read: name the ports and say how to give them."""
    order = INPUT_ROLES if what == "input" else OUTPUT_ROLES
    given = ",".join(f"{r}={example[r]}" for r in order if r in example)
    return ConversionError(f"{path}: cannot tell the {what} roles: {problem} (the graph's "
                           f"{what}s: {listed([p.name for p in ports])}); pass --map-a or "
                           f"--map-b role=NAME for this file, e.g. --map-b {given}")
