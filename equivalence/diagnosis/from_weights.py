"""Weight-space diagnosis: name every mistake between the source's weights and the converted ones.

Give :func:`explain` the canonical weights of the source (expected) and of the
converted result read back through the target format (actual). It compares
per layer, per direction, per array and per gate block, and explains the
difference as a composition of known mistakes: gate blocks permuted (each
array on its own), blocks moved between the kernels, reshaped instead of
transposed, a bias dropped, halved or doubled, a constant added to a named
bias block (forget_bias in the wrong block), scaled blocks, rounding through
float16 or bfloat16, directions or layers swapped, a few elements off. What
no mistake explains is reported as the residual, with where it sits.

Weights that agree within the rounding of their dtype get no finding at all:
a correct converter is never given a diagnosis. Pure numpy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.diagnosis.fits import EPS, coarsest
from equivalence.diagnosis.notes import (
    BIAS,
    DISPLAY,
    NETWORK,
    RESIDUAL,
    Note,
    array_notes,
    join_words,
    kernel_notes,
    network_rounding,
)
from equivalence.diagnosis.search import (
    Guess,
    guess_bias,
    guess_kernels,
    guess_peepholes,
    guess_projection,
)

SHAPE_FIELDS = ("cell", "input_size", "units", "layers", "directions", "projection_size",
                "peepholes")
BEHAVIOUR_FIELDS = ("recurrent_activation", "cell_clip", "projection_clip", "gate_clip",
                    "reset_after")
SAME_CELL = 1e-2  # sorted magnitudes this close (relative) are the same weights


@dataclass(frozen=True)
class Finding:
    """One mistake (or the residual), where it was seen."""

    rank: int
    text: str
    array: str = ""  # display name of the array; empty when the text names its place
    cell: str = ""  # "layer 1 backward"; empty for the whole network or a single cell


@dataclass(frozen=True)
class WeightDiagnosis:
    """Everything :func:`explain` found; falsy when the weights agree."""

    findings: tuple[Finding, ...]
    cells: tuple[str, ...] = ("",)
    arrays: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.findings)

    @property
    def explained(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.rank < RESIDUAL)

    @property
    def residual(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.rank == RESIDUAL)

    def message(self) -> str | None:
        """All findings in one line, mistakes first, the residual last; None when none."""
        if not self.findings:
            return None
        places: dict[tuple[int, str], dict[str, list[str]]] = {}
        for finding in sorted(self.findings, key=lambda f: f.rank):
            cells = places.setdefault((finding.rank, finding.text), defaultdict(list))
            if finding.array not in cells[finding.cell]:
                cells[finding.cell].append(finding.array)
        return "; ".join(self._phrase(text, cells) for (_, text), cells in places.items())

    def _phrase(self, text: str, cells: dict[str, list[str]]) -> str:
        arrays = {tuple(a) for a in cells.values()}
        everywhere = set(cells) >= set(self.cells)
        if len(arrays) > 1:
            parts = [f"in {join_words(a)} ({cell})" for cell, a in cells.items()]
            return f"{text} {', '.join(parts)}"
        (names,) = arrays
        if text.startswith("rounded through") and everywhere and set(names) >= set(self.arrays):
            return f"all weights {text}"
        where = f" in {join_words(list(names))}" if names != ("",) else ""
        suffix = "" if everywhere or list(cells) == [""] else f" ({join_words(list(cells))})"
        return f"{text}{where}{suffix}"


def explain(expected: LSTMWeights, actual: LSTMWeights) -> WeightDiagnosis:
    """Compare source and converted canonical weights; name every mistake found."""
    expected, actual = expected.with_folded_forget_bias(), actual.with_folded_forget_bias()
    findings = spec_findings(expected, actual)
    if any(f.rank == NETWORK and f.text.startswith("the converted") for f in findings):
        return WeightDiagnosis(tuple(findings))
    working = working_dtype(expected, actual)
    sources, moved = match_cells(expected, actual, expected.spec.gate_count)
    findings += moved
    names = {key: cell_name(expected, *key) for key in sources}
    gates = expected.spec.gate_count
    guesses = {(layer, direction): cell_guesses(expected.cell(*sources[(layer, direction)]),
                                                cell, working, gates)
               for layer, direction, cell in actual.iter_cells()}
    rounding = network_rounding([g for per_cell in guesses.values() for g in per_cell.values()])
    for key, per_cell in guesses.items():
        notes = cell_notes(per_cell, actual.cell(*key), rounding)
        if expected.spec.cell == "gru" and expected.spec.reset_after:
            notes += candidate_bias_notes(expected.cell(*sources[key]), actual.cell(*key), working)
        findings += [Finding(n.rank, n.text, n.array, names[key]) for n in notes]
    arrays = tuple(_displayed(expected.cell(0, 0)))
    return WeightDiagnosis(tuple(findings), tuple(names.values()), arrays)


def spec_findings(expected: LSTMWeights, actual: LSTMWeights) -> list[Finding]:
    """Shape fields first (nothing else can be compared when they differ), then behaviour."""
    found = []
    for name in SHAPE_FIELDS:
        want, got = getattr(expected.spec, name), getattr(actual.spec, name)
        if want != got:
            found.append(Finding(NETWORK, f"the converted network has {name}={got}, "
                                          f"the source {name}={want}"))
    if found:
        return found
    for name in BEHAVIOUR_FIELDS:
        want, got = getattr(expected.spec, name), getattr(actual.spec, name)
        if want != got:
            found.append(Finding(NETWORK, f"{name.replace('_', ' ')} {got} where {want} was meant"))
    return found


def working_dtype(expected: LSTMWeights, actual: LSTMWeights) -> str:
    """The precision differences are judged at: the source's, or the target's down to float32.

    A target coarser than float32 is not excused: rounding through float16 or
    bfloat16 is then a finding (it fails float32 comparisons).
    """
    found = [expected.spec.dtype, *_dtypes(expected)]
    found += [d if EPS[d] <= EPS["float32"] else "float32" for d in [actual.spec.dtype,
                                                                     *_dtypes(actual)]]
    return coarsest(found)


def _dtypes(weights: LSTMWeights) -> list[str]:
    names = {a.dtype.name for _, _, cell in weights.iter_cells() for a in cell.arrays().values()}
    return [n for n in names if n in EPS]


def cell_name(weights: LSTMWeights, layer: int, direction: int) -> str:
    spec = weights.spec
    parts = [f"layer {layer}"] if spec.layers > 1 else []
    parts += [("forward", "backward")[direction]] if spec.directions > 1 else []
    return " ".join(parts)


def _displayed(cell: CellWeights) -> list[str]:
    names = ["w_input", "w_recurrent", "bias", "peephole", "projection"]
    present = cell.arrays()
    return [DISPLAY[n] for n in names if n == "bias" or n in present]


def cell_guesses(expected: CellWeights, actual: CellWeights, working: str, gates: int = 4
                 ) -> dict[str, Guess]:
    """Where every converted array of one layer and direction came from (``gates`` blocks)."""
    guesses = guess_kernels(expected, actual, working, gates=gates)
    kernel_orders = [g.order for g in guesses.values()]
    guesses["bias"] = guess_bias(expected, actual, working, kernel_orders, gates)
    bias_order = guesses["bias"].order
    if bias_order not in kernel_orders and guesses["bias"].size > gates:  # the bias may settle it
        again = guess_kernels(expected, actual, working, (bias_order,), gates)
        if all(again[n].order == bias_order and again[n].unexplained <= guesses[n].unexplained
               for n in again):
            guesses.update(again)
    if expected.peephole is not None and actual.peephole is not None:
        guesses["peephole"] = guess_peepholes(expected, actual, working)
    if expected.projection is not None and actual.projection is not None:
        guesses["projection"] = guess_projection(expected, actual, working)
    return guesses


def cell_notes(guesses: dict[str, Guess], actual: CellWeights, rounding: str | None) -> list[Note]:
    """Every mistake in one layer and direction, in words."""
    notes = kernel_notes({n: guesses[n] for n in ("w_input", "w_recurrent")})
    for name, guess in guesses.items():
        values = (np.asarray(actual.b_input, np.float64) + np.asarray(actual.b_recurrent,
                                                                      np.float64)
                  if name == "bias" else getattr(actual, name))
        notes += array_notes(name, guess, values, rounding)
    return notes


def candidate_bias_notes(expected: CellWeights, actual: CellWeights, working: str
                         ) -> list[Note]:
    """A GRU's candidate biases, which reset_after keeps apart: b_hn sits inside r * (...).

    The bias search reads the two biases' sum, which these mistakes leave right.
    """
    def n_block(bias: np.ndarray) -> np.ndarray:
        return np.split(np.asarray(bias, np.float64), 3)[2]

    b_in, b_hn = n_block(expected.b_input), n_block(expected.b_recurrent)
    got_in, got_hn = n_block(actual.b_input), n_block(actual.b_recurrent)
    tolerance = 8 * EPS[working] * (np.abs(b_in) + np.abs(b_hn) + 1.0)
    if np.all(np.abs(got_hn - b_hn) <= tolerance) or not np.all(
            np.abs(got_in + got_hn - b_in - b_hn) <= tolerance):
        return []  # right, or wrong in the sum too (the bias search names that)
    if np.all(np.abs(got_hn) <= tolerance):
        return [Note(BIAS, "the candidate's recurrent bias b_hn summed into the input bias "
                           "(under reset_after=True it belongs inside r * (...))")]
    return [Note(BIAS, "the candidate's input and recurrent biases (b_in, b_hn) split "
                       "differently; their sum is right")]


# --- directions and layers


def _sorted_magnitudes(array: np.ndarray) -> np.ndarray:
    return np.sort(np.abs(np.ravel(array).astype(np.float64)))


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(float(np.max(b, initial=0.0)), 1e-30)
    return a.shape == b.shape and float(np.max(np.abs(a - b), initial=0.0)) <= SAME_CELL * scale


def _blocks(cell: CellWeights, gates: int) -> list[np.ndarray]:
    return [_sorted_magnitudes(b) for m in (cell.w_input, cell.w_recurrent)
            for b in np.split(m, gates)]


def cell_distance(actual: CellWeights, expected: CellWeights, gates: int = 4) -> float:
    """0 for the same cell's weights, 1 for unrelated ones.

    Blind to gate orders, layouts and moves between kernels: the share of the
    converted gate blocks whose values (as a multiset) are not found in the
    source cell, or 0 when both kernels hold the same values overall (a
    whole-matrix reshape mixes blocks).
    """
    whole = [_sorted_magnitudes(np.concatenate([np.ravel(c.w_input), np.ravel(c.w_recurrent)]))
             for c in (actual, expected)]
    if _close(*whole):
        return 0.0
    sources = _blocks(expected, gates)
    blocks = _blocks(actual, gates)
    return sum(not any(_close(b, s) for s in sources) for b in blocks) / len(blocks)


def match_cells(
    expected: LSTMWeights, actual: LSTMWeights, gates: int = 4
) -> tuple[dict[tuple[int, int], tuple[int, int]], list[Finding]]:
    """Which source cell each converted cell holds (directions or layers swapped)."""
    keys = [(layer, direction) for layer, direction, _ in actual.iter_cells()]
    mapping = {key: key for key in keys}
    for key in keys:
        mine = actual.cell(*key)
        distance = {k: cell_distance(mine, expected.cell(*k), gates) for k in keys
                    if _same_shapes(mine, expected.cell(*k))}
        other = min(distance, key=distance.__getitem__)
        if distance[key] > 0 and distance[other] < min(0.5, distance[key] / 2):
            mapping[key] = other
    if sorted(mapping.values()) != keys:
        return {key: key for key in keys}, []  # not a rearrangement: compare cell by cell
    return mapping, _swaps(mapping, expected)


def _same_shapes(a: CellWeights, b: CellWeights) -> bool:
    return all(x.shape == y.shape for x, y in zip(a.arrays().values(), b.arrays().values(),
                                                   strict=True))


def _swaps(mapping: dict[tuple[int, int], tuple[int, int]], weights: LSTMWeights) -> list[Finding]:
    texts, done = [], set()
    for key, source in mapping.items():
        if key == source or key in done:
            continue
        done |= {key, source}
        if mapping.get(source) == key and key[0] == source[0]:
            layer = f" in layer {key[0]}" if weights.spec.layers > 1 else ""
            texts.append(f"forward and backward directions swapped{layer}")
        elif mapping.get(source) == key and key[1] == source[1]:
            side = cell_name(weights, 0, key[1]).removeprefix("layer 0").strip()
            low, high = sorted((source[0], key[0]))
            texts.append(f"layers {low} and {high} swapped"
                         + (f" ({side} direction)" if side else ""))
        else:
            done -= {source}
            texts.append(f"{cell_name(weights, *key)} holds the source's "
                         f"{cell_name(weights, *source)}")
    if weights.spec.layers > 1 and len(texts) == weights.spec.layers and all(
            t.startswith("forward and backward") for t in texts):
        texts = ["forward and backward directions swapped in every layer"]
    return [Finding(NETWORK, text) for text in texts]
