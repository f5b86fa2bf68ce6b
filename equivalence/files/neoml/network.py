"""NeoML's own network files, read without NeoML.

A network NeoML saved itself (``Dnn.store``, ``Dnn.store_checkpoint``; usually
``.cnnarch``) is decoded by :mod:`equivalence.files.neoml.archive` without
NeoML; :func:`read_network_file` finds its ``Lstm`` and ``Gru`` layers, checks
that each one's inner layers are wired as NeoML builds it (a ``Gru``'s in
:mod:`equivalence.files.neoml.gru_layer`), and groups a forward and a
``reverse_seq`` layer of one cell joined by ``ConcatChannels`` into one
bidirectional layer, and layers of one cell fed one by another into a stack.

Only numpy and equivalence modules are imported at the top, so this module
loads in either environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.files._base import FileFormatError, FoundLSTM
from equivalence.files.neoml.gru_layer import read_gru
from equivalence.files.neoml.recurrent_parts import (
    Unreadable,
    check_back_link,
    check_back_links,
    check_wiring,
    fully_connected,
)

# neoml.Dnn.Lstm's activation names, in TActivationFunction order (AF_Sigmoid is 5).
ACTIVATIONS = ("linear", "elu", "relu", "leaky_relu", "abs", "sigmoid", "tanh", "hard_tanh",
               "hard_sigmoid", "power", "hswish", "gelu")
SIGMOID = ACTIVATIONS.index("sigmoid")
_SPLIT, _SUM, _MUL = "CCnnSplitChannelsLayer", "FmlCnnEltwiseSumLayer", "FmlCnnEltwiseMulLayer"
_FC, _TANH, _SIGMOID = "FmlCnnFullyConnectedLayer", "FmlCnnTanhLayer", "FmlCnnSigmoidLayer"
# What each back link captures, and the Lstm's outputs #0 (h) and #1 (c), as NeoML builds them.
_CAPTURED = {"CCnnBackLink.main": ("CCnnEltwiseMulLayer.reset", 0),
             "CCnnBackLink.state": ("CCnnEltwiseSumLayer", 0)}
_OUTPUTS = [("CCnnEltwiseMulLayer.reset", 0), ("CCnnEltwiseSumLayer", 0)]
_COMPATIBILITY_OUTPUT = ("CCnnTanhLayer.output", 0)
# ReverseSequence: a SubSequence from the last step (-1) back over the whole sequence (INT_MIN)
_SUBSEQUENCE, _WHOLE_REVERSED = "FmlCnnSubSequenceLayer", (-1, -2**31)


def _lstm_wiring(dropout: bool) -> dict[str, tuple[str, list[tuple[str, int]]]]:
    """Inner layer name -> (class, inputs) of NeoML's ``Lstm`` (``CLstmLayer::buildLayer``).

    Split outputs are the gate blocks in NeoML's order: 0 main (g), 1 forget, 2 input,
    3 reset (o).
    """
    wiring = {
        "InputHidden": (_FC, [("InputDropout" if dropout else "CompositeSource.0", 0)]),
        "RecurHidden": (_FC, [("RecurDropout" if dropout else "CCnnBackLink.main", 0)]),
        "HiddenLayerSum": (_SUM, [("InputHidden", 0), ("RecurHidden", 0)]),
        _SPLIT: ("FmlCnnSplitChannelsLayer", [("HiddenLayerSum", 0)]),
        "CCnnTanhLayer.main": (_TANH, [(_SPLIT, 0)]),
        "CCnnSigmoidLayer.forget": (_SIGMOID, [(_SPLIT, 1)]),
        "CCnnSigmoidLayer.input": (_SIGMOID, [(_SPLIT, 2)]),
        "CCnnSigmoidLayer.reset": (_SIGMOID, [(_SPLIT, 3)]),
        "CCnnEltwiseMulLayer.input": (_MUL, [("CCnnSigmoidLayer.input", 0),
                                             ("CCnnTanhLayer.main", 0)]),
        "CCnnEltwiseMulLayer.forget": (_MUL, [("CCnnSigmoidLayer.forget", 0),
                                              ("CCnnBackLink.state", 0)]),
        "CCnnEltwiseSumLayer": (_SUM, [("CCnnEltwiseMulLayer.input", 0),
                                       ("CCnnEltwiseMulLayer.forget", 0)]),
        "CCnnTanhLayer.output": (_TANH, [("CCnnEltwiseSumLayer", 0)]),
        "CCnnEltwiseMulLayer.reset": (_MUL, [("CCnnSigmoidLayer.reset", 0),
                                             ("CCnnTanhLayer.output", 0)]),
    }
    if dropout:
        wiring["InputDropout"] = ("FmlCnnDropoutLayer", [("CompositeSource.0", 0)])
        wiring["RecurDropout"] = ("FmlCnnDropoutLayer", [("CCnnBackLink.main", 0)])
    return wiring


@dataclass
class _Recurrent:
    """One top-level ``Lstm`` (or ``Gru``) layer: its weights in the ``neoml`` native form,
    or why not."""

    layer: Any  # neoml_archive.Layer
    cell: dict[str, np.ndarray] | None
    problem: str | None
    notes: list[str]
    kind: str = "lstm"
    # set when ReverseSequence layers wrap the layer (how a NeoML Gru runs backwards): the
    # input before the first reversal, and the reversal after it, which the concat reads
    wrapped: tuple[tuple[str, int], str] | None = None

    @property
    def title(self) -> str:
        return "Gru" if self.kind == "gru" else "Lstm"

    @property
    def output(self) -> tuple[str, int]:
        return (self.wrapped[1], 0) if self.wrapped else (self.name, 0)

    @property
    def name(self) -> str:
        return str(self.layer.name)

    @property
    def reverse(self) -> bool:
        return bool(self.layer.fields["reverse"]) or self.wrapped is not None

    @property
    def source(self) -> tuple[str, int] | None:
        if self.wrapped:
            return self.wrapped[0]
        return self.layer.inputs[0] if self.layer.inputs else None


@dataclass
class _Unit:
    """One LSTM layer of a stack: a forward Lstm, or a forward and a reverse one."""

    lstms: list[_Recurrent]
    source: tuple[str, int] | None
    output: tuple[str, int] | None  # what the next layer of a stack would read


def read_network_file(path: Path) -> list[FoundLSTM]:
    """The LSTMs of a network NeoML saved itself (``Dnn.store``/``store_checkpoint``)."""
    from equivalence.files.limits import MAX_ARRAY_BYTES
    from equivalence.files.neoml.archive import NeoMLArchiveError, read_network

    try:
        size = path.stat().st_size
        if size > MAX_ARRAY_BYTES:
            raise FileFormatError(path, f"{size:,} bytes, over the {MAX_ARRAY_BYTES:,}-byte cap")
        network = read_network(path.read_bytes())
    except NeoMLArchiveError as exc:
        raise FileFormatError(path, f"cannot be read as a NeoML network file: {exc}") from exc
    except OSError as exc:
        raise FileFormatError(path, f"cannot be read: {exc.strerror or exc}") from exc
    kind = f"NeoML network file (Dnn.store, archive version {network.version})"
    shared = []
    if network.trailing_bytes:
        kind = f"NeoML checkpoint (Dnn.store_checkpoint, archive version {network.version})"
        shared.append(f"{network.trailing_bytes} bytes after the network (the solver's state) "
                      f"are not read")
    lstms = [_READERS[layer.cls](layer) for layer in network.layers if layer.cls in _READERS]
    wrappers = _unwrap_reversed(lstms, network.layers)
    others = [f"{layer.cls.removeprefix('FmlCnn')} {layer.name!r}" for layer in network.layers
              if layer.cls not in (*_READERS, "FmlCnnSourceLayer", "FmlCnnSinkLayer",
                                   "FmlCnnConcatChannelsLayer")
              and layer.name not in wrappers]
    if others:
        shared.append(f"the network's other layers are not converted: {', '.join(others)}")
    units = _units(lstms, network.layers)
    return [_found(chain, path, kind, shared) for chain in _chains(units)]


def _read_lstm(layer: Any) -> _Recurrent:
    notes = []
    if len(layer.inputs) > 1:
        notes.append("initial states fed by " + ", ".join(
            f"{name!r} ({what})"
            for (name, _), what in zip(layer.inputs[1:3], ("c0", "h0"), strict=False)))
    try:
        _check_lstm(layer)
        inner = {item.name: item for item in layer.layers}
        if "InputDropout" in inner:
            notes.append(f"dropout {inner['InputDropout'].fields['rate']:.3g} (training only; "
                         f"inference ignores it)")
        return _Recurrent(layer, _cell(inner), None, notes)
    except Unreadable as exc:
        return _Recurrent(layer, None, str(exc), notes)


def _read_gru(layer: Any) -> _Recurrent:
    notes = []
    if len(layer.inputs) > 1:
        notes.append(f"initial state fed by {layer.inputs[1][0]!r} (h0)")
    try:
        return _Recurrent(layer, read_gru(layer), None, notes, "gru")
    except Unreadable as exc:
        return _Recurrent(layer, None, str(exc), notes, "gru")


_READERS = {"FmlCnnLstmLayer": _read_lstm, "FmlCnnGruLayer": _read_gru}


def _check_lstm(layer: Any) -> None:
    """Refuse, by name, an Lstm that does not compute the canonical LSTM."""
    activation = layer.fields["recurrent_activation"]
    if activation != SIGMOID:
        name = ACTIVATIONS[activation] if 0 <= activation < len(ACTIVATIONS) else activation
        raise Unreadable(f"recurrent activation {name!r}: only NeoML's default sigmoid has a "
                         f"canonical form")
    if layer.fields["repeat_count"] != 1:
        raise Unreadable(f"repeat count {layer.fields['repeat_count']}: the layer runs each "
                         f"sequence more than once")
    mappings = layer.fields["output_mappings"]
    if mappings[:1] == [_COMPATIBILITY_OUTPUT]:
        raise Unreadable("compatibility mode: output #0 is tanh(c) without the output gate")
    if mappings != _OUTPUTS:
        raise Unreadable(f"outputs mapped to {mappings}, expected {_OUTPUTS}")
    inner = {item.name: item for item in layer.layers}
    found = {name: (item.cls, item.inputs) for name, item in inner.items()
             if name not in _CAPTURED}
    check_wiring(found, _lstm_wiring(dropout="InputDropout" in inner), "Lstm")
    for name, captured in _CAPTURED.items():
        # the initial state enters through the back link's second input (composite input 1 or 2)
        state_input = ("CompositeSource.2" if name.endswith("main") else "CompositeSource.1", 0)
        check_back_link(inner.get(name), name, state_input, captured, "Lstm")
    check_back_links([item.name for item in layer.fields["back_links"]], list(_CAPTURED))


def _cell(inner: dict[str, Any]) -> dict[str, np.ndarray]:
    """The two fully connected layers' blobs as ``neoml`` native arrays, sizes checked."""
    cell: dict[str, np.ndarray] = {}
    for layer, weights, free in (("InputHidden", "input_weights", "input_free_term"),
                                 ("RecurHidden", "recurrent_weights", "recurrent_free_term")):
        cell[weights], cell[free] = fully_connected(inner[layer], layer, 4)
    units = cell["input_weights"].shape[0] // 4
    if cell["recurrent_weights"].shape != (4 * units, units):
        raise Unreadable(f"RecurHidden weights: {cell['recurrent_weights'].shape}, expected "
                         f"{(4 * units, units)} for {units} units")
    counts = inner[_SPLIT].fields["output_counts"]
    if counts != [units] * 3:
        raise Unreadable(f"gate split {counts}, expected {[units] * 3} for {units} units")
    return cell


def _unwrap_reversed(lstms: list[_Recurrent], layers: Sequence[Any]) -> set[str]:
    """Mark each forward layer between two whole-sequence ``ReverseSequence`` layers as a
    backward one on the first reversal's input; the names of the reversals so used."""
    reversals = {layer.name: layer for layer in layers if layer.cls == _SUBSEQUENCE
                 and (layer.fields["start"], layer.fields["length"]) == _WHOLE_REVERSED
                 and len(layer.inputs) == 1}
    after = {layer.inputs[0]: layer.name for layer in reversals.values()}
    used: set[str] = set()
    for lstm in lstms:
        source = lstm.source
        closing = after.get((lstm.name, 0))
        if (lstm.layer.fields["reverse"] or source is None or source[0] not in reversals
                or closing is None):
            continue
        lstm.wrapped = (reversals[source[0]].inputs[0], closing)
        used |= {source[0], closing}
    return used


def _units(lstms: list[_Recurrent], layers: Sequence[Any]) -> list[_Unit]:
    """Lstms reading one input: a forward and a reverse one are one bidirectional layer."""
    concats = {tuple(layer.inputs): layer.name for layer in layers
               if layer.cls == "FmlCnnConcatChannelsLayer"}
    groups: dict[Any, list[_Recurrent]] = {}
    for lstm in lstms:  # a forward Gru and a reverse Lstm on one input are not one layer
        groups.setdefault((lstm.source, lstm.kind), []).append(lstm)
    units = []
    for (source, _), members in groups.items():
        forward = [m for m in members if not m.reverse]
        backward = [m for m in members if m.reverse]
        if len(forward) == 1 and len(backward) == 1:
            pair = [forward[0], backward[0]]
            concat = concats.get(tuple(m.output for m in pair))
            units.append(_Unit(pair, source, (concat, 0) if concat else None))
        else:
            units += [_Unit([m], source, m.output) for m in members]
    return units


def _chains(units: list[_Unit]) -> list[list[_Unit]]:
    """Stacks: a unit continues the one whose output only it reads, with the same directions."""
    readers: dict[Any, list[_Unit]] = {}
    for unit in units:
        readers.setdefault(unit.source, []).append(unit)
    following: dict[int, _Unit] = {}
    for unit in units:
        after = readers.get(unit.output, []) if unit.output is not None else []
        if (len(after) == 1 and len(after[0].lstms) == len(unit.lstms)
                and after[0].lstms[0].kind == unit.lstms[0].kind):
            following[id(unit)] = after[0]
    has_previous = {id(unit) for unit in following.values()}
    chains, seen = [], set()
    # heads first; a unit left over (a crafted cycle) stands alone
    for unit in [u for u in units if id(u) not in has_previous] + units:
        if id(unit) in seen:
            continue
        chain = [unit]
        seen.add(id(unit))
        while id(chain[-1]) in following and id(following[id(chain[-1])]) not in seen:
            chain.append(following[id(chain[-1])])
            seen.add(id(chain[-1]))
        chains.append(chain)
    return chains


def _found(chain: list[_Unit], path: Path, kind: str, shared: list[str], whole: str = ""
           ) -> FoundLSTM:
    """One LSTM (``whole``: the stack a single-layer part belongs to)."""
    members = [lstm for unit in chain for lstm in unit.lstms]
    name = "+".join(m.name for m in members)
    named = len(members) > 1  # say which Lstm of a stack
    problem = next((f"{m.title} {m.name!r}: {m.problem}" if named else m.problem
                    for m in members if m.problem), None)
    if problem is None and len(chain[0].lstms) == 1 and members[0].reverse:
        problem = (f"{members[0].title} {members[0].name!r} runs backwards (reverse_seq) "
                   + (f"as one direction of {whole!r}: convert that instead" if whole else
                      "with no forward twin on its input")
                   + f"; a backward-only {members[0].kind.upper()} has no canonical form")
    native = None if problem else [[lstm.cell for lstm in unit.lstms] for unit in chain]
    notes = [f"{m.name}: {note}" for m in members for note in m.notes] + shared
    source = chain[0].source
    notes.insert(0, f"reads {source[0]!r} output #{source[1]}" if source else "has no input")
    parts = tuple(_found([_Unit([m], m.source, None)], path, kind, [], name)
                  for m in members) if len(members) > 1 else ()
    gru = members[0].kind == "gru"
    return FoundLSTM(name=name, format="neoml", native=native, source=str(path), kind=kind,
                     biases=("two free terms (gates 2H, main H)" if gru else
                             "two (input + recurrent free terms)"),
                     read_options={"cell": "gru"} if gru else {},
                     notes=tuple(notes), parts=parts, problem=problem)
