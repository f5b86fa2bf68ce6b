"""Where each block of one converted cell came from: the search behind the weight diagnosis.

For one layer and direction, each converted array is explained as a *guess*:
which source array its blocks came from, in which layout, in which gate order,
plus at most one simple fix per block (:mod:`equivalence.diagnosis.fits`).

A layout is a rearrangement of elements, so it is kept as the source index of
every converted element (``take``). A gate order then acts either on the
source before the rearrangement (a converter that reordered gates, then
reshaped) or on the converted blocks after it (reshaped, then reordered);
both are searched the same way: fit every (converted block, source block)
pair once, then try the 24 orders on that table. Candidates go from simple to
complex, and one that cannot beat a complete explanation already found is
skipped. A guess that leaves most of an array unexplained is dropped in
favour of the as-is reading, so the residual is reported where it sits.

Everything is compared in the canonical frame: gate order i, f, g, o, blocks
of H rows, matrices left-multiplying, biases compared as their sum (the split
between input and recurrent bias is arbitrary; only the sum computes).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from equivalence.canonical import CellWeights
from equivalence.diagnosis.fits import EPS, BlockFit, Observed, Predicted, fit

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
Table = list[list[BlockFit]]
# Biases go through forget_bias round trips (TF1 writes b - 1.0, reads it back + 1.0), which
# round at the scale of that constant, however small the bias: exact copies are judged at it.
FOLD_SCALE = 1.0


@dataclass(frozen=True)
class Guess:
    """Where the blocks of one converted array came from, and how well that explains it."""

    source: str  # canonical name of the source array; "rotated": the kernels' concatenation
    layout: str  # how it was laid out (a key of weight_notes.LAYOUT_TEXT), "" for as-is
    order: tuple[int, ...]  # piece k of the converted array holds source block order[k]
    fits: tuple[BlockFit, ...]
    positions: tuple[np.ndarray, ...]  # flat converted positions of each fitted piece
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
        return sum(len(p) for p in self.positions)

    def _scatter(self, parts: Iterable[np.ndarray], dtype: type) -> np.ndarray:
        flat: np.ndarray = np.zeros(self.size, dtype=dtype)
        for where, part in zip(self.positions, parts, strict=True):
            flat[where] = part
        return flat

    def fitted(self) -> np.ndarray:
        """The explanation's values, flat in the converted array's order."""
        return self._scatter((f.fitted for f in self.fits), np.float64)

    def off(self) -> np.ndarray:
        """Which converted elements (flat) the explanation leaves unexplained."""
        return self._scatter((f.off for f in self.fits), bool)


def identity(count: int) -> tuple[int, ...]:
    return tuple(range(count))


def permute(array: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    blocks = np.split(array, len(order))
    return np.concatenate([blocks[k] for k in order])


def _rows(count: int, size: int) -> list[np.ndarray]:
    """Flat positions of each of ``count`` equal row blocks."""
    return [np.arange(k * size // count, (k + 1) * size // count) for k in range(count)]


def best_order(
    table: Table, preferred: Iterable[tuple[int, ...]] = ()
) -> tuple[tuple[int, ...], tuple[BlockFit, ...], float]:
    """The order that explains most; ``preferred`` (the kernels' order), then identity, win ties."""
    count = len(table)
    preferred = set(preferred) or {identity(count)}
    best: tuple | None = None
    for order in itertools.permutations(range(count)):
        fits = tuple(table[k][order[k]] for k in range(count))
        penalty = 0.0 if order in preferred else 0.25 if order == identity(count) else 1.0
        key = (sum(f.unexplained for f in fits), sum(f.complexity for f in fits) + penalty)
        if best is None or key < best[0]:
            best = (key, order, fits, penalty)
    assert best is not None
    return best[1], best[2], best[3]


# --- layouts: what reshaping where a transpose was due does to a canonical (blocks*H, n) matrix


@dataclass(frozen=True)
class Layout:
    """A rearrangement: converted element ``p`` holds source element ``take[p]`` (flat)."""

    name: str  # a key of weight_notes.LAYOUT_TEXT, "" for as-is
    take: np.ndarray
    order_after: bool = False  # the gate order acts on the converted blocks, after rearranging


def _block_layouts(rows: int, cols: int) -> Iterator[tuple[str, Callable]]:
    """Rearrangements of each gate block alone (they commute with gate orders)."""
    if rows == 1 or cols == 1:
        return  # reshaping a vector changes nothing
    if rows == cols:
        yield "blocks_square", lambda b: b.T
        return
    yield "blocks", lambda b: np.ascontiguousarray(b.T).reshape(b.shape)
    yield "blocks_back", lambda b: b.reshape(cols, rows).T


def layouts(shape: tuple[int, int], count: int) -> list[Layout]:
    """As-is, per-block and whole-matrix reshapes of a (count*rows, cols) matrix."""
    index = np.arange(shape[0] * shape[1]).reshape(shape)
    found = [Layout("", index.ravel())]
    if count > 1:
        for name, per_block in _block_layouts(shape[0] // count, shape[1]):
            blocks = [per_block(b) for b in np.split(index, count)]
            found.append(Layout(name, np.concatenate(blocks).ravel()))
    if min(shape) > 1:
        whole = ([("whole_square", index.T)] if shape[0] == shape[1] else
                 [("whole", index.reshape(shape[::-1]).T),
                  ("whole_back", np.ascontiguousarray(index.T).reshape(shape))])
        for name, taken in whole:
            found += [Layout(name, taken.ravel()), Layout(name, taken.ravel(), order_after=True)]
    return found


def _table(actual: Observed, source: Predicted, layout: Layout, count: int, working: str,
           offsets: bool) -> tuple[Table, list[np.ndarray]]:
    """Fits of every (converted piece, source block) pair under ``layout``."""
    block = source.values.size // count
    if layout.order_after:  # pieces: the converted row blocks; sources: the rearranged ones
        laid = source.take(layout.take)
        pieces = _rows(count, actual.values.size)
        sources = [laid.take(p) for p in pieces]
        return [[fit(actual.take(p), s, working, offsets=offsets) for s in sources]
                for p in pieces], pieces
    # pieces: what each source block feeds; its elements keep their place within the block
    pieces = [np.nonzero(layout.take // block == q)[0] for q in range(count)]
    table = []
    for piece in pieces:
        within = layout.take[piece] % block
        table.append([fit(actual.take(piece), source.take(j * block + within), working,
                          offsets=offsets) for j in range(count)])
    return table, pieces


def guess_array(
    actual: Observed,
    sources: dict[str, Predicted],
    own: str,
    shape: tuple[int, int],
    working: str,
    *,
    count: int = 4,
    offsets: bool = False,
    preferred: Iterable[tuple[int, ...]] = (),
) -> Guess:
    """The simplest guess that explains most of a converted array, from any of ``sources``."""
    preferred = tuple(preferred)
    plain = as_is(actual, sources[own], working, count)
    if not plain.unexplained:
        return plain
    best = plain
    candidates = sorted(
        ((float(name != own) + bool(layout.name), name, layout)
         for name in sources for layout in layouts(shape, count)),
        key=lambda c: c[0])
    for base, name, layout in candidates:
        if not best.unexplained and base >= best.complexity:
            break  # sorted by base complexity: nothing further can beat a full explanation
        table, pieces = _table(actual, sources[name], layout, count, working, offsets)
        order, fits, penalty = best_order(table, preferred)
        guess = Guess(name, layout.name, order, fits, tuple(pieces), base + penalty)
        if guess.key() < best.key():
            best = guess
    return believable(best, plain)


def as_is(actual: Observed, source: Predicted, working: str, count: int) -> Guess:
    """Same array, same layout, same order, no fix: what the residual is measured against."""
    pieces = _rows(count, actual.values.size)
    fits = tuple(fit(actual.take(p), source.take(p), working, scales=False) for p in pieces)
    return Guess("", "", identity(count), fits, tuple(pieces))


def believable(guess: Guess, plain: Guess) -> Guess:
    """``guess``, unless it leaves most of the array unexplained (then ``plain``)."""
    if guess.unexplained * 2 > guess.size and guess.unexplained > 0.5 * plain.unexplained:
        return plain
    return guess


# --- kernels


def _float(cell: CellWeights, name: str) -> np.ndarray:
    return np.asarray(getattr(cell, name), dtype=np.float64)


def guess_kernels(
    expected: CellWeights,
    actual: CellWeights,
    working: str,
    preferred: tuple[tuple[int, ...], ...] = (),
    gates: int = 4,
) -> dict[str, Guess]:
    """Both kernels: each from either source kernel, or both from the misordered concatenation.

    Where a layout leaves the gate order ambiguous, the other kernel's order (or
    ``preferred``, e.g. the bias's) is taken. ``gates``: blocks per kernel (3 for a GRU).
    """
    matrices = {n: _float(expected, n) for n in KERNELS}
    sources = {n: Predicted.of(m) for n, m in matrices.items()}
    observed = {n: Observed.of(getattr(actual, n)) for n in KERNELS}

    def guess(name: str, preferred: tuple[tuple[int, ...], ...] = preferred) -> Guess:
        usable = {n: s for n, s in sources.items() if matrices[n].shape == matrices[name].shape}
        return guess_array(observed[name], usable, name, matrices[name].shape, working,
                           count=gates, preferred=preferred)

    guesses = {name: guess(name) for name in KERNELS}
    orders = [g.order for g in guesses.values()]
    for name, other in zip(KERNELS, orders[::-1], strict=True):
        if orders[0] != orders[1]:  # an ambiguous order read as the other kernel's, if it can be
            again = guess(name, (other,))
            if again.order == other and again.unexplained <= guesses[name].unexplained:
                guesses[name] = again
    widths = [m.shape[1] for m in matrices.values()]
    if _total(guesses)[0] and widths[0] != widths[1]:
        joint = _rotated(matrices, observed, working, gates)
        if _total(joint) < _total(guesses):
            guesses = joint
    return {n: _moves(g, n, observed[n], matrices, working, gates) for n, g in guesses.items()}


def _total(guesses: dict[str, Guess]) -> tuple[int, float]:
    return (sum(g.unexplained for g in guesses.values()),
            sum(g.complexity for g in guesses.values()))


def _rotated(matrices: dict[str, np.ndarray], observed: dict[str, Observed],
             working: str, gates: int) -> dict[str, Guess]:
    """Both kernels read from ``[recurrent | input]`` split at the input width."""
    width = matrices["w_input"].shape[1]
    both = np.concatenate([matrices["w_recurrent"], matrices["w_input"]], axis=1)
    parts = {"w_input": both[:, :width], "w_recurrent": both[:, width:]}
    guesses = {}
    for name in KERNELS:
        shape = parts[name].shape
        table, pieces = _table(observed[name], Predicted.of(parts[name]),
                               layouts(shape, gates)[0], gates, working, offsets=False)
        order, fits, penalty = best_order(table)
        guesses[name] = Guess("rotated", "", order, fits, tuple(pieces), 0.5 + penalty)
    return guesses


def _moves(guess: Guess, own: str, actual: Observed, matrices: dict[str, np.ndarray],
           working: str, gates: int) -> Guess:
    """Unexplained blocks found in the other kernel: blocks moved between the kernels."""
    other = matrices[KERNELS[1 - KERNELS.index(own)]]
    if guess.source not in ("", own) or guess.layout or other.shape != matrices[own].shape:
        return guess
    if not guess.unexplained:
        return guess
    fits, moves = list(guess.fits), list[tuple[int, int]]()
    candidates = [Predicted.of(b) for b in np.split(other, gates)]
    for k, piece in enumerate(guess.positions):
        if not fits[k].unexplained or len(piece) < 2:  # one number: an element off, not a move
            continue
        found = [(fit(actual.take(piece), c, working, scales=False), j)  # moved as it was
                 for j, c in enumerate(candidates)]
        moved, j = min(found, key=lambda pair: (pair[0].unexplained, pair[0].complexity))
        if moved.unexplained < fits[k].unexplained:
            fits[k], moves = moved, [*moves, (k, j)]
    return replace(guess, fits=tuple(fits), moved_in=tuple(moves), extra=guess.extra + len(moves))


# --- biases


def guess_bias(expected: CellWeights, actual: CellWeights, working: str,
               preferred: Iterable[tuple[int, ...]], gates: int = 4) -> Guess:
    """The bias sum: which biases went in, in which gate order, with which offsets.

    (A GRU with reset_after keeps its candidate's two biases apart, but their sum still
    shows every order, drop and offset this search names.)"""
    parts = _float(expected, "b_input"), _float(expected, "b_recurrent")
    summed = Observed.of(actual.b_input, actual.b_recurrent)
    correct = Predicted(parts[0] + parts[1], np.abs(parts[0]) + np.abs(parts[1]), FOLD_SCALE)
    plain = as_is(summed, correct, working, gates)
    if not plain.unexplained:
        return plain
    preferred = tuple(preferred)
    shape = (len(parts[0]), 1)
    guesses, seen = list[Guess](), list[np.ndarray]()
    for text, share_in, share_rec in BIAS_COMBOS:
        content = Predicted(share_in * parts[0] + share_rec * parts[1],
                            np.abs(share_in * parts[0]) + np.abs(share_rec * parts[1]),
                            FOLD_SCALE)
        tolerance = 2 * EPS[working] * (content.magnitude + FOLD_SCALE)
        if any(np.all(np.abs(content.values - s) <= tolerance)
               for s in seen):
            continue  # indistinguishable from a simpler reading (e.g. a zero recurrent bias)
        seen.append(content.values)
        guess = guess_array(summed, {"bias": content}, "bias", shape, working, count=gates,
                            offsets=True, preferred=preferred)
        guesses.append(replace(guess, combo=text, extra=guess.extra + bool(text)))
    best = min(guesses, key=Guess.key)
    if best.unexplained and all(np.any(p != 0) for p in parts):
        split = _two_orders(parts, summed, working, gates)
        best = split if not split.unexplained else best  # only a complete story: 576 orders
    return believable(best, plain)


def _two_orders(parts: tuple[np.ndarray, np.ndarray], summed: Observed, working: str,
                gates: int) -> Guess:
    """Input and recurrent biases each in its own gate order (e.g. one half of ONNX's B)."""
    pieces = _rows(gates, summed.values.size)
    blocks = [np.split(p, gates) for p in parts]
    def both(a: np.ndarray, b: np.ndarray) -> Predicted:
        return Predicted(a + b, np.abs(a) + np.abs(b), FOLD_SCALE)

    table = [[[fit(summed.take(piece), both(a, b), working, offsets=True) for b in blocks[1]]
              for a in blocks[0]] for piece in pieces]
    best = None
    for first, second in itertools.product(itertools.permutations(range(gates)), repeat=2):
        if first == second:
            continue  # the one-order search covered it
        fits = tuple(table[k][first[k]][second[k]] for k in range(gates))
        extra = float(first != identity(gates)) + float(second != identity(gates))
        guess = Guess("bias", "", identity(gates), fits, tuple(pieces), extra,
                      bias_orders=(first, second))
        if best is None or guess.key() < best.key():
            best = guess
    assert best is not None
    return best


# --- peepholes and projection


def guess_peepholes(expected: CellWeights, actual: CellWeights, working: str) -> Guess:
    """Peephole rows i, f, o: in which order, with which scales."""
    source = _float(expected, "peephole")
    return guess_array(Observed.of(_float(actual, "peephole")), {"peephole": Predicted.of(source)},
                       "peephole", (source.size, 1), working, count=3)


def guess_projection(expected: CellWeights, actual: CellWeights, working: str) -> Guess:
    source = _float(expected, "projection")
    observed = Observed.of(_float(actual, "projection"))
    return guess_array(observed, {"projection": Predicted.of(source)}, "projection",
                       source.shape, working, count=1)
