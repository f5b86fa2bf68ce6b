"""The ONNX-family runtimes (OpenVINO, tract, OpenCV) beyond what the table-driven tests check.

The table-driven suites (test_equivalence, test_contract) check every row
against the reference, in pairs and against the contract. Here: the engine
workarounds these modules rely on, the precision OpenVINO reports, and that
a compiled model serves every example of its spec and shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from equivalence import table
from equivalence.canonical import random_weights
from equivalence.case import Case
from equivalence.harness import judge as harness
from equivalence.io_types import LSTMInputs
from equivalence.runtimes import _onnx_family
from equivalence.runtimes.openvino import OpenVinoRuntime
from equivalence.spec import LSTMSpec
from tests.runtime_support import require

pytestmark = pytest.mark.cpu

def _engine(row: table.Entry) -> _onnx_family.OnnxModelRuntime:
    runtime = row.load()
    assert isinstance(runtime, _onnx_family.OnnxModelRuntime), row.runtime
    return runtime


def _row(name: str) -> table.Entry:
    """The table's row; one that cannot run here fails (skips under EQUIVALENCE_ALLOW_MISSING)."""
    row = table.BY_NAME[name]
    require(row)
    return row


def _case(spec: LSTMSpec, batch: int, steps: int, seed: int = 0, **inputs: Any) -> Case:
    rng = np.random.default_rng(seed)
    weights = random_weights(spec, rng).astype(spec.dtype)
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(np.float32)
    return Case(spec, weights, LSTMInputs(x, **inputs))


def test_tract_runs_a_batch_without_initial_states() -> None:
    """tract fails on a one-layer forward graph without initial_h for batch > 1; the runtime
    feeds zeros, so it runs."""
    row = _row("tract")
    case = _case(LSTMSpec(3, 4), batch=3, steps=6)
    outcome = harness.check_against_reference(row, case)
    assert outcome.ok, outcome.message()
    # the bare graph without states is what fails (the conformance grid's "no initial-state input")
    runtime = _engine(row)
    model = _onnx_family.probe_model(case.spec, has_state=False, has_lengths=False)
    native = harness.native_weights(row, case)
    feeds = _onnx_family.feeds(case.spec, native, case.inputs, has_state=False)
    with pytest.raises(Exception, match="Clashing resolution"):
        runtime.run_onnx(model, feeds)


@pytest.mark.parametrize("name", ["openvino", "openvino_default"])
def test_openvino_reports_its_inference_precision(name: str) -> None:
    runtime = _row(name).load()
    assert isinstance(runtime, OpenVinoRuntime)
    precision = runtime.precision()
    assert precision in {"f32", "bf16", "f16"}
    assert f"inference precision {precision}" in runtime.version()
    if name == "openvino":
        assert precision == "f32"


@pytest.mark.parametrize("name", ["openvino", "tract", "opencv"])
def test_one_build_serves_every_example_of_a_spec_and_shape(name: str) -> None:
    row = _row(name)
    runtime = _engine(row)
    spec = LSTMSpec(2, 3, peepholes=name == "tract")
    built = []
    for seed in range(4):  # new weights and inputs every time: only the feeds change
        case = _case(spec, batch=2, steps=5, seed=seed)
        outcome = harness.check_against_reference(row, case)
        assert outcome.ok, outcome.message()
        built.append(len(runtime._compiled))
    assert built[1:] == built[:1] * 3, built


def test_openvino_sequence_lengths_and_states_match() -> None:
    row = _row("openvino")
    spec = LSTMSpec(2, 3, directions=2, gate_clip=1.0)
    rng = np.random.default_rng(5)
    h0, c0 = rng.uniform(-1, 1, (2, 1, 2, 3, 3))
    case = _case(spec, batch=3, steps=6, lengths=np.array([6, 2, 4]), h0=h0, c0=c0)
    outcome = harness.check_against_reference(row, case)
    assert outcome.ok, outcome.message()
