"""The one comparison and the one tolerance policy.

Tolerance policy (why these numbers):

* Everything is compared elementwise, on outputs, h and c, against the larger
  of two allowances: the static floor ``atol(dtype) * sqrt(T) + rtol(dtype) *
  |expected|``, and, where the network itself amplifies rounding, a fixed
  multiple of how much it does on the case at hand (below).
* ``atol``/``rtol`` per dtype sit a little above what two correct
  implementations differ by: float32 round-off in a (4H x (I+H)) matmul and the
  tanh/sigmoid kernels of oneDNN/Eigen/MLAS is ~1e-6 per step (measured: see
  the README), so float32 gets 1e-5. float64 gets 1e-10, float16 5e-3 and
  bfloat16 4e-2 (their unit round-off is 4.9e-4 and 3.9e-3).
* Round-off accumulates through the recurrence roughly like a random walk,
  so the absolute part grows with sqrt(T); the relative part covers the cell
  state, which is not bounded by 1 and grows with T.
* Tight enough to fail on real bugs: a single weight moved by 1e-3, or
  weights rounded through float16, move float32 outputs by 1e-4 or more on
  the examples Hypothesis draws (the mutation self-test checks this).
* A static floor cannot know the network. Trained networks amplify rounding:
  textgenrnn's 2x128 CuDNNLSTM stack (|c| up to ~24) moves ~1.3e-3 from
  float64 in every correct float32 run at T=40, and two correct float32 runs
  (tf_keras, PyTorch) differ by 2.5e-4, four times the floor (6.3e-5): a
  faithful conversion was called FAILED. So the policy measures, per case,
  the network's **rounding sensitivity**: the float64 reference run again on
  every weight and input moved by the dtype's unit round-off ``u`` (relative,
  random signs, :data:`SENSITIVITY_SAMPLES` draws; stored states and lengths
  as the case has them), and its greatest move per tensor. Backward error
  analysis says a correct LSTM in that dtype computes the exact result of
  weights and states moved by a few ``u`` at every step, so its error is a
  small multiple of that move: on textgenrnn's verify inputs PyTorch's float32
  error is 0.4 to 3.6 times it, so two correct runs differ by at most ~7
  times it; :data:`AMPLIFICATION` = 16 leaves a factor two.
* It stays strict where the network is well conditioned: on the networks
  Hypothesis draws the sensitivity is ~1e-7, 16 times that is below the float32
  floor, and the floor decides, exactly as before. On textgenrnn itself, a 2%
  change of one gate's recurrent weights in the second layer moves outputs by
  3e-2 to 4, a hundred times the allowance or more (tests/test_tolerance.py).
* The sensitivity is measured on the source's weights and inputs (the case's,
  or the source file's), never on the converted side, so a wrong conversion
  cannot widen its own tolerance. Checks measure it only where the floor is
  exceeded (:func:`judge`; it costs two reference runs); ``convert --verify``
  always measures it and prints both allowances and which one decided.

A runtime row in the table may scale the tolerance, with a written reason; the
scale applies to both allowances (a kernel less accurate than the dtype's
rounding has its error amplified by the same network).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from equivalence.io_types import LSTMInputs, LSTMResult

if TYPE_CHECKING:
    from equivalence.canonical import LSTMWeights

ATOL = {"float64": 1e-10, "float32": 1e-5, "float16": 5e-3, "bfloat16": 4e-2}
RTOL = {"float64": 1e-10, "float32": 1e-5, "float16": 2e-3, "bfloat16": 2e-2}
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11,
                 "bfloat16": 2.0**-8}
AMPLIFICATION = 16.0  # allowed multiple of the measured rounding sensitivity (see above)
SENSITIVITY_SAMPLES = 2
TENSORS = ("output", "h", "c")
STATIC, SENSITIVITY = "static floor", "rounding sensitivity"
Reference = Callable[["LSTMWeights", LSTMInputs], LSTMResult]


@dataclass(frozen=True)
class Sensitivity:
    """How far the float64 reference moves, per tensor, when every weight and input it
    reads moves by ``dtype``'s unit round-off."""

    dtype: str
    moved: tuple[tuple[str, float], ...]

    def allowance(self, name: str) -> float:
        return AMPLIFICATION * dict(self.moved).get(name, 0.0)

    def __str__(self) -> str:
        moves = ", ".join(f"{name} {value:.2g}" for name, value in self.moved)
        return f"the {self.dtype} rounding sensitivity ({moves})"


@dataclass(frozen=True)
class Tolerance:
    """``atol`` (already grown with T) and ``rtol`` for one comparison, and where it was
    measured, the case's rounding sensitivity (scaled like them by ``scale``)."""

    atol: float
    rtol: float
    sensitivity: Sensitivity | None = None
    scale: float = 1.0

    @classmethod
    def for_case(cls, dtype: str, steps: int, scale: float = 1.0) -> Tolerance:
        """The static floor above for ``dtype`` and sequence length ``steps``."""
        growth = math.sqrt(max(steps, 1))
        return cls(ATOL[dtype] * growth * scale, RTOL[dtype] * scale, scale=scale)

    def with_sensitivity(self, sensitivity: Sensitivity) -> Tolerance:
        return dataclasses.replace(self, sensitivity=sensitivity)

    def floor(self, expected: np.ndarray) -> np.ndarray:
        return self.atol + self.rtol * np.abs(expected)

    def measured(self, name: str) -> float:
        """The sensitivity allowance for tensor ``name`` (0 where none was measured)."""
        return 0.0 if self.sensitivity is None else self.scale * self.sensitivity.allowance(name)

    def allowed(self, expected: np.ndarray, name: str = "") -> np.ndarray:
        return np.maximum(self.floor(expected), self.measured(name))

    def __str__(self) -> str:
        floor = f"atol={self.atol:.3g} + rtol={self.rtol:.3g}*|expected|"
        if self.sensitivity is None:
            return floor
        allowances = ", ".join(f"{name} {self.measured(name):.2g}"
                               for name, _ in self.sensitivity.moved)
        return (f"the larger of {floor} and {AMPLIFICATION * self.scale:g} x "
                f"{self.sensitivity} = {allowances}")


@dataclass(frozen=True)
class TensorDiff:
    """How one tensor differs."""

    name: str
    max_abs_diff: float
    where: tuple[int, ...]
    mismatched: int
    total: int
    problem: str = ""  # a structural problem (shape, NaN) instead of a value difference
    decided_by: str = ""  # which allowance was the larger where the error came closest to it

    @property
    def ok(self) -> bool:
        return not self.problem and self.mismatched == 0

    def describe(self) -> str:
        if self.problem:
            return f"{self.name}: {self.problem}"
        share = 100.0 * self.mismatched / max(self.total, 1)
        decided = f" (decided by the {self.decided_by})" if self.decided_by else ""
        return (
            f"{self.name}: mismatched elements {self.mismatched} / {self.total} "
            f"({share:.1f}%), greatest absolute difference {self.max_abs_diff:.3g} "
            f"at index {self.where}{decided}"
        )


@dataclass(frozen=True)
class Comparison:
    """Outputs, h and c compared under one tolerance."""

    diffs: tuple[TensorDiff, ...]
    tolerance: Tolerance

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.diffs)

    @property
    def max_abs_diff(self) -> float:
        return max((d.max_abs_diff for d in self.diffs), default=0.0)

    def by_name(self) -> dict[str, TensorDiff]:
        return {d.name: d for d in self.diffs}

    def failures(self) -> list[TensorDiff]:
        return [d for d in self.diffs if not d.ok]

    def describe(self) -> str:
        lines = [d.describe() for d in (self.failures() or self.diffs)]
        return "\n".join(lines + [f"allowed: {self.tolerance}"])

    def decided_by(self) -> str:
        """Which allowance decided each tensor, e.g. ``output static floor, c rounding
        sensitivity``; empty where no sensitivity was measured."""
        return ", ".join(f"{d.name} {d.decided_by}" for d in self.diffs if d.decided_by)


def diff_tensor(
    name: str, expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance
) -> TensorDiff:
    """Structure first (shape, finiteness), then values, as torch.testing does."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        return TensorDiff(
            name,
            math.inf,
            (),
            expected.size,
            expected.size,
            f"shape {actual.shape}, expected {expected.shape}",
        )
    if not np.all(np.isfinite(actual)):
        return TensorDiff(
            name, math.inf, (), expected.size, expected.size, "contains NaN or infinity"
        )
    if expected.size == 0:
        return TensorDiff(name, 0.0, (), 0, 0)
    error = np.abs(actual - expected)
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(error)), error.shape))
    allowed = tolerance.allowed(expected, name)
    mismatched = int(np.count_nonzero(error > allowed))
    decided = ""
    if tolerance.sensitivity is not None:
        closest = int(np.argmax(error / allowed)) if np.all(allowed > 0) else int(np.argmax(error))
        floor = np.broadcast_to(tolerance.floor(expected), error.shape).flat[closest]
        decided = SENSITIVITY if tolerance.measured(name) > floor else STATIC
    return TensorDiff(name, float(error.max()), where, mismatched, expected.size,
                      decided_by=decided)


def compare(expected: LSTMResult, actual: LSTMResult, tolerance: Tolerance) -> Comparison:
    """Compare the output and every state of two results (h and c for an LSTM, h for a
    GRU) under ``tolerance``; a state one side lacks is a structural difference."""
    want, got = expected.tensors(), actual.tensors()
    diffs = [diff_tensor(n, want[n], got[n], tolerance) if n in got
             else _absent(n, want[n], "missing") for n in want]
    diffs += [_absent(n, got[n], "returned, but the expected result has none")
              for n in got if n not in want]
    return Comparison(tuple(diffs), tolerance)


def _absent(name: str, value: np.ndarray, problem: str) -> TensorDiff:
    size = int(np.size(value))
    return TensorDiff(name, math.inf, (), size, size, problem)


def judge(expected: LSTMResult, actual: LSTMResult, tolerance: Tolerance,
          sensitivity: Callable[[], Sensitivity] | None = None) -> Comparison:
    """The policy: within the static floor, or, where it is exceeded by values (not by a
    shape or a NaN), within the case's measured rounding sensitivity (``sensitivity()``,
    measured on the source's weights and inputs, only when needed)."""
    comparison = compare(expected, actual, tolerance)
    if comparison.ok or sensitivity is None or tolerance.sensitivity is not None:
        return comparison
    if any(d.problem for d in comparison.diffs):
        return comparison
    return compare(expected, actual, tolerance.with_sensitivity(sensitivity()))


def rounding_sensitivity(weights: LSTMWeights, inputs: LSTMInputs, dtype: str,
                         reference: Reference | None = None,
                         exact: LSTMResult | None = None) -> Sensitivity:
    """The greatest move, per tensor, of the float64 ``reference`` (the plain reference by
    default) when every weight and input (x, h0, c0) moves by ``dtype``'s unit round-off,
    relative, with random signs, over :data:`SENSITIVITY_SAMPLES` draws (seeded: the
    same case gives the same figure). ``exact`` is the unmoved run, where already made."""
    run = reference or _reference
    base = (exact or run(weights, inputs)).tensors()
    rng = np.random.default_rng(0)
    unit = UNIT_ROUNDOFF[dtype]
    moved = dict.fromkeys(base, 0.0)
    for _ in range(SENSITIVITY_SAMPLES):
        result = run(_moved_weights(weights, unit, rng), _moved_inputs(inputs, unit, rng))
        for name, value in result.tensors().items():
            if value.size:
                moved[name] = max(moved[name], float(np.abs(value - base[name]).max()))
    return Sensitivity(dtype, tuple(moved.items()))


def _moved(array: np.ndarray, unit: float, rng: np.random.Generator) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    return array * (1.0 + unit * rng.choice((-1.0, 1.0), size=array.shape))


def _moved_weights(weights: LSTMWeights, unit: float, rng: np.random.Generator) -> LSTMWeights:
    def move(_layer: int, _direction: int, cell: Any) -> Any:
        return dataclasses.replace(
            cell, **{k: _moved(v, unit, rng) for k, v in cell.arrays().items()})

    return weights.map_cells(move)


def _moved_inputs(inputs: LSTMInputs, unit: float, rng: np.random.Generator) -> LSTMInputs:
    def state(value: np.ndarray | None) -> np.ndarray | None:
        return None if value is None else _moved(value, unit, rng)

    return dataclasses.replace(inputs, x=_moved(inputs.x, unit, rng), h0=state(inputs.h0),
                               c0=state(inputs.c0))


def _reference(weights: LSTMWeights, inputs: LSTMInputs) -> LSTMResult:
    from equivalence import reference

    return reference.lstm(weights, inputs.x, h0=inputs.h0, c0=inputs.c0, lengths=inputs.lengths)
