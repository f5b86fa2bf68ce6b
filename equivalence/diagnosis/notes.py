"""The weight search's guesses in words: one note per mistake, named the way users name them.

Blocks are named by the source's gate (i, f, g, o; a GRU's r, z, n): after "f and g blocks
swapped", "+1.0 added to the g block" means the g values got the +1.0,
wherever they ended up. Single elements are named by their place in the
canonical layout of the converted weights: ``kernel[g, unit 1, input 0]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from equivalence.canonical import GATES
from equivalence.cells import gru
from equivalence.diagnosis.fits import EPS, Fix, coarsest
from equivalence.diagnosis.search import KERNELS, Guess, identity

PEEPHOLE_GATES = ("i", "f", "o")
DISPLAY = {"w_input": "kernel", "w_recurrent": "recurrent kernel", "bias": "bias",
           "peephole": "peepholes", "projection": "projection"}
BLOCK_NAMES = {"w_input": GATES, "w_recurrent": GATES, "bias": GATES,
               "peephole": PEEPHOLE_GATES, "projection": ("",)}
# A kernel or bias of three blocks is a GRU's (an LSTM's have four; peepholes are named apart).
GRU_BLOCK_NAMES = {**BLOCK_NAMES, "w_input": gru.GATES, "w_recurrent": gru.GATES,
                   "bias": gru.GATES}
FEW = 4  # up to this many unexplained elements are named one by one
# Gate orders people know (canonical: i, f, g, o); a read-back shows an order or its inverse.
KNOWN_ORDERS: dict[tuple[int, ...], str] = {
    (0, 2, 1, 3): "TF1's i, j, f, o order", (0, 3, 1, 2): "ONNX's i, o, f, c order",
    (0, 2, 3, 1): "ONNX's i, o, f, c order", (2, 1, 0, 3): "NeoML's g, f, i, o order",
    # GRU (canonical r, z, n): z and r trade places in ONNX's and Keras's z, r, h
    (1, 0, 2): "ONNX's and Keras's z, r, h order"}
LAYOUT_TEXT = {
    "blocks": "gate blocks reshaped instead of transposed",
    "blocks_back": "gate blocks reshaped instead of transposed",
    "blocks_square": "gate blocks reshaped instead of transposed",  # the same for square blocks
    "whole": "reshaped instead of transposed",
    "whole_back": "reshaped instead of transposed",
    "whole_square": "reshaped instead of transposed",  # the same for a square matrix
}


def block_names(name: str, blocks: int) -> tuple[str, ...]:
    """The names of array ``name``'s ``blocks`` blocks: a GRU's r, z, n where there are 3."""
    return (GRU_BLOCK_NAMES if blocks == 3 else BLOCK_NAMES)[name]


# Ranks order the message: network, moves, layout, order, biases, fixes, rounding, elements.
NETWORK, MOVED, LAYOUT, ORDER, BIAS, FIXED, ROUNDING, ELEMENTS, RESIDUAL = range(9)


@dataclass(frozen=True)
class Note:
    """One finding about one cell (``array`` empty when the text already names its place)."""

    rank: int
    text: str
    array: str = ""


def join_words(words: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def number(value: float, signed: bool = False) -> str:
    """1.0 for round values, 3 significant digits otherwise."""
    sign = "+" if signed else ""
    if value != 0 and abs(value - round(value * 2) / 2) <= 1e-9 * max(1.0, abs(value)):
        return f"{value:{sign}.1f}"
    return f"{value:{sign}.3g}"


def order_text(order: tuple[int, ...], names: tuple[str, ...] = GATES) -> str:
    """"f and g blocks swapped", or "gate blocks permuted to i, g, o, f (...)"."""
    moved = [names[k] for k, source in enumerate(order) if source != k]
    if len(moved) == 2:
        return f"{moved[0]} and {moved[1]} blocks swapped"
    text = f"gate blocks permuted to {', '.join(names[k] for k in order)}"
    known = KNOWN_ORDERS.get(order) if names in (GATES, gru.GATES) else None
    return text + (f" ({known} not converted)" if known else "")


def kernel_notes(guesses: dict[str, Guess]) -> list[Note]:
    """What moved between the two kernels."""
    sources = {n: g.source or n for n, g in guesses.items()}
    notes = []
    if all(s == "rotated" for s in sources.values()):
        notes.append(Note(MOVED, "kernel and recurrent kernel concatenated in the wrong order "
                                 "(recurrent part first, split at the input width)"))
    elif sources == {"w_input": "w_recurrent", "w_recurrent": "w_input"}:
        notes.append(Note(MOVED, "input and recurrent kernels swapped"))
    else:
        notes += [Note(MOVED, f"the {DISPLAY[n]} holds the {DISPLAY[s]}'s values")
                  for n, s in sources.items() if s in KERNELS and s != n]
    for name, guess in guesses.items():
        other = DISPLAY[KERNELS[1 - KERNELS.index(name)]]
        gates = block_names(name, len(guess.order))
        notes += [Note(MOVED, f"the {gates[k]} block of the {DISPLAY[name]} holds the "
                              f"{gates[j]} block of the {other}")
                  for k, j in guess.moved_in]
    return notes


def array_notes(name: str, guess: Guess, actual: np.ndarray, rounding: str | None) -> list[Note]:
    """Layout, order, bias combination, fixes, rounding and what is left, for one array.

    ``rounding`` is the dtype the whole network's rounding is named by, where
    this array's differences allow it (float16 and bfloat16 often both do).
    """
    display, names = DISPLAY[name], block_names(name, len(guess.order))
    notes = [Note(LAYOUT, LAYOUT_TEXT[guess.layout], display)] if guess.layout else []
    if guess.bias_orders:
        notes += [Note(ORDER, order_text(order, names), part)
                  for part, order in zip(("input bias", "recurrent bias"), guess.bias_orders,
                                         strict=True) if order != identity(len(names))]
    elif guess.order != identity(len(guess.order)):
        notes.append(Note(ORDER, order_text(guess.order, names), display))
    notes += [Note(BIAS, guess.combo)] if guess.combo else []
    notes += fix_notes(name, guess)
    dtype = rounding_of(guess)
    if dtype:
        named = rounding if rounding in possible_roundings(guess) else dtype
        notes.append(Note(ROUNDING, f"rounded through {named}", display))
    return notes + element_notes(name, guess, actual)


def possible_roundings(guess: Guess) -> set[str]:
    """The dtypes that explain every rounded block of ``guess`` (empty when none is rounded)."""
    sets = [set(f.roundings) for f in guess.fits if f.roundings]
    return set.intersection(*sets) if sets else set()


def rounding_of(guess: Guess) -> str | None:
    """The finest dtype consistent with every block, else the coarsest one needed."""
    possible = possible_roundings(guess)
    if possible:
        return min(possible, key=lambda d: EPS[d])
    needed = [f.roundings[0] for f in guess.fits if f.roundings]
    return coarsest(needed) if needed else None


def network_rounding(guesses: list[Guess]) -> str | None:
    """One dtype for every rounded array when one fits them all (the coarsest of those)."""
    sets = [possible_roundings(g) for g in guesses if rounding_of(g)]
    common = set.intersection(*sets) if sets else set()
    return max(common, key=lambda d: EPS[d]) if common else None


def fix_notes(name: str, guess: Guess) -> list[Note]:
    names = block_names(name, len(guess.order))
    fixes = {names[guess.order[k]]: f.fix for k, f in enumerate(guess.fits) if f.fix is not None}
    offsets = {g: fix.value for g, fix in fixes.items() if fix.kind == "offset"}
    scales = {g: fix for g, fix in fixes.items() if fix.kind == "scale"}
    notes = [Note(BIAS, text) for text in offset_texts(offsets)]
    if len(scales) == len(guess.fits) > 1 and len(set(scales.values())) == 1:
        return [*notes, Note(FIXED, _scale_text(next(iter(scales.values()))), DISPLAY[name])]
    block = "" if len(names) == 1 else " block"
    return notes + [Note(FIXED, f"{g}{block} {_scale_text(fix)}".strip(), DISPLAY[name])
                    for g, fix in scales.items()]


def _scale_text(fix: Fix) -> str:
    return {0.0: "zeroed", -1.0: "negated"}.get(fix.value, f"scaled by {number(fix.value)}")


def offset_texts(offsets: dict[str, float]) -> list[str]:
    """Offsets per bias block, read as the forget_bias mistakes they usually are."""
    forget = offsets.get("f")
    others = {g: c for g, c in offsets.items() if g != "f"}
    if forget is not None and len(others) == 1:
        (gate, value), = others.items()
        if abs(value + forget) <= 1e-6 * max(1.0, abs(value)):
            return [f"{number(value, True)} added to the {gate} block of the bias instead of "
                    "the f block (forget_bias folded into the wrong block)"]
    texts = []
    if forget is not None:
        why = ("forget_bias folded twice, or not subtracted when written" if forget > 0
               else "forget_bias not folded in")
        texts.append(f"{number(forget, True)} added to the f block of the bias ({why})")
    return texts + [f"{number(c, True)} added to the {g} block of the bias"
                    for g, c in others.items()]


def place(name: str, index: tuple[int, ...], rows_per_block: int,
          names: tuple[str, ...] | None = None) -> str:
    """``kernel[g, unit 1, input 0]``: an element named in the canonical layout."""
    display, names = DISPLAY[name], names or BLOCK_NAMES[name]
    if name == "projection":
        return f"projection[row {index[0]}, unit {index[1]}]"
    if name == "peephole":
        return f"peepholes[{names[index[0]]}, unit {index[1]}]"
    gate, unit = names[index[0] // rows_per_block], index[0] % rows_per_block
    column = {"w_input": "input", "w_recurrent": "h"}.get(name)
    tail = f", {column} {index[1]}" if column else ""
    return f"{display}[{gate}, unit {unit}{tail}]"


def element_notes(name: str, guess: Guess, actual: np.ndarray) -> list[Note]:
    """A few elements off, one by one; more than a few: the residual and where it sits."""
    actual = np.asarray(actual, np.float64)
    off = guess.off().reshape(actual.shape)
    count = int(np.count_nonzero(off))
    if not count:
        return []
    difference = actual - guess.fitted().reshape(actual.shape)
    names = block_names(name, len(guess.order))
    rows = max(1, actual.shape[0] // len(names))
    indices = [tuple(int(i) for i in index) for index in np.argwhere(off)]
    if count <= FEW:
        return [Note(ELEMENTS, f"{place(name, i, rows, names)} off by "
                               f"{number(float(difference[i]), True)}") for i in indices]
    worst = max(indices, key=lambda i: abs(difference[i]))
    blocks = [n for n, part in zip(names, np.split(off, len(names)), strict=True) if part.any()]
    where = f" ({join_words(blocks)} blocks)" if blocks != [""] else ""
    return [Note(RESIDUAL, f"unexplained: {count} of {off.size} elements of the {DISPLAY[name]}"
                           f"{where} differ, up to {abs(float(difference[worst])):.3g} at "
                           f"{place(name, worst, rows, names)}")]
