"""MLX: its LSTM's semantics as the runtime relies on them, its float64 finding, its files.

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

from equivalence import table
from equivalence.canonical import random_weights
from equivalence.convert import from_canonical
from equivalence.harness import conformance as cf
from equivalence.harness import conformance_features as columns
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
    caps = row.capabilities.with_names("dtype=float64")
    row = replace(row, name="mlx+float64", capabilities=caps)
    cell = cf.judge(row, columns.FLOAT64, max_examples=4, seed=0, shrink_runs=10)
    assert cell["verdict"] == cf.WRONG, cell
    # far past float64's tolerance, nowhere near a wrong formula
    assert 1e-10 < cell["max_abs_diff"] < 1e-5, cell


def test_the_row_refuses_float64_by_name(mx) -> None:
    from equivalence.errors import UnsupportedFeatureError

    spec = LSTMSpec(2, 3, dtype="float64")
    native = from_canonical(random_weights(spec, np.random.default_rng(0)), "mlx")
    with pytest.raises(UnsupportedFeatureError, match="mlx cannot represent dtype=float64"):
        table.BY_NAME["mlx"].load().run(spec, native, LSTMInputs(np.zeros((1, 2, 2))))


# --- files: `convert --to mlx` writes what MLX's own load_weights reads ------------------


def _mlx_model(layers: int, directions: int, input_size: int, units: int):
    """The layout equivalence.files.mlx writes: a list `layers` of LSTMs or forward/backward
    pairs; calling it returns the top layer's output sequence."""
    import mlx.core as mx
    import mlx.nn as nn

    class Bidirectional(nn.Module):
        def __init__(self, size: int) -> None:
            super().__init__()
            self.forward = nn.LSTM(size, units)
            self.backward = nn.LSTM(size, units)

        def __call__(self, x):
            back = self.backward(x[:, ::-1])[0][:, ::-1]
            return mx.concatenate([self.forward(x)[0], back], axis=-1)

    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            sizes = [input_size] + [units * directions] * (layers - 1)
            self.layers = [Bidirectional(size) if directions == 2 else nn.LSTM(size, units)
                           for size in sizes]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x) if directions == 2 else layer(x)[0]
            return x

    return Stack()


@pytest.mark.parametrize(("layers", "directions"), [(1, 1), (2, 1), (2, 2)])
def test_a_converted_file_loads_in_mlx_and_runs_as_the_torch_source(
    mx, tmp_path, capsys, layers: int, directions: int
) -> None:
    import mlx.nn as nn
    import torch

    from tests.file_helpers import run_cli

    torch.manual_seed(0)
    source = torch.nn.LSTM(3, 5, num_layers=layers, bidirectional=directions == 2,
                           batch_first=True)
    torch.save(source.state_dict(), tmp_path / "lstm.pt")
    written = tmp_path / "lstm.safetensors"
    code, out, err = run_cli(capsys, "convert", tmp_path / "lstm.pt", "--to", "mlx", "-o",
                             written, "--verify", "--examples", "1")
    assert code == 0, out + err
    assert "verify: PASSED" in out
    single = layers == 1 and directions == 1
    model = nn.LSTM(3, 5) if single else _mlx_model(layers, directions, 3, 5)
    model.load_weights(str(written), strict=True)  # every key used, none missing
    x = np.random.default_rng(0).normal(size=(2, 7, 3)).astype(np.float32)
    with torch.no_grad():
        expected = source(torch.from_numpy(x))[0].numpy()
    got = model(mx.array(x))
    assert np.abs(np.array(got[0] if single else got) - expected).max() < 1e-5


@pytest.mark.parametrize(("names", "problem"), [
    (["layers.0.Wx", "layers.0.Wh", "layers.2.Wx", "layers.2.Wh"], "are not 0..L-1"),
    (["layers.0.forward.Wx", "layers.0.forward.Wh"], "needs layers.<k>.forward and .backward"),
    (["Wx", "Wh", "layers.0.Wx", "layers.0.Wh"], "both with and without"),
    (["forward.Wx", "forward.Wh", "backward.Wx", "backward.Wh"], "without a layers.<k> part"),
    (["layers.0.Wx", "layers.0.Wh", "layers.999999999.Wx"], "-layer cap"),
])
def test_an_mlx_file_that_is_not_one_lstm_is_refused_by_name(
    tmp_path, capsys, names: list[str], problem: str
) -> None:
    from safetensors.numpy import save_file

    from tests.file_helpers import one_error_line, run_cli

    path = tmp_path / "odd.safetensors"
    save_file({name: np.zeros((8, 2), np.float32) for name in names}, str(path))
    code, _out, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", tmp_path / "x.pt")
    assert code == 2 and problem in err and one_error_line(err, path), err
    assert not (tmp_path / "x.pt").exists()


def _gru_pair(mx, seed: int = 3):
    """One nn.GRU in MLX and in PyTorch from the same canonical weights, and an input."""
    import mlx.nn as nn

    torch = pytest.importorskip("torch")
    spec = LSTMSpec(3, 4, cell="gru")
    weights = random_weights(spec, np.random.default_rng(seed))
    gru = nn.GRU(3, 4)
    native = from_canonical(weights, "mlx")
    gru.update({k: mx.array(v) for k, v in native.items()})
    reference = torch.nn.GRU(3, 4, batch_first=True)
    reference.load_state_dict({k: torch.from_numpy(v)
                               for k, v in from_canonical(weights, "torch").items()})
    x = np.random.default_rng(seed + 1).normal(size=(2, 5, 3)).astype(np.float32)
    return gru, reference, native, x, torch


def test_mlx_gru_parameters_are_the_formats(mx) -> None:
    import mlx.nn as nn

    shapes = {k: tuple(v.shape) for k, v in nn.GRU(3, 4).parameters().items()}
    assert shapes == {"Wx": (12, 3), "Wh": (12, 4), "b": (12,), "bhn": (4,)}


def test_mlx_gru_computes_pytorchs_gru(mx) -> None:
    """A second framework as the oracle: the same weights in torch.nn.GRU, every step's h
    returned (with and without an initial state)."""
    gru, reference, _, x, torch = _gru_pair(mx)
    h0 = np.random.default_rng(9).normal(size=(2, 4)).astype(np.float32)
    with torch.no_grad():
        expected, _ = reference(torch.from_numpy(x))
        with_state, _ = reference(torch.from_numpy(x), torch.from_numpy(h0)[None])
    assert np.abs(np.array(gru(mx.array(x))) - expected.numpy()).max() < 1e-5
    assert np.abs(np.array(gru(mx.array(x), mx.array(h0))) - with_state.numpy()).max() < 1e-5


def test_must_fail_b_hn_summed_into_b_is_another_network(mx) -> None:
    gru, reference, native, x, torch = _gru_pair(mx)
    gru.update({"b": mx.array(native["b"] + np.concatenate([np.zeros(8), native["bhn"]])
                              .astype(np.float32)),
                "bhn": mx.zeros((4,))})
    with torch.no_grad():
        expected, _ = reference(torch.from_numpy(x))
    assert np.abs(np.array(gru(mx.array(x))) - expected.numpy()).max() > 1e-3
