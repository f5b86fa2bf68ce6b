"""What a runtime is: a real framework that builds an LSTM from native weights.

Each runtime module adapts one framework. It imports the framework lazily,
declares what it supports as data (:class:`Capabilities`), and returns an
:class:`~equivalence.io_types.LSTMResult` in the reference's layout. Tests and
strategies read the declarations; they never special-case a runtime by name.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..io_types import LSTMInputs, LSTMResult
from ..spec import LSTMSpec


@dataclass(frozen=True)
class Capabilities:
    """The specs and inputs a runtime can build and run."""

    max_layers: int | None = None
    bidirectional: bool = True
    projection: bool = False
    projection_clip: bool = False
    peepholes: bool = False
    cell_clip: bool = False
    gate_clip: bool = False
    forget_bias: bool = False
    recurrent_activations: frozenset[str] = frozenset({"sigmoid"})
    initial_state: bool = True
    lengths: bool = True
    time_major: bool = False
    dtypes: frozenset[str] = frozenset({"float32"})

    def refusal(self, spec: LSTMSpec) -> str | None:
        """Why ``spec`` cannot run here, or None when it can."""
        checks = [
            (self.max_layers is not None and spec.layers > self.max_layers,
             f"{spec.layers} layers (max {self.max_layers})"),
            (spec.directions == 2 and not self.bidirectional, "bidirectional"),
            (spec.projection_size is not None and not self.projection, "projection"),
            (spec.projection_clip is not None and not self.projection_clip, "projection_clip"),
            (spec.peepholes and not self.peepholes, "peepholes"),
            (spec.cell_clip is not None and not self.cell_clip, "cell_clip"),
            (spec.gate_clip is not None and not self.gate_clip, "gate_clip"),
            (spec.forget_bias != 0.0 and not self.forget_bias, "forget_bias"),
            (spec.recurrent_activation not in self.recurrent_activations,
             f"recurrent_activation={spec.recurrent_activation}"),
            (spec.dtype not in self.dtypes, f"dtype={spec.dtype}"),
        ]
        for failed, reason in checks:
            if failed:
                return reason
        return None

    def input_refusal(self, inputs: LSTMInputs) -> str | None:
        """Why these inputs cannot be fed here, or None when they can."""
        if inputs.h0 is not None and not self.initial_state:
            return "initial state"
        if inputs.lengths is not None and not self.lengths:
            return "sequence lengths"
        if inputs.time_major and not self.time_major:
            return "time-major input"
        return None


class Runtime(abc.ABC):
    """A framework that runs an LSTM for real.

    Subclasses set ``name``, ``format`` (the native weight format they consume,
    a key of :mod:`equivalence.formats`), ``module`` (the import that must work)
    and ``capabilities``, and implement :meth:`run`. Built layers and graphs
    should be cached by shape so that Hypothesis examples do not rebuild them.
    """

    name: ClassVar[str]
    format: ClassVar[str]
    module: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    device: ClassVar[str] = "cpu"

    requires: ClassVar[tuple[str, ...]] = ()  # further modules the runtime imports

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

    def version(self) -> str:
        module = importlib.import_module(self.module.split(".")[0])
        return str(getattr(module, "__version__", "unknown"))

    @abc.abstractmethod
    def run(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, **format_options: Any
    ) -> LSTMResult:
        """Build (or reuse) the network for ``spec``, load ``native``, run ``inputs``.

        ``format_options`` are the options the native weights were made with
        (for example TF1's ``forget_bias``).
        """


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
