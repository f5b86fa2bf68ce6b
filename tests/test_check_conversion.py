"""The public check_conversion API: right converters pass, wrong ones fail with a reason."""

from __future__ import annotations

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
