"""The public check_conversion API: right converters pass, wrong ones fail with a reason."""

from __future__ import annotations

import re
import sys
import threading
import time

import numpy as np
import pytest

import equivalence as eq
from equivalence import check_conversion
from equivalence.formats._common import permute_gates

pytestmark = pytest.mark.cpu


def ours(source: str, target: str, **options):
    return lambda weights: eq.convert(weights, source=source, target=target, **options)


@pytest.mark.parametrize(
    "source, target", [("torch", "keras"), ("tf1", "keras"), ("keras", "onnx"), ("onnx", "flax")]
)
def test_correct_converters_pass(source: str, target: str) -> None:
    result = check_conversion(ours(source, target), source=source, target=target, max_examples=15)
    assert result.ok, str(result)
    assert result.examples == 15
    assert 0 < result.max_abs_diff < 1e-4
    assert result.counterexample is None
    assert "reference" not in result.runtimes["source"] + result.runtimes["target"]


def swapped_f_and_g(weights: list) -> list:
    """torch -> keras written with TF1's i j f o column order (a classic bug)."""
    return [permute_gates(a, (0, 2, 1, 3), axis=-1) for a in ours("torch", "keras")(weights)]


def one_bias(weights: dict) -> list:
    kernel, recurrent, _ = ours("torch", "keras")(weights)
    return [kernel, recurrent, np.asarray(weights["bias_ih_l0"])]


def forgot_transpose(weights: dict) -> list:
    return [
        np.asarray(weights["weight_ih_l0"]).reshape(-1, weights["weight_ih_l0"].shape[0]),
        np.asarray(weights["weight_hh_l0"]).reshape(-1, weights["weight_hh_l0"].shape[0]),
        np.asarray(weights["bias_ih_l0"]) + np.asarray(weights["bias_hh_l0"]),
    ]


def crashes(weights: dict) -> list:
    raise KeyError("weight_ih")


@pytest.mark.parametrize(
    "fn, reason",
    [
        (swapped_f_and_g, "outputs differ"),
        (one_bias, "outputs differ"),
        (forgot_transpose, "outputs differ"),
        (crashes, "raised KeyError"),
    ],
)
def test_wrong_converters_fail_with_a_minimal_case(fn, reason: str) -> None:
    result = check_conversion(fn, source="torch", target="keras", max_examples=25)
    assert not result.ok
    assert result.counterexample is not None
    assert reason in str(result)
    assert "torch -> keras: NOT equivalent" in str(result)


def test_wrong_shapes_from_the_function_are_a_failed_result() -> None:
    result = check_conversion(
        lambda w: [np.zeros((2, 2))], source="torch", target="keras", max_examples=5
    )
    assert not result.ok and "rejected the converted weights" in str(result)


def test_bad_calls_raise() -> None:
    with pytest.raises(eq.ConversionError, match="'caffe'"):
        check_conversion(lambda w: w, source="caffe", target="keras")
    with pytest.raises(AssertionError, match="NOT equivalent"):
        eq.assert_conversion(crashes, source="torch", target="keras", max_examples=3)


def test_formats_without_a_runtime_here_fall_back_to_the_reference() -> None:
    result = check_conversion(
        ours("torch", "cudnn"), source="torch", target="cudnn", max_examples=10
    )
    assert result.ok, str(result)
    assert "reference in cudnn semantics" in result.runtimes["target"]


# -- a user's function that hangs, exits, or returns the wrong kind of arrays -----------------


def test_a_hung_function_is_a_failed_result_within_the_time_limit() -> None:
    release = threading.Event()
    calls = []

    def hangs(weights: dict) -> dict:
        calls.append(1)
        release.wait()  # until the test ends: never within the limit
        return ours("torch", "onnx")(weights)

    started = time.perf_counter()
    try:
        result = check_conversion(hangs, source="torch", target="onnx", max_examples=10,
                                  time_limit=0.5)
    finally:
        release.set()
    assert not result.ok
    assert "timed out" in str(result) and "0.5 s" in str(result)
    assert result.counterexample is not None
    assert len(calls) == 1, "a hung function was called again (shrinking must not re-hang)"
    assert time.perf_counter() - started < 30


def test_a_slow_function_within_the_limit_passes() -> None:
    def slow(weights: dict) -> dict:
        time.sleep(0.05)
        return ours("torch", "onnx")(weights)

    result = check_conversion(slow, source="torch", target="onnx", max_examples=3,
                              time_limit=5)
    assert result.ok, str(result)


@pytest.mark.parametrize("time_limit", [60.0, None])
def test_system_exit_from_the_function_stops_the_check_at_once(time_limit) -> None:
    calls = []

    def exits(weights: dict) -> dict:
        calls.append(1)
        sys.exit(3)

    with pytest.raises(SystemExit) as stop:  # a request to stop, not a result (issue 24)
        check_conversion(exits, source="torch", target="onnx", max_examples=3,
                         time_limit=time_limit)
    assert stop.value.code == 3 and len(calls) == 1  # no Hypothesis replay, no FlakyFailure


def test_keyboard_interrupt_from_the_function_still_stops_the_check() -> None:
    def interrupted(weights: dict) -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        check_conversion(interrupted, source="torch", target="onnx", max_examples=2)


@pytest.mark.parametrize(
    "cast, dtype", [(lambda a: a.astype(object), "object"), (np.int64, "int64")]
)
def test_onnx_target_names_object_and_integer_arrays(cast, dtype: str) -> None:
    def wrong_kind(weights: dict) -> dict:
        moved = ours("torch", "onnx")(weights)
        return {**moved, "W": cast(np.round(moved["W"]))}

    result = check_conversion(wrong_kind, source="torch", target="onnx", max_examples=3)
    assert not result.ok
    named = f"the target rejected the converted weights: WeightValueError: layer 0 W: dtype {dtype}"
    assert named in str(result)


@pytest.mark.parametrize(
    "options, text",
    [
        ({"max_examples": 0}, "max_examples: 0, expected an int >= 1"),
        ({"max_examples": -3}, "max_examples: -3"),
        ({"max_examples": True}, "max_examples: True"),
        ({"max_examples": 2.5}, "max_examples: 2.5"),
        ({"time_limit": 0}, "time_limit: 0, expected a positive number"),
        ({"time_limit": float("nan")}, "time_limit: nan"),
        ({"time_limit": "60"}, "time_limit: '60'"),
    ],
)
def test_bad_check_options_raise_conversion_errors(options: dict, text: str) -> None:
    with pytest.raises(eq.ConversionError, match=re.escape(text)):
        check_conversion(ours("torch", "onnx"), source="torch", target="onnx", **options)
    with pytest.raises(eq.ConversionError, match="fn: 'not a function' is not callable"):
        check_conversion("not a function", source="torch", target="onnx")
