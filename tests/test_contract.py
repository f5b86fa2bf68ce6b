"""The runtime contract, checked on every CPU runtime of the table.

:class:`equivalence.runtimes.base.Runtime` enforces the row: a feature the row
does not claim is refused with one message shape, unknown or contradicting
format options are refused, malformed weights are refused through the format's
reader before the framework sees them, and a missing half of the initial state
is zeros. These hold for each runtime without any code of its own.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from equivalence import table
from equivalence.canonical import random_weights
from equivalence.case import Case
from equivalence.compare import Tolerance, compare
from equivalence.errors import ConversionError, ShapeError, UnsupportedFeatureError
from equivalence.harness import judge as harness
from equivalence.io_types import LSTMInputs
from equivalence.runtimes.base import Runtime
from equivalence.spec import LSTMSpec

from .runtime_support import require

pytestmark = pytest.mark.cpu
ENTRIES = table.entries()
SPEC = LSTMSpec(3, 2)


def _case(spec: LSTMSpec = SPEC, **inputs: object) -> Case:
    rng = np.random.default_rng(0)
    weights = random_weights(spec, rng).astype(spec.dtype)
    x = rng.normal(size=(2, 4, spec.input_size)).astype(np.float32)
    return Case(spec, weights, LSTMInputs(x, **inputs))  # type: ignore[arg-type]


def _unclaimed(entry: table.Entry) -> tuple[LSTMSpec, str] | None:
    """A spec with a feature this row does not claim, and the feature's name."""
    caps = entry.capabilities
    for spec, feature in (
        (SPEC.replace(peepholes=True), "peepholes"),
        (SPEC.replace(gate_clip=1.0), "gate_clip"),
        (SPEC.replace(projection_size=1), "projection"),
        (SPEC.replace(dtype="bfloat16"), "dtype=bfloat16"),
        (SPEC.replace(dtype="float64"), "dtype=float64"),
    ):
        if caps.refusal(spec) == feature:
            return spec, feature
    return None


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_unclaimed_feature_is_refused_in_one_shape(entry: table.Entry) -> None:
    runtime = require(entry)
    found = _unclaimed(entry)
    if found is None:
        pytest.skip(f"{entry.name} claims every feature this test can ask for")
    spec, feature = found
    case = _case(spec)
    native = np.zeros(1)  # never read: the refusal comes first
    with pytest.raises(UnsupportedFeatureError, match=f"^{entry.name} cannot represent {feature}"):
        runtime.run(spec, native, case.inputs, **dict(entry.format_options))


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_unknown_format_option_is_refused(entry: table.Entry) -> None:
    runtime = require(entry)
    case = _case()
    native = harness.native_weights(entry, case)
    with pytest.raises(ConversionError, match=f"^{entry.name}: unexpected format options"):
        runtime.run(case.spec, native, case.inputs, no_such_option=1)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_weights_of_another_shape_are_refused_before_running(entry: table.Entry) -> None:
    runtime = require(entry)
    wider = _case(SPEC.replace(units=3))
    native = harness.native_weights(entry, wider)  # made for units=3, run as units=2
    case = _case()
    with pytest.raises(ConversionError) as raised:
        runtime.run(case.spec, native, case.inputs, **dict(entry.format_options))
    assert "3" in str(raised.value) and "2" in str(raised.value), str(raised.value)


@pytest.mark.parametrize("entry", [e for e in ENTRIES if "initial state" in e.capabilities],
                         ids=lambda e: e.name)
def test_missing_half_of_the_initial_state_is_zeros(entry: table.Entry) -> None:
    runtime = require(entry)
    h0 = np.random.default_rng(1).uniform(-1, 1, (1, 1, 2, SPEC.output_size)).astype(np.float32)
    only_h = _case(h0=h0)
    both = _case(h0=h0, c0=np.zeros((1, 1, 2, SPEC.units), np.float32))
    native = harness.native_weights(entry, both)
    options = dict(entry.format_options)
    first = runtime.run(SPEC, native, only_h.inputs, **options)
    second = runtime.run(SPEC, native, both.inputs, **options)
    assert compare(second, first, Tolerance.for_case("float32", 4)).ok
    if runtime.known_deviation() is None:  # else the reference check is its expected failure
        reference = harness.reference_result(both)
        assert compare(reference, first, Tolerance.for_case("float32", 4)).ok


def test_initial_state_of_the_wrong_shape_names_it() -> None:
    runtime = require(table.entry("torch"))
    case = _case(h0=np.zeros((1, 1, 3, 2), np.float32))
    native = harness.native_weights(table.entry("torch"), case)
    with pytest.raises(ShapeError, match=r"^h0: shape \(1, 1, 3, 2\), expected \(1, 1, 2, 2\)"):
        runtime.run(case.spec, native, case.inputs)


def test_contradicting_option_is_refused() -> None:
    entry = table.entry("onnxruntime")
    runtime = require(entry)
    case = _case()
    native = harness.native_weights(entry, case)
    with pytest.raises(ConversionError, match=r"clip=2\.0 disagrees with spec\.gate_clip=None"):
        runtime.run(case.spec, native, case.inputs, clip=2.0)


def test_the_row_is_the_only_declaration() -> None:
    """No runtime class restates what its row says (name, format, device, capabilities)."""
    for entry in table.RUNTIMES:
        module, _, name = entry.runtime.partition(":")
        cls = getattr(__import__(module, fromlist=[name]), name)
        assert issubclass(cls, Runtime)
        for field in ("name", "format", "device", "capabilities"):
            assert isinstance(getattr(cls, field), property), f"{name} sets {field}"


def test_format_runtimes_are_derived_from_the_rows() -> None:
    for fmt, names in table.FORMAT_RUNTIMES.items():
        assert names, fmt
        assert all(table.entry(n).format == fmt for n in names)
    assert {e.format for e in table.RUNTIMES} == set(table.FORMAT_RUNTIMES)
    cpu_first = [table.entry(n).device for n in table.FORMAT_RUNTIMES["torch"]]
    assert cpu_first == sorted(cpu_first, key=lambda d: d != "cpu")


def test_rows_are_frozen_values() -> None:
    entry = table.entry("tf1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.format_options["forget_bias"] = 0.0  # type: ignore[index]
