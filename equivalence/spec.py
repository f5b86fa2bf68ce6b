"""The spec: every architectural fact a set of weights does not carry, for any cell type.

A spec plus canonical weights fully determines the function an LSTM computes.
Fields that are run-time configuration in some frameworks (clips, TF1's
``forget_bias``, the recurrent activation) live here, so a converter can refuse
a target that cannot hold them instead of silently dropping them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from equivalence import cells
from equivalence.errors import SpecError, brief, describe

RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid_tf_keras", "hard_sigmoid_keras3")
# The cell/output activation (Keras ``activation=``, TF1 ``LSTMCell(activation=)``, ONNX
# ``activations`` g = h): applied to the candidate and to the cell state before the output gate.
ACTIVATIONS = ("tanh", "relu", "linear", "sigmoid", "softsign", "softplus", "elu")
DTYPES = ("float16", "bfloat16", "float32", "float64")
# Caps on what a spec (and so any array checked against one) may describe, checked before
# anything is allocated or looped over: far beyond LSTMs people ship (a 4096-unit layer
# holds 1.3e8 weights), far below what a hostile or mistyped size asks for (1e5 units:
# 8e10 weights; 1e9 layers: a billion Python objects).
MAX_ELEMENTS = 2**30  # weights in a whole spec, and elements in any one array read
MAX_LAYERS = 10_000


@functools.lru_cache(maxsize=64)
def dtype_name(dtype: np.dtype) -> str:
    """``dtype.name``, memoized: numpy computes the name in Python on every access,
    and the weight checks ask for it on every array of every run."""
    return dtype.name


def all_finite(array: np.ndarray) -> bool:
    """True when no element is NaN or infinite.

    One reduction first: a finite sum proves every element finite (NaN and
    infinities propagate); only a non-finite sum, which an overflow of finite
    values can also give, is checked element by element.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(array, axis=None)):
            return True
    return bool(np.isfinite(array).all())


@dataclass(frozen=True)
class LSTMSpec:
    """Shape and features of an LSTM stack.

    ``forget_bias`` is an offset added to the forget-gate pre-activation at run
    time (TF1 ``LSTMCell``); canonical weights normally have it folded in (0.0).
    ``gate_clip`` clips gate pre-activations (ONNX ``clip``); ``cell_clip``
    clips the cell state (TF1). They are different operations. ``reverse`` is
    one direction run from each sequence's last valid step back to its first
    (ONNX ``direction="reverse"``; outputs stay in original time order);
    ``input_forget`` couples the gates, f = 1 - i (ONNX ``input_forget=1``).
    ``activation`` is the cell/output activation (tanh by default), applied to the
    candidate and to c before the output gate (Keras ``activation=``, ONNX g = h).
    ``cell`` is the cell type (:mod:`equivalence.cells`: ``"lstm"`` or ``"gru"``); a
    GRU has no c, so none of the LSTM's own features. ``reset_after`` is the GRU's
    variant: the reset gate applied after the candidate's recurrent matmul (PyTorch,
    ONNX ``linear_before_reset=1``) or, when False, to h before it.
    """

    input_size: int
    units: int
    layers: int = 1
    directions: int = 1
    projection_size: int | None = None
    peepholes: bool = False
    cell_clip: float | None = None
    projection_clip: float | None = None
    gate_clip: float | None = None
    forget_bias: float = 0.0
    recurrent_activation: str = "sigmoid"
    dtype: str = "float32"
    reverse: bool = False
    input_forget: bool = False
    activation: str = "tanh"
    cell: str = "lstm"
    reset_after: bool = True

    def __post_init__(self) -> None:
        for name in ("input_size", "units", "layers"):
            self._set(name, _positive_int(name, getattr(self, name)))
        self._set("directions", _directions(self.directions))
        if self.projection_size is not None:
            self._set("projection_size", _positive_int("projection_size", self.projection_size))
        for name in ("cell_clip", "projection_clip", "gate_clip"):
            value = getattr(self, name)
            if value is not None:
                self._set(name, _positive_number(name, value))
        if self.projection_clip is not None and self.projection_size is None:
            raise SpecError("projection_clip: set, but projection_size is None")
        for name in ("peepholes", "reverse", "input_forget"):
            self._set(name, _flag(name, getattr(self, name)))
        if self.reverse and self.directions == 2:
            raise SpecError("reverse: True with directions=2, expected directions=1 "
                            "(a bidirectional LSTM already runs both ways)")
        self._set("forget_bias", finite_number("forget_bias", self.forget_bias))
        self._check_cell()
        _one_of("recurrent_activation", self.recurrent_activation, RECURRENT_ACTIVATIONS)
        _one_of("activation", self.activation, ACTIVATIONS)
        _one_of("dtype", self.dtype, DTYPES)
        self._check_size()

    def _check_cell(self) -> None:
        _one_of("cell", self.cell, cells.NAMES)
        self._set("reset_after", _flag("reset_after", self.reset_after))
        if not self.reset_after and self.cell != "gru":
            raise SpecError(f"reset_after: False, but the {self.cell} cell has no reset gate "
                            "(expected True, the default)")
        foreign = set(self.features()) & cells.foreign_features(self.cell)
        if foreign:
            raise SpecError(f"{sorted(foreign)[0]}: set, but the {self.cell} cell cannot carry it "
                            f"(it belongs to {self._owner(sorted(foreign)[0])})")

    @staticmethod
    def _owner(feature: str) -> str:
        return " and ".join(c.name for c in cells.CELLS.values() if feature in c.own_features)

    @property
    def gate_count(self) -> int:
        """Gates per cell: 4 for an LSTM (i f g o), 3 for a GRU (r z n)."""
        return cells.cell(self.cell).gate_count

    @property
    def state_names(self) -> tuple[str, ...]:
        """The cell's states: ("h", "c") for an LSTM, ("h",) for a GRU."""
        return cells.cell(self.cell).states

    def _check_size(self) -> None:
        if self.layers > MAX_LAYERS:
            raise SpecError(f"layers: {self.layers}, expected at most {MAX_LAYERS}")
        count = self.parameter_count()
        if count > MAX_ELEMENTS:
            raise SpecError(
                f"spec: {count:.3g} weights (input_size={self.input_size}, units={self.units}, "
                f"layers={self.layers}, directions={self.directions}), expected at most "
                f"{MAX_ELEMENTS:.3g} (MAX_ELEMENTS)"
            )

    def parameter_count(self) -> int:
        """Canonical weights in the whole stack (exact Python ints: nothing overflows)."""
        units, out, d, gates = self.units, self.output_size, self.directions, self.gate_count
        extra = 2 * gates * units + gates * units * out + (3 * units if self.peepholes else 0)
        extra += out * units if self.projection_size is not None else 0
        first = gates * units * self.input_size + extra
        rest = gates * units * d * out + extra
        return d * (first + (self.layers - 1) * rest)

    def _set(self, name: str, value: Any) -> None:
        # Normalise numpy scalars to Python ones so specs compare and serialise alike.
        object.__setattr__(self, name, value)

    @property
    def output_size(self) -> int:
        """Size of h: the projection size when there is one, else units."""
        return self.projection_size or self.units

    def layer_input_size(self, layer: int) -> int:
        """Input width of ``layer``: the data for layer 0, else the layer below."""
        return self.input_size if layer == 0 else self.directions * self.output_size

    def features(self) -> tuple[str, ...]:
        """Names of the non-default features this spec uses (for refusals and reports)."""
        found = []
        if self.cell != "lstm":
            found.append(f"cell={self.cell}")
        if not self.reset_after:
            found.append("reset_after=False")
        if self.layers > 1:
            found.append("stacked layers")
        if self.directions == 2:
            found.append("bidirectional")
        if self.projection_size is not None:
            found.append("projection")
        if self.reverse:
            found.append("reverse")
        if self.peepholes:
            found.append("peepholes")
        if self.input_forget:
            found.append("input_forget")
        for name in ("cell_clip", "projection_clip", "gate_clip"):
            if getattr(self, name) is not None:
                found.append(name)
        if self.forget_bias != 0.0:
            found.append("forget_bias")
        if self.recurrent_activation != "sigmoid":
            found.append(f"recurrent_activation={self.recurrent_activation}")
        if self.activation != "tanh":
            found.append(f"activation={self.activation}")
        return tuple(found)

    def replace(self, **changes: Any) -> LSTMSpec:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (used in case files and reports)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LSTMSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error."""
        if not isinstance(data, Mapping):
            raise SpecError(f"spec: got {type(data).__name__}, expected a dict")
        try:
            data = dict(data)  # read a caller's Mapping once, here
        except Exception as exc:
            raise SpecError(f"spec: the mapping cannot be read ({describe(exc)})") from exc
        fields = dataclasses.fields(cls)
        known = {f.name for f in fields}
        extra = sorted(str(k) for k in set(data) - known)
        if extra:
            raise SpecError(f"spec: unknown fields {extra}, expected a subset of {sorted(known)}")
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise SpecError(f"spec: missing fields {missing}")
        return cls(**data)


def _real(value: object) -> float | None:
    """``value`` as a float when it is a real number (bools are not), else None."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return None


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise SpecError(f"{name}: {brief(value)}, expected an int >= 1")
    return int(value)


def _directions(value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or (
        value not in (1, 2)
    ):
        raise SpecError(f"directions: {brief(value)}, expected 1 or 2")
    return int(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise SpecError(f"{name}: {brief(value)}, expected True or False")
    return bool(value)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"{name}: {brief(value)}, expected one of {allowed}")


def _positive_number(name: str, value: object) -> float:
    number = _real(value)
    if number is None or not 0 < number < math.inf:
        raise SpecError(f"{name}: {brief(value)}, expected a positive finite number or None")
    return number


def finite_number(name: str, value: object) -> float:
    """``value`` as a float; anything but a finite real number is a SpecError naming ``name``."""
    number = _real(value)
    if number is None or not math.isfinite(number):
        raise SpecError(f"{name}: {brief(value)}, expected a finite number")
    return number
