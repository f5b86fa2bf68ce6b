"""The one comparison and the one tolerance policy.

Tolerance policy (why these numbers):

* Everything is compared as ``|actual - expected| <= atol(dtype) * sqrt(T) +
  rtol(dtype) * |expected|``, elementwise, on outputs, h and c.
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

A runtime row in the table may scale the tolerance, with a written reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .io_types import LSTMResult

ATOL = {"float64": 1e-10, "float32": 1e-5, "float16": 5e-3, "bfloat16": 4e-2}
RTOL = {"float64": 1e-10, "float32": 1e-5, "float16": 2e-3, "bfloat16": 2e-2}
TENSORS = ("output", "h", "c")


@dataclass(frozen=True)
class Tolerance:
    """``atol`` (already grown with T) and ``rtol`` for one comparison."""

    atol: float
    rtol: float

    @classmethod
    def for_case(cls, dtype: str, steps: int, scale: float = 1.0) -> Tolerance:
        """The policy above for ``dtype`` and sequence length ``steps``."""
        growth = math.sqrt(max(steps, 1))
        return cls(ATOL[dtype] * growth * scale, RTOL[dtype] * scale)

    def allowed(self, expected: np.ndarray) -> np.ndarray:
        return self.atol + self.rtol * np.abs(expected)

    def __str__(self) -> str:
        return f"atol={self.atol:.3g} + rtol={self.rtol:.3g}*|expected|"


@dataclass(frozen=True)
class TensorDiff:
    """How one tensor differs."""

    name: str
    max_abs_diff: float
    where: tuple[int, ...]
    mismatched: int
    total: int
    problem: str = ""  # a structural problem (shape, NaN) instead of a value difference

    @property
    def ok(self) -> bool:
        return not self.problem and self.mismatched == 0

    def describe(self) -> str:
        if self.problem:
            return f"{self.name}: {self.problem}"
        share = 100.0 * self.mismatched / max(self.total, 1)
        return (
            f"{self.name}: mismatched elements {self.mismatched} / {self.total} "
            f"({share:.1f}%), greatest absolute difference {self.max_abs_diff:.3g} "
            f"at index {self.where}"
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
    mismatched = int(np.count_nonzero(error > tolerance.allowed(expected)))
    return TensorDiff(name, float(error.max()), where, mismatched, expected.size)


def compare(expected: LSTMResult, actual: LSTMResult, tolerance: Tolerance) -> Comparison:
    """Compare outputs, h and c of two results under ``tolerance``."""
    pairs = zip(TENSORS, expected.tensors().values(), actual.tensors().values(), strict=True)
    return Comparison(tuple(diff_tensor(n, e, a, tolerance) for n, e, a in pairs), tolerance)
