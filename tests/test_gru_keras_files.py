"""Keras GRU files written and read through the command line: an ``nn.GRU`` ``.pt`` written
as a Keras 3 ``.keras``, ``.weights.h5`` and a tf_keras ``.h5`` (``GRU`` layers, both
``reset_after`` variants, stacked and bidirectional), each checked by ``--verify`` (the
written layers rebuilt from their config and run) and by ``equivalence compare``; a written
file with z and r swapped in its weights is NOT EQUIVALENT; weights-only GRU files that
Keras's own ``save_weights`` wrote are read (the variant from the bias shape) and held to
the Keras model's outputs; hostile biases are refused with one message."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from equivalence import reference
from equivalence.compare import Tolerance
from equivalence.files import registry
from tests.file_helpers import leftovers, one_error_line, run_cli

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
pytestmark = pytest.mark.cpu

IN, H, B, T = 3, 4, 2, 6


def saved_gru(path: Path, *, layers: int = 2, bidirectional: bool = True) -> Path:
    torch.manual_seed(0)
    gru = torch.nn.GRU(IN, H, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    torch.save(gru.state_dict(), path)
    return path


def keras_before_reset(path: Path) -> Path:
    """A Keras 3 .keras model: a stack of Bidirectional GRU(reset_after=False) layers, random
    biases (a PyTorch file cannot hold this variant)."""
    keras.utils.set_random_seed(3)
    def layer() -> object:
        return keras.layers.Bidirectional(keras.layers.GRU(
            H, reset_after=False, return_sequences=True, bias_initializer="random_normal"))
    keras.Sequential([keras.Input((None, IN)), layer(), layer()]).save(str(path))
    return path


# ----------------------------------------------------------------------------- editing files


def edit_h5(source: Path, target: Path, edit: Callable[[object], None]) -> Path:
    """A copy of an HDF5 file with ``edit`` applied to it (the source is left alone)."""
    import h5py

    if source != target:
        shutil.copyfile(source, target)
    with h5py.File(target, "r+") as handle:
        edit(handle)
    return target


def edit_keras(source: Path, target: Path, edit: Callable[[object], None]) -> Path:
    """A copy of a .keras archive whose model.weights.h5 has ``edit`` applied."""
    inner = target.with_name(target.name + ".weights.h5")
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    inner.write_bytes(members["model.weights.h5"])
    edit_h5(inner, inner, edit)
    members["model.weights.h5"] = inner.read_bytes()
    inner.unlink()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def datasets(handle: object) -> list[object]:
    import h5py

    found: list[object] = []
    handle.visititems(lambda _, item: found.append(item)  # type: ignore[attr-defined]
                      if isinstance(item, h5py.Dataset) else None)
    return found


def swap_z_r(handle: object) -> None:
    """Every GRU array's first two 3H blocks (z and r, Keras's order) trade places."""
    for item in datasets(handle):
        value = item[()]
        if value.ndim and value.shape[-1] == 3 * H:
            z, r, n = np.split(value, 3, axis=-1)
            item[...] = np.concatenate([r, z, n], axis=-1)


def replace_bias(shape: tuple[int, ...]) -> Callable[[object], None]:
    """Every bias array (a (2, 3H) or (3H,) dataset) replaced by zeros of ``shape``."""
    def edit(handle: object) -> None:
        for item in datasets(handle):
            if item.shape in ((2, 3 * H), (3 * H,)):
                name, parent = item.name, item.parent
                del handle[name]  # type: ignore[attr-defined]
                parent.create_dataset(name.rsplit("/", 1)[1], data=np.zeros(shape, "float32"))
    return edit


def written(tmp_path: Path, source: Path, name: str, capsys) -> Path:
    code, out, err = run_cli(capsys, "convert", source, "--to", "keras", "-o", tmp_path / name)
    assert code == 0, out + err
    return tmp_path / name


def compare(a: Path, b: Path, capsys) -> tuple[int, str]:
    from equivalence.cli.main import main

    code = main(["compare", str(a), str(b), "--examples", "3"])
    return code, capsys.readouterr().out


# ----------------------------------------------------------------------------- writing

NAMES = ["out.keras", "out.weights.h5", "out.h5"]


def converted_and_verified(capsys, source, target) -> str:
    """``convert --to keras -o target --verify``, which must pass; its printout."""
    code, out, err = run_cli(capsys, "convert", source, "--to", "keras", "-o", target,
                             "--verify")
    assert code == 0 and "verify: PASSED" in out, out + err
    return out


@pytest.mark.parametrize("name", NAMES)
def test_an_nn_gru_written_as_keras_verifies_and_compares_equivalent(tmp_path, capsys,
                                                                     name: str) -> None:
    source = saved_gru(tmp_path / "gru.pt")
    out = converted_and_verified(capsys, source, tmp_path / name)
    if name != "out.keras":
        assert "layers.Bidirectional(" in out and "layers.GRU(4, return_sequences=True)" in out
    code, out, err = run_cli(capsys, "inspect", tmp_path / name)
    assert code == 0 and "GRU   2       2" in out, out + err
    code, out = compare(source, tmp_path / name, capsys)
    assert code == 0 and "EQUIVALENT" in out and "NOT EQUIVALENT" not in out, out


@pytest.mark.parametrize("name", NAMES)
def test_reset_after_false_is_written_with_its_one_bias_and_verifies(tmp_path, capsys,
                                                                     name: str) -> None:
    source = keras_before_reset(tmp_path / "before.keras")
    converted_and_verified(capsys, source, tmp_path / name)
    code, out, err = run_cli(capsys, "inspect", tmp_path / name)
    assert code == 0 and "GRU (reset_after=False)  2       2" in out and "one (3H)" in out, (
        out + err)


def test_a_written_keras_gru_is_the_layer_keras_loads(tmp_path, capsys) -> None:
    """Keras itself loads the written file: GRU layers of the variant asked for, bias
    shapes Keras's own, outputs torch's (the torch module run on the same input)."""
    source = saved_gru(tmp_path / "gru.pt", layers=1, bidirectional=False)
    model = keras.models.load_model(written(tmp_path, source, "out.keras", capsys))
    (layer,) = [lay for lay in model.layers if isinstance(lay, keras.layers.GRU)]
    assert layer.reset_after and [w.shape for w in layer.get_weights()] == [
        (IN, 3 * H), (H, 3 * H), (2, 3 * H)]
    gru = torch.nn.GRU(IN, H, batch_first=True)
    gru.load_state_dict(torch.load(source))
    x = np.random.default_rng(0).normal(size=(B, T, IN)).astype("float32")
    expected = gru(torch.from_numpy(x))[0].detach().numpy()
    got = np.asarray(model(x))
    assert np.all(np.abs(got - expected) <= Tolerance.for_case("float32", T).allowed(expected))


@pytest.mark.parametrize("name", ["out.keras", "out.h5"])
def test_must_fail_a_written_file_with_z_and_r_swapped_is_not_equivalent(tmp_path, capsys,
                                                                         name: str) -> None:
    source = saved_gru(tmp_path / "gru.pt", layers=1, bidirectional=False)
    right = written(tmp_path, source, name, capsys)
    edit = edit_keras if name.endswith(".keras") else edit_h5
    swapped = edit(right, tmp_path / f"swapped{right.suffix}", swap_z_r)
    code, out = compare(source, right, capsys)
    assert code == 0, out
    code, out = compare(source, swapped, capsys)
    assert code == 1 and "NOT EQUIVALENT" in out and "r and z blocks swapped" in out, out


def test_with_states_refuses_a_gru_by_name_and_writes_nothing(tmp_path, capsys) -> None:
    source = saved_gru(tmp_path / "gru.pt")
    code, _, err = run_cli(capsys, "convert", source, "--to", "keras", "-o",
                           tmp_path / "out.keras", "--with-states")
    assert code == 2 and "keras files with --with-states cannot represent cell=gru" in err, err
    assert not (tmp_path / "out.keras").exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- weights-only


def keras3_weights(path: Path, kind: str) -> tuple[Path, object]:
    """Keras 3's own save_weights of a GRU model built here: a GRU(reset_after=True) stack,
    or a Bidirectional GRU(reset_after=False); random biases."""
    keras.utils.set_random_seed(1)
    biased = {"return_sequences": True, "bias_initializer": "random_normal"}
    layers = {
        "stack": [keras.layers.GRU(H, **biased), keras.layers.GRU(H, **biased)],
        "bidirectional_before": [keras.layers.Bidirectional(
            keras.layers.GRU(H, reset_after=False, **biased))],
    }[kind]
    model = keras.Sequential([keras.Input((None, IN)), *layers])
    model.save_weights(str(path))
    return path, model


def tf_keras_weights(path: Path, reset_after: bool) -> tuple[Path, object]:
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.utils.set_random_seed(2)
    model = tf_keras.Sequential([tf_keras.layers.InputLayer((None, IN)), tf_keras.layers.GRU(
        H, reset_after=reset_after, return_sequences=True, bias_initializer="random_normal")])
    model.save_weights(str(path))
    return path, model


def held_to(path: Path, model: object) -> tuple[bool, float]:
    """Whether the file's one GRU, read by the harness and run by the float64 reference,
    gives the Keras model's own outputs (the compare policy's float32 floor), and the
    largest difference."""
    (found,) = registry.read(path)
    x = np.random.default_rng(4).normal(size=(B, T, IN)).astype("float32")
    expected = np.asarray(model(x))  # type: ignore[operator]
    ours = reference.run(found.canonical(), x.astype(np.float64)).outputs
    allowed = Tolerance.for_case("float32", T).allowed(expected)
    return bool(np.all(np.abs(ours - expected) <= allowed)), float(np.abs(ours - expected).max())


WEIGHTS = [
    ("stack", "GRU   2       1", "reset_after=True from its (2, 12) bias"),
    ("bidirectional_before", "GRU (reset_after=False)  1       2",
     "reset_after=False from its (12,) bias"),
]


@pytest.mark.parametrize(("kind", "row", "note"), WEIGHTS)
def test_keras3_gru_weights_files_read_as_keras_runs_them(tmp_path, capsys, kind: str, row: str,
                                                          note: str) -> None:
    path, model = keras3_weights(tmp_path / "m.weights.h5", kind)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0 and "1 GRU(s)" in out and row in out and note in out, out + err
    ok, worst = held_to(path, model)
    assert ok, worst
    # must-fail twin: the same file with z and r swapped no longer computes the model
    swapped = edit_h5(path, tmp_path / "swapped.weights.h5", swap_z_r)
    assert not held_to(swapped, model)[0]


@pytest.mark.parametrize("reset_after", [True, False])
def test_tf_keras_gru_weights_files_read_as_tf_keras_runs_them(tmp_path, reset_after: bool
                                                               ) -> None:
    path, model = tf_keras_weights(tmp_path / "m.h5", reset_after)
    (found,) = registry.read(path)
    assert found.read_options["reset_after"] is reset_after and found.spec.cell == "gru"
    ok, worst = held_to(path, model)
    assert ok, worst
    assert not held_to(edit_h5(path, tmp_path / "swapped.h5", swap_z_r), model)[0]


def test_a_weights_file_gru_converts_to_torch_with_verify(tmp_path, capsys) -> None:
    path, _ = keras3_weights(tmp_path / "m.weights.h5", "stack")
    code, out, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", tmp_path / "o.pt",
                             "--verify")
    assert code == 0 and "verify: PASSED" in out and "torch.nn.GRU(" in out, out + err


def test_lstm_and_gru_of_equal_column_counts_are_told_apart_by_the_recurrent_rows(
        tmp_path, capsys) -> None:
    """12 columns are a GRU of 4 or an LSTM of 3: the (H, gates*H) recurrent kernel says
    which; both read from one weights file, neither as the other."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((None, IN)),
                              keras.layers.GRU(4, return_sequences=True, name="gru"),
                              keras.layers.LSTM(3, return_sequences=True, name="lstm")])
    model.save_weights(str(tmp_path / "m.weights.h5"))
    found = {item.name: item.spec for item in registry.read(tmp_path / "m.weights.h5")}
    assert (found["gru"].cell, found["gru"].units) == ("gru", 4)
    assert (found["lstm"].cell, found["lstm"].units) == ("lstm", 3)


# ----------------------------------------------------------------------------- hostile files


@pytest.mark.parametrize(("make", "shape", "message"), [
    ("weights", (2, 3 * H + 1), "GRU bias of shape (2, 13), expected (2, 12) "
                                "(reset_after=True) or (12,) (reset_after=False) for H=4"),
    ("weights", (6 * H,), "a CuDNNGRU's 6H bias"),
    ("keras", (3 * H,), "weights[2] (layer 0 bias): shape (12,), expected (2, 12)"),
    ("h5", (2, 3 * H + 1), "weights[2] (layer 0 bias): shape (2, 13), expected (2, 12)"),
])
def test_a_wrong_gru_bias_shape_is_exit_2_and_one_message(tmp_path, capsys, make: str,
                                                          shape: tuple[int, ...],
                                                          message: str) -> None:
    source = saved_gru(tmp_path / "gru.pt", layers=1, bidirectional=False)
    name = {"weights": "o.weights.h5", "keras": "o.keras", "h5": "o.h5"}[make]
    right = written(tmp_path, source, name, capsys)
    edit = edit_keras if make == "keras" else edit_h5
    hostile = edit(right, tmp_path / f"bad-{name}", replace_bias(shape))
    before = hostile.read_bytes()
    code, _, err = run_cli(capsys, "convert", hostile, "--to", "torch", "-o", tmp_path / "o.pt")
    assert code == 2 and one_error_line(err, hostile) and message in err, err
    assert not (tmp_path / "o.pt").exists() and hostile.read_bytes() == before


def test_a_weights_file_gru_without_bias_is_refused_by_name(tmp_path, capsys) -> None:
    """No bias: either reset_after fits the arrays, and they are different functions."""
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((None, IN)),
                              keras.layers.GRU(H, use_bias=False, return_sequences=True)])
    model.save_weights(str(tmp_path / "m.weights.h5"))
    code, _, err = run_cli(capsys, "convert", tmp_path / "m.weights.h5", "--to", "torch", "-o",
                           tmp_path / "o.pt")
    assert code == 2 and one_error_line(err, tmp_path / "m.weights.h5"), err
    assert "a GRU without biases (use_bias=False): its reset_after" in err
    assert not (tmp_path / "o.pt").exists()


def test_a_weights_file_cell_of_zero_units_is_refused_as_either_cell(tmp_path, capsys) -> None:
    """A (0, 0) recurrent kernel is (H, 4H) and (H, 3H) at once: no cell is guessed."""
    source = saved_gru(tmp_path / "gru.pt", layers=1, bidirectional=False)
    right = written(tmp_path, source, "o.weights.h5", capsys)

    emptied = {(IN, 3 * H): (IN, 0), (H, 3 * H): (0, 0), (2, 3 * H): (2, 0)}

    def empty(handle: object) -> None:
        for item in datasets(handle):
            name, parent, shape = item.name, item.parent, emptied[item.shape]
            del handle[name]  # type: ignore[attr-defined]
            parent.create_dataset(name.rsplit("/", 1)[1], data=np.zeros(shape, "float32"))

    hostile = edit_h5(right, tmp_path / "empty.weights.h5", empty)
    code, _, err = run_cli(capsys, "convert", hostile, "--to", "torch", "-o", tmp_path / "o.pt")
    assert code == 2 and one_error_line(err, hostile), err
    assert "H=0 fits an LSTM and a GRU alike" in err
