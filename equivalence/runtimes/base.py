"""The runtime contract: what every framework adapter gets checked for, in one place.

A runtime adapts one framework. Its table row (:mod:`equivalence.table`) says
its name, weight format, device, environment and :class:`Capabilities`; the
class only imports the framework lazily, builds and runs. :meth:`Runtime.run`
is the template every call goes through, in this order:

1. refuse what the row does not claim (:class:`UnsupportedFeatureError`, one
   message shape: ``"<runtime> cannot represent <feature>"``);
2. refuse unknown format options and options that contradict the spec;
3. check the native weights through the format's own reader, so a runtime
   never loads weights its format would reject;
4. complete the initial states (a missing half of ``h0``/``c0`` is zeros);

and only then calls the subclass's :meth:`Runtime.execute`.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import numpy as np

from equivalence.capabilities import Capabilities
from equivalence.errors import ShapeError, UnsupportedFeatureError
from equivalence.formats import get as get_format
from equivalence.formats.options import checked_run_options, reader_options
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.known import MATRIX, Known
from equivalence.memo import Memo
from equivalence.spec import LSTMSpec

__all__ = ["Capabilities", "Row", "Runtime", "split_states", "with_initial_states",
           "zero_padding"]

# Fields the weights must agree with the spec on (the rest are run-time options).
_SHAPE_FIELDS = ("input_size", "units", "layers", "directions", "projection_size", "peepholes")
# Weights that passed the reader, by content: a key is a few dozen bytes, so this stays small.
CHECKED_WEIGHTS = Memo()


class Row(Protocol):
    """What a runtime reads of its table row (:class:`equivalence.table.Entry` is one): a
    protocol, so that runtimes need not import the table that loads them."""

    @property
    def name(self) -> str: ...

    @property
    def format(self) -> str: ...

    @property
    def device(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def known(self) -> Mapping[str, Known]: ...


class Runtime(abc.ABC):
    """A framework that runs an LSTM for real; built from its table row.

    Subclasses set ``module`` (the import that must work) and ``requires``
    (further imports), and implement :meth:`execute`. Built layers and graphs
    should be cached by shape so that Hypothesis examples do not rebuild them.
    """

    module: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()  # further modules the runtime imports

    def __init__(self, entry: Row) -> None:
        self.entry = entry

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def format(self) -> str:
        return self.entry.format

    @property
    def device(self) -> str:
        return self.entry.device

    @property
    def capabilities(self) -> Capabilities:
        return self.entry.capabilities

    def unavailable_reason(self) -> str | None:
        """None when the framework imports and the device exists, else why not."""
        for name in (self.module, *self.requires):
            try:
                importlib.import_module(name)
            except Exception as exc:  # any import failure means "not runnable here"
                return f"{name} not importable: {type(exc).__name__}: {exc}"
        return self.device_reason()

    def device_reason(self) -> str | None:
        """Override on GPU runtimes: why the device is missing, or None."""
        return None

    def known_deviation(self) -> str | None:
        """Why this runtime, on this machine, is known to give other numbers, or None.

        A finding, not an excuse: a runtime with one is checked at the normal
        tolerance as an expected failure, which must keep failing (so the
        report shows it as silently wrong and the suite notices a fix). It is the
        row's ``known[MATRIX]`` finding, where :meth:`deviates_here` says it applies.
        """
        known = self.entry.known.get(MATRIX)
        return known.reason if known is not None and self.deviates_here() else None

    def deviates_here(self) -> bool:
        """Whether the row's matrix finding applies on this machine (default: always)."""
        return True

    def version(self) -> str:
        module = importlib.import_module(self.module.split(".")[0])
        return str(getattr(module, "__version__", "unknown"))

    def run(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, **format_options: Any
    ) -> LSTMResult:
        """Check the call against the contract, then build (or reuse) and run.

        ``format_options`` are the options the native weights were made with
        (for example TF1's ``forget_bias``).
        """
        self.check_supported(spec, inputs)
        options = checked_run_options(self.name, self.format, spec, format_options)
        self.check_weights(spec, native, options)
        return self.execute(spec, native, with_initial_states(spec, inputs), options)

    def check_supported(self, spec: LSTMSpec, inputs: LSTMInputs) -> None:
        """Refuse, by name, a spec or an input this runtime's row does not claim."""
        refusal = self.capabilities.refusal(spec) or self.capabilities.input_refusal(inputs)
        if refusal is not None:
            raise UnsupportedFeatureError(self.name, refusal)

    def check_weights(self, spec: LSTMSpec, native: Any, options: Mapping[str, Any]) -> None:
        """Read ``native`` with the format's reader; its shape must be the spec's.

        A pass is remembered by content (format, spec, options and every array's
        bytes, :mod:`equivalence.memo`), so weights run again are not read again;
        a failure is not remembered, and content with no hash is always read.
        """
        # the spec (a frozen value) keys the memo by itself: only options and weights are hashed
        CHECKED_WEIGHTS.get(f"{self.format} {spec!r}", (dict(options), native),
                            lambda: self._read_weights(spec, native, options))

    def _read_weights(self, spec: LSTMSpec, native: Any, options: Mapping[str, Any]) -> None:
        read = get_format(self.format).to_canonical(
            native, **reader_options(self.format, spec, options)
        )
        for field in _SHAPE_FIELDS:
            found, expected = getattr(read.spec, field), getattr(spec, field)
            if found != expected:
                raise ShapeError(f"{self.name} weights: {field}", found, expected)

    @abc.abstractmethod
    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        """Build (or reuse) the network for ``spec``, load ``native``, run ``inputs``.

        Called only after the contract's checks: ``inputs`` has both initial
        states or neither, in the contract's shapes.
        """


def with_initial_states(spec: LSTMSpec, inputs: LSTMInputs) -> LSTMInputs:
    """Both of ``h0`` (L, D, B, O) and ``c0`` (L, D, B, H) when either is given; zeros fill in.
    A GRU has h0 only: a ``c0`` given for one is a ShapeError."""
    if inputs.h0 is None and inputs.c0 is None:
        return inputs
    if "c" not in spec.state_names and inputs.c0 is not None:
        raise ShapeError("c0", np.shape(inputs.c0), "None", f"a {spec.cell} cell has no c")
    lead = (spec.layers, spec.directions, inputs.batch)
    states: dict[str, np.ndarray | None] = {"c0": None}
    sizes = {"h0": spec.output_size, "c0": spec.units}
    for name, size in ((f"{s}0", sizes[f"{s}0"]) for s in spec.state_names):
        value = getattr(inputs, name)
        shape = (*lead, size)
        value = np.zeros(shape, inputs.x.dtype) if value is None else np.asarray(value)
        if value.shape != shape:
            raise ShapeError(name, value.shape, shape)
        states[name] = value
    return LSTMInputs(inputs.x, states["h0"], states["c0"], inputs.lengths, inputs.time_major)


def zero_padding(outputs: np.ndarray, inputs: LSTMInputs) -> np.ndarray:
    """Zero output steps past each sequence's length (frameworks differ there)."""
    if inputs.lengths is None:
        return outputs
    # assignment, not np.where: old ml_dtypes cannot promote bfloat16 with a Python float
    padded = np.array(outputs, copy=True)
    padded[~inputs.valid_mask()] = 0
    return padded


def split_states(states: np.ndarray, spec: LSTMSpec) -> np.ndarray:
    """Reshape ``(L*D, B, X)`` (PyTorch/ONNX style) into ``(L, D, B, X)``."""
    return states.reshape(spec.layers, spec.directions, *states.shape[1:])
