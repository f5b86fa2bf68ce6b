"""The conformance grid's columns: each feature a case can use, and who can meet it.

A :class:`Feature` says how to draw cases that use it (capabilities turned on over
the plain forward cell, valued ones replaced, a filter keeping the cases that
really use it), which ONNX attributes it sets beyond the spec, and whether a
weight format can hold it. LSTM columns and GRU columns (``GRU <name>``) are
listed here; :mod:`equivalence.harness.conformance` runs and judges them.
Core: Hypothesis and the harness's capabilities and strategies at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from equivalence import capabilities
from equivalence.capabilities import Capabilities
from equivalence.case import Case
from equivalence.spec import ACTIVATIONS as CELL_ACTIVATIONS
from equivalence.strategies import lstm_cases

_BASE = Capabilities.of(lacks=("bidirectional", capabilities.INITIAL_STATE, capabilities.LENGTHS))
_ACTIVATIONS = frozenset({"sigmoid", "hard_sigmoid_tf_keras", "hard_sigmoid_keras3"})


@dataclass(frozen=True)
class Feature:
    """One column of the grid: how to draw cases that use it, and who can meet it.

    ``extra`` names capabilities turned on over the plain forward LSTM, ``values``
    replaces valued ones (``{"activation": {"relu"}}``); ``present``
    keeps the drawn cases that really use the feature. ``onnx`` are graph
    attributes beyond the spec (ONNX-level probes only). ``holds`` says
    whether a weight format can carry it (None: any format, a run-time input).
    """

    name: str
    extra: tuple[str, ...] = ()
    values: Mapping[str, frozenset[str]] = field(default_factory=dict)
    present: Callable[[Case], bool] = lambda case: True
    max_layers: int = 1
    dtype: str = "float32"
    onnx: Mapping[str, Any] = field(default_factory=dict)
    holds: Callable[[frozenset[str]], bool] | None = None
    cell: str = "lstm"
    # a GRU's variant: True (ONNX linear_before_reset=1) unless the feature is the other one
    reset_after: bool = True

    def cases(self) -> st.SearchStrategy[Case]:
        caps = (_BASE.with_values("dtype", (self.dtype,)).with_values("cell", (self.cell,))
                .with_names(*self.extra, f"reset_after={self.reset_after}"))
        for kind, chosen in self.values.items():
            caps = caps.with_values(kind, chosen)
        drawn = lstm_cases(capabilities=caps, max_layers=self.max_layers, dtypes=(self.dtype,),
                           cell=self.cell)
        # strategies draw both GRU variants the names allow: keep the feature's one
        return drawn.filter(lambda case: case.spec.reset_after == self.reset_after
                            and self.present(case))


def _spec_has(name: str) -> Callable[[Case], bool]:
    return lambda case: name in case.spec.features()


def _format_holds(name: str) -> Callable[[frozenset[str]], bool]:
    return lambda supported: name in supported


def _holds_activation(supported: frozenset[str]) -> bool:
    return any(f.startswith("recurrent_activation=") for f in supported)


def _structure(name: str, *extra: str, **fields: Any) -> Feature:
    return Feature(name, (name, *extra), present=_spec_has(name), holds=_format_holds(name),
                   **fields)


FORWARD = Feature("forward")
BIDIRECTIONAL = _structure("bidirectional")
STACKED = _structure("stacked layers", max_layers=2)
GATE_CLIP = _structure("gate_clip")
CELL_CLIP = _structure("cell_clip")
PROJECTION = _structure("projection")
PROJECTION_CLIP = _structure("projection_clip", "projection")
PEEPHOLES = _structure("peepholes")
ACTIVATIONS = Feature(
    "activations",
    values={"recurrent_activation": _ACTIVATIONS},
    present=lambda case: case.spec.recurrent_activation != "sigmoid",
    holds=_holds_activation,
)


def _cell_activation(name: str) -> Feature:
    """The cell activation ``name`` (ONNX g = h), one column each: engines differ by function."""
    return Feature(f"activation {name}", values={"activation": frozenset({name})},
                   present=lambda case: case.spec.activation == name,
                   holds=_format_holds(f"activation={name}"))


CELL_ACTIVATION_FEATURES = tuple(_cell_activation(a) for a in CELL_ACTIVATIONS if a != "tanh")
LENGTHS = Feature("sequence lengths", (capabilities.LENGTHS,),
                  present=lambda case: case.inputs.lengths is not None)
INITIAL_STATES = Feature("initial states", (capabilities.INITIAL_STATE,),
                         present=lambda case: case.inputs.h0 is not None)
TIME_MAJOR = Feature("time-major", (capabilities.TIME_MAJOR,),
                     present=lambda case: case.inputs.time_major)
FLOAT16 = Feature("float16", dtype="float16")
FLOAT64 = Feature("float64", dtype="float64")
BFLOAT16 = Feature("bfloat16", dtype="bfloat16")
# ONNX attributes the spec cannot say; the graph always has initial-state inputs except below.
REVERSE = Feature("reverse", onnx={"direction": "reverse"})
INPUT_FORGET = Feature("input_forget", onnx={"input_forget": True})
LAYOUT = Feature("layout=1", onnx={"layout": 1})
NO_INITIAL_STATE = Feature("no initial-state input", onnx={"omit_state": True})

# Through the runtime contract, where the runtime's format can hold the feature.
CONTRACT_FEATURES = (
    FORWARD, BIDIRECTIONAL, STACKED, GATE_CLIP, CELL_CLIP, PROJECTION, PROJECTION_CLIP,
    PEEPHOLES, ACTIVATIONS, *CELL_ACTIVATION_FEATURES, LENGTHS, INITIAL_STATES, TIME_MAJOR,
    FLOAT16, FLOAT64, BFLOAT16,
)
# At the ONNX level (LSTM-14 has no bfloat16; its graph is time-major unless layout=1).
ONNX_FEATURES = (
    FORWARD, REVERSE, BIDIRECTIONAL, STACKED, GATE_CLIP, ACTIVATIONS, *CELL_ACTIVATION_FEATURES,
    INPUT_FORGET, PEEPHOLES, LAYOUT, LENGTHS, INITIAL_STATES, NO_INITIAL_STATE, FLOAT16, FLOAT64,
)


# GRU columns: GRU nodes (ONNX rows) or GRU runtimes (contract rows), linear_before_reset=1
# (reset_after=True) unless the column is the other variant. A format that cannot hold a GRU
# gets no GRU column; a row that does not claim GRU refuses its cells by name.
def _gru(name: str, *extra: str, **fields: Any) -> Feature:
    """A GRU column (``GRU <name>``); ``holds`` needs ``cell=gru`` and ``holds_also``."""
    also = fields.pop("holds_also", None)
    holds = fields.pop("holds", None)
    return Feature(
        f"GRU {name}", extra, present=fields.pop("present", lambda case: True),
        cell="gru",
        holds=lambda supported: ("cell=gru" in supported and (also is None or also in supported)
                                 and (holds is None or holds(supported))),
        **fields)


def _gru_cell_activation(name: str) -> Feature:
    """The GRU candidate's activation ``name`` (ONNX GRU g), one column each as for the LSTM."""
    return _gru(f"activation {name}", values={"activation": frozenset({name})},
                present=lambda case: case.spec.activation == name,
                holds_also=f"activation={name}")


GRU_FORWARD = _gru("forward")
# ONNX's default linear_before_reset=0 (Keras reset_after=False), in stacks both ways too
GRU_RESET_BEFORE = _gru("reset_after=False", "bidirectional", max_layers=2,
                        reset_after=False, holds_also="reset_after=False")
GRU_REVERSE = _gru("reverse", onnx={"direction": "reverse"})
GRU_BIDIRECTIONAL = _gru("bidirectional", "bidirectional",
                         present=_spec_has("bidirectional"), holds_also="bidirectional")
GRU_STACKED = _gru("stacked layers", max_layers=2, present=_spec_has("stacked layers"),
                   holds_also="stacked layers")
GRU_CLIP = _gru("gate_clip", "gate_clip", present=_spec_has("gate_clip"),
                holds_also="gate_clip")
GRU_ACTIVATIONS = _gru("activations", values={"recurrent_activation": _ACTIVATIONS},
                       present=ACTIVATIONS.present, holds=_holds_activation)
GRU_CELL_ACTIVATION_FEATURES = tuple(_gru_cell_activation(a) for a in CELL_ACTIVATIONS
                                     if a != "tanh")
GRU_LENGTHS = _gru("sequence lengths", *LENGTHS.extra, present=LENGTHS.present)
GRU_INITIAL_STATES = _gru("initial states", *INITIAL_STATES.extra,
                          present=INITIAL_STATES.present)
GRU_TIME_MAJOR = _gru("time-major", *TIME_MAJOR.extra, present=TIME_MAJOR.present)
# Run twice on one loaded graph: an engine may break only on the graph's second run (OpenCV
# 5.1.0 does without initial_h), which a grid of distinct shapes would never reach.
GRU_NO_INITIAL_STATE = _gru("no initial_h input", onnx={"omit_state": True, "runs": 2})
# GRU nodes: the operator's attributes and inputs (f, g activations: 2 per direction)
GRU_ONNX_FEATURES = (
    GRU_FORWARD, GRU_RESET_BEFORE, GRU_REVERSE, GRU_BIDIRECTIONAL, GRU_STACKED, GRU_CLIP,
    GRU_ACTIVATIONS, *GRU_CELL_ACTIVATION_FEATURES, GRU_LENGTHS, GRU_INITIAL_STATES,
    GRU_NO_INITIAL_STATE,
)
# GRU runtimes through the contract: what their formats and rows can say of a GRU
GRU_CONTRACT_FEATURES = (GRU_FORWARD, GRU_RESET_BEFORE, GRU_LENGTHS, GRU_INITIAL_STATES,
                         GRU_TIME_MAJOR)
