"""madmom networks (``madmom/models/**.pkl``): pickled ``NeuralNetwork``s read as data.

A madmom model is a protocol-2 pickle of ``madmom.ml.nn.NeuralNetwork`` whose
``layers`` list holds ``LSTMLayer``s (or ``BidirectionalLayer``s of two), each
with ``input_gate``, ``forget_gate``, ``output_gate`` (``Gate``) and ``cell``
(``Cell``): ``weights`` (I, H), ``bias`` (H,), ``recurrent_weights`` (H, H),
gates' ``peephole_weights`` (H,), an ``activation_fn`` each and the layer's own.
madmom's ``LSTMLayer.activate`` computes, per frame (row vectors, ``x @ W``)::

    i = gate_fn(x Wi + bi + c_prev * pi + h_prev Ri)     (the same for f)
    g = cell_fn(x Wc + bc + h_prev Rc)
    c = g * i + c_prev * f
    o = gate_fn(x Wo + bo + c * po + h_prev Ro)          (the new c)
    h = layer_fn(c) * o

and a ``BidirectionalLayer`` runs ``bwd_layer`` on the reversed frames and
stacks ``[fwd, bwd]`` per frame. That is the canonical peephole LSTM with one
bias per gate, so no format module is added: each layer maps straight onto the
ONNX node layout (W, R transposed into rows i o f c; B's recurrent half zero;
P = [pi, po, pf]), which holds everything a madmom layer has, and the ONNX
converter's checks, peepholes and runtime serve it. A cell/layer activation
other than tanh is carried as the spec's ``activation`` when both agree;
anything else (a gate function other than sigmoid, two different functions,
non-zero ``init``/``cell_init``) is listed with the reason, not converted. Each
LSTM layer is one LSTM (``layers.K``); madmom applies them in sequence with
other layers between.

Unpickling runs nothing: madmom's classes become inert records
(:mod:`.module_pickle`), numpy arrays are rebuilt as data (:mod:`.numpy_pickle`),
and every other name is refused by name. Python 2 strings are read as latin-1,
as numpy itself reads these files. ``GRULayer``s (madmom's downbeat models, protocol-0
pickles made with ``copy_reg._reconstructor``) map onto ONNX GRU nodes in
:mod:`.madmom_gru`; a learned ``hid_init`` is carried as a stored ``initial_h``.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.files import madmom_gru
from equivalence.files._base import FileFormatError, FoundLSTM, StoredInputs
from equivalence.files.limits import MAX_ARRAY_BYTES, MAX_LAYERS, shown
from equivalence.files.torch import module_pickle, numpy_pickle

GATES = ("input_gate", "output_gate", "forget_gate", "cell")  # ONNX's i o f c
PEEPHOLES = ("input_gate", "output_gate", "forget_gate")  # ONNX's P order i o f
MAX_FILE_BYTES = MAX_ARRAY_BYTES  # the whole pickle is read at once
MADMOM_ACTIVATIONS = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "linear": "linear",
                      "elu": "elu", "softplus": "softplus"}


_PROTOCOL_0_OBJECT = b"ccopy_reg\n_reconstructor\n"  # Python 2's text pickle of an object


def looks_like_madmom(path: Path, head: bytes) -> bool:
    """A pickle whose first name is a madmom class: ``\\x80\\x02cmadmom.`` (protocol 2), or
    protocol 0's ``copy_reg._reconstructor`` of one (madmom's GRU models)."""
    if head[:1] == b"\x80":
        return b"madmom." in head
    if len(head) < 16 or not _PROTOCOL_0_OBJECT.startswith(head[:16]):
        return False
    with path.open("rb") as handle:  # the class name follows the reconstructor's
        return b"(cmadmom." in handle.read(64)


class MadmomUnpickler(pickle.Unpickler):
    """Builds only inert records and numpy arrays; every other name is refused by name."""

    def __init__(self, stream: Any, source: str, file_bytes: int) -> None:
        super().__init__(stream, encoding="latin1")
        self.source, self.file_bytes = source, file_bytes
        self.records: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        array = numpy_pickle.find(module, name, self.source, self.file_bytes)
        if array is not None:
            return array
        # Python 2's object protocol (madmom's GRU models): copy_reg._reconstructor(cls,
        # object, None) is cls.__new__(cls); it is given a record class or refused.
        if (module, name) == ("copy_reg", "_reconstructor"):
            return _reconstruct
        if (module, name) == ("__builtin__", "object"):
            return _OBJECT
        refused = module_pickle.refusal(module, name)
        if refused is not None:
            raise pickle.UnpicklingError(refused)
        if module.split(".", 1)[0] != "madmom":
            raise pickle.UnpicklingError(
                f"the pickle names {shown(f'{module}.{name}')}, which a madmom network has "
                "no need for (refused: unpickling it could run code)")
        return module_pickle.stand_in(module, name, self.records)


_OBJECT = object()  # the base class _reconstruct is handed: ``object``, as data


def _reconstruct(cls: Any, base: Any, state: Any) -> Any:
    """``copy_reg._reconstructor`` for records only: a new inert record, nothing run."""
    if not (isinstance(cls, type) and issubclass(cls, module_pickle.ModuleRecord)
            and base is _OBJECT and state is None):
        raise pickle.UnpicklingError("copy_reg._reconstructor called on something other than "
                                     "a madmom class over object (refused: it could run code)")
    return object.__new__(cls)


def load(path: Path) -> Any:
    """The unpickled tree, madmom objects as records; failures as one FileFormatError."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise FileFormatError(path, f"a {size:,}-byte pickle, over the {MAX_FILE_BYTES:,} cap")
    data = path.read_bytes()
    try:
        return MadmomUnpickler(io.BytesIO(data), str(path), size).load()
    except FileFormatError:
        raise
    except pickle.UnpicklingError as exc:
        raise FileFormatError(path, f"cannot be loaded as a madmom network: {exc}") from exc
    except RecursionError as exc:
        raise FileFormatError(path, "the pickle nests too deeply") from exc
    except Exception as exc:  # a damaged stream fails in many ways
        raise FileFormatError(path, f"corrupted or truncated pickle ({type(exc).__name__}: "
                                    f"{str(exc)[:200]})") from exc


def _class(value: Any) -> str:
    """The madmom class name of a record (``LSTMLayer``), or ''."""
    if isinstance(value, module_pickle.ModuleRecord):
        return type(value).qualified_name.rsplit(".", 1)[-1]
    return ""


def _state(value: Any) -> Mapping[str, Any]:
    state = getattr(value, "state", None)
    return state if isinstance(state, Mapping) else {}


def _function(value: Any) -> str:
    """An activation_fn's name (madmom.ml.nn.activations.tanh -> 'tanh')."""
    if isinstance(value, type) and issubclass(value, module_pickle.ModuleRecord):
        return value.qualified_name.rsplit(".", 1)[-1]
    return "missing" if value is None else type(value).__name__


def read_madmom(path: Path) -> list[FoundLSTM]:
    """Every LSTM layer of a madmom network (see the module docstring)."""
    tree = load(path)
    if _class(tree) != "NeuralNetwork":
        raise FileFormatError(path, f"a madmom pickle whose top object is "
                                    f"{shown(_class(tree) or type(tree).__name__)}, expected "
                                    "NeuralNetwork")
    layers = _state(tree).get("layers")
    if not isinstance(layers, list):
        raise FileFormatError(path, "a madmom NeuralNetwork without a 'layers' list")
    if len(layers) > MAX_LAYERS:  # a few bytes of memo references can repeat one layer
        raise FileFormatError(path, f"a madmom network of {len(layers):,} layers, over the "
                                    f"{MAX_LAYERS:,} cap")
    found = [f for f in (_found(path, k, layer) for k, layer in enumerate(layers)) if f]
    if not found:  # name what the network holds (GRUs, plain RNNs, CNNs), not "no LSTM"
        kinds = sorted({_layer_kind(layer) for layer in layers})
        raise FileFormatError(path, f"a madmom network with no LSTMLayer (its layers: "
                                    f"{shown(', '.join(kinds[:10]) or 'none')})")
    return found


def _layer_kind(layer: Any) -> str:
    kind = _class(layer) or type(layer).__name__
    if kind == "BidirectionalLayer":
        return f"BidirectionalLayer of {_class(_state(layer).get('fwd_layer')) or '?'}"
    return kind


def _found(path: Path, index: int, layer: Any) -> FoundLSTM | None:
    kind = _class(layer)
    inner = _class(_state(layer).get("fwd_layer")) if kind == "BidirectionalLayer" else kind
    if inner not in ("LSTMLayer", "GRULayer"):
        return None
    directions = ([layer] if kind == inner
                  else [_state(layer).get("fwd_layer"), _state(layer).get("bwd_layer")])
    name = f"layers.{index}"
    arrays = [_gates(path, f"{name}{'.' + side if len(directions) > 1 else ''}", item, inner)
              for side, item in zip(("fwd_layer", "bwd_layer"), directions, strict=False)]
    if inner == "GRULayer":
        return _found_gru(path, name, kind, directions, arrays)
    problem, changes = _semantics(directions)
    return FoundLSTM(
        name=name, format="onnx", native=_onnx_node(path, name, arrays), source=str(path),
        kind=f"madmom {kind}" + (" of two LSTMLayers" if len(directions) > 1 else ""),
        biases="one per gate (H); ONNX's recurrent half is zero", problem=problem,
        spec_changes=changes, notes=("madmom LSTMLayer read as an ONNX-layout node",))


def _found_gru(path: Path, name: str, kind: str, directions: list[Any],
               arrays: list[dict[str, dict[str, Any]]]) -> FoundLSTM:
    """A GRULayer (or a BidirectionalLayer of two) as an ONNX-layout GRU node."""
    states = [_state(item) for item in directions]
    gate_fns = {_function(_state(s.get(g)).get("activation_fn")) for s in states
                for g in madmom_gru.GATE_FNS}
    cell_fns = {_function(_state(s.get("cell")).get("activation_fn")) for s in states}
    problem, changes = madmom_gru.semantics(gate_fns, cell_fns)
    if problem is None and not set(changes.values()) <= set(MADMOM_ACTIVATIONS):
        problem, changes = f"cell activation {shown(changes['activation'])} is not read", {}
    units = _gru_units(path, name, arrays)
    stored = _stored_initial(arrays, units)
    return FoundLSTM(
        name=name, format="onnx", native=madmom_gru.node(arrays, units), source=str(path),
        kind=f"madmom {kind}" + (" of two GRULayers" if len(directions) > 1 else ""),
        biases="one per gate (H); ONNX's recurrent half is zero", problem=problem,
        read_options={"cell": "gru", "reset_after": True}, spec_changes=changes, stored=stored,
        notes=("madmom GRULayer read as an ONNX-layout GRU node (linear_before_reset=1); "
               "z = 1 - madmom's update gate, so its weights are negated",
               *(() if stored is None else ("hid_init: a learned initial state, stored as "
                                            "initial_h (madmom runs one sequence: batch 1)",))))


def _gru_units(path: Path, name: str, arrays: list[dict[str, dict[str, Any]]]) -> int:
    """H, every direction's arrays checked; a learned hid_init is carried, not refused."""
    learned = [gates.pop("nonzero", {}) for gates in arrays]
    _, units = _checked_directions(path, name, arrays, madmom_gru.GATES)
    for gates, initial in zip(arrays, learned, strict=True):
        value = initial.get("hid_init", initial.get("init"))
        if value is not None and value.size != units:
            raise FileFormatError(path, f"{name}.hid_init: shape {value.shape}, expected "
                                        f"({units},)")
        gates["initial"] = {"h": value}
    return units


def _stored_initial(arrays: list[dict[str, dict[str, Any]]], units: int) -> StoredInputs | None:
    """The directions' learned initial states as a stored initial_h (1, D, 1, H), or None."""
    initial = [gates.pop("initial")["h"] for gates in arrays]
    if all(value is None for value in initial):
        return None
    dtype = arrays[0]["cell"]["weights"].dtype
    rows = [np.zeros(units, dtype) if v is None else v.reshape(units).astype(dtype)
            for v in initial]
    return StoredInputs(h0=np.stack(rows).reshape(1, len(rows), 1, units))


def _gates(path: Path, name: str, layer: Any, kind: str = "LSTMLayer"
           ) -> dict[str, dict[str, np.ndarray | None]]:
    if _class(layer) != kind:
        raise FileFormatError(path, f"{name}: a {shown(_class(layer) or 'non-record')} "
                                    f"where a {kind} was expected")
    state = _state(layer)
    out: dict[str, dict[str, np.ndarray | None]] = {}
    gru = kind == "GRULayer"
    for gate in madmom_gru.GATES if gru else GATES:
        record = state.get(gate)
        expected = ("GRUCell" if gru else "Cell") if gate == "cell" else "Gate"
        if _class(record) != expected:
            raise FileFormatError(path, f"{name}.{gate}: expected a madmom {expected}, "
                                        f"found {shown(_class(record) or type(record).__name__)}")
        fields = _state(record)
        out[gate] = {key: _array(path, f"{name}.{gate}.{key}", fields.get(key))
                     for key in ("weights", "bias", "recurrent_weights", "peephole_weights")}
    for extra in ("init", "hid_init") if gru else ("init", "cell_init"):
        value = _array(path, f"{name}.{extra}", state.get(extra))
        if value is not None and np.any(value != 0):
            out.setdefault("nonzero", {})[extra] = value
    return out


def _array(path: Path, field: str, value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if not hasattr(value, "array"):
        raise FileFormatError(path, f"{shown(field)}: a {type(value).__name__}, expected a "
                                    "numpy array")
    return np.asarray(value.array())


def _semantics(directions: list[Any]) -> tuple[str | None, dict[str, Any]]:
    """A reason the layer cannot be converted (by name), and spec fields it sets."""
    names = set()
    for lstm in directions:
        state = _state(lstm)
        gate_fns = {_function(_state(state.get(g)).get("activation_fn")) for g in PEEPHOLES}
        if gate_fns != {"sigmoid"}:
            return f"gate activation {', '.join(sorted(gate_fns))} (only sigmoid is read)", {}
        cell_fn = _function(_state(state.get("cell")).get("activation_fn"))
        layer_fn = _function(state.get("activation_fn"))
        if cell_fn != layer_fn:
            return (f"cell activation {shown(cell_fn)} and output activation "
                    f"{shown(layer_fn)} differ (one activation is carried)"), {}
        names.add(cell_fn)
    if len(names) != 1 or next(iter(names)) not in MADMOM_ACTIVATIONS:
        return f"activation {shown(', '.join(sorted(names)))} is not read", {}
    activation = MADMOM_ACTIVATIONS[next(iter(names))]
    return None, ({} if activation == "tanh" else {"activation": activation})


def _onnx_node(path: Path, name: str, arrays: list[dict[str, dict[str, Any]]]
               ) -> dict[str, np.ndarray]:
    """One ONNX-layout node (W, R, B, maybe P) from the directions' gates, shapes checked."""
    _, units = _checked_directions(path, name, arrays, GATES)
    first = arrays[0]["cell"]["weights"]
    peepholes = any(g[p]["peephole_weights"] is not None for g in arrays for p in PEEPHOLES)
    w = np.stack([np.concatenate([g[k]["weights"].T for k in GATES]) for g in arrays])
    r = np.stack([np.concatenate([g[k]["recurrent_weights"].T for k in GATES]) for g in arrays])
    b = np.stack([np.concatenate([g[k]["bias"].reshape(units) for k in GATES]
                                 + [np.zeros(4 * units, first.dtype)]) for g in arrays])
    node = {"W": w, "R": r, "B": b}
    if peepholes:
        node["P"] = np.stack([np.concatenate([
            np.zeros(units, first.dtype) if g[p]["peephole_weights"] is None
            else g[p]["peephole_weights"].reshape(units) for p in PEEPHOLES]) for g in arrays])
    return node


def _checked_directions(path: Path, name: str, arrays: list[dict[str, dict[str, Any]]],
                        gate_names: tuple[str, ...]) -> tuple[int, int]:
    """(I, H) from the first cell's weights, every direction's arrays checked against them."""
    first = arrays[0]["cell"]["weights"]
    if first is None or first.ndim != 2:
        raise FileFormatError(path, f"{name}.cell.weights: shape "
                                    f"{None if first is None else first.shape}, expected (I, H)")
    inputs, units = first.shape
    for d, gates in enumerate(arrays):
        if "nonzero" in gates:
            raise FileFormatError(path, f"{name}: a non-zero "
                                        f"{' and '.join(gates['nonzero'])} (initial state), "
                                        "which the conversion does not carry")
        _check_shapes(path, f"{name}[{d}]", gates, inputs, units, gate_names)
    return inputs, units


def _check_shapes(path: Path, name: str, gates: dict[str, dict[str, Any]], inputs: int,
                  units: int, gate_names: tuple[str, ...] = GATES) -> None:
    expected = {"weights": (inputs, units), "bias": (units,), "recurrent_weights": (units, units),
                "peephole_weights": (units,)}
    gru = gate_names == madmom_gru.GATES
    for gate in gate_names:
        for key, shape in expected.items():
            value = gates[gate][key]
            if value is None and key == "peephole_weights":
                continue
            if gru and key == "peephole_weights":
                raise FileFormatError(path, f"{name}.{gate}.peephole_weights: madmom's "
                                            "GRULayer never gives its gates the state")
            if gate == "cell" and key == "peephole_weights":
                raise FileFormatError(path, f"{name}.cell.peephole_weights: madmom's "
                                            "Cell has none (it is never given the state)")
            found = None if value is None else value.shape
            if found != shape and not (key == "bias" and value is not None
                                       and value.size == units and value.ndim <= 2):
                raise FileFormatError(path, f"{name}.{gate}.{key}: shape {found}, "
                                            f"expected {shape}")
            if not np.issubdtype(value.dtype, np.floating):
                raise FileFormatError(path, f"{name}.{gate}.{key}: dtype {value.dtype}, "
                                            "expected floating point")
