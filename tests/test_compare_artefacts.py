"""``equivalence compare`` on the artefacts people deploy, and on tampered copies of them.

Every artefact is built for real: ``torch.onnx.export`` with and without
dynamic axes and with the states as inputs and outputs, a Keras model exported
to a SavedModel and to LiteRT, an OpenVINO IR written by ``ov.save_model``.
The tampered copies must fail, each caught by the probe that shows it and
named in the diagnosis: a gate swap, h and c outputs swapped, a dropped
initial state, and a trained network (textgenrnn) with one gate 2% off.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")  # the NeoML environment collects this module too
torch = pytest.importorskip("torch")  # the NeoML environment collects this module too
from onnx import numpy_helper  # noqa: E402

from equivalence.artefacts import command  # noqa: E402

pytestmark = [pytest.mark.cpu, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def compare(capsys, *argv: object) -> tuple[int, dict]:
    parser = argparse.ArgumentParser(prog="equivalence")
    command.add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["compare", *(str(a) for a in argv), "--json", "--examples", "3"])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {"error": err})


def verdicts(document: dict) -> dict[str, str]:
    return {p["name"]: p["verdict"] for p in document["probes"]}


class Step(torch.nn.Module):
    """What users export for a decoder step: forward(x, h0, c0) -> (y, h, c)."""

    def __init__(self, lstm: torch.nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))
        return y, h, c


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """A unidirectional 2-layer LSTM's state_dict and its torch.onnx exports."""
    folder = tmp_path_factory.mktemp("exports")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 8, num_layers=2, batch_first=True).eval()
    torch.save(lstm.state_dict(), folder / "lstm.pt")
    args = (torch.zeros(2, 5, 6), torch.zeros(2, 2, 8), torch.zeros(2, 2, 8))
    names = dict(input_names=["input", "h0", "c0"], output_names=["output", "hn", "cn"])
    axes = {"input": {0: "batch", 1: "time"}, "h0": {1: "batch"}, "c0": {1: "batch"},
            "output": {0: "batch", 1: "time"}, "hn": {1: "batch"}, "cn": {1: "batch"}}
    torch.onnx.export(Step(lstm), args, folder / "step.onnx", dynamo=False, **names,
                      dynamic_axes=axes)
    torch.onnx.export(Step(lstm), args, folder / "fixed.onnx", dynamo=False, **names)
    torch.onnx.export(lstm, (args[0],), folder / "plain.onnx", dynamo=False,
                      input_names=["input"], output_names=["output", "hn", "cn"],
                      dynamic_axes={"input": {0: "batch", 1: "time"}})
    return {p.stem: p for p in folder.iterdir()} | {"folder": folder}


def test_a_dynamic_export_with_states_matches_every_probe(exported, capsys):
    code, document = compare(capsys, exported["lstm"], exported["step"])
    assert code == 0, document
    assert set(verdicts(document).values()) == {"match"}
    assert {"initial states", "streaming", "longer time", "larger batch"} <= set(
        verdicts(document))
    assert document["b"]["inputs"] == {"x": "input", "h0": "h0", "c0": "c0"}
    assert document["b"]["outputs"] == {"y": "output", "h": "hn", "c": "cn"}


def test_a_fixed_shape_export_matches_at_its_shape_and_refuses_the_others(exported, capsys):
    code, document = compare(capsys, exported["lstm"], exported["fixed"])
    assert code == 0 and document["verdict"] == "equivalent", document
    found = verdicts(document)
    assert found["exported shape"] == "match" and found["streaming"] == "match"
    assert document["b"]["fixed"] == {"batch": 2, "steps": 5}
    for name in ("time 1", "shorter time", "longer time", "batch 1", "larger batch"):
        assert found[name] == "refused", found
    refused = next(p for p in document["probes"] if p["name"] == "longer time")
    assert "invalid dimensions" in refused["reason"]


def test_an_export_without_state_inputs_is_compared_on_what_it_has(exported, capsys):
    code, document = compare(capsys, exported["lstm"], exported["plain"])
    assert code == 0, document
    skipped = {p["name"] for p in document["not_probed"]}
    assert {"initial states", "streaming"} <= skipped


def _tampered(source: Path, folder: Path, name: str, change) -> Path:
    model = onnx.load(str(source))
    change(model)
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _swap_gates(model) -> None:
    """Swap the i and o blocks of the first LSTM node's W (ONNX gate order i, o, f, c)."""
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    w = numpy_helper.to_array(init).copy()
    units = w.shape[1] // 4
    w[:, :units], w[:, units:2 * units] = w[:, units:2 * units].copy(), w[:, :units].copy()
    init.CopyFrom(numpy_helper.from_array(w, init.name))


def _swap_state_outputs(model) -> None:
    for node in model.graph.node:
        node.output[:] = [{"hn": "cn", "cn": "hn"}.get(o, o) for o in node.output]


def _drop_initial_states(model) -> None:
    """Every LSTM node's initial_h/initial_c replaced by zeros: the h0/c0 inputs go unused."""
    for k, node in enumerate(n for n in model.graph.node if n.op_type == "LSTM"):
        hidden = 8
        for slot, role in ((5, "h"), (6, "c")):
            name = f"zero_{role}_{k}"
            model.graph.initializer.append(numpy_helper.from_array(
                np.zeros((1, 2, hidden), np.float32), name))
            node.input[slot] = name


def test_a_gate_swap_is_named_in_weight_space(exported, capsys):
    broken = _tampered(exported["step"], exported["folder"], "gates", _swap_gates)
    code, document = compare(capsys, exported["lstm"], broken)
    assert code == 1 and verdicts(document)["exported shape"] == "silently wrong"
    assert document["b"]["weights_read"], document["b"]
    assert "swapped" in document["diagnosis"], document["diagnosis"]


def test_swapped_h_and_c_outputs_are_caught_and_named(exported, capsys):
    broken = _tampered(exported["step"], exported["folder"], "hc", _swap_state_outputs)
    code, document = compare(capsys, exported["lstm"], broken)
    assert code == 1 and verdicts(document)["streaming"] == "silently wrong", document
    assert "h and c are swapped" in document["diagnosis"], document["diagnosis"]


def test_a_dropped_initial_state_is_caught_and_named(exported, capsys):
    broken = _tampered(exported["fixed"], exported["folder"], "nostate", _drop_initial_states)
    code, document = compare(capsys, exported["lstm"], broken)
    assert code == 1, document
    found = verdicts(document)
    assert found["exported shape"] == "match" and found["initial states"] == "silently wrong"
    assert "ignores the initial states" in document["diagnosis"], document["diagnosis"]


# ---------------------------------------------------------------- Keras, LiteRT, OpenVINO


@pytest.fixture(scope="module")
def keras_exports(tmp_path_factory) -> dict[str, Path]:
    import keras
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 3), name="seq")
    y, h, c = keras.layers.LSTM(4, return_sequences=True, return_state=True)(inputs)
    model = keras.Model(inputs, [y, h, c])
    model.save(folder / "m.keras")
    model.export(folder / "saved", verbose=False)
    model.export(folder / "m.tflite", format="litert", verbose=False,
                 input_signature=[tf.TensorSpec((2, 5, 3), tf.float32)])
    return {"keras": folder / "m.keras", "saved": folder / "saved",
            "tflite": folder / "m.tflite"}


def test_a_keras_savedmodel_export_matches(keras_exports, capsys):
    code, document = compare(capsys, keras_exports["keras"], keras_exports["saved"])
    assert code == 0, document
    assert document["b"]["kind"] and verdicts(document)["longer time"] == "match"


def test_a_keras_litert_export_matches_at_its_fixed_shape(keras_exports, capsys):
    code, document = compare(capsys, keras_exports["keras"], keras_exports["tflite"])
    assert code == 0, document
    found = verdicts(document)
    assert found["exported shape"] == "match" and found["longer time"] == "refused", found


def test_an_openvino_ir_from_ov_save_model_matches(exported, capsys):
    import openvino as ov

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 8, num_layers=2, batch_first=True).eval()
    lstm.load_state_dict(torch.load(exported["lstm"], weights_only=True))
    args = (torch.zeros(2, 5, 6), torch.zeros(2, 2, 8), torch.zeros(2, 2, 8))
    model = ov.convert_model(Step(lstm), example_input=args)
    path = exported["folder"] / "ir" / "model.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    code, document = compare(capsys, exported["lstm"], path)
    assert code == 0, document
    assert verdicts(document)["exported shape"] == "match" and document["b"]["weights_read"]


# ---------------------------------------------------------------- a trained network


def test_a_trained_network_with_one_gate_two_percent_off_fails(tmp_path, capsys):
    from equivalence.cli import files as cli
    from tests.field_packages import package_file

    source = package_file("textgenrnn==2.0.0", "textgenrnn/textgenrnn_weights.hdf5")
    converted = tmp_path / "textgenrnn.pt"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", str(source), "--to", "torch", "-o", str(converted)])
    assert args.func(args) == 0
    capsys.readouterr()
    state = torch.load(converted, weights_only=True)
    units = state["weight_hh_l1"].shape[1]
    state["weight_hh_l1"][2 * units:3 * units] *= 1.02  # torch's g block, layer 2
    torch.save(state, tmp_path / "off.pt")
    code, document = compare(capsys, source, converted)
    assert code == 0, document  # the faithful copy, under the trained net's own tolerance
    code, document = compare(capsys, source, tmp_path / "off.pt")
    assert code == 1 and verdicts(document)["exported shape"] == "silently wrong"
    assert "layer 1" in document["diagnosis"], document["diagnosis"]


def test_a_savedmodel_that_writes_files_is_refused_before_it_runs(tmp_path, capsys):
    import tensorflow as tf

    leaked = tmp_path / "leaked.txt"

    class Leaky(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, None, 3), tf.float32)])
        def serve(self, x):
            tf.io.write_file(str(leaked), tf.strings.as_string(tf.reduce_sum(x)))
            return {"output_0": x}

    module = Leaky()
    tf.saved_model.save(module, str(tmp_path / "leaky"), signatures={"serving_default":
                                                                      module.serve})
    source = tmp_path / "lstm.pt"
    torch.save(torch.nn.LSTM(3, 3, batch_first=True).state_dict(), source)
    code, document = compare(capsys, source, tmp_path / "leaky")
    assert code == 2 and "WriteFile" in document["error"], document
    assert not leaked.exists()
