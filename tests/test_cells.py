"""The cell rows (equivalence.cells): the GRU's spec, weights, float64 step and draws.

The GRU reference is held to PyTorch's ``nn.GRU`` run for real (reset_after=True) and to
the equations written out here a second time (both variants), so a wrong gate order or
a b_hn in the wrong place fails.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence import cells, reference
from equivalence.canonical import expected_shapes, random_weights
from equivalence.capabilities import Capabilities
from equivalence.errors import ConversionError, ShapeError, SpecError
from equivalence.spec import LSTMSpec
from equivalence.strategies import lstm_cases

pytestmark = pytest.mark.cpu
GRU_CAPS = Capabilities.of("reset_after=False", "reverse", "gate_clip", "peepholes", "projection",
                           cells=("lstm", "gru"))


def gru_by_hand(spec, weights, x):
    """One-layer forward GRU written from the equations (PyTorch's docs, ONNX's GRU)."""
    cell = weights.cells[0][0]
    units = spec.units
    h = np.zeros((x.shape[0], units))
    outputs = []
    for t in range(x.shape[1]):
        gx = x[:, t] @ cell.w_input.T + cell.b_input
        w_r, w_z, w_n = (cell.w_recurrent[k * units:(k + 1) * units] for k in range(3))
        b_r, b_z, b_n = (cell.b_recurrent[k * units:(k + 1) * units] for k in range(3))
        r = 1 / (1 + np.exp(-(gx[:, :units] + h @ w_r.T + b_r)))
        z = 1 / (1 + np.exp(-(gx[:, units:2 * units] + h @ w_z.T + b_z)))
        if spec.reset_after:
            n = np.tanh(gx[:, 2 * units:] + r * (h @ w_n.T + b_n))
        else:
            n = np.tanh(gx[:, 2 * units:] + (r * h) @ w_n.T + b_n)
        h = (1 - z) * n + z * h
        outputs.append(h)
    return np.stack(outputs, axis=1), h


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_reference_follows_the_equations(reset_after: bool) -> None:
    spec = LSTMSpec(input_size=3, units=4, cell="gru", reset_after=reset_after)
    weights = random_weights(spec, np.random.default_rng(1))
    x = np.random.default_rng(2).normal(size=(2, 5, 3))
    result = reference.run(weights, x)
    outputs, h = gru_by_hand(spec, weights, x)
    assert result.c is None and set(result.tensors()) == {"output", "h"}
    np.testing.assert_allclose(result.outputs, outputs, atol=1e-12)
    np.testing.assert_allclose(result.h[0, 0], h, atol=1e-12)


def test_the_two_gru_variants_differ() -> None:
    """reset_after changes the function: a check that ignored it could not pass both."""
    spec = LSTMSpec(input_size=3, units=4, cell="gru")
    weights = random_weights(spec, np.random.default_rng(3))
    x = np.random.default_rng(4).normal(size=(2, 5, 3))
    after = reference.run(weights, x).outputs
    before_spec = spec.replace(reset_after=False)
    before = reference.run(type(weights)(before_spec, weights.cells), x).outputs
    assert np.abs(after - before).max() > 1e-3


def test_swapping_r_and_z_is_caught_by_the_reference() -> None:
    """Must fail: the z/r order pitfall (ONNX and Keras store z r h) changes the output."""
    spec = LSTMSpec(input_size=2, units=3, cell="gru")
    weights = random_weights(spec, np.random.default_rng(5))
    order = np.r_[3:6, 0:3, 6:9]

    def swap(_layer, _direction, cell):
        return dataclasses.replace(cell, **{k: v[order] for k, v in cell.arrays().items()})

    x = np.random.default_rng(6).normal(size=(1, 4, 2))
    good, bad = reference.run(weights, x), reference.run(weights.map_cells(swap), x)
    assert np.abs(good.outputs - bad.outputs).max() > 1e-3


def test_gru_reference_matches_torch_stacked_bidirectional() -> None:
    torch = pytest.importorskip("torch")
    spec = LSTMSpec(input_size=3, units=4, layers=2, directions=2, cell="gru")
    weights = random_weights(spec, np.random.default_rng(7))
    gru = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    state = {}
    for layer, direction, cell in weights.iter_cells():
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        for ours, theirs in (("w_input", "weight_ih"), ("w_recurrent", "weight_hh"),
                             ("b_input", "bias_ih"), ("b_recurrent", "bias_hh")):
            state[theirs + suffix] = torch.from_numpy(getattr(cell, ours))
    gru.load_state_dict(state)
    x = np.random.default_rng(8).normal(size=(2, 6, 3))
    h0 = np.random.default_rng(9).normal(size=(2, 2, 2, 4))
    with torch.no_grad():
        outputs, h = gru(torch.from_numpy(x), torch.from_numpy(h0.reshape(4, 2, 4)))
    result = reference.run(weights, x, h0=h0)
    np.testing.assert_allclose(result.outputs, outputs.numpy(), atol=1e-12)
    np.testing.assert_allclose(result.h, h.numpy().reshape(2, 2, 2, 4), atol=1e-12)


def test_gru_weights_have_three_gates() -> None:
    spec = LSTMSpec(input_size=5, units=2, layers=2, directions=2, cell="gru")
    assert expected_shapes(spec, 0)["w_input"] == (6, 5)
    assert expected_shapes(spec, 1)["w_recurrent"] == (6, 2)
    weights = random_weights(spec, np.random.default_rng(0))
    assert sum(a.size for _, _, c in weights.iter_cells() for a in c.arrays().values()) == (
        spec.parameter_count())
    assert spec.gate_count == 3 and spec.state_names == ("h",)


@pytest.mark.parametrize("feature", [
    {"peepholes": True}, {"projection_size": 1}, {"cell_clip": 1.0}, {"forget_bias": 1.0},
    {"input_forget": True},
])
def test_a_gru_spec_refuses_the_lstms_own_features(feature: dict) -> None:
    with pytest.raises(SpecError, match="the gru cell cannot carry it"):
        LSTMSpec(input_size=2, units=3, cell="gru", **feature)


def test_spec_refuses_unknown_cells_and_an_lstm_without_reset_after() -> None:
    with pytest.raises(SpecError, match="cell: 'rnn', expected one of"):
        LSTMSpec(input_size=2, units=3, cell="rnn")
    with pytest.raises(SpecError, match="reset_after: False, but the lstm cell"):
        LSTMSpec(input_size=2, units=3, reset_after=False)
    spec = LSTMSpec(input_size=2, units=3, cell="gru", reset_after=False)
    assert spec.features() == ("cell=gru", "reset_after=False")
    assert LSTMSpec.from_dict(spec.to_dict()) == spec
    assert LSTMSpec.from_dict({"input_size": 2, "units": 3}).cell == "lstm"  # old case files


def test_a_c0_for_a_gru_is_a_shape_error() -> None:
    spec = LSTMSpec(input_size=2, units=3, cell="gru")
    weights = random_weights(spec, np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"c0: .*has no c"):
        reference.run(weights, np.zeros((1, 2, 2)), c0=np.zeros((1, 1, 1, 3)))


def test_capabilities_refuse_a_cell_by_name() -> None:
    gru = LSTMSpec(input_size=2, units=3, cell="gru")
    assert Capabilities().refusal(gru) == "cell=gru"
    assert GRU_CAPS.refusal(gru) is None
    assert Capabilities.of(cells=("lstm", "gru")).refusal(
        gru.replace(reset_after=False)) == "reset_after=False"


def test_lstm_cases_refuse_a_cell_the_capabilities_do_not_run() -> None:
    with pytest.raises(ConversionError, match="cell='gru': pass one of \\['lstm'\\]"):
        lstm_cases(cell="gru")


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_gru_cases_have_no_lstm_feature_and_no_c0(data) -> None:
    case = data.draw(lstm_cases(capabilities=GRU_CAPS, cell="gru"))
    assert case.spec.cell == "gru" and case.inputs.c0 is None
    assert not case.spec.peepholes and case.spec.projection_size is None
    reference.run(case.weights, case.inputs.x, h0=case.inputs.h0, lengths=case.inputs.lengths)


def test_gru_draws_take_both_variants() -> None:
    seen = set()

    @settings(max_examples=60, deadline=None, database=None)
    @given(data=st.data())
    def draw(data) -> None:
        seen.add(data.draw(lstm_cases(capabilities=GRU_CAPS, cell="gru")).spec.reset_after)

    draw()
    assert seen == {True, False}


def test_every_cell_row_names_its_gates_and_states() -> None:
    assert cells.CELLS["lstm"].gates == ("i", "f", "g", "o")
    assert cells.CELLS["gru"].gates == ("r", "z", "n")
    assert cells.foreign_features("gru") >= {"peepholes", "projection"}
    assert cells.foreign_features("lstm") == {"reset_after=False", "reset_after=True"}
