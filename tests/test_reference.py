"""The float64 reference against hand-computed cases and documented framework behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import equivalence as eq
from equivalence import reference
from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.strategies import lstm_specs, lstm_weights

pytestmark = pytest.mark.cpu


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def scalar_cell(**features) -> LSTMWeights:
    """I=1, H=1 with distinct values per gate so any mix-up changes the numbers."""
    spec = eq.LSTMSpec(1, 1, dtype="float64", **features)
    cell = CellWeights(
        w_input=np.array([[0.5], [-0.3], [0.8], [0.2]]),
        w_recurrent=np.array([[0.1], [0.4], [-0.6], [0.7]]),
        b_input=np.array([0.05, 0.2, -0.1, 0.3]),
        b_recurrent=np.array([0.01, -0.02, 0.03, 0.0]),
        peephole=np.array([[0.3], [-0.2], [0.5]]) if spec.peepholes else None,
    )
    return LSTMWeights(spec, ((cell,),))


def hand_lstm(xs, *, forget_bias=0.0, peephole=None, cell_clip=None, act=sig):
    """The textbook equations, written out by hand for scalars."""
    wi, wf, wg, wo = 0.5, -0.3, 0.8, 0.2
    ri, rf, rg, ro = 0.1, 0.4, -0.6, 0.7
    bi, bf, bg, bo = 0.06, 0.18, -0.07, 0.3
    pi, pf, po = peephole or (0.0, 0.0, 0.0)
    h = c = 0.0
    outs = []
    for x in xs:
        i = act(wi * x + ri * h + bi + pi * c)
        f = act(wf * x + rf * h + bf + forget_bias + pf * c)
        g = math.tanh(wg * x + rg * h + bg)
        c = f * c + i * g
        if cell_clip is not None:
            c = max(-cell_clip, min(cell_clip, c))
        o = act(wo * x + ro * h + bo + po * c)
        h = o * math.tanh(c)
        outs.append(h)
    return outs, h, c


XS = [0.7, -1.2, 0.4]


def run_scalar(weights: LSTMWeights, xs=XS, **kwargs):
    return reference.lstm(weights, np.array(xs, float).reshape(1, -1, 1), **kwargs)


@pytest.mark.parametrize(
    "features, hand",
    [
        ({}, {}),
        ({"forget_bias": 1.0}, {"forget_bias": 1.0}),
        ({"peepholes": True}, {"peephole": (0.3, -0.2, 0.5)}),
        ({"cell_clip": 0.1}, {"cell_clip": 0.1}),
        (
            {"recurrent_activation": "hard_sigmoid_tf_keras"},
            {"act": lambda z: min(1.0, max(0.0, 0.2 * z + 0.5))},
        ),
        (
            {"recurrent_activation": "hard_sigmoid_keras3"},
            {"act": lambda z: min(1.0, max(0.0, z / 6.0 + 0.5))},
        ),
    ],
)
def test_scalar_cases_match_hand_computation(features, hand) -> None:
    result = run_scalar(scalar_cell(**features))
    outs, h, c = hand_lstm(XS, **hand)
    np.testing.assert_allclose(result.outputs.ravel(), outs, rtol=0, atol=1e-15)
    assert result.h.shape == (1, 1, 1, 1) and result.c.shape == (1, 1, 1, 1)
    assert result.h.item() == pytest.approx(h, abs=1e-15)
    assert result.c.item() == pytest.approx(c, abs=1e-15)


def test_projection_and_its_clip_apply_after_the_output_gate() -> None:
    plain = scalar_cell().cells[0][0]  # w_recurrent is (4H, P) = (4, 1) either way
    spec = eq.LSTMSpec(1, 1, projection_size=1, dtype="float64")
    cell = CellWeights(**plain.arrays(), projection=np.array([[2.0]]))
    first = run_scalar(LSTMWeights(spec, ((cell,),)), XS[:1])
    o_times_tanh = hand_lstm(XS[:1])[0][0]
    assert first.outputs.item() == pytest.approx(2.0 * o_times_tanh, abs=1e-15)
    clipped = LSTMWeights(spec.replace(projection_clip=0.05), ((cell,),))
    assert abs(run_scalar(clipped).outputs).max() == pytest.approx(0.05)


def test_gate_clip_bounds_pre_activations() -> None:
    weights = scalar_cell(gate_clip=0.01)
    out = run_scalar(weights, [100.0]).outputs.item()
    # every pre-activation is clipped to +-0.01, so each gate is ~sigmoid(+-0.01)
    assert abs(out) < sig(0.01) * math.tanh(sig(0.01) * math.tanh(0.01)) + 1e-12


@given(
    spec=lstm_specs(capabilities=reference.CAPABILITIES, dtypes=("float64",)).filter(
        lambda s: s.directions == 1
    ),
    seed=st.integers(0, 99),
)
def test_batch_elements_are_independent_and_lengths_truncate(spec, seed) -> None:
    weights = eq.random_weights(spec, np.random.default_rng(seed))
    x = np.random.default_rng(seed + 1).normal(size=(3, 6, spec.input_size))
    lengths = np.array([6, 2, 4])
    padded = reference.lstm(weights, x, lengths=lengths)
    for b, n in enumerate(lengths):
        alone = reference.lstm(weights, x[b : b + 1, :n])
        np.testing.assert_allclose(padded.outputs[b, :n], alone.outputs[0], atol=1e-14)
        assert not padded.outputs[b, n:].any(), "padded steps must be zero"
        np.testing.assert_allclose(padded.h[:, :, b], alone.h[:, :, 0], atol=1e-14)
        np.testing.assert_allclose(padded.c[:, :, b], alone.c[:, :, 0], atol=1e-14)


def test_reverse_direction_is_forward_on_the_flipped_valid_part() -> None:
    rng = np.random.default_rng(3)
    spec = eq.LSTMSpec(2, 3, directions=2, dtype="float64")
    weights = eq.random_weights(spec, rng)
    forward_only = LSTMWeights(spec.replace(directions=1), ((weights.cells[0][1],),))
    x, lengths = rng.normal(size=(2, 5, 2)), np.array([5, 3])
    both = reference.lstm(weights, x, lengths=lengths)
    for b, n in enumerate(lengths):
        flipped = reference.lstm(forward_only, x[b : b + 1, :n][:, ::-1])
        np.testing.assert_allclose(both.outputs[b, :n, 3:], flipped.outputs[0, ::-1], atol=1e-14)
        # PyTorch's h_n for the reverse direction: the state after time step 0
        np.testing.assert_allclose(both.h[0, 1, b], flipped.h[0, 0, 0], atol=1e-14)
        np.testing.assert_allclose(both.h[0, 1, b], both.outputs[b, 0, 3:], atol=1e-14)


def test_reverse_spec_is_the_backward_half_of_a_bidirectional_lstm() -> None:
    rng = np.random.default_rng(13)
    spec = eq.LSTMSpec(2, 3, directions=2, dtype="float64")
    weights = eq.random_weights(spec, rng)
    backward_only = LSTMWeights(spec.replace(directions=1, reverse=True), ((weights.cells[0][1],),))
    x, lengths = rng.normal(size=(2, 5, 2)), np.array([5, 3])
    both = reference.lstm(weights, x, lengths=lengths)
    alone = reference.lstm(backward_only, x, lengths=lengths)
    np.testing.assert_allclose(alone.outputs, both.outputs[:, :, 3:], atol=1e-14)
    np.testing.assert_allclose(alone.h[0, 0], both.h[0, 1], atol=1e-14)
    np.testing.assert_allclose(alone.c[0, 0], both.c[0, 1], atol=1e-14)


def test_input_forget_couples_the_forget_gate_to_one_minus_the_input_gate() -> None:
    """f = 1 - sigmoid(z_i) = sigmoid(-z_i): the uncoupled LSTM with f rows = -(i rows)."""
    rng = np.random.default_rng(14)
    spec = eq.LSTMSpec(2, 3, peepholes=True, dtype="float64")
    weights = eq.random_weights(spec, rng)
    cell = weights.cells[0][0]
    arrays = {k: np.array(v, copy=True) for k, v in cell.arrays().items()}
    for name in ("w_input", "w_recurrent", "b_input", "b_recurrent"):
        arrays[name][3:6] = -arrays[name][:3]
    arrays["peephole"][1] = -arrays["peephole"][0]
    negated = LSTMWeights(spec, ((CellWeights(**arrays),),))
    coupled = LSTMWeights(spec.replace(input_forget=True), weights.cells)
    x = rng.normal(size=(2, 4, 2))
    expected, found = reference.lstm(negated, x), reference.lstm(coupled, x)
    np.testing.assert_allclose(found.outputs, expected.outputs, atol=1e-14)
    np.testing.assert_allclose(found.c, expected.c, atol=1e-14)
    assert np.abs(found.c - reference.lstm(weights, x).c).max() > 1e-3


def test_reverse_needs_one_direction() -> None:
    with pytest.raises(eq.SpecError, match="reverse: True with directions=2"):
        eq.LSTMSpec(2, 3, directions=2, reverse=True)


def test_initial_state_continues_a_split_sequence() -> None:
    rng = np.random.default_rng(4)
    weights = eq.random_weights(eq.LSTMSpec(3, 4, layers=2, dtype="float64"), rng)
    x = rng.normal(size=(2, 6, 3))
    whole = reference.lstm(weights, x)
    first = reference.lstm(weights, x[:, :2])
    rest = reference.lstm(weights, x[:, 2:], h0=first.h, c0=first.c)
    np.testing.assert_allclose(rest.outputs, whole.outputs[:, 2:], atol=1e-14)
    np.testing.assert_allclose(rest.c, whole.c, atol=1e-14)


def test_time_major_input_gives_time_major_output() -> None:
    rng = np.random.default_rng(5)
    weights = eq.random_weights(eq.LSTMSpec(2, 3, directions=2), rng)
    x = rng.normal(size=(3, 4, 2))
    batch_major = reference.lstm(weights, x)
    time_major = reference.lstm(weights, x.transpose(1, 0, 2), time_major=True)
    np.testing.assert_array_equal(time_major.outputs.transpose(1, 0, 2), batch_major.outputs)
    np.testing.assert_array_equal(time_major.h, batch_major.h)


@given(spec=lstm_specs(capabilities=reference.CAPABILITIES, dtypes=("float64",)), data=st.data())
def test_forget_bias_offset_equals_folding_it_into_the_bias(spec, data) -> None:
    weights = data.draw(lstm_weights(spec))
    offset = LSTMWeights(spec.replace(forget_bias=1.0), weights.cells)
    x = np.random.default_rng(0).normal(size=(2, 4, spec.input_size))
    np.testing.assert_allclose(
        reference.lstm(offset, x).outputs,
        reference.lstm(offset.with_folded_forget_bias(), x).outputs,
        atol=1e-14,
    )


def test_bad_reference_inputs_raise_library_errors() -> None:
    weights = eq.random_weights(eq.LSTMSpec(3, 2), np.random.default_rng(0))
    with pytest.raises(eq.ShapeError, match="x: shape"):
        reference.lstm(weights, np.zeros((2, 4, 5)))
    with pytest.raises(eq.ShapeError, match="lengths"):
        reference.lstm(weights, np.zeros((2, 4, 3)), lengths=np.array([0, 4]))
    with pytest.raises(eq.ShapeError, match=r"h0: shape \(2, 2\)"):
        reference.lstm(weights, np.zeros((2, 4, 3)), h0=np.zeros((2, 2)))
