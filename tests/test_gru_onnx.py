"""The ONNX ``GRU`` operator through the harness: its initializers read and written, its
graphs run by onnxruntime and the deployment runtimes, held to two independent oracles.

The oracles: :func:`onnx_gru`, written here from the operator's documented equations
(``onnx.defs.get_schema("GRU").doc``: gates z r h in rows, B = [Wb, Rb],
``linear_before_reset`` choosing where r meets the candidate), and onnx's own
``onnx.reference.ReferenceEvaluator`` on the graph we build. Neither uses the converter;
both are compared with :mod:`equivalence.reference` on the converted weights.
"""

from __future__ import annotations

import numpy as np
import pytest

import equivalence as eq
from equivalence import reference
from equivalence.case import Case
from equivalence.compare import Tolerance, compare
from equivalence.errors import ShapeError, UnexpectedKeyError
from equivalence.io_types import LSTMInputs, LSTMResult

pytestmark = pytest.mark.cpu

IN, H, B, T = 3, 4, 2, 5
CELL_ACTIVATIONS = {"Tanh": np.tanh, "Relu": lambda z: np.maximum(z, 0.0),
                    "Sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z))}


def onnx_gru(node: dict, x: np.ndarray, h0: np.ndarray, *, linear_before_reset: int,
             direction: str = "forward", clip: float | None = None, g: str = "Tanh"):
    """ONNX GRU, layout 0, float64: x (T, B, I), h0 (D, B, H) -> Y (T, D, B, H), Y_h (D, B, H).

    Written from the operator's equations (f = Sigmoid, g = ``g``), rows z r h."""
    w, r, bias = (np.asarray(node[k], np.float64) for k in ("W", "R", "B"))
    cut = (lambda v: v) if clip is None else (lambda v: np.clip(v, -clip, clip))
    f, act = CELL_ACTIVATIONS["Sigmoid"], CELL_ACTIVATIONS[g]
    backward = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    ys, finals = [], []
    for d, reverse in enumerate(backward):
        wz, wr, wh = np.split(w[d], 3)
        rz, rr, rh = np.split(r[d], 3)
        wbz, wbr, wbh, rbz, rbr, rbh = np.split(bias[d], 6)
        h, y = h0[d].astype(np.float64), np.zeros((len(x), *h0[d].shape))
        for t in (reversed(range(len(x))) if reverse else range(len(x))):
            xt = x[t]
            z = f(cut(xt @ wz.T + h @ rz.T + wbz + rbz))
            rt = f(cut(xt @ wr.T + h @ rr.T + wbr + rbr))
            if linear_before_reset:
                candidate = xt @ wh.T + rt * (h @ rh.T + rbh) + wbh
            else:
                candidate = xt @ wh.T + (rt * h) @ rh.T + rbh + wbh
            h = (1 - z) * act(cut(candidate)) + z * h
            y[t] = h
        ys.append(y)
        finals.append(h)
    return np.stack(ys, axis=1), np.stack(finals)


def as_contract(y: np.ndarray, y_h: np.ndarray) -> LSTMResult:
    """ONNX Y (T, D, B, H), Y_h (D, B, H) -> the contract's (B, T, D*H) and h (1, D, B, H)."""
    steps, directions, batch, units = y.shape
    outputs = y.transpose(2, 0, 1, 3).reshape(batch, steps, directions * units)
    return LSTMResult(outputs, y_h[None], None)


def random_node(rng: np.random.Generator, directions: int = 1, units: int = H,
                inputs: int = IN) -> dict:
    """ONNX GRU initializers drawn directly in the operator's layout (no converter)."""
    shapes = {"W": (directions, 3 * units, inputs), "R": (directions, 3 * units, units),
              "B": (directions, 6 * units)}
    return {k: rng.normal(size=s) for k, s in shapes.items()}


def run_reference(weights, x_tbi: np.ndarray, h0: np.ndarray) -> LSTMResult:
    return reference.run(weights, np.swapaxes(x_tbi, 0, 1), h0=h0[None])


def assert_matches(expected: LSTMResult, actual: LSTMResult, dtype: str = "float64") -> None:
    __tracebackhide__ = True
    comparison = compare(expected, actual, Tolerance.for_case(dtype, T))
    assert comparison.ok, comparison.describe()


def assert_differs(expected: LSTMResult, actual: LSTMResult) -> None:
    __tracebackhide__ = True
    comparison = compare(expected, actual, Tolerance.for_case("float64", T))
    assert not comparison.ok and comparison.max_abs_diff > 1e-3, comparison.describe()


def draw(directions: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (random_node(rng, directions), rng.normal(size=(T, B, IN)),
            rng.normal(size=(directions, B, H)))


# ----------------------------------------------------------------------------- the format

CASES = [  # (direction, clip, g): each under both linear_before_reset values
    ("forward", None, "Tanh"), ("reverse", None, "Tanh"), ("bidirectional", None, "Tanh"),
    ("forward", 0.5, "Tanh"), ("bidirectional", None, "Relu"), ("reverse", 0.7, "Sigmoid"),
]


@pytest.mark.parametrize("linear_before_reset", [1, 0])
@pytest.mark.parametrize("direction, clip, g", CASES)
def test_onnx_gru_initializers_read_as_the_operator_says(
        linear_before_reset: int, direction: str, clip: float | None, g: str) -> None:
    """Native ONNX weights -> canonical, run by the reference = the ONNX equations by hand."""
    node, x, h0 = draw(2 if direction == "bidirectional" else 1)
    expected = as_contract(*onnx_gru(node, x, h0, linear_before_reset=linear_before_reset,
                                     direction=direction, clip=clip, g=g))
    weights = eq.to_canonical(node, "onnx", cell="gru", reset_after=bool(linear_before_reset),
                              reverse=direction == "reverse", clip=clip, activation=g.lower())
    assert weights.spec.cell == "gru" and weights.spec.reset_after == bool(linear_before_reset)
    assert_matches(expected, run_reference(weights, x, h0))


@pytest.mark.parametrize("reset_after", [True, False])
def test_canonical_gru_written_as_onnx_runs_the_same_by_the_operators_equations(
        reset_after: bool) -> None:
    spec = eq.LSTMSpec(IN, H, layers=1, directions=2, cell="gru", reset_after=reset_after)
    weights = eq.random_weights(spec, np.random.default_rng(1)).astype("float64")
    node = eq.from_canonical(weights, "onnx")
    assert {k: v.shape for k, v in node.items()} == {
        "W": (2, 3 * H, IN), "R": (2, 3 * H, H), "B": (2, 6 * H)}
    _, x, h0 = draw(2, seed=2)
    by_hand = onnx_gru(node, x, h0, linear_before_reset=int(reset_after),
                       direction="bidirectional")
    assert_matches(as_contract(*by_hand), run_reference(weights, x, h0))


def _swap_z_and_r(node: dict) -> dict:
    def swap(rows: np.ndarray) -> np.ndarray:
        z, r, h = np.split(rows, 3, axis=1)
        return np.concatenate([r, z, h], axis=1)

    wb, rb = np.split(node["B"], 2, axis=1)
    return {"W": swap(node["W"]), "R": swap(node["R"]),
            "B": np.concatenate([swap(wb), swap(rb)], axis=1)}


def test_must_fail_z_and_r_swapped_is_caught() -> None:
    """A reader that took ONNX rows as r z n (no reorder) computes another function."""
    node, x, h0 = draw()
    expected = as_contract(*onnx_gru(node, x, h0, linear_before_reset=1))
    right = eq.to_canonical(node, "onnx", cell="gru")
    assert_matches(expected, run_reference(right, x, h0))
    swapped = eq.to_canonical(_swap_z_and_r(node), "onnx", cell="gru")
    assert_differs(expected, run_reference(swapped, x, h0))


@pytest.mark.parametrize("linear_before_reset", [1, 0])
def test_must_fail_linear_before_reset_flipped_is_caught(linear_before_reset: int) -> None:
    node, x, h0 = draw()
    expected = as_contract(*onnx_gru(node, x, h0, linear_before_reset=linear_before_reset))
    flipped = eq.to_canonical(node, "onnx", cell="gru", reset_after=not linear_before_reset)
    assert_differs(expected, run_reference(flipped, x, h0))


def test_a_stacked_gru_reads_every_layer() -> None:
    rng = np.random.default_rng(3)
    nodes = [random_node(rng, 2), random_node(rng, 2, inputs=2 * H)]
    weights = eq.to_canonical(nodes, "onnx", cell="gru", reset_after=False)
    assert (weights.spec.layers, weights.spec.directions, weights.spec.units) == (2, 2, H)
    again = eq.from_canonical(weights, "onnx")
    for written, given in zip(again, nodes, strict=True):
        for key in given:
            np.testing.assert_array_equal(written[key], given[key], err_msg=key)


@pytest.mark.parametrize("key, shape, message", [
    ("W", (1, 10, IN), r"layer 0 W.*3\*H along axis 1"),
    ("R", (1, 3 * H, H + 1), r"layer 0 R.*\(1, 12, 5\).*\(1, 12, 4\)"),
    ("B", (1, 8 * H), r"layer 0 B.*\(1, 32\).*\(1, 24\)"),
    ("R", (1, 3 * H + 3, H), r"layer 0 R.*\(1, 15, 4\).*\(1, 12, 4\)"),
])
def test_reader_shape_errors_name_the_array(key: str, shape: tuple, message: str) -> None:
    node, _, _ = draw()
    node[key] = np.zeros(shape)
    with pytest.raises(ShapeError, match=message):
        eq.to_canonical(node, "onnx", cell="gru")


def test_reader_names_the_layer_and_refuses_a_peephole_input() -> None:
    rng = np.random.default_rng(4)
    nodes = [random_node(rng), random_node(rng, inputs=H)]
    nodes[1]["R"] = np.zeros((1, 4 * H, H))
    with pytest.raises(ShapeError, match=r"layer 1 R.*\(1, 16, 4\).*\(1, 12, 4\)"):
        eq.to_canonical(nodes, "onnx", cell="gru")
    with pytest.raises(UnexpectedKeyError, match=r"layer 0.*'P'"):
        eq.to_canonical({**random_node(rng), "P": np.zeros((1, 3 * H))}, "onnx", cell="gru")


def test_an_lstm_node_still_reads_as_an_lstm() -> None:
    """The default cell is unchanged: 4H rows are an LSTM; a GRU node read as an LSTM is
    refused (its 12 rows are 4 gates of 3, so R's width 4 is off)."""
    rng = np.random.default_rng(5)
    lstm = {"W": rng.normal(size=(1, 4 * H, IN)), "R": rng.normal(size=(1, 4 * H, H)),
            "B": rng.normal(size=(1, 8 * H))}
    assert eq.to_canonical(lstm, "onnx").spec.cell == "lstm"
    with pytest.raises(ShapeError, match=r"layer 0 R.*\(1, 12, 4\).*\(1, 12, 3\)"):
        eq.to_canonical(random_node(rng), "onnx")


# ----------------------------------------------------------------------------- the graph


def _graph_case(spec: eq.LSTMSpec, seed: int) -> Case:
    rng = np.random.default_rng(seed)
    weights = eq.random_weights(spec, rng)
    x = rng.normal(size=(B, T, spec.input_size)).astype(spec.dtype)
    h0 = rng.normal(size=(spec.layers, spec.directions, B, spec.units)).astype(spec.dtype)
    return Case(spec, weights, LSTMInputs(x, h0))


GRAPH_SPECS = [
    {"directions": 1}, {"directions": 1, "reverse": True}, {"directions": 2},
    {"directions": 2, "layers": 2},
]


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("shape", GRAPH_SPECS, ids=lambda s: "-".join(f"{k}{v}" for k, v in
                                                                         s.items()))
def test_onnx_reference_evaluator_on_our_graph_equals_our_reference(shape: dict,
                                                                    reset_after: bool) -> None:
    """A second oracle: onnx's own GRU (onnx.reference) runs the graph the runtimes run.

    onnx.reference ignores clip, activations and sequence_lens, so only plain graphs."""
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    from equivalence.runtimes import _onnx_family as family

    spec = eq.LSTMSpec(IN, H, cell="gru", reset_after=reset_after, dtype="float64", **shape)
    case = _graph_case(spec, seed=6)
    model = family.probe_model(spec, has_state=True, has_lengths=False)
    ops = {node.op_type for node in __import__("onnx").load_from_string(model).graph.node}
    assert "GRU" in ops and "LSTM" not in ops
    native = eq.from_canonical(case.weights, "onnx")
    fed = family.feeds(spec, native, case.inputs, has_state=True)
    assert not any(name.startswith("initial_c") for name in fed)
    outputs = ReferenceEvaluator(model).run(None, fed)
    actual = family.result(spec, outputs, case.inputs)
    assert actual.c is None
    expected = reference.run(case.weights, case.inputs.x, h0=case.inputs.h0)
    assert_matches(expected, actual)


def test_must_fail_the_evaluator_catches_a_flipped_linear_before_reset() -> None:
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    from equivalence.runtimes import _onnx_family as family

    spec = eq.LSTMSpec(IN, H, cell="gru", reset_after=True, dtype="float64")
    case = _graph_case(spec, seed=7)
    flipped = spec.replace(reset_after=False)  # the graph says linear_before_reset=0
    model = family.probe_model(flipped, has_state=True, has_lengths=False)
    fed = family.feeds(spec, eq.from_canonical(case.weights, "onnx"), case.inputs,
                       has_state=True)
    actual = family.result(spec, ReferenceEvaluator(model).run(None, fed), case.inputs)
    assert_differs(reference.run(case.weights, case.inputs.x, h0=case.inputs.h0), actual)


# ----------------------------------------------------------------------------- the runtimes

ONNX_ROWS = ["onnxruntime", "openvino", "tract", "opencv"]


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("row", ONNX_ROWS)
def test_each_onnx_runtime_runs_both_gru_variants(row: str, reset_after: bool) -> None:
    """Framework fact: every ONNX row runs GRU nodes of both linear_before_reset values
    (a bidirectional 2-layer stack with initial states) within the normal tolerance."""
    from equivalence import table
    from equivalence.harness import judge

    entry = table.entry(row)
    reason = entry.load().unavailable_reason()
    if reason:
        pytest.skip(reason)
    assert {"lstm", "gru"} <= entry.capabilities.cells and "reset_after=False" in entry.capabilities
    spec = eq.LSTMSpec(IN, H, layers=2, directions=2, cell="gru", reset_after=reset_after)
    outcome = judge.check_against_reference(entry, _graph_case(spec, seed=8))
    assert outcome.ok, outcome.message("")
    assert outcome.actual.c is None


def test_opencv_fact_a_gru_net_without_initial_h_fails_its_second_forward() -> None:
    """Why the OpenCV runtime always feeds a GRU's initial_h: without it the second forward
    of the same net raises. When this test fails, OpenCV fixed it: drop
    ``always_state_cells`` from equivalence/runtimes/opencv.py."""
    cv2 = pytest.importorskip("cv2")
    from equivalence.runtimes import _onnx_family as family

    spec = eq.LSTMSpec(IN, H, cell="gru")
    case = _graph_case(spec, seed=9)
    inputs = LSTMInputs(case.inputs.x)
    model = family.probe_model(spec, has_state=False, has_lengths=False)
    fed = family.feeds(spec, eq.from_canonical(case.weights, "onnx"), inputs, has_state=False)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(model, dtype=np.uint8))
    outputs = [o.name for o in __import__("onnx").load_from_string(model).graph.output]

    def forward() -> list:
        for name, value in fed.items():
            net.setInput(np.ascontiguousarray(value), name)
        return list(net.forward(outputs))

    first = family.result(spec, forward(), inputs)
    assert_matches(reference.run(case.weights, inputs.x), first, "float32")
    with pytest.raises(cv2.error, match="Initial hidden state blob"):
        forward()


def test_the_opencv_runtime_runs_the_same_gru_twice_without_initial_states() -> None:
    from equivalence import table
    from equivalence.harness import judge

    entry = table.entry("opencv")
    reason = entry.load().unavailable_reason()
    if reason:
        pytest.skip(reason)
    spec = eq.LSTMSpec(IN, H, cell="gru")
    for seed in (10, 11):
        case = _graph_case(spec, seed)
        case = Case(spec, case.weights, LSTMInputs(case.inputs.x))
        assert judge.check_against_reference(entry, case).ok
