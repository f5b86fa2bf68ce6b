"""The record every quantization path returns, and the examples they share.

One :class:`QuantizedResult` per path and shape: the verdict of
:func:`.oracle.judge` over the examples (the worst one), or why the path did
not convert or run here (a finding, never dropped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from equivalence.canonical import LSTMWeights, random_weights
from equivalence.quantized.oracle import MATCHES, WRONG, Judged
from equivalence.spec import LSTMSpec

# Every path runs the same example shape: short enough that the worst-case bound stays
# meaningful (it grows with each step through the recurrent matmul).
BATCH, STEPS = 3, 5
NOT_RUN = "not run"
FAILED = "did not convert or run"


@dataclass(frozen=True)
class QuantizedResult:
    """One path on one shape: verdict, the worst figures over its examples, and notes."""

    path: str
    version: str
    spec: str
    examples: int
    verdict: str  # MATCHES, WRONG, NOT_RUN or FAILED
    error_vs_oracle: float | None = None
    bound: float | None = None
    worst_ratio: float | None = None
    error_vs_float: float | None = None
    reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


def summarize(path: str, version: str, spec: LSTMSpec, judged: list[Judged],
              notes: tuple[str, ...] = ()) -> QuantizedResult:
    """The worst example decides: one silently wrong example makes the cell wrong."""
    wrong = any(j.verdict == WRONG for j in judged)
    return QuantizedResult(
        path=path, version=version, spec=describe_spec(spec), examples=len(judged),
        verdict=WRONG if wrong else MATCHES,
        error_vs_oracle=max(j.error for j in judged),
        bound=max(j.bound for j in judged),
        worst_ratio=max(j.worst_ratio for j in judged),
        error_vs_float=max(j.float_error for j in judged),
        notes=notes,
    )


def failed(path: str, version: str, spec: LSTMSpec, reason: str,
           verdict: str = FAILED, notes: tuple[str, ...] = ()) -> QuantizedResult:
    return QuantizedResult(path=path, version=version, spec=describe_spec(spec), examples=0,
                           verdict=verdict, reason=reason, notes=notes)


def describe_spec(spec: LSTMSpec) -> str:
    return f"input {spec.input_size}, units {spec.units}, layers {spec.layers}"


def example_weights(spec: LSTMSpec, rng: np.random.Generator) -> LSTMWeights:
    """Uniform weights scaled so the pre-activations stay O(1) at every size."""
    return random_weights(spec, rng, scale=1.5 / np.sqrt(spec.input_size + spec.units))


def example_inputs(rng: np.random.Generator, batch: int, steps: int, size: int) -> np.ndarray:
    """Batch-first inputs, uniform on [-1, 1] (the range calibration also sees)."""
    return rng.uniform(-1.0, 1.0, (batch, steps, size))
