"""Keras GRU layers through the harness: ``get_weights()`` read and written for both
``reset_after`` variants, held to a Keras layer built here (not by the runtime's builder),
and a user's Keras-to-torch GRU converter checked (a right one passes, the common slips are
caught)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import equivalence as eq
from equivalence import reference
from equivalence.errors import ShapeError

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
keras = pytest.importorskip("keras")
pytestmark = pytest.mark.cpu

IN, H, B, T = 3, 4, 2, 6


def keras_gru(reset_after: bool, bidirectional: bool = False) -> keras.Model:
    """A one-layer Keras GRU with random (nonzero) weights, biases included."""
    keras.utils.set_random_seed(0)
    layer = keras.layers.GRU(H, reset_after=reset_after, return_sequences=True,
                             bias_initializer="random_normal")
    if bidirectional:
        layer = keras.layers.Bidirectional(layer)
    inputs = keras.Input((None, IN))
    return keras.Model(inputs, layer(inputs))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("reset_after", [True, False])
def test_a_keras_gru_reads_and_runs_as_keras_runs_it(reset_after: bool,
                                                     bidirectional: bool) -> None:
    model = keras_gru(reset_after, bidirectional)
    native = model.get_weights()
    bias_shape = (2, 3 * H) if reset_after else (3 * H,)
    assert native[2].shape == bias_shape  # the format's own fact, from Keras itself
    weights = eq.to_canonical(native, "keras", cell="gru", reset_after=reset_after,
                              directions=2 if bidirectional else 1)
    x = np.random.default_rng(1).normal(size=(B, T, IN)).astype("float32")
    expected = np.asarray(model(x))
    ours = reference.run(weights, x.astype(np.float64)).outputs
    assert np.abs(ours - expected).max() < 1e-5
    # and back: the writer gives Keras's own arrays
    written = eq.from_canonical(weights, "keras")
    assert all(np.array_equal(a, b) for a, b in zip(written, native, strict=True))


def test_must_fail_the_wrong_variant_is_refused_by_the_bias_shape() -> None:
    native = keras_gru(reset_after=True).get_weights()
    with pytest.raises(ShapeError, match=r"bias.*\(2, 12\).*\(12,\).*reset_after=False"):
        eq.to_canonical(native, "keras", cell="gru", reset_after=False)


def test_must_fail_a_gru_read_as_an_lstm_names_the_kernel() -> None:
    native = keras_gru(reset_after=True).get_weights()
    with pytest.raises(ShapeError, match=r"recurrent_kernel.*\(4, 12\).*\(3, 12\)"):
        eq.to_canonical(native, "keras")


def _keras_to_torch(native: list, *, swap_zr: bool = False, biases_summed: bool = False
                    ) -> dict:
    """A user's converter: Keras GRU(reset_after=True) arrays -> nn.GRU state_dict."""
    kernel, recurrent, bias = (np.asarray(a) for a in native)

    def rows(a: np.ndarray) -> np.ndarray:  # gate axis 0: Keras z r h -> torch r z n
        z, r, n = np.split(a, 3)
        return np.concatenate([z, r, n] if swap_zr else [r, z, n])

    b_ih, b_hh = rows(bias[0]), rows(bias[1])
    if biases_summed:
        b_ih, b_hh = b_ih + b_hh, np.zeros_like(b_hh)
    return {"weight_ih_l0": rows(kernel.T), "weight_hh_l0": rows(recurrent.T),
            "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}


def test_check_conversion_passes_a_right_keras_to_torch_gru_converter() -> None:
    result = eq.check_conversion(_keras_to_torch, source="keras", target="torch", cell="gru",
                                 max_examples=15, layers=[1], directions=[1])
    assert result.ok, str(result)


@pytest.mark.parametrize("slip", ["swap_zr", "biases_summed"])
def test_must_fail_check_conversion_catches_each_slip(slip: str) -> None:
    def converter(native: list) -> dict:
        return _keras_to_torch(native, **{slip: True})

    result = eq.check_conversion(converter, source="keras", target="torch", cell="gru",
                                 max_examples=15, layers=[1], directions=[1])
    assert not result.ok
