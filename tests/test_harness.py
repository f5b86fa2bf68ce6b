"""The harness itself: it must catch wrong conversions in real pairs; its tolerance must bite."""

from __future__ import annotations

import numpy as np
import pytest

import equivalence as eq
from equivalence import table
from equivalence.compare import Tolerance, judge
from equivalence.formats._common import permute_gates
from equivalence.harness import judge as harness
from equivalence.io_types import LSTMInputs
from equivalence.strategies import Case

pytestmark = pytest.mark.cpu


def typical_case(spec: eq.LSTMSpec, seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    weights = eq.random_weights(spec, rng).astype(spec.dtype)
    x = rng.normal(size=(3, 6, spec.input_size)).astype(spec.dtype)
    return Case(weights.spec, weights, LSTMInputs(x))


def test_swapped_gates_are_caught_in_a_real_pair_and_blamed_on_the_converted_side() -> None:
    def swapped(native: dict) -> dict:
        """ONNX blocks 1 and 2 (o and f) exchanged in W, R and both halves of B."""
        onnx = eq.convert(native, source="torch", target="onnx")
        halves = np.split(onnx["B"], 2, axis=1)
        return {
            "W": permute_gates(onnx["W"], (0, 2, 1, 3), axis=1),
            "R": permute_gates(onnx["R"], (0, 2, 1, 3), axis=1),
            "B": np.concatenate([permute_gates(h, (0, 2, 1, 3), axis=1) for h in halves], 1),
        }

    case = typical_case(eq.LSTMSpec(3, 4))
    outcome = harness.check_pair(table.entry("torch"), table.entry("onnxruntime"), case, swapped)
    assert not outcome.ok
    assert "off: onnxruntime (converted)" in outcome.blame
    assert "torch is" in outcome.blame
    message = outcome.message("pytest x")
    for piece in (
        "torch -> onnxruntime",
        "I=3 H=4",
        "greatest absolute difference",
        "allowed:",
        "diagnosis: f and o blocks swapped",
        "replay: pytest x",
    ):
        assert piece in message


def test_the_right_converter_passes_the_same_pair() -> None:
    case = typical_case(eq.LSTMSpec(3, 4))
    assert harness.check_pair(table.entry("torch"), table.entry("onnxruntime"), case).ok


def _torch_against_reference(case: Case, weights: eq.LSTMWeights) -> bool:
    """Run torch on ``weights`` and judge it against the reference of ``case.weights``."""
    torch_entry = table.entry("torch")
    native = eq.from_canonical(weights, "torch")
    actual = harness.run(torch_entry, case, native)
    tolerance = Tolerance.for_case(case.spec.dtype, case.inputs.steps)
    # the whole policy: the static floor, else the case's measured rounding sensitivity
    return judge(harness.reference_result(case), actual, tolerance, harness.sensitivity(case)).ok


def test_float32_tolerance_catches_one_weight_off_by_1e3() -> None:
    case = typical_case(eq.LSTMSpec(3, 4))
    assert _torch_against_reference(case, case.weights)

    def nudge(_layer, _direction, cell):
        w_input = cell.w_input.copy()
        w_input[2 * 4, 0] += np.float32(1e-3)  # first row of the g block
        return eq.CellWeights(**{**cell.arrays(), "w_input": w_input})

    assert not _torch_against_reference(case, case.weights.map_cells(nudge))


def test_float32_tolerance_catches_weights_rounded_through_float16() -> None:
    case = typical_case(eq.LSTMSpec(3, 4))
    rounded = case.weights.astype("float16").astype("float32")
    assert not _torch_against_reference(case, rounded)
