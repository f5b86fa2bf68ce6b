"""check_implementation: a user's own LSTM, judged against the float64 reference (issue 20).

The implementation under check is a plain numpy LSTM reading a torch
``state_dict`` (tensors, as ``state_dict()`` gives them). Right, it passes on
stacks and both directions; each bug must fail with the reason or a diagnosis
that says where.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import equivalence as eq
from equivalence import LSTMResult, check_implementation

pytestmark = pytest.mark.cpu


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def run_cell(sd, suffix: str, x: np.ndarray, h: np.ndarray, c: np.ndarray, lengths,
             backward: bool, bug: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w_ih, w_hh = (sd[f"weight_{k}{suffix}"].double().numpy() for k in ("ih", "hh"))
    bias = (sd[f"bias_ih{suffix}"] + sd[f"bias_hh{suffix}"]).double().numpy()
    steps = x.shape[1]
    out = np.zeros((x.shape[0], steps, h.shape[1]))
    for t in range(steps - 1, -1, -1) if backward else range(steps):
        i, f, g, o = np.split(x[:, t] @ w_ih.T + h @ w_hh.T + bias, 4, axis=1)
        if bug == "i/o":
            i, o = o, i
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h_new = sigmoid(o) * np.tanh(c_new)
        valid = (t < lengths)[:, None] if bug != "lengths" else True
        c, h = np.where(valid, c_new, c), np.where(valid, h_new, h)
        out[:, t] = np.where(valid, h_new, 0)
    return out, h, c


def numpy_lstm(sd, inputs, bug: str = "", buggy_cell: tuple[int, int] | None = None):
    """nn.LSTM(batch_first=True, bidirectional=...) in numpy, from its state_dict."""
    x = np.asarray(inputs.x, np.float64)
    batch, steps, _ = x.shape
    lengths = np.full(batch, steps) if inputs.lengths is None else np.asarray(inputs.lengths)
    layers = 1 + max(int(k.rsplit("_l", 1)[1].split("_")[0]) for k in sd)
    directions = 2 if "weight_ih_l0_reverse" in sd else 1
    hs, cs = [], []
    for layer in range(layers):
        outs = []
        for d in range(directions):
            units = sd[f"weight_hh_l{layer}"].shape[1]
            start = [np.zeros((batch, units))] * 2
            if inputs.h0 is not None:
                start = [inputs.h0[layer, d].astype(float), inputs.c0[layer, d].astype(float)]
            cell_bug = bug if buggy_cell in (None, (layer, d)) else ""
            out, h, c = run_cell(sd, f"_l{layer}" + ("_reverse" if d else ""), x, *start,
                                 lengths, d == 1, cell_bug)
            outs.append(out)
            hs.append(h)
            cs.append(c)
        x = np.concatenate(outs, axis=-1)
    shape = (layers, directions, batch, -1)
    return x, np.stack(hs).reshape(shape), np.stack(cs).reshape(shape)


ANY_STACK = {"layers": [1, 2], "directions": [1, 2], "projection": False}


def test_a_right_implementation_passes_on_stacks() -> None:
    result = check_implementation(numpy_lstm, format="torch", max_examples=30, **ANY_STACK)
    assert result.ok, str(result)
    assert result.examples == 30 and 0 < result.max_abs_diff < 1e-5
    assert "matches the float64 reference" in str(result)


def test_an_lstm_result_and_tensors_returned_are_read() -> None:
    import torch

    def as_tensors(sd, inputs):
        output, h, c = numpy_lstm(sd, inputs)
        return LSTMResult(torch.tensor(output, requires_grad=True), torch.tensor(h), c)

    assert check_implementation(as_tensors, format="torch", max_examples=5, **ANY_STACK).ok


def test_swapped_gates_are_caught_and_named() -> None:
    result = check_implementation(lambda sd, inputs: numpy_lstm(sd, inputs, "i/o"),
                                  format="torch", max_examples=20, **ANY_STACK)
    assert not result.ok
    assert "i and o blocks swapped" in result.diagnosis, result.diagnosis


def test_a_bug_in_one_cell_is_placed() -> None:
    result = check_implementation(
        lambda sd, inputs: numpy_lstm(sd, inputs, "i/o", buggy_cell=(1, 1)),
        format="torch", layers=2, directions=2, projection=False, max_examples=20)
    assert not result.ok
    assert "layer 1 backward" in result.diagnosis and "weight_ih_l1_reverse" in result.diagnosis
    assert "layers below 1 match" in result.diagnosis, result.diagnosis


def test_ignored_lengths_are_caught_at_the_first_step_past_a_length() -> None:
    result = check_implementation(lambda sd, inputs: numpy_lstm(sd, inputs, "lengths"),
                                  format="torch", max_examples=40, **ANY_STACK)
    assert not result.ok
    assert result.counterexample.case.inputs.lengths is not None
    assert "step" in result.diagnosis, result.diagnosis


def test_without_lengths_drawn_ignoring_them_passes() -> None:
    result = check_implementation(lambda sd, inputs: numpy_lstm(sd, inputs, "lengths"),
                                  format="torch", max_examples=15, lengths=False, **ANY_STACK)
    assert result.ok, str(result)


@pytest.mark.parametrize("fn, text", [
    (lambda sd, inputs: 1 / 0, "the implementation raised ZeroDivisionError"),
    (lambda sd, inputs: (np.zeros(3),), "expected (output, h, c) or an LSTMResult"),
    (lambda sd, inputs: (np.zeros((1, 1)),) * 3, "output"),
])
def test_failures_of_the_implementation_are_failed_results(fn, text: str) -> None:
    result = check_implementation(fn, format="torch", max_examples=5)
    assert not result.ok
    assert text in str(result), str(result)


def test_a_hung_implementation_times_out() -> None:
    started = time.monotonic()
    result = check_implementation(lambda sd, inputs: time.sleep(30), format="keras",
                                  max_examples=5, time_limit=0.3)
    assert not result.ok and "timed out" in str(result)
    assert time.monotonic() - started < 10


def test_system_exit_propagates() -> None:
    def leaves(sd, inputs):
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        check_implementation(leaves, format="torch", max_examples=5)


@pytest.mark.parametrize("options, error, text", [
    ({"format": "caffe"}, eq.UnknownFormatError, "format: 'caffe'"),
    ({"format": "keras", "projection": True}, eq.ConversionError, "projection=True"),
    ({"format": "torch", "layers": 0}, eq.ConversionError, "layers=0"),
    ({"format": "torch", "time_major": True}, eq.ConversionError, "time_major=True"),
])
def test_bad_calls_raise(options: dict, error: type, text: str) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(")):
        check_implementation(numpy_lstm, **options)


def test_numpy_weights_on_request() -> None:
    kinds = set()

    def keras_layout(weights, inputs):
        kinds.update(type(w).__module__ for w in weights)
        raise ValueError("only looking")

    check_implementation(keras_layout, format="keras", max_examples=2)
    check_implementation(lambda sd, inputs: kinds.update(type(v).__module__ for v in sd.values()),
                         format="torch", max_examples=2, native="numpy")
    assert kinds == {"numpy"}


class RaisingArray:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("no values")


@pytest.mark.parametrize("answer, text", [
    ((RaisingArray(),) * 3, "cannot be judged"),
    ((np.broadcast_to(np.float32(0), (2**20, 2**20)),) * 3, "more than"),
    (LSTMResult(*[object()] * 3), "cannot be judged"),
])
def test_hostile_results_are_failed_results_in_bounded_time(answer, text: str) -> None:
    started = time.monotonic()
    result = check_implementation(lambda sd, inputs: answer, format="torch", max_examples=3)
    assert not result.ok and text in str(result), str(result)
    assert time.monotonic() - started < 10
