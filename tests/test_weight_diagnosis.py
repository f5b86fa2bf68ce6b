"""Weight-space diagnosis: every mistake named, compound ones too; correct conversions never.

Pure numpy and fast. Hypothesis composes up to four mistakes from the
catalogue below on random weights and checks that the explanation names each
of them and leaves no residual; correct round trips through every format get
no diagnosis at all. The output-only localization is checked on the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence import formats
from equivalence.canonical import GATES, CellWeights, LSTMWeights, expected_shapes
from equivalence.case import Case
from equivalence.compare import Tolerance
from equivalence.convert import from_canonical, to_canonical
from equivalence.diagnosis.explain import Converted, diagnose
from equivalence.diagnosis.from_outputs import localize
from equivalence.diagnosis.from_weights import Finding, explain
from equivalence.errors import UnsupportedFeatureError
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.reference import lstm
from equivalence.spec import LSTMSpec
from tests.helpers import read_options

pytestmark = pytest.mark.cpu
MANY = max(60, settings.default.max_examples)


def weights_for(spec: LSTMSpec, seed: int) -> LSTMWeights:
    """Random weights with magnitudes in [0.05, 0.5], so every mistake moves something."""
    rng = np.random.default_rng(seed)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(0.05, 0.5, shape) * rng.choice([-1.0, 1.0], shape)

    cells = tuple(
        tuple(CellWeights(**{n: draw(s) for n, s in expected_shapes(spec, layer).items()})
              for _ in range(spec.directions))
        for layer in range(spec.layers))
    return LSTMWeights(spec.replace(dtype="float64"), cells).astype(spec.dtype)


def bfloat16(values: np.ndarray) -> np.ndarray:
    """Round to nearest even bfloat16, in numpy (the top 16 bits of a float32)."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def on_cells(weights: LSTMWeights, fn: Callable[[CellWeights], CellWeights]) -> LSTMWeights:
    return weights.map_cells(lambda _layer, _direction, cell: fn(cell))


def permute(array: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    blocks = np.split(array, len(order))
    return np.concatenate([blocks[k] for k in order])


# --- the mistakes: each changes weights in the converted frame and says what must be named


KNOWN_ORDERS = {(0, 2, 1, 3): "TF1's i, j, f, o order", (0, 3, 1, 2): "ONNX's i, o, f, c order",
                (0, 2, 3, 1): "ONNX's i, o, f, c order", (2, 1, 0, 3): "NeoML's g, f, i, o order"}
Expected = tuple[str, str | None]  # (how a finding's text starts, its array; None: any)


@dataclass
class Story:
    """Weights being broken, the gate order so far, and the findings a diagnosis owes."""

    weights: LSTMWeights
    order: tuple[int, ...] = (0, 1, 2, 3)
    owed: tuple[Expected, ...] = ()
    allowed: tuple[Expected, ...] = ()  # findings that may appear (unobservable either way)
    rounding: str | None = None
    bias_gone: bool = False  # a bias of zeros has no gate order to see

    def said(self, text: str, *arrays: str | None) -> None:
        self.owed += tuple((text, a) for a in arrays or ("",))

    def unmet(self, findings: tuple[Finding, ...]) -> list[str]:
        """Owed findings not given, and given findings nobody owed."""
        def match(finding: Finding, expected: Expected) -> bool:
            text, array = expected
            return finding.text.startswith(text) and array in (None, finding.array)

        missing = [f"missing {e}" for e in self.owed if not any(match(f, e) for f in findings)]
        extra = [f"extra {f}" for f in findings
                 if not any(match(f, e) for e in self.owed + self.allowed)]
        return missing + extra


def swap_directions(story: Story, draw: st.DrawFn) -> None:
    story.weights = LSTMWeights(story.weights.spec,
                                tuple(cells[::-1] for cells in story.weights.cells))
    layers = story.weights.spec.layers
    story.said("forward and backward directions swapped" + (" in every layer" if layers > 1
                                                            else ""), "")


def swap_kernels(story: Story, draw: st.DrawFn) -> None:
    story.weights = on_cells(story.weights, lambda c: replace(c, w_input=c.w_recurrent,
                                                              w_recurrent=c.w_input))
    story.said("input and recurrent kernels swapped")


def rotate_kernels(story: Story, draw: st.DrawFn) -> None:
    def rotate(cell: CellWeights) -> CellWeights:
        both = np.concatenate([cell.w_recurrent, cell.w_input], axis=1)
        width = cell.w_input.shape[1]
        return replace(cell, w_input=both[:, :width], w_recurrent=both[:, width:])

    story.weights = on_cells(story.weights, rotate)
    story.said("kernel and recurrent kernel concatenated in the wrong order")


def reshape_kernels(story: Story, draw: st.DrawFn) -> None:
    per_gate = story.weights.spec.units > 1 and draw(st.booleans())

    def reshaped(matrix: np.ndarray) -> np.ndarray:
        if not per_gate:
            return np.ascontiguousarray(matrix).reshape(matrix.shape[::-1]).T
        return np.concatenate([np.ascontiguousarray(b.T).reshape(b.shape)
                               for b in np.split(matrix, 4)])

    story.weights = on_cells(story.weights, lambda c: replace(
        c, w_input=reshaped(c.w_input), w_recurrent=reshaped(c.w_recurrent)))
    story.said(("gate blocks " if per_gate else "") + "reshaped instead of transposed", "kernel",
               "recurrent kernel")


def reorder_gates(story: Story, draw: st.DrawFn) -> None:
    order = draw(st.permutations(range(4)).map(tuple).filter(lambda o: o != (0, 1, 2, 3)))
    fields = ("w_input", "w_recurrent", "b_input", "b_recurrent")
    story.weights = on_cells(story.weights, lambda c: replace(
        c, **{f: permute(getattr(c, f), order) for f in fields}))
    story.order = order
    moved = [GATES[k] for k, source in enumerate(order) if source != k]
    text = (f"{moved[0]} and {moved[1]} blocks swapped" if len(moved) == 2
            else f"gate blocks permuted to {', '.join(GATES[k] for k in order)}")
    if order in KNOWN_ORDERS and len(moved) > 2:
        text += f" ({KNOWN_ORDERS[order]} not converted)"
    story.said(text, "kernel", "recurrent kernel")
    story.allowed += ((text, "bias"),)
    story.owed += ((text, "bias"),) if not story.bias_gone else ()


def break_biases(story: Story, draw: st.DrawFn) -> None:
    text, share_in, share_rec = draw(st.sampled_from([
        ("bias dropped", 0.0, 0.0),
        ("recurrent bias dropped (only the input bias kept)", 1.0, 0.0),
        ("input bias dropped (only the recurrent bias kept)", 0.0, 1.0),
        ("bias halved", 0.5, 0.5),
        ("bias counted twice", 2.0, 2.0)]))
    story.weights = on_cells(story.weights, lambda c: replace(
        c, b_input=(share_in * c.b_input + share_rec * c.b_recurrent).astype(c.b_input.dtype),
        b_recurrent=np.zeros_like(c.b_recurrent)))
    if share_in == share_rec == 0.0:  # zeros show no gate order: the bias's may be left unsaid
        story.bias_gone = True
        story.owed = tuple(e for e in story.owed if e[1] != "bias")
    story.said(text)


def offset_bias(story: Story, draw: st.DrawFn) -> None:
    """forget_bias trouble: folded into another block, twice, or not at all."""
    value = draw(st.sampled_from([1.0, 0.5, 2.0]))
    gate = draw(st.sampled_from(["i", "g", "o", "f+", "f-"]))
    offsets = ({"f": value} if gate == "f+" else {"f": -value} if gate == "f-"
               else {gate: value, "f": -value})
    position = {GATES[source]: k for k, source in enumerate(story.order)}

    def shift(cell: CellWeights) -> CellWeights:
        bias = np.array(cell.b_input, copy=True)
        units = len(bias) // 4
        for name, amount in offsets.items():
            bias[position[name] * units:(position[name] + 1) * units] += amount
        return replace(cell, b_input=bias)

    story.weights = on_cells(story.weights, shift)
    if gate in "igo":
        story.said(f"+{value:.1f} added to the {gate} block of the bias instead of the f block")
    else:
        story.said(f"{offsets['f']:+.1f} added to the f block of the bias")


def scale_block(story: Story, draw: st.DrawFn) -> None:
    k = draw(st.integers(0, 3))
    factor = draw(st.sampled_from([2.0, 0.5, -1.0, 0.0]))

    def scaled(cell: CellWeights) -> CellWeights:
        matrix = np.array(cell.w_recurrent, copy=True)
        rows = len(matrix) // 4
        matrix[k * rows:(k + 1) * rows] *= factor
        return replace(cell, w_recurrent=matrix)

    story.weights = on_cells(story.weights, scaled)
    what = {2.0: "scaled by 2.0", 0.5: "scaled by 0.5", -1.0: "negated", 0.0: "zeroed"}[factor]
    story.said(f"{GATES[story.order[k]]} block {what}", "recurrent kernel")


def nudge_one_weight(story: Story, draw: st.DrawFn) -> None:
    spec = story.weights.spec
    layer = draw(st.integers(0, spec.layers - 1))
    direction = draw(st.integers(0, spec.directions - 1))
    rows, cols = story.weights.cell(layer, direction).w_input.shape
    row, col = draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))
    size = 0.05 if story.rounding else 1e-3

    def nudge(lay: int, d: int, cell: CellWeights) -> CellWeights:
        if (lay, d) != (layer, direction):
            return cell
        matrix = np.array(cell.w_input, copy=True)
        matrix[row, col] += matrix.dtype.type(size)
        return replace(cell, w_input=matrix)

    story.weights = story.weights.map_cells(nudge)
    units = rows // 4
    story.said(f"kernel[{GATES[row // units]}, unit {row % units}, input {col}] off by +")


def round_weights(story: Story, draw: st.DrawFn) -> None:
    dtype = story.rounding
    cast = (lambda a: a.astype(np.float16).astype(np.float32)) if dtype == "float16" else bfloat16
    story.weights = on_cells(story.weights, lambda c: CellWeights(
        **{n: cast(a) for n, a in c.arrays().items()}))
    story.said(f"rounded through {dtype}", None)


def swap_peepholes(story: Story, draw: st.DrawFn) -> None:
    story.weights = on_cells(story.weights, lambda c: replace(c, peephole=c.peephole[[0, 2, 1]]))
    story.said("f and o blocks swapped", "peepholes")


def reshape_projection(story: Story, draw: st.DrawFn) -> None:
    story.weights = on_cells(story.weights, lambda c: replace(
        c, projection=np.ascontiguousarray(c.projection).reshape(c.projection.shape[::-1]).T))
    story.said("reshaped instead of transposed", "projection")


Mistake = Callable[[Story, st.DrawFn], None]


def _mistakes(spec: LSTMSpec) -> list[tuple[str, Mistake]]:
    """(group, mistake) that ``spec`` can show; one per group, in the order they apply."""
    found: list[tuple[str, Mistake]] = []
    single = spec.layers == 1
    widths = (spec.input_size, spec.output_size)
    if spec.directions == 2:
        found.append(("cells", swap_directions))
    if single and spec.directions == 1:
        found.append(("kernels", swap_kernels if widths[0] == widths[1] else rotate_kernels))
    if spec.input_size > 1 and spec.output_size > 1:
        found.append(("layout", reshape_kernels))
    found += [("order", reorder_gates), ("biases", break_biases), ("offset", offset_bias),
              ("scale", scale_block), ("element", nudge_one_weight)]
    if spec.peepholes:
        found.append(("peepholes", swap_peepholes))
    if spec.projection_size and spec.projection_size > 1 and spec.units > 1:
        found.append(("projection", reshape_projection))
    return found


CLASHES = ({"layout", "scale"}, {"cells", "layout"}, {"kernels", "layout"})


@st.composite
def broken(draw: st.DrawFn, max_mistakes: int = 4) -> tuple[LSTMWeights, Story]:
    """Source weights and a story of up to ``max_mistakes`` mistakes made converting them."""
    spec = LSTMSpec(
        input_size=draw(st.sampled_from([1, 2, 3, 5])),
        units=draw(st.sampled_from([1, 2, 3, 4])),
        layers=draw(st.integers(1, 2)),
        directions=draw(st.integers(1, 2)),
        projection_size=draw(st.sampled_from([None, None, 1, 2, 3])),
        peepholes=draw(st.booleans()),
        dtype="float32",
    )
    source = weights_for(spec, draw(st.integers(0, 2**32 - 1)))
    available = _mistakes(spec)
    chosen = draw(st.lists(st.sampled_from(range(len(available))), min_size=1,
                           max_size=max_mistakes, unique=True))
    groups: set[str] = set()
    story = Story(source, rounding=draw(st.sampled_from([None, None, "float16", "bfloat16"])))
    for index in sorted(chosen):
        group, mistake = available[index]
        if any(clash <= groups | {group} for clash in CLASHES):
            continue
        groups.add(group)
        mistake(story, draw)
    if story.rounding:
        round_weights(story, draw)
    return source, story


@given(broken())
@settings(max_examples=MANY)
def test_compound_mistakes_are_named_completely(example: tuple[LSTMWeights, Story]) -> None:
    source, story = example
    diagnosis = explain(source, story.weights)
    assert not diagnosis.residual, diagnosis.message()
    unmet = story.unmet(diagnosis.findings)
    assert not unmet, f"{unmet} in {diagnosis.message()!r}"


def test_the_issues_example_is_named_in_its_words() -> None:
    """TF1 -> Keras without reordering i, j, f, o, yet with forget_bias added at Keras's f."""
    source = weights_for(LSTMSpec(3, 4), 1)
    unfolded = on_cells(source, lambda c: replace(c, b_input=c.b_input - np.repeat(
        np.float32([0, 1, 0, 0]), 4)))
    swap = (0, 2, 1, 3)
    converted = on_cells(unfolded, lambda c: replace(
        c, w_input=permute(c.w_input, swap), w_recurrent=permute(c.w_recurrent, swap),
        b_input=permute(c.b_input, swap) + np.repeat(np.float32([0, 1, 0, 0]), 4),
        b_recurrent=permute(c.b_recurrent, swap)))
    folded = on_cells(source, lambda c: replace(c, b_input=c.b_input))
    assert explain(folded, converted).message() == (
        "f and g blocks swapped in kernel, recurrent kernel and bias; +1.0 added to the g block "
        "of the bias instead of the f block (forget_bias folded into the wrong block)")


def test_one_weight_off_by_1e3_is_named_by_index_and_size() -> None:
    source = weights_for(LSTMSpec(3, 4, layers=2), 2)

    def nudge(layer: int, _direction: int, cell: CellWeights) -> CellWeights:
        w = np.array(cell.w_recurrent, copy=True)
        w[9, 2] += np.float32(1e-3) if layer == 1 else 0
        return replace(cell, w_recurrent=w)

    message = explain(source, source.map_cells(nudge)).message()
    assert message == "recurrent kernel[g, unit 1, h 2] off by +0.001 (layer 1)"


def test_what_no_mistake_explains_is_the_residual_with_its_place() -> None:
    source = weights_for(LSTMSpec(2, 3), 3)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 3)).astype(np.float32)

    def spoil(cell: CellWeights) -> CellWeights:
        w = np.array(cell.w_recurrent, copy=True)
        w[6:9] = noise  # the g block replaced by numbers from nowhere
        return replace(cell, w_input=permute(cell.w_input, (0, 2, 1, 3)), w_recurrent=w)

    diagnosis = explain(source, on_cells(source, spoil))
    assert [f.text for f in diagnosis.explained] == ["f and g blocks swapped"]
    (residual,) = diagnosis.residual
    assert residual.text.startswith("unexplained: 9 of 36 elements of the recurrent kernel "
                                    "(g blocks) differ")


def test_unrelated_weights_are_all_residual_not_a_made_up_story() -> None:
    source, other = weights_for(LSTMSpec(3, 4), 4), weights_for(LSTMSpec(3, 4), 5)
    diagnosis = explain(source, other)
    assert diagnosis and not diagnosis.explained
    assert {f.array for f in diagnosis.residual} == {""}
    assert all(f.text.startswith("unexplained") for f in diagnosis.residual)


def test_shape_and_behaviour_differences_are_named() -> None:
    source = weights_for(LSTMSpec(3, 4), 6)
    other = weights_for(LSTMSpec(3, 5), 6)
    assert explain(source, other).message() == "the converted network has units=5, the source " \
                                               "units=4"
    hard = LSTMWeights(source.spec.replace(recurrent_activation="hard_sigmoid_keras3"),
                       source.cells)
    assert explain(source, hard).message() == ("recurrent activation hard_sigmoid_keras3 where "
                                               "sigmoid was meant")


# --- correct conversions: no diagnosis, ever


@st.composite
def round_trips(draw: st.DrawFn) -> tuple[LSTMWeights, LSTMWeights, str]:
    name = draw(st.sampled_from(sorted(formats.FORMATS)))
    caps = formats.get(name).capabilities()
    spec = LSTMSpec(
        input_size=draw(st.sampled_from([1, 2, 3, 5])),
        units=draw(st.sampled_from([1, 2, 4, 6])),
        layers=draw(st.integers(1, 2)),
        directions=draw(st.integers(1, 2 if "bidirectional" in caps else 1)),
        projection_size=draw(st.sampled_from([None, 2])) if "projection" in caps else None,
        peepholes="peepholes" in caps and draw(st.booleans()),
        dtype=draw(st.sampled_from(["float16", "float32", "float64"])),
    )
    source = weights_for(spec, draw(st.integers(0, 2**32 - 1)))
    try:
        native = from_canonical(source, name)
    except UnsupportedFeatureError:
        return source, source, name  # the format refuses it by name: nothing to diagnose
    return source, to_canonical(native, name, **read_options(name, spec)), name


@given(round_trips())
@settings(max_examples=MANY)
def test_correct_round_trips_are_never_diagnosed(
    trip: tuple[LSTMWeights, LSTMWeights, str],
) -> None:
    source, back, name = trip
    assert not explain(source, back), f"{name}: {explain(source, back).message()}"


@given(st.sampled_from(["float32", "float16"]), st.integers(0, 2**32 - 1))
@settings(max_examples=MANY)
def test_biases_split_differently_are_not_a_mistake(dtype: str, seed: int) -> None:
    source = weights_for(LSTMSpec(3, 4, directions=2), seed).astype(dtype)
    merged = on_cells(source, lambda c: replace(
        c, b_input=(c.b_input + c.b_recurrent).astype(c.b_input.dtype),
        b_recurrent=np.zeros_like(c.b_recurrent)))
    assert not explain(source, merged)


# --- outputs only: localization


def _case(spec: LSTMSpec, seed: int, steps: int = 6) -> Case:
    """float64 weights and inputs with initial states (so every gate acts from step 0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, steps, spec.input_size))
    shape = (spec.layers, spec.directions, 2)
    h0 = rng.uniform(-1, 1, (*shape, spec.output_size))
    c0 = rng.uniform(-1, 1, (*shape, spec.units))
    return Case(spec, weights_for(spec, seed).astype("float64"), LSTMInputs(x, h0, c0))


def _result(weights: LSTMWeights, case: Case) -> LSTMResult:
    inputs = case.inputs
    return lstm(weights, inputs.x, h0=inputs.h0, c0=inputs.c0)


def _tolerance(case: Case) -> Tolerance:
    return Tolerance.for_case(case.spec.dtype, case.inputs.steps)


@pytest.mark.parametrize("gate", range(4))
def test_a_shifted_gate_bias_is_located_by_gate_and_cell(gate: int) -> None:
    case = _case(LSTMSpec(3, 4, layers=2, directions=2, dtype="float64"), gate)

    def shift(layer: int, direction: int, cell: CellWeights) -> CellWeights:
        if (layer, direction) != (1, 1):
            return cell
        bias = np.array(cell.b_input, copy=True)
        bias[gate * 4:(gate + 1) * 4] += 0.3
        return replace(cell, b_input=bias)

    text = localize(case, _result(case.weights.map_cells(shift), case), _tolerance(case))
    assert f"shifting the {GATES[gate]} gate's bias by +0.3 in layer 1 backward" in text
    assert "in layer 1 backward (layers below 1 match)" in text
    assert "backward outputs diverge first at time step 5" in text  # its first processed step


def test_h_versus_c_and_the_first_step_are_located() -> None:
    case = _case(LSTMSpec(2, 3, dtype="float64"), 7)
    correct = _result(case.weights, case)
    late = np.array(correct.outputs, copy=True)
    late[:, 3:] *= 1.1
    text = localize(case, LSTMResult(late, correct.h * 1.1, correct.c), _tolerance(case))
    assert text.startswith("the outputs diverge first at time step 3")
    assert "final h off while c matches" in text


def test_a_black_box_single_weight_is_found() -> None:
    case = _case(LSTMSpec(3, 4, dtype="float64"), 8)

    def nudge(cell: CellWeights) -> CellWeights:
        w = np.array(cell.w_input, copy=True)
        w[13, 1] += 0.05  # o gate, unit 1, input 1
        return replace(cell, w_input=w)

    named = diagnose(case, _result(on_cells(case.weights, nudge), case))
    assert named is not None
    assert "changing the single weight kernel[o, unit 1, input 1] by +0.05" in named


def test_read_back_weights_are_preferred_and_runtime_bugs_added() -> None:
    case = _case(LSTMSpec(3, 4, dtype="float64"), 9)
    swap = (0, 3, 2, 1)
    wrong = on_cells(case.weights, lambda c: replace(
        c, w_input=permute(c.w_input, swap), w_recurrent=permute(c.w_recurrent, swap),
        b_input=permute(c.b_input, swap), b_recurrent=permute(c.b_recurrent, swap)))
    result = _result(wrong, case)
    converted = Converted(from_canonical(wrong, "torch"), "torch")
    assert diagnose(case, result, converted) == ("f and o blocks swapped in kernel, recurrent "
                                                 "kernel and bias")
    flipped = LSTMResult(result.outputs, result.c, result.h)
    assert diagnose(case, flipped, converted).endswith(
        "besides, the target's outputs differ from what these weights compute: h and c swapped")
    right = Converted(from_canonical(case.weights, "torch"), "torch")
    correct = _result(case.weights, case)
    assert diagnose(case, LSTMResult(correct.outputs, correct.c, correct.h), right) == (
        "converted weights agree with the source's; h and c swapped")
    assert diagnose(case, None, right) is None


def test_unreadable_converted_weights_say_why() -> None:
    case = _case(LSTMSpec(3, 4, dtype="float64"), 10)
    text = diagnose(case, None, Converted([np.zeros((4, 16))], "keras"))
    assert text is not None and text.startswith("the converted weights cannot be read back as "
                                                "keras: ")


@pytest.mark.parametrize("name", sorted(formats.FORMATS))
def test_tiny_biases_through_forget_bias_round_trips_are_not_a_mistake(name: str) -> None:
    """TF1 writes b - 1.0 and reads it back + 1.0: float32 rounds that at the scale of 1.0."""
    source = on_cells(weights_for(LSTMSpec(3, 4), 11), lambda c: replace(
        c, b_input=c.b_input * np.float32(1e-3), b_recurrent=c.b_recurrent * np.float32(1e-3)))
    back = to_canonical(from_canonical(source, name), name, **read_options(name, source.spec))
    assert not explain(source, back), explain(source, back).message()
