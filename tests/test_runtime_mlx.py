"""MLX: its LSTM's semantics as the runtime relies on them, and its float64 finding.

The row is checked like every other by the generated tests (against the reference and in
every pair). Here: the facts :mod:`equivalence.runtimes.mlx` builds on, read off MLX itself,
and the finding that keeps float64 out of the row. MLX's CPU ``exp`` (and so ``sigmoid``) is
float32-accurate even on float64 arrays, while ``tanh`` and matmul are float64: an MLX LSTM
in float64 runs, says float64, and is off the float64 reference by float32-sized errors
(6e-10 on one unit and one step, where float64 allows 1e-10).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from equivalence import conformance as cf
from equivalence import table
from equivalence.canonical import random_weights
from equivalence.convert import from_canonical
from equivalence.io_types import LSTMInputs
from equivalence.reference import lstm as reference_lstm
from equivalence.spec import LSTMSpec
from tests.runtime_support import require

pytestmark = pytest.mark.cpu


@pytest.fixture(scope="module")
def mx():
    require(table.BY_NAME["mlx"])
    import mlx.core

    return mlx.core


def test_mlx_lstm_returns_every_step_h_and_c_and_takes_h_before_c(mx) -> None:
    import mlx.nn as nn

    spec = LSTMSpec(3, 4)
    weights = random_weights(spec, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(2, 5, 3))
    h0, c0 = (np.random.default_rng(seed).normal(size=(1, 1, 2, 4)) for seed in (2, 3))
    expected = reference_lstm(weights, x, h0=h0, c0=c0)
    lstm = nn.LSTM(3, 4)
    native = from_canonical(weights, "mlx")
    lstm.update({name: mx.array(value, dtype=mx.float32) for name, value in native.items()})
    hidden, cell = lstm(mx.array(x, dtype=mx.float32), mx.array(h0[0, 0], dtype=mx.float32),
                        mx.array(c0[0, 0], dtype=mx.float32))
    assert hidden.shape == cell.shape == (2, 5, 4)  # every step, not only the last
    assert np.abs(np.array(hidden) - expected.outputs).max() < 1e-5
    assert np.abs(np.array(cell[:, -1]) - expected.c[0, 0]).max() < 1e-5
    swapped = lstm(mx.array(x, dtype=mx.float32), mx.array(c0[0, 0], dtype=mx.float32),
                   mx.array(h0[0, 0], dtype=mx.float32))[0]
    assert np.abs(np.array(swapped) - expected.outputs).max() > 1e-2  # the order matters


def test_mlx_exp_and_sigmoid_are_float32_accurate_in_float64(mx) -> None:
    x = np.linspace(-6.0, 6.0, 2001)
    x64 = mx.array(x, dtype=mx.float64)
    relative = {
        "exp": np.abs(np.array(mx.exp(x64)) / np.exp(x) - 1).max(),
        "sigmoid": np.abs(np.array(mx.sigmoid(x64)) * (1 + np.exp(-x)) - 1).max(),
        "tanh": np.abs(np.array(mx.tanh(x64)) - np.tanh(x)).max(),
    }
    assert mx.exp(x64).dtype == mx.float64
    assert 1e-9 < relative["exp"] < 1e-5, relative  # float32's epsilon is 1.2e-7
    assert 1e-9 < relative["sigmoid"] < 1e-5, relative
    assert relative["tanh"] < 1e-14, relative  # the rest of the cell is float64


def test_mlx_float64_lstm_is_found_silently_float32(mx) -> None:
    """Generated float64 cases, the row made to claim float64: float32-sized errors."""
    row = table.BY_NAME["mlx"]
    caps = replace(row.capabilities, dtypes=row.capabilities.dtypes | {"float64"})
    row = replace(row, name="mlx+float64", capabilities=caps)
    cell = cf.judge(row, cf.FLOAT64, max_examples=4, seed=0, shrink_runs=10)
    assert cell["verdict"] == cf.WRONG, cell
    # far past float64's tolerance, nowhere near a wrong formula
    assert 1e-10 < cell["max_abs_diff"] < 1e-5, cell


def test_the_row_refuses_float64_by_name(mx) -> None:
    from equivalence.errors import UnsupportedFeatureError

    spec = LSTMSpec(2, 3, dtype="float64")
    native = from_canonical(random_weights(spec, np.random.default_rng(0)), "mlx")
    with pytest.raises(UnsupportedFeatureError, match="mlx cannot represent dtype=float64"):
        table.BY_NAME["mlx"].load().run(spec, native, LSTMInputs(np.zeros((1, 2, 2))))
