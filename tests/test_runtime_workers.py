"""Runtimes that need their own process or a converter: the worker, Keras 3 on JAX/torch, TFLite.

The worker (:mod:`equivalence.runtimes._worker`) is tested with this module
as its handler: the public functions below run in the child. It must give
back results, rebuild the library's errors, and never hang: a call past its
timeout and a child that dies raise, and the next call starts a fresh child.

The Keras-backend and TFLite rows are checked against the float64 reference
on generated cases, and their known findings must keep reproducing: Keras 3
computes float64 LSTMs at float32 precision on JAX (always) and on torch
(with a mask); TensorFlow >= 2.17 converts a Keras 3 LSTM to a ``WHILE`` loop.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed

from equivalence import table
from equivalence.canonical import random_weights
from equivalence.case import Case
from equivalence.compare import compare
from equivalence.errors import ShapeError
from equivalence.harness import conformance as cf
from equivalence.harness import conformance_features as columns
from equivalence.harness import judge as harness
from equivalence.io_types import LSTMInputs
from equivalence.runtimes._keras_common import Feeding
from equivalence.runtimes._worker import Worker, WorkerCrashed, WorkerError, WorkerTimeout
from equivalence.runtimes.keras_backends import KerasBackendRuntime
from equivalence.runtimes.tflite import TFLiteRuntime
from equivalence.spec import LSTMSpec
from equivalence.strategies import lstm_cases
from tests.runtime_support import require

pytestmark = pytest.mark.cpu
HANDLER = __name__

if os.environ.get("WORKER_TEST_SLOW_IMPORT"):  # only ever set for a child, by a test below
    time.sleep(float(os.environ["WORKER_TEST_SLOW_IMPORT"]))


# --- handler functions: these run in the worker process ----------------------------------


def echo(value: Any) -> Any:
    return value


def pid() -> int:
    return os.getpid()


def environment(name: str) -> str | None:
    return os.environ.get(name)


def raise_shape_error() -> None:
    raise ShapeError("weights[0] (layer 0, kernel)", (3, 8), (4, 8))


def raise_value_error(message: str) -> None:
    raise ValueError(message)


class HandlerOnlyError(Exception):
    """A type the parent does not rebuild."""


def raise_handler_only_error() -> None:
    raise HandlerOnlyError("from the handler")


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def die(status: int) -> None:
    sys.stderr.write("dying on purpose\n")
    sys.stderr.flush()
    os._exit(status)


def noisy() -> str:
    print("a framework printing to stdout" * 100)
    os.write(1, b"and writing to fd 1 directly\n" * 100)
    return "clean"


def unpicklable() -> Any:
    return lambda: None


# --- the worker ----------------------------------------------------------------------------


@pytest.fixture
def worker() -> Any:
    made = Worker(HANDLER, {"WORKER_TEST_VALUE": "seen"}, name="test", call_timeout=60)
    yield made
    made.close()


def test_calls_reuse_one_process_and_carry_arrays(worker: Worker) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = worker.call("echo", {"x": array, "n": [1, 2]})
    np.testing.assert_array_equal(back["x"], array)
    assert back["x"].dtype == np.float32 and back["n"] == [1, 2]
    first = worker.call("pid")
    assert worker.call("pid") == first == worker.pid != os.getpid()
    assert worker.starts == 1


def test_environment_reaches_the_worker(worker: Worker) -> None:
    assert worker.call("environment", "WORKER_TEST_VALUE") == "seen"


def test_library_errors_come_back_as_themselves(worker: Worker) -> None:
    with pytest.raises(ShapeError) as caught:
        worker.call("raise_shape_error")
    assert caught.value.field == "weights[0] (layer 0, kernel)"
    assert caught.value.found == (3, 8) and caught.value.expected == (4, 8)
    assert "shape (3, 8), expected (4, 8)" in str(caught.value)
    if sys.version_info >= (3, 11):
        assert "raise_shape_error" in "".join(caught.value.__notes__)
    with pytest.raises(ValueError, match="plain message"):
        worker.call("raise_value_error", "plain message")
    assert worker.call("echo", 1) == 1  # the worker survives an error
    assert worker.starts == 1


def test_foreign_errors_and_bad_requests_are_named(worker: Worker) -> None:
    with pytest.raises(WorkerError, match="HandlerOnlyError: from the handler"):
        worker.call("raise_handler_only_error")
    with pytest.raises(WorkerError, match=r"result of unpicklable\(\) cannot be sent back"):
        worker.call("unpicklable")
    with pytest.raises(AttributeError, match="no public function '_serve'"):
        worker.call("_serve", HANDLER)
    with pytest.raises(AttributeError, match="no public function 'missing'"):
        worker.call("missing")


def test_stdout_noise_does_not_corrupt_replies(worker: Worker) -> None:
    assert worker.call("noisy") == "clean"
    assert worker.call("echo", "after") == "after"


def test_a_call_past_its_timeout_kills_the_worker_and_the_next_call_restarts(
    worker: Worker,
) -> None:
    first = worker.call("pid")
    started = time.monotonic()
    with pytest.raises(WorkerTimeout, match="took longer than 1 s"):
        worker.call("sleep", 60, timeout=1)
    assert time.monotonic() - started < 20
    assert not worker.alive
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # the timed-out child is gone
    assert worker.call("sleep", 0) == "woke"
    assert worker.call("pid") != first and worker.starts == 2


def test_a_dying_worker_raises_with_its_status_and_stderr(worker: Worker) -> None:
    with pytest.raises(WorkerCrashed, match="exit status 3") as caught:
        worker.call("die", 3)
    assert "dying on purpose" in str(caught.value)
    assert worker.call("echo", "again") == "again"
    assert worker.starts == 2


def test_a_slow_start_times_out_and_a_missing_handler_raises() -> None:
    slow = Worker(HANDLER, {"WORKER_TEST_SLOW_IMPORT": "60"}, start_timeout=2)
    with pytest.raises(WorkerTimeout, match="start took longer than 2 s"):
        slow.call("echo", 1)
    assert not slow.alive
    missing = Worker("equivalence.no_such_handler", start_timeout=60)
    with pytest.raises(ModuleNotFoundError, match="no_such_handler"):
        missing.call("echo", 1)
    missing.close()


def test_close_ends_the_process(worker: Worker) -> None:
    child = worker.call("pid")
    worker.close()
    assert not worker.alive
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


# --- Keras 3 on JAX and torch, TFLite ---------------------------------------------------------

BACKENDS = ("keras_jax", "keras_torch")


def _row(name: str) -> table.Entry:
    row = table.BY_NAME[name]
    require(row)
    return row


def _backend_runtime(name: str) -> KerasBackendRuntime:
    runtime = _row(name).load()
    assert isinstance(runtime, KerasBackendRuntime)
    return runtime


def _tflite() -> TFLiteRuntime:
    runtime = _row("tflite").load()
    assert isinstance(runtime, TFLiteRuntime)
    return runtime


def _with_dtypes(row: table.Entry, *dtypes: str) -> table.Entry:
    """The row claiming more dtypes (to probe what it does with them), under its own name.

    Its own name: the table keeps one runtime object per row name.
    """
    caps = row.capabilities.with_names(*(f"dtype={d}" for d in dtypes))
    return replace(row, name=f"{row.name}+{'+'.join(dtypes)}", capabilities=caps)


def _padded_case(spec: LSTMSpec, seed: int = 0) -> Case:
    """Lengths 5 and 2 with large values past them: ignoring the mask cannot pass."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 5, spec.input_size))
    x[1, 2:] = 50.0
    h0 = rng.normal(size=(spec.layers, spec.directions, 2, spec.units))
    c0 = rng.normal(size=(spec.layers, spec.directions, 2, spec.units))
    inputs = LSTMInputs(x.astype(spec.dtype), h0, c0, np.array([5, 2]))
    return Case(spec, random_weights(spec, rng), inputs)


@pytest.mark.parametrize("name", BACKENDS)
def test_the_worker_runs_the_backend_it_names(name: str) -> None:
    runtime = _backend_runtime(name)
    described = runtime.describe()
    assert described["backend"] == runtime.backend == name.split("_")[1]


@pytest.mark.parametrize("name", [*BACKENDS, "tflite"])
def test_generated_cases_match_the_reference(name: str) -> None:
    row = _row(name)
    examples = 3 if name == "tflite" else 8  # every new TFLite shape costs a conversion

    @hypothesis_seed(11)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(lstm_cases(capabilities=row.capabilities))
    def check(case: Case) -> None:
        outcome = harness.check_against_reference(row, case)
        assert outcome.ok, outcome.message()

    check()


@pytest.mark.parametrize("name", [*BACKENDS, "tflite"])
def test_masks_and_states_are_honoured(name: str) -> None:
    """Two directions, two layers, lengths with garbage past them, initial states."""
    row = _row(name)
    case = _padded_case(LSTMSpec(3, 4, layers=2, directions=2))
    actual = harness.run(row, case, harness.native_weights(row, case))
    tol = harness.tolerance(case, row)
    assert compare(harness.reference_result(case), actual, tol).ok
    unmasked = Case(case.spec, case.weights, replace(case.inputs, lengths=None))
    assert not compare(harness.reference_result(unmasked), actual, tol).ok  # the probe can fail


@pytest.mark.parametrize("name", BACKENDS)
def test_framework_errors_in_the_worker_come_back_named(name: str) -> None:
    runtime = _backend_runtime(name)
    spec, feeding = LSTMSpec(3, 4), Feeding(False, False)
    wrong = [np.zeros((5, 16), np.float32), np.zeros((4, 16), np.float32), np.zeros(16)]
    with pytest.raises(ValueError, match="shape"):
        runtime.worker.call("run", spec, wrong, [np.zeros((1, 2, 3), np.float32)], feeding)
    assert runtime.worker.call("cached_models") >= 1  # the worker lives on


# Known findings: Keras 3 maps float64 to float32 in its type promotion on every backend
# but TensorFlow (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE), so ops that
# go through result_type compute in float32: tanh on JAX, the masked loop's matmuls on torch.
FLOAT64_MASKED = columns.Feature(
    "float64 with lengths", ("sequence lengths",),
    present=lambda case: case.inputs.lengths is not None, dtype="float64")


@pytest.mark.parametrize(
    ("name", "feature", "verdict"),
    [
        ("keras_jax", columns.FLOAT64, cf.WRONG),
        ("keras_torch", columns.FLOAT64, cf.MATCH),  # unmasked torch runs its own float64 loop
        ("keras_torch", FLOAT64_MASKED, cf.WRONG),
    ],
)
def test_float64_findings_keep_reproducing(
    name: str, feature: columns.Feature, verdict: str
) -> None:
    """Generated float64 cases, the row made to claim float64: silently float32 where known."""
    row = _with_dtypes(_row(name), "float64")
    cell = cf.judge(row, feature, max_examples=4, seed=0, shrink_runs=10)
    assert cell["verdict"] == verdict, cell
    if verdict == cf.WRONG:
        # float32-sized errors: far past float64's tolerance, nowhere near a wrong formula
        assert 1e-9 < cell["max_abs_diff"] < 1e-5, cell


def test_tflite_converter_emits_a_while_loop_for_keras3() -> None:
    """TF >= 2.17 lowers a Keras 3 LSTM to WHILE, where 2.15 emitted a fused LSTM op."""
    import tensorflow as tf

    from equivalence.runtimes.tflite import FUSED_LSTM_OPS

    runtime = _tflite()
    spec = LSTMSpec(3, 4, directions=2)
    ops = runtime.emitted_ops(spec)
    kernel = runtime.lstm_kernel(spec)
    assert kernel in (*FUSED_LSTM_OPS, "WHILE", "unrolled")
    assert (kernel == "WHILE") == ("WHILE" in ops and not set(ops) & set(FUSED_LSTM_OPS))
    version = tuple(int(part) for part in tf.__version__.split(".")[:2])
    if version >= (2, 17):
        assert kernel == "WHILE", ops


def test_tflite_patched_weights_run_bit_for_bit_like_a_fresh_conversion() -> None:
    from equivalence.runtimes import tflite
    from equivalence.runtimes._keras_common import feeds
    from equivalence.runtimes._keras_model import input_names

    runtime = _tflite()
    case = _padded_case(LSTMSpec(3, 4, layers=2, directions=2), seed=1)
    spec, feeding = case.spec, Feeding(True, True)
    native = harness.native_weights(_row("tflite"), case)
    converted = runtime.converted(spec, feeding, case.inputs.batch)
    assert converted.slots is not None  # the weights were traced: no per-example conversion
    fresh = runtime.convert(spec, feeding, case.inputs.batch, list(native))
    fed = dict(zip(input_names(spec, feeding), feeds(spec, case.inputs, feeding), strict=True))
    patched = tflite._invoke(converted.with_weights(list(native)), fed)
    for ours, theirs in zip(patched, tflite._invoke(fresh.content, fed), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_tflite_untraceable_weights_fall_back_to_converting_each_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from equivalence.runtimes import tflite

    row = _row("tflite")
    runtime = tflite.TFLiteRuntime(row)  # its own cache
    monkeypatch.setattr(tflite, "_weight_slots", lambda content, total: None)
    case = _padded_case(LSTMSpec(2, 3), seed=2)
    for _ in range(2):
        actual = runtime.run(case.spec, harness.native_weights(row, case), case.inputs)
        assert compare(harness.reference_result(case), actual, harness.tolerance(case, row)).ok
    assert runtime.conversions == 3  # the marker conversion, then one per example


def test_tflite_converter_rejects_the_dtypes_the_row_does_not_claim() -> None:
    runtime = _tflite()
    spec = LSTMSpec(2, 3, dtype="float64")
    weights = [np.zeros(s, np.float64) for s in ((2, 12), (3, 12), (12,))]
    with pytest.raises(Exception, match=r"(?i)convert|legaliz|unsupported") as caught:
        runtime.convert(spec, Feeding(False, False), 1, weights)
    assert not isinstance(caught.value, AssertionError)
