"""Where each block of one converted cell came from: the search behind the weight diagnosis.

For one layer and direction, each converted array is explained as a *guess*:
which source array its blocks came from, in which layout, in which gate order,
plus at most one simple fix per block (:mod:`equivalence.weight_fits`). The
search tries every layout and order (they are few: 4 gate blocks, 24 orders)
and keeps the guess that leaves the fewest elements unexplained, the simplest
among equals. A guess that leaves most of an array unexplained is dropped in
favour of the as-is reading, so the residual is reported where it sits. Then
the kernels' unexplained blocks are looked for in the other kernel (blocks
moved between them).

Everything is compared in the canonical frame: gate order i, f, g, o, blocks
of H rows, matrices left-multiplying, biases compared as their sum (the split
between input and recurrent bias is arbitrary; only the sum computes).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from .canonical import CellWeights
from .weight_fits import EPS, BlockFit, Observed, Predicted, fit

KERNELS = ("w_input", "w_recurrent")
# (what went wrong, share of the input bias kept, share of the recurrent bias kept)
BIAS_COMBOS = (
    ("", 1.0, 1.0),
    ("bias dropped", 0.0, 0.0),
    ("recurrent bias dropped (only the input bias kept)", 1.0, 0.0),
    ("input bias dropped (only the recurrent bias kept)", 0.0, 1.0),
    ("bias halved (split in two, one half kept)", 0.5, 0.5),
    ("bias counted twice (the sum kept in both biases)", 2.0, 2.0),
)


@dataclass(frozen=True)
class Guess:
    """Where the blocks of one converted array came from, and how well that explains it."""

    source: str  # canonical name of the source array; "rotated": the kernels' concatenation
    layout: str  # how it was laid out (a key of weight_notes.LAYOUT_TEXT), "" for as-is
    order: tuple[int, ...]  # block k of the converted array is block order[k] of the source
    fits: tuple[BlockFit, ...]
    extra: float = 0.0  # complexity of the structural part
    combo: str = ""  # biases: what happened to the two biases (BIAS_COMBOS), "" if summed
    bias_orders: tuple[tuple[int, ...], ...] = ()  # biases read in two orders: input, recurrent
    moved_in: tuple[tuple[int, int], ...] = ()  # kernels: (block, other kernel's block) moves

    @property
    def unexplained(self) -> int:
        return sum(f.unexplained for f in self.fits)

    @property
    def complexity(self) -> float:
        return self.extra + sum(f.complexity for f in self.fits)

    def key(self) -> tuple[int, float]:
        return self.unexplained, self.complexity

    @property
    def size(self) -> int:
        return sum(f.off.size for f in self.fits)

    def fitted(self) -> np.ndarray:
        return np.concatenate([f.fitted for f in self.fits])

    def off(self) -> np.ndarray:
        return np.concatenate([f.off for f in self.fits])


def identity(count: int) -> tuple[int, ...]:
    return tuple(range(count))


def permute(array: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    blocks = np.split(array, len(order))
    return np.concatenate([blocks[k] for k in order])


def observed_blocks(actual: Observed, count: int) -> list[Observed]:
    rows = len(actual.values) // count
    return [actual.part(slice(k * rows, (k + 1) * rows)) for k in range(count)]


def predicted_blocks(predicted: Predicted, count: int) -> list[Predicted]:
    rows = len(predicted.values) // count
    return [predicted.part(slice(k * rows, (k + 1) * rows)) for k in range(count)]


def best_order(
    actual: list[Observed],
    source: list[Predicted],
    working: str,
    *,
    offsets: bool = False,
    preferred: Iterable[tuple[int, ...]] = (),
) -> tuple[tuple[int, ...], tuple[BlockFit, ...], float]:
    """The block order that explains most; identity, then ``preferred``, win ties."""
    table = [[fit(a, s, working, offsets=offsets) for s in source] for a in actual]
    preferred = set(preferred)
    best: tuple | None = None
    for order in itertools.permutations(range(len(source))):
        fits = tuple(table[k][order[k]] for k in range(len(order)))
        penalty = 0.0 if order == identity(len(order)) else 0.5 if order in preferred else 1.0
        key = (sum(f.unexplained for f in fits), sum(f.complexity for f in fits) + penalty)
        if best is None or key < best[0]:
            best = (key, order, fits, penalty)
    assert best is not None
    return best[1], best[2], best[3]


def as_is(actual: Observed, source: np.ndarray | Predicted, working: str, count: int) -> Guess:
    """Same array, same layout, same order, no fix: what the residual is measured against."""
    predicted = source if isinstance(source, Predicted) else Predicted.of(source)
    pairs = zip(observed_blocks(actual, count), predicted_blocks(predicted, count), strict=True)
    fits = tuple(fit(a, p, working, scales=False) for a, p in pairs)
    return Guess("", "", identity(count), fits)


def believable(guess: Guess, plain: Guess) -> Guess:
    """``guess``, unless it leaves most of the array unexplained (then ``plain``)."""
    if guess.unexplained * 2 > guess.size and guess.unexplained > 0.5 * plain.unexplained:
        return plain
    return guess


# --- layouts: what reshaping where a transpose was due does to a canonical (blocks*H, n) matrix


def block_layouts(matrix: np.ndarray, count: int) -> Iterator[tuple[str, np.ndarray]]:
    """Layouts of each gate block alone (they commute with gate orders)."""
    yield "", matrix
    rows, cols = matrix.shape[0] // count, matrix.shape[1]
    if count == 1 or rows == 1 or cols == 1:
        return  # one block is a whole layout; reshaping a vector changes nothing
    blocks = np.split(matrix, count)
    if rows == cols:
        yield "blocks_square", np.concatenate([b.T for b in blocks])
        return
    yield "blocks", np.concatenate([np.ascontiguousarray(b.T).reshape(b.shape) for b in blocks])
    yield "blocks_back", np.concatenate([b.reshape(cols, rows).T for b in blocks])


def whole_layouts(matrix: np.ndarray) -> Iterator[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """Layouts of the whole matrix (they mix gate blocks: orders are tried inside them)."""
    rows, cols = matrix.shape
    if rows == 1 or cols == 1:
        return
    if rows == cols:
        yield "whole_square", lambda m: m.T
        return
    yield "whole", lambda m: np.ascontiguousarray(m).reshape(m.shape[::-1]).T
    yield "whole_back", lambda m: np.ascontiguousarray(m.T).reshape(m.shape)


def guess_matrix(
    actual: Observed, sources: dict[str, np.ndarray], own: str, working: str, count: int = 4
) -> Guess:
    """The best guess for a converted matrix of ``count`` blocks, from any of ``sources``."""
    plain = as_is(actual, sources[own], working, count)
    if not plain.unexplained:
        return plain
    blocks = observed_blocks(actual, count)
    guesses = []
    for name, matrix in sources.items():
        if matrix.shape != actual.values.shape:
            continue
        moved = float(name != own)
        for layout, laid in block_layouts(matrix, count):
            source = predicted_blocks(Predicted.of(laid), count)
            order, fits, penalty = best_order(blocks, source, working)
            guesses.append(Guess(name, layout, order, fits, moved + bool(layout) + penalty))
        for layout, transform in whole_layouts(matrix):
            for order in itertools.permutations(range(count)):
                laid = predicted_blocks(Predicted.of(transform(permute(matrix, order))), count)
                fits = tuple(fit(a, p, working) for a, p in zip(blocks, laid, strict=True))
                penalty = float(order != identity(count))
                guesses.append(Guess(name, layout, order, fits, moved + 1.0 + penalty))
    return believable(min(guesses, key=Guess.key), plain)


# --- kernels


def _float(cell: CellWeights, name: str) -> np.ndarray:
    return np.asarray(getattr(cell, name), dtype=np.float64)


def _laid_out(matrix: np.ndarray, layout: str) -> np.ndarray | None:
    return dict(block_layouts(matrix, 4)).get(layout)


def _moves(guess: Guess, own: str, actual: Observed, sources: dict[str, np.ndarray],
           working: str) -> Guess:
    """Unexplained blocks found in the other kernel: blocks moved between the kernels."""
    other = KERNELS[1 - KERNELS.index(own)]
    laid = _laid_out(sources[other], guess.layout) if guess.source == own else None
    if laid is None or laid.shape != actual.values.shape or not guess.unexplained:
        return guess
    fits, moves = list(guess.fits), []
    candidates = predicted_blocks(Predicted.of(laid), 4)
    for k, block in enumerate(observed_blocks(actual, 4)):
        if not fits[k].unexplained:
            continue
        found = [(fit(block, c, working), j) for j, c in enumerate(candidates)]
        moved, j = min(found, key=lambda pair: (pair[0].unexplained, pair[0].complexity))
        if moved.unexplained < fits[k].unexplained:
            fits[k], moves = moved, [*moves, (k, j)]
    return replace(guess, fits=tuple(fits), moved_in=tuple(moves), extra=guess.extra + len(moves))


def guess_kernels(expected: CellWeights, actual: CellWeights, working: str) -> dict[str, Guess]:
    """Guesses for both kernels: each on its own, or both from the wrongly ordered concatenation."""
    sources = {n: _float(expected, n) for n in KERNELS}
    observed = {n: Observed.of(getattr(actual, n)) for n in KERNELS}
    guesses = {n: guess_matrix(observed[n], sources, n, working) for n in KERNELS}
    if _total(guesses)[0] and sources["w_input"].shape[1] != sources["w_recurrent"].shape[1]:
        joint = _rotated(sources, observed, working)
        if _total(joint) < _total(guesses):
            guesses = joint
    return {n: _moves(g, n, observed[n], sources, working) for n, g in guesses.items()}


def _total(guesses: dict[str, Guess]) -> tuple[int, float]:
    return (sum(g.unexplained for g in guesses.values()),
            sum(g.complexity for g in guesses.values()))


def _rotated(sources: dict[str, np.ndarray], observed: dict[str, Observed],
             working: str) -> dict[str, Guess]:
    """Both kernels read from ``[recurrent | input]`` split at the input width."""
    width = sources["w_input"].shape[1]
    both = np.concatenate([sources["w_recurrent"], sources["w_input"]], axis=1)
    parts = {"w_input": both[:, :width], "w_recurrent": both[:, width:]}
    guesses = {}
    for name in KERNELS:
        blocks = observed_blocks(observed[name], 4)
        order, fits, penalty = best_order(blocks, predicted_blocks(Predicted.of(parts[name]), 4),
                                          working)
        guesses[name] = Guess("rotated", "", order, fits, 0.5 + penalty)
    return guesses


# --- biases


def guess_bias(expected: CellWeights, actual: CellWeights, working: str,
               preferred: Iterable[tuple[int, ...]]) -> Guess:
    """The bias sum: which biases went in, in which gate order, with which offsets."""
    parts = _float(expected, "b_input"), _float(expected, "b_recurrent")
    summed = Observed.of(actual.b_input, actual.b_recurrent)
    magnitude = np.abs(parts[0]) + np.abs(parts[1])
    plain = as_is(summed, Predicted(parts[0] + parts[1], magnitude), working, 4)
    if not plain.unexplained:
        return plain
    observed = observed_blocks(summed, 4)
    preferred = tuple(preferred)
    guesses, seen = [], []
    for text, share_in, share_rec in BIAS_COMBOS:
        content = share_in * parts[0] + share_rec * parts[1]
        magnitude = np.abs(share_in * parts[0]) + np.abs(share_rec * parts[1])
        if any(np.all(np.abs(content - s) <= 2 * EPS[working] * magnitude) for s in seen):
            continue  # indistinguishable from a simpler reading (e.g. a zero recurrent bias)
        seen.append(content)
        blocks = predicted_blocks(Predicted(content, magnitude), 4)
        order, fits, penalty = best_order(observed, blocks, working, offsets=True,
                                          preferred=preferred)
        guesses.append(Guess("bias", "", order, fits, bool(text) + penalty, combo=text))
    best = min(guesses, key=Guess.key)
    if best.unexplained and all(np.any(p != 0) for p in parts):
        best = min([best, _two_orders(parts, observed, working)], key=Guess.key)
    return best


def _two_orders(parts: tuple[np.ndarray, np.ndarray], observed: list[Observed],
                working: str) -> Guess:
    """Input and recurrent biases each in its own gate order (e.g. one half of ONNX's B)."""
    best = None
    for first, second in itertools.product(itertools.permutations(range(4)), repeat=2):
        if first == second:
            continue  # the one-order search covered it
        content = permute(parts[0], first) + permute(parts[1], second)
        magnitude = np.abs(permute(parts[0], first)) + np.abs(permute(parts[1], second))
        blocks = predicted_blocks(Predicted(content, magnitude), 4)
        fits = tuple(fit(a, p, working, offsets=True) for a, p in zip(observed, blocks,
                                                                        strict=True))
        extra = float(first != identity(4)) + float(second != identity(4))
        guess = Guess("bias", "", identity(4), fits, extra, bias_orders=(first, second))
        if best is None or guess.key() < best.key():
            best = guess
    assert best is not None
    return best


# --- peepholes and projection


def guess_peepholes(expected: CellWeights, actual: CellWeights, working: str) -> Guess:
    """Peephole rows i, f, o: in which order, with which scales."""
    source = _float(expected, "peephole")
    observed = Observed.of(actual.peephole)
    plain = as_is(observed, source, working, 3)
    if not plain.unexplained:
        return plain
    order, fits, penalty = best_order(observed_blocks(observed, 3),
                                      predicted_blocks(Predicted.of(source), 3), working)
    return believable(Guess("peephole", "", order, fits, penalty), plain)


def guess_projection(expected: CellWeights, actual: CellWeights, working: str) -> Guess:
    source = _float(expected, "projection")
    return guess_matrix(Observed.of(actual.projection), {"projection": source}, "projection",
                        working, count=1)
