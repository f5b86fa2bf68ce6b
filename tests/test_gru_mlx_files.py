"""MLX GRU files: safetensors written by ``mlx.nn.Module.save_weights`` of ``nn.GRU`` models,
read as GRUs (``b``/``bhn`` keys, or a biasless (3H, H) ``Wh``), held to MLX's own outputs,
converted with ``--verify`` both ways, and refused with one message when malformed."""

from __future__ import annotations

import numpy as np
import pytest

from tests.file_helpers import leftovers, run_cli

mx = pytest.importorskip("mlx.core")
nn = pytest.importorskip("mlx.nn")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.cpu


class Stack(nn.Module):
    """The layout the mlx file family reads and writes: ``layers`` holds one nn.GRU each."""

    def __init__(self, sizes: tuple[int, ...], units: int) -> None:
        super().__init__()
        self.layers = [nn.GRU(size, units) for size in sizes]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def saved(path, model):
    mx.random.seed(0)
    model.save_weights(str(path))
    return path


def test_an_mlx_gru_file_reads_as_the_gru_mlx_runs(tmp_path) -> None:
    """The weights read from the file compute what MLX computes with them (float64 reference
    against mlx's float32 GRU, a two-layer stack)."""
    from equivalence import files, reference

    model = Stack((3, 4), 4)
    (found,) = files.read(saved(tmp_path / "stack.safetensors", model))
    weights = found.canonical()
    assert weights.spec.cell == "gru" and weights.spec.layers == 2 and weights.spec.reset_after
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    theirs = np.asarray(model(mx.array(x)))
    ours = reference.run(weights, x.astype(np.float64)).outputs
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_inspect_names_the_gru_and_its_biases(tmp_path, capsys, bias: bool) -> None:
    path = saved(tmp_path / "gru.safetensors", nn.GRU(3, 4, bias=bias))
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0, err
    assert "mlx.nn.GRU weights" in out and "GRU   1" in out
    assert ("b (3H) and bhn (H)" if bias else "none (bias=False)") in out


@pytest.mark.parametrize("target", ["torch", "onnx"])
def test_an_mlx_gru_converts_and_verifies(tmp_path, capsys, target: str) -> None:
    path = saved(tmp_path / "stack.safetensors", Stack((3, 4), 4))
    out_path = tmp_path / f"out.{'pt' if target == 'torch' else 'onnx'}"
    code, out, err = run_cli(capsys, "convert", path, "--to", target, "-o", out_path, "--verify")
    assert code == 0 and "verify: PASSED" in out, out + err


def test_a_torch_gru_written_as_mlx_loads_in_mlx_and_runs_the_same(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, num_layers=2, batch_first=True)
    torch.save(gru.state_dict(), tmp_path / "gru.pt")
    out_path = tmp_path / "gru.safetensors"
    code, out, err = run_cli(capsys, "convert", tmp_path / "gru.pt", "--to", "mlx", "-o",
                             out_path, "--verify")
    assert code == 0 and "verify: PASSED" in out and "mlx.nn.GRU weights" in out, out + err
    model = Stack((3, 4), 4)
    model.load_weights(str(out_path))  # the file is what MLX loads, key for key
    x = np.random.default_rng(1).normal(size=(2, 6, 3)).astype(np.float32)
    with torch.no_grad():
        expected = gru(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(np.asarray(model(mx.array(x))), expected, rtol=0, atol=1e-5)


def test_must_fail_r_and_z_swapped_in_the_file_is_not_equivalent(tmp_path, capsys) -> None:
    from safetensors.numpy import load_file, save_file

    path = saved(tmp_path / "gru.safetensors", nn.GRU(3, 4))
    arrays = load_file(str(path))
    for key in ("Wx", "Wh", "b"):
        r, z, n = np.split(arrays[key], 3)
        arrays[key] = np.concatenate([z, r, n])
    save_file(arrays, str(tmp_path / "swapped.safetensors"))
    from equivalence.cli.main import main

    code = main(["compare", str(path), str(tmp_path / "swapped.safetensors"), "--examples", "3"])
    out = capsys.readouterr().out
    assert code == 1 and "NOT EQUIVALENT" in out, out


@pytest.mark.parametrize(("change", "named"), [
    (lambda a: {**a, "bhn": a["bhn"][:3]}, "bhn"),
    (lambda a: {**a, "Wh": a["Wh"][:, :3]}, "Wh"),
    (lambda a: {k: v for k, v in a.items() if k != "Wx"}, "Wx"),
])
def test_a_malformed_gru_file_is_refused_with_one_message(tmp_path, capsys, change,
                                                          named: str) -> None:
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(saved(tmp_path / "gru.safetensors", nn.GRU(3, 4))))
    save_file(change(arrays), str(tmp_path / "bad.safetensors"))
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(capsys, "convert", tmp_path / "bad.safetensors", "--to", "torch",
                             "-o", tmp_path / "out.pt")
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1, out + err
    assert sorted(p.name for p in tmp_path.iterdir()) == before and leftovers(tmp_path) == []


def test_gru_and_lstm_cells_under_one_prefix_are_refused_by_name(tmp_path, capsys) -> None:
    from safetensors.numpy import load_file, save_file

    gru = load_file(str(saved(tmp_path / "gru.safetensors", nn.GRU(3, 4))))
    lstm = load_file(str(saved(tmp_path / "lstm.safetensors", nn.LSTM(4, 4))))
    mixed = {**{f"layers.0.{k}": v for k, v in gru.items()},
             **{f"layers.1.{k}": v for k, v in lstm.items()}}
    save_file(mixed, str(tmp_path / "mixed.safetensors"))
    code, out, err = run_cli(capsys, "convert", tmp_path / "mixed.safetensors", "--to", "torch",
                             "-o", tmp_path / "out.pt")
    assert code == 2 and "nn.GRU keys" in err and not (tmp_path / "out.pt").exists(), out + err
