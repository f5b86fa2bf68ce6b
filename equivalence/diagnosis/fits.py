"""Elementwise fits of one block of converted weights against its prediction.

The weight-space diagnosis (:mod:`equivalence.diagnosis.from_weights`) first guesses
where a block of the converted weights came from (which array, which gate
block, which layout); this module then says how well that guess explains the
numbers: exactly (within the working dtype's rounding), after one simple fix
(a scale, or a constant offset for biases), and whether the rest is rounding
through float16 or bfloat16. Pure numpy.

Why these rules:

* "Within rounding" is ``2 * eps * magnitude``: a correct conversion copies
  values exactly, except one-bias formats, which round the sum of two biases
  once (at most eps/2 of the summands' magnitude).
* Rounding through float16/bfloat16 is claimed only where the converted value
  is exactly representable in that dtype *and* within its half ulp of the
  prediction; a weight nudged by 1e-3 is neither, so rounding never hides it.
* A fix with a free parameter (least-squares scale, median offset) is allowed
  only where the block has more elements than parameters; a single number
  can be "fitted" by anything, so there only round constants (x2, -1, +1.0, ...)
  count. Scales within 1% of 1 and offsets under 1e-3 are not believable
  mistakes: they would only be soaking up rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}
HALF_ULP = {"float16": 2.0**-11, "bfloat16": 2.0**-8}  # what rounding into them may move
SMALLEST = {"float16": 2.0**-24, "bfloat16": 2.0**-133}  # subnormal steps
ROUNDINGS = ("float16", "bfloat16")  # dtypes a converter may silently round through
NICE_SCALES = (0.0, -1.0, 0.5, 2.0, -0.5, -2.0, 0.25, 4.0)  # the likeliest first
NICE_OFFSETS = (1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0)


def coarsest(dtypes: list[str]) -> str:
    """The dtype with the largest unit round-off among ``dtypes``."""
    return max(dtypes, key=lambda name: EPS[name])


def representable(values: np.ndarray, dtype: str) -> np.ndarray:
    """Elementwise: is each float64 value exactly a ``dtype`` number?"""
    if dtype == "float16":
        with np.errstate(over="ignore"):
            return values.astype(np.float16).astype(np.float64) == values
    single = values.astype(np.float32)  # bfloat16 = the top 16 bits of a float32
    exact = single.astype(np.float64) == values
    return exact & ((single.view(np.uint32) & np.uint32(0xFFFF)) == 0)


@dataclass(frozen=True)
class Observed:
    """Converted values (flat, float64) and, per rounding dtype, which of them it can hold."""

    values: np.ndarray
    held: dict[str, np.ndarray]

    @classmethod
    def of(cls, *parts: np.ndarray) -> Observed:
        """The sum of ``parts`` (two biases read back); representable where every part is."""
        flat = [np.ravel(np.asarray(p, dtype=np.float64)) for p in parts]
        held = {d: np.logical_and.reduce([representable(p, d) for p in flat]) for d in ROUNDINGS}
        return cls(np.sum(flat, axis=0), held)

    def take(self, positions: np.ndarray) -> Observed:
        return Observed(self.values[positions], {d: m[positions] for d, m in self.held.items()})


@dataclass(frozen=True)
class Predicted:
    """What a guess says the converted values should be (flat), with their summands' magnitude."""

    values: np.ndarray
    magnitude: np.ndarray
    floor: float = 0.0  # a magnitude exact copies are judged at, however small the values

    @classmethod
    def of(cls, values: np.ndarray, magnitude: np.ndarray | None = None) -> Predicted:
        values = np.ravel(np.asarray(values, dtype=np.float64))
        return cls(values, np.abs(values) if magnitude is None else np.ravel(magnitude))

    def take(self, positions: np.ndarray) -> Predicted:
        return Predicted(self.values[positions], self.magnitude[positions], self.floor)


@dataclass(frozen=True)
class Fix:
    """One simple change that turns the prediction into the converted values."""

    kind: str  # "scale" or "offset"
    value: float
    free: bool = False  # fitted, not one of the round constants (a little less believable)

    def apply(self, predicted: Predicted) -> Predicted:
        if self.kind == "scale":
            return Predicted(self.value * predicted.values, abs(self.value) * predicted.magnitude,
                             predicted.floor)
        return Predicted(predicted.values + self.value, predicted.magnitude + abs(self.value),
                         predicted.floor)


@dataclass(frozen=True)
class BlockFit:
    """How well one guess (plus at most one fix) explains one block."""

    fix: Fix | None
    fitted: np.ndarray  # the prediction after the fix
    off: np.ndarray  # elements still unexplained
    roundings: tuple[str, ...]  # dtypes whose rounding explains the small differences left
    unexplained: int

    @classmethod
    def judged(cls, actual: Observed, predicted: Predicted, working: str,
               fix: Fix | None = None) -> BlockFit:
        off, roundings = _judge(actual, predicted, working)
        return cls(fix, predicted.values, off, roundings, int(np.count_nonzero(off)))

    @property
    def complexity(self) -> float:
        fix = 0.0 if self.fix is None else 1.25 if self.fix.free else 1.0
        return fix + 0.5 * bool(self.roundings)


def _judge(
    actual: Observed, predicted: Predicted, working: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Unexplained elements, and every rounding dtype that explains the others equally well."""
    error = np.abs(actual.values - predicted.values)
    off = error > 2.0 * EPS[working] * (predicted.magnitude + predicted.floor)
    if not off.any() or EPS[working] >= HALF_ULP["float16"]:
        return off, ()
    best: tuple[int, np.ndarray, tuple[str, ...]] = (int(np.count_nonzero(off)), off, ())
    for dtype in ROUNDINGS:  # finest first
        bound = 2.0 * HALF_ULP[dtype] * predicted.magnitude + SMALLEST[dtype]
        left = off & ~(actual.held[dtype] & (error <= bound))
        count = int(np.count_nonzero(left))
        if count < best[0]:
            best = (count, left, (dtype,))
        elif count == best[0] and best[2]:
            best = (count, best[1], (*best[2], dtype))
    return best[1], best[2]


def _loosely_off(actual: Observed, predicted: Predicted, working: str) -> int:
    """A lower bound of the unexplained count (2% is looser than any rounding judged here)."""
    error = np.abs(actual.values - predicted.values)
    loose = 0.02 * predicted.magnitude + 2.0 * EPS[working] * predicted.floor + SMALLEST["float16"]
    return int(np.count_nonzero(error > loose))


def _scales(actual: np.ndarray, predicted: np.ndarray) -> list[tuple[float, bool]]:
    """(scale, fitted freely) candidates: round ones near the least-squares fit, else the fit."""
    norm = float(np.dot(predicted, predicted))
    if norm == 0.0:
        return []
    fitted = float(np.dot(actual, predicted)) / norm
    nice = NICE_SCALES if actual.size > 1 else NICE_SCALES[:4]  # one number: fewer coincidences
    near = [(s, False) for s in nice if abs(s - fitted) <= 1e-2 * max(abs(s), 1e-1)]
    free = [(fitted, True)] if actual.size > 1 and not near and abs(fitted - 1.0) > 1e-2 else []
    return near + free


def _offsets(actual: np.ndarray, predicted: np.ndarray) -> list[tuple[float, bool]]:
    """(offset, fitted freely) candidates: round ones near the median difference, else it."""
    fitted = float(np.median(actual - predicted))
    near = [(c, False) for c in NICE_OFFSETS if abs(c - fitted) <= 1e-2 * max(abs(c), 1.0)]
    free = [(fitted, True)] if actual.size > 1 and not near and abs(fitted) > 1e-3 else []
    return near + free


def fit(
    actual: Observed,
    predicted: Predicted,
    working: str,
    *,
    scales: bool = True,
    offsets: bool = False,
) -> BlockFit:
    """The simplest of: no fix, one scale, one offset (``offsets``) that explains most."""
    best = BlockFit.judged(actual, predicted, working)
    if not best.unexplained:
        return best
    fixes = [Fix("offset", c, free) for c, free in _offsets(actual.values, predicted.values)
             if offsets]  # first: for a bias, an added constant is the usual mistake
    if scales:
        fixes += [Fix("scale", s, free) for s, free in _scales(actual.values, predicted.values)]
    for fix in fixes:
        fixed = fix.apply(predicted)
        if _loosely_off(actual, fixed, working) >= best.unexplained:
            continue  # cannot explain more than what we have
        candidate = BlockFit.judged(actual, fixed, working, fix)
        if (candidate.unexplained, candidate.complexity) < (best.unexplained, best.complexity):
            best = candidate
    return best
