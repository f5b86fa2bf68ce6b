"""PyTorch's nn.GRU through the harness: its state_dicts read and written, and a user's GRU
converter checked the way an LSTM one is (a right one passes, a z/r swap is caught)."""

from __future__ import annotations

import numpy as np
import pytest

import equivalence as eq
from equivalence.errors import ShapeError, UnsupportedFeatureError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.cpu


def gru_state_dict(layers: int = 1, bidirectional: bool = False) -> dict:
    torch.manual_seed(0)
    return torch.nn.GRU(3, 4, num_layers=layers, bidirectional=bidirectional).state_dict()


def test_an_nn_gru_state_dict_reads_as_a_gru() -> None:
    weights = eq.to_canonical(gru_state_dict(2, True), "torch", cell="gru")
    assert weights.spec.cell == "gru" and weights.spec.units == 4
    assert (weights.spec.layers, weights.spec.directions) == (2, 2)


def test_a_gru_state_dict_with_rows_not_a_multiple_of_three_is_named() -> None:
    state = {k: v.numpy() for k, v in gru_state_dict().items()}
    state["weight_ih_l0"] = state["weight_ih_l0"][:10]
    with pytest.raises(ShapeError, match=r"weight_ih_l0.*3\*H"):
        eq.to_canonical(state, "torch", cell="gru")


def test_torch_refuses_a_gru_with_the_reset_gate_before() -> None:
    spec = eq.LSTMSpec(input_size=2, units=3, cell="gru", reset_after=False)
    weights = eq.random_weights(spec, np.random.default_rng(0))
    with pytest.raises(UnsupportedFeatureError, match="reset_after=False"):
        eq.from_canonical(weights, "torch")


def _copy(state):
    return {k: v.detach().clone() for k, v in state.items()}


def _swap_r_and_z(state):
    out = {}
    for key, value in state.items():
        units = value.shape[0] // 3
        out[key] = torch.cat([value[units:2 * units], value[:units], value[2 * units:]])
    return out


def test_check_conversion_passes_a_right_gru_converter_and_catches_a_z_r_swap() -> None:
    good = eq.check_conversion(_copy, source="torch", target="torch", cell="gru",
                               max_examples=10, layers=[1, 2], directions=[1, 2])
    assert good.ok, str(good)
    bad = eq.check_conversion(_swap_r_and_z, source="torch", target="torch", cell="gru",
                              max_examples=10)
    assert not bad.ok


def test_check_implementation_of_a_gru_takes_output_and_h() -> None:
    def mine(weights, inputs):
        gru = torch.nn.GRU(inputs.x.shape[2], weights["weight_hh_l0"].shape[1],
                           batch_first=True).double()
        gru.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=torch.float64)
                             for k, v in weights.items()})
        h0 = None if inputs.h0 is None else torch.from_numpy(inputs.h0[0]).double()
        with torch.no_grad():
            y, h = gru(torch.from_numpy(inputs.x).double(), h0)
        return y.numpy(), h.numpy()[None]

    result = eq.check_implementation(mine, format="torch", cell="gru", max_examples=10,
                                     lengths=False, native="numpy")
    assert result.ok, str(result)
