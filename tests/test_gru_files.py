"""GRU files through the command line: ``torch.save`` files of ``nn.GRU`` and ``nn.GRUCell``
inspected, converted with ``--verify`` (both sides run in torch, for real), compared, and
refused by name by the writers that build LSTM layers or nodes only (the Keras writer's
GRUs: tests/test_gru_keras_files.py)."""

from __future__ import annotations

import json

import pytest

from tests.file_helpers import leftovers, run_cli

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.cpu


def saved_gru(path, *, layers: int = 2, bidirectional: bool = True):
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    torch.save({"encoder.gru." + k: v for k, v in gru.state_dict().items()}, path)
    return path


def test_inspect_lists_a_gru_with_its_cell(tmp_path, capsys) -> None:
    code, out, err = run_cli(capsys, "inspect", saved_gru(tmp_path / "gru.pt"))
    assert code == 0, err
    assert "1 GRU(s)" in out and "encoder.gru  torch   GRU   2" in out and "nn.GRU" in out
    code, out, _ = run_cli(capsys, "inspect", tmp_path / "gru.pt", "--json")
    (item,) = json.loads(out)["lstms"]
    assert item["cell"] == "gru" and "cell=gru" in item["features"]


def test_a_gru_cell_state_dict_reads_as_one_layer(tmp_path, capsys) -> None:
    torch.save(torch.nn.GRUCell(3, 5).state_dict(), tmp_path / "cell.pt")
    code, out, err = run_cli(capsys, "inspect", tmp_path / "cell.pt")
    assert code == 0 and "GRU   1" in out and "nn.GRUCell keys" in out, out + err


def test_convert_a_gru_to_torch_and_verify_runs_both(tmp_path, capsys) -> None:
    out_path = tmp_path / "out.pt"
    code, out, err = run_cli(capsys, "convert", saved_gru(tmp_path / "gru.pt"), "--to", "torch",
                             "-o", out_path, "--verify")
    assert code == 0, out + err
    assert "torch.nn.GRU(input_size=3, hidden_size=4, num_layers=2" in out
    assert "verify: initial states" in out and "verify: PASSED" in out
    loaded = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    loaded.load_state_dict(torch.load(out_path))  # the file is what nn.GRU loads


def test_must_fail_compare_catches_and_names_a_z_r_swap(tmp_path, capsys) -> None:
    path = saved_gru(tmp_path / "gru.pt", layers=1, bidirectional=False)
    swapped = {}
    for key, value in torch.load(path).items():
        h = value.shape[0] // 3
        swapped[key] = torch.cat([value[h:2 * h], value[:h], value[2 * h:]])
    torch.save(swapped, tmp_path / "swapped.pt")
    from equivalence.cli.main import main

    code = main(["compare", str(path), str(tmp_path / "swapped.pt"), "--examples", "3"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "NOT EQUIVALENT" in out and "r and z blocks swapped" in out


@pytest.mark.parametrize(("target", "name", "writer"), [
    # the tf1 format and its checkpoints hold GRUCell (reset_after=False) only
    ("tf1", "out.ckpt", "tf1 cannot represent reset_after=True"),
])
def test_writers_without_gru_refuse_it_by_name_and_write_nothing(tmp_path, capsys, target: str,
                                                                 name: str, writer: str) -> None:
    source = saved_gru(tmp_path / "gru.pt")
    code, _, err = run_cli(capsys, "convert", source, "--to", target, "-o", tmp_path / name)
    assert code == 2 and writer in err, err
    assert not (tmp_path / name).exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- ONNX files


def exported_gru(path, *, layers: int = 2, bidirectional: bool = True):
    """An nn.GRU exported by torch.onnx (TorchScript exporter): its own GRU nodes."""
    torch.manual_seed(1)
    gru = torch.nn.GRU(3, 4, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    torch.onnx.export(gru, (torch.randn(2, 5, 3),), str(path), input_names=["x"],
                      output_names=["y", "h"], dynamo=False,
                      dynamic_axes={"x": {0: "batch", 1: "time"}})
    return path


def onnx_gru_file(path, *, linear_before_reset: int, seed: int = 2):
    """One GRU node written with onnx.helper, weights as initializers."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    arrays = {"W": rng.normal(size=(1, 12, 3)), "R": rng.normal(size=(1, 12, 4)),
              "B": rng.normal(size=(1, 24))}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()]
    node = helper.make_node("GRU", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=4,
                            linear_before_reset=linear_before_reset, name="gru")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["t", "b", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


@pytest.mark.parametrize("target", ["torch", "onnx"])
def test_an_exported_onnx_gru_converts_and_verifies(tmp_path, capsys, target: str) -> None:
    source = exported_gru(tmp_path / "gru.onnx")
    code, out, err = run_cli(capsys, "inspect", source)
    assert code == 0 and "1 GRU(s)" in out and "2 GRU node(s)" in out, out + err
    assert "linear_before_reset=1" in out
    name = "out.pt" if target == "torch" else "out.onnx"
    code, out, err = run_cli(capsys, "convert", source, "--to", target, "-o", tmp_path / name,
                             "--verify")
    assert code == 0 and "verify: PASSED" in out, out + err


def test_linear_before_reset_0_is_read_as_reset_after_false(tmp_path, capsys) -> None:
    source = onnx_gru_file(tmp_path / "before.onnx", linear_before_reset=0)
    code, out, err = run_cli(capsys, "inspect", source)
    assert code == 0 and "GRU (reset_after=False)" in out, out + err
    code, out, err = run_cli(capsys, "convert", source, "--to", "onnx", "-o",
                             tmp_path / "out.onnx", "--verify")
    assert code == 0 and "verify: PASSED" in out, out + err
    # PyTorch has the other variant only: refused by name, nothing written
    code, _, err = run_cli(capsys, "convert", source, "--to", "torch", "-o", tmp_path / "o.pt")
    assert code == 2 and "torch cannot represent reset_after=False" in err, err
    assert not (tmp_path / "o.pt").exists() and leftovers(tmp_path) == []


def test_must_fail_a_flipped_linear_before_reset_is_not_equivalent(tmp_path, capsys) -> None:
    from equivalence.cli.main import main

    after = onnx_gru_file(tmp_path / "after.onnx", linear_before_reset=1)
    before = onnx_gru_file(tmp_path / "before.onnx", linear_before_reset=0)  # same weights
    code = main(["compare", str(after), str(before), "--examples", "3"])
    out = capsys.readouterr().out
    assert code == 1 and "NOT EQUIVALENT" in out, out


# ----------------------------------------------------------------------------- Keras files


def keras_gru_file(path, kind: str):
    """A saved Keras model: a GRU stack, a Bidirectional GRU(reset_after=False), an RNN over
    stacked GRUCells (Keras 3, .keras), or a tf_keras GRU(reset_after=False) in .h5."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if kind == "tf_keras_h5":
        tf_keras = pytest.importorskip("tf_keras")
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.Sequential([tf_keras.layers.InputLayer((None, 3)),
                                     tf_keras.layers.GRU(4, return_sequences=True,
                                                         reset_after=False)])
        model.save(str(path))
        return path
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    biased = {"return_sequences": True, "bias_initializer": "random_normal"}
    layers = {
        "stack": [keras.layers.GRU(4, **biased), keras.layers.GRU(4, return_sequences=True)],
        "bidirectional_before": [keras.layers.Bidirectional(
            keras.layers.GRU(4, reset_after=False, **biased))],
        "cells": [keras.layers.RNN(keras.layers.StackedRNNCells(
            [keras.layers.GRUCell(4), keras.layers.GRUCell(4)]), return_sequences=True)],
    }[kind]
    keras.Sequential([keras.Input((None, 3)), *layers]).save(str(path))
    return path


@pytest.mark.parametrize(("kind", "name", "cell"), [
    ("stack", "m.keras", "GRU   2       1"),
    ("bidirectional_before", "m.keras", "GRU (reset_after=False)  1       2"),
    ("cells", "m.keras", "GRU   2       1"),
    ("tf_keras_h5", "m.h5", "GRU (reset_after=False)  1       1"),
])
def test_keras_gru_models_inspect_and_convert_to_onnx_with_verify(tmp_path, capsys, kind: str,
                                                                  name: str, cell: str) -> None:
    source = keras_gru_file(tmp_path / name, kind)
    code, out, err = run_cli(capsys, "inspect", source)
    assert code == 0 and "1 GRU(s)" in out and cell in out, out + err
    code, out, err = run_cli(capsys, "convert", source, "--to", "onnx", "-o",
                             tmp_path / "out.onnx", "--verify")
    assert code == 0 and "verify: PASSED" in out, out + err


def test_a_keras_gru_stack_converts_to_torch_with_verify(tmp_path, capsys) -> None:
    source = keras_gru_file(tmp_path / "m.keras", "stack")
    code, out, err = run_cli(capsys, "convert", source, "--to", "torch", "-o",
                             tmp_path / "out.pt", "--verify")
    assert code == 0 and "verify: PASSED" in out and "torch.nn.GRU(" in out, out + err


def test_must_fail_a_keras_gru_against_its_onnx_with_the_variant_flipped(tmp_path,
                                                                         capsys) -> None:
    import onnx

    from equivalence.cli.main import main

    source = keras_gru_file(tmp_path / "m.keras", "stack")
    code, out, err = run_cli(capsys, "convert", source, "--to", "onnx", "-o",
                             tmp_path / "right.onnx")
    assert code == 0, out + err
    model = onnx.load(str(tmp_path / "right.onnx"))
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "linear_before_reset":
                attribute.i = 0
    onnx.save(model, str(tmp_path / "flipped.onnx"))
    assert main(["compare", str(source), str(tmp_path / "right.onnx"), "--examples", "3"]) == 0
    capsys.readouterr()
    code = main(["compare", str(source), str(tmp_path / "flipped.onnx"), "--examples", "3"])
    out = capsys.readouterr().out
    assert code == 1 and "NOT EQUIVALENT" in out, out
