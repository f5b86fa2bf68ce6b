"""What a runtime (or a format) can build and run, as a set of feature names.

The vocabulary is written once: the spec features each cell type can carry
(:mod:`equivalence.cells`, the names :meth:`LSTMSpec.features` gives), the
input features (:data:`INPUT_FEATURES`), and valued names ``cell=``, ``dtype=``,
``activation=``, ``recurrent_activation=``. A table row's :class:`Capabilities`
is a set of those names (plus a layer limit): a spec or input is refused for
the first name it needs that the set lacks, and a pair draws from the
intersection of its two sides (:func:`joint_capabilities`). A format's
``SUPPORTED`` strings are names of the same vocabulary. Core: numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from equivalence import cells
from equivalence.errors import SpecError
from equivalence.io_types import LSTMInputs
from equivalence.spec import ACTIVATIONS, DTYPES, RECURRENT_ACTIVATIONS, LSTMSpec

# What the inputs of a run may need beyond the spec (these are also the refusals' words).
INITIAL_STATE, LENGTHS, TIME_MAJOR = "initial state", "sequence lengths", "time-major input"
INPUT_FEATURES = (INITIAL_STATE, LENGTHS, TIME_MAJOR)
# Valued names ("dtype=float16"): every spec needs one of each kind.
VALUES = {
    "cell": cells.NAMES,
    "recurrent_activation": tuple(RECURRENT_ACTIVATIONS),
    "activation": tuple(ACTIVATIONS),
    "dtype": tuple(DTYPES),
}
VOCABULARY = frozenset(
    {name for c in cells.CELLS.values() for name in c.features}
    | set(INPUT_FEATURES)
    | {f"{kind}={value}" for kind, values in VALUES.items() for value in values}
)
# What every runtime is assumed to take unless its row says it lacks it.
# (reset_after=True: the GRU variant every GRU runtime runs but TF1 GRUCell)
_ASSUMED = ("stacked layers", "bidirectional", INITIAL_STATE, LENGTHS, "reset_after=True")
_DEFAULT_VALUES = {"cell": ("lstm",), "recurrent_activation": ("sigmoid",),
                   "activation": ("tanh",), "dtype": ("float32",)}


def _valued(values: Mapping[str, Iterable[str]]) -> set[str]:
    return {f"{kind}={value}" for kind, chosen in values.items() for value in chosen}


@dataclass(frozen=True)
class Capabilities:
    """The feature names a runtime can build and run, and its layer limit."""

    names: frozenset[str] = frozenset(set(_ASSUMED) | _valued(_DEFAULT_VALUES))
    max_layers: int | None = None

    def __post_init__(self) -> None:
        # A misspelt name would silently claim nothing (or refuse everything): say it.
        unknown = sorted(set(self.names) - VOCABULARY)
        if unknown:
            raise SpecError(f"capabilities: unknown feature names {unknown}, expected names "
                            "of the vocabulary (equivalence.capabilities.VOCABULARY)")
        object.__setattr__(self, "names", frozenset(self.names))

    @classmethod
    def of(cls, *features: str, lacks: Iterable[str] = (), max_layers: int | None = None,
           cells: Iterable[str] = ("lstm",), dtypes: Iterable[str] = ("float32",),
           activations: Iterable[str] = ("tanh",),
           recurrent_activations: Iterable[str] = ("sigmoid",)) -> Capabilities:
        """The assumed names (stacked, bidirectional, states, lengths) less ``lacks``, plus
        ``features`` and the values given (defaults: lstm, float32, tanh, sigmoid)."""
        values = {"cell": cells, "recurrent_activation": recurrent_activations,
                  "activation": activations, "dtype": dtypes}
        names = (set(_ASSUMED) - set(lacks)) | set(features) | _valued(values)
        return cls(frozenset(names), max_layers)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def values(self, kind: str) -> frozenset[str]:
        """The values of one valued kind held here (``values("dtype")``)."""
        prefix = f"{kind}="
        return frozenset(n[len(prefix):] for n in self.names if n.startswith(prefix))

    @property
    def cells(self) -> frozenset[str]:
        return self.values("cell")

    @property
    def dtypes(self) -> frozenset[str]:
        return self.values("dtype")

    @property
    def activations(self) -> frozenset[str]:
        return self.values("activation")

    @property
    def recurrent_activations(self) -> frozenset[str]:
        return self.values("recurrent_activation")

    def with_names(self, *names: str) -> Capabilities:
        return Capabilities(self.names | set(names), self.max_layers)

    def without(self, *names: str) -> Capabilities:
        return Capabilities(self.names - set(names), self.max_layers)

    def with_values(self, kind: str, values: Iterable[str]) -> Capabilities:
        """These capabilities with ``kind``'s values replaced by ``values``."""
        kept = {n for n in self.names if not n.startswith(f"{kind}=")}
        return Capabilities(frozenset(kept | _valued({kind: values})), self.max_layers)

    def refusal(self, spec: LSTMSpec) -> str | None:
        """Why ``spec`` cannot run here (the first name it needs that is missing), or None."""
        missing = [name for name in requirements(spec) if name not in self.names]
        if missing:
            return missing[0]
        if self.max_layers is not None and spec.layers > self.max_layers:
            return f"{spec.layers} layers (max {self.max_layers})"
        return None

    def input_refusal(self, inputs: LSTMInputs) -> str | None:
        """Why these inputs cannot be fed here, or None when they can."""
        return next((n for n in input_requirements(inputs) if n not in self.names), None)


def requirements(spec: LSTMSpec) -> tuple[str, ...]:
    """Every name ``spec`` needs: its cell, its features, its activations and dtype."""
    valued = ("cell=", "recurrent_activation=", "activation=")
    # the default GRU variant is no spec feature, but a runtime may lack it
    variant = ("reset_after=True",) if spec.cell == "gru" and spec.reset_after else ()
    return (f"cell={spec.cell}", *variant,
            *(f for f in spec.features() if not f.startswith(valued)),
            f"recurrent_activation={spec.recurrent_activation}",
            f"activation={spec.activation}", f"dtype={spec.dtype}")


def input_requirements(inputs: LSTMInputs) -> tuple[str, ...]:
    """The input features these inputs use."""
    used = (inputs.h0 is not None, inputs.lengths is not None, inputs.time_major)
    return tuple(name for name, on in zip(INPUT_FEATURES, used, strict=True) if on)


def joint_capabilities(capabilities: Iterable[Capabilities]) -> Capabilities:
    """What every runtime of ``capabilities`` supports (a pair draws from this)."""
    caps = list(capabilities)
    if not caps:
        return Capabilities()
    limits = [c.max_layers for c in caps if c.max_layers is not None]
    names = frozenset.intersection(*(c.names for c in caps))
    if not names & {"reset_after=True", "reset_after=False"}:
        # no GRU variant in common (TF1's reset-before GRUCell, PyTorch's reset-after nn.GRU)
        names -= {"cell=gru"}
    return Capabilities(names, min(limits) if limits else None)
