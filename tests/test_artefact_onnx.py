"""The whole-ONNX-model compare side, on real exports: torch.onnx.export of a 2-layer
bidirectional ``nn.LSTM`` (batch-first and time-major, dynamic axes and fixed shapes,
states in and out, unnamed outputs) and our own ``--with-states`` file, each run in
onnxruntime and judged against the torch module itself; tampered exports must fail."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")  # the NeoML environment collects this module too
torch = pytest.importorskip("torch")  # the NeoML environment collects this module too
from onnx import helper, numpy_helper  # noqa: E402

from equivalence.artefacts.onnx_model import onnx_side  # noqa: E402
from equivalence.artefacts.onnx_roles import name_role  # noqa: E402
from equivalence.artefacts.side import Feed, Refused  # noqa: E402
from equivalence.convert import to_canonical  # noqa: E402
from equivalence.errors import ConversionError  # noqa: E402

pytestmark = pytest.mark.cpu
TOL = 1e-5
I, H, ROWS = 3, 4, 4  # input size, units, layers * directions  # noqa: E741


class WithStates(torch.nn.Module):
    """What users export for a decoder step: states in, output and states out."""

    def __init__(self, lstm: torch.nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))
        return y, h, c


class Summed(torch.nn.Module):
    """Two inputs added before the LSTM: neither name nor dataflow says which is x."""

    def __init__(self, lstm: torch.nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, a, b):
        return self.lstm(a + b)[0]


class Two(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # another hidden size: the reader stacks LSTM nodes of equal attributes
        self.enc, self.dec = torch.nn.LSTM(I, H), torch.nn.LSTM(H, H + 1)

    def forward(self, x):
        return self.dec(self.enc(x)[0])[0]


def lstm(batch_first: bool, seed: int = 0) -> torch.nn.LSTM:
    torch.manual_seed(seed)
    return torch.nn.LSTM(I, H, num_layers=2, bidirectional=True,
                         batch_first=batch_first).eval()


def export(module: torch.nn.Module, path: Path, batch_first: bool, *, dynamic: bool,
           inputs=("x", "h0", "c0"), outputs=("output", "hn", "cn"), b=2, t=5, **kw) -> Path:
    x = torch.randn(b, t, I) if batch_first else torch.randn(t, b, I)
    states = (torch.randn(ROWS, b, H), torch.randn(ROWS, b, H))
    args = (x, torch.randn_like(x)) if inputs == ("a", "b") else (x, *states)[:len(inputs)]
    axes = None
    if dynamic:
        seq = {0: "batch", 1: "time"} if batch_first else {0: "time", 1: "batch"}
        axes = {n: seq if n in ("x", "input", "output") else {1: "batch"}
                for n in inputs + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=list(inputs),
                          output_names=list(outputs) or None, dynamic_axes=axes, **kw)
    return path


def feed(b: int, t: int, states: bool = True, seed: int = 1) -> Feed:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, t, I)).astype(np.float32)
    if not states:
        return Feed(x)
    h0, c0 = (rng.standard_normal((ROWS, b, H)).astype(np.float32) for _ in range(2))
    return Feed(x, h0, c0)


def torch_run(module: torch.nn.LSTM, f: Feed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The module's own y (B, T, D*H), h, c for ``f`` (zeros states where none fed)."""
    x = torch.from_numpy(f.x if module.batch_first else f.x.transpose(1, 0, 2).copy())
    states = None if f.h0 is None else (torch.from_numpy(f.h0), torch.from_numpy(f.c0))
    with torch.no_grad():
        y, (h, c) = module(x, states)
    y = y.numpy() if module.batch_first else y.numpy().transpose(1, 0, 2)
    return y, h.numpy(), c.numpy()


def diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.LSTM]]:
    folder = tmp_path_factory.mktemp("onnx_exports")
    bf, tm = lstm(True), lstm(False, seed=1)
    files = {
        "bf_dynamic": (export(WithStates(bf), folder / "bf_dyn.onnx", True, dynamic=True), bf),
        "bf_fixed": (export(WithStates(bf), folder / "bf_fix.onnx", True, dynamic=False), bf),
        "tm_dynamic": (export(WithStates(tm), folder / "tm_dyn.onnx", False, dynamic=True), tm),
        "tm_fixed": (export(WithStates(tm), folder / "tm_fix.onnx", False, dynamic=False), tm),
        # the plain module, no names given: input "input", outputs named by numbers
        "plain": (export(bf, folder / "plain.onnx", True, dynamic=False, inputs=("input",),
                         outputs=()), bf),
        # h and c named the wrong way round: the user's code reads "hn" as h
        "swapped": (export(WithStates(bf), folder / "swapped.onnx", True, dynamic=True,
                           outputs=("output", "cn", "hn")), bf),
        "summed": (export(Summed(bf), folder / "summed.onnx", True, dynamic=False,
                          inputs=("a", "b"), outputs=("output",)), bf),
    }
    return files


def check_equal(side, module, f: Feed) -> None:
    got = side.run(f)
    y, h, c = torch_run(module, f)
    assert diff(got.y, y) < TOL and diff(got.h, h) < TOL and diff(got.c, c) < TOL


@pytest.mark.parametrize("which", ["bf_dynamic", "tm_dynamic"])
def test_dynamic_export_matches_torch_at_other_shapes(made, which):
    path, module = made[which]
    side = onnx_side(path)
    assert side.names == {"x": "x", "h0": "h0", "c0": "c0", "y": "output", "h": "hn",
                          "c": "cn"}
    assert side.takes == {"h0", "c0"} and side.returns == {"y", "h", "c"}
    assert side.fixed_batch is None and side.fixed_steps is None
    assert ("batch-first" if module.batch_first else "time-major") in side.label
    assert side.weights is not None and side.weights.spec.layers == 2
    assert (side.shape.input_size, side.shape.output_width, side.shape.state_rows,
            side.shape.units) == (I, 2 * H, ROWS, H)
    for b, t in ((3, 7), (1, 1), (2, 5)):
        check_equal(side, module, feed(b, t))
    y, _, _ = torch_run(module, feed(3, 4, states=False))
    assert diff(side.run(feed(3, 4, states=False)).y, y) < TOL  # zeros states when none fed


@pytest.mark.parametrize("which", ["bf_fixed", "tm_fixed"])
def test_fixed_export_fixes_its_shape_and_refuses_others(made, which):
    path, module = made[which]
    side = onnx_side(path)
    assert (side.fixed_batch, side.fixed_steps) == (2, 5)
    check_equal(side, module, feed(2, 5))
    with pytest.raises(Refused, match=r"(?i)invalid dimensions|shape"):
        side.run(feed(2, 6))
    with pytest.raises(Refused) as refused:
        side.run(feed(3, 5))
    assert len(str(refused.value)) <= 200


def test_unnamed_outputs_get_their_roles_from_the_dataflow(made):
    path, module = made["plain"]
    side = onnx_side(path)
    model = onnx.load(str(path))
    outs = [o.name for o in model.graph.output]
    assert all(o.isdigit() for o in outs)  # TorchScript names them by number
    assert side.names == {"x": "input", "y": outs[0], "h": outs[1], "c": outs[2]}
    assert side.takes == frozenset()  # its initial states are zeros made from x's shape
    check_equal(side, module, feed(2, 5, states=False))
    with pytest.raises(Refused, match="takes no h0"):
        side.run(feed(2, 5))


def test_swapped_output_names_read_by_name_with_a_note(made):
    path, module = made["swapped"]
    side = onnx_side(path)
    assert side.names["h"] == "hn" and side.names["c"] == "cn"
    f = feed(3, 6)
    got = side.run(f)
    y, h, c = torch_run(module, f)
    assert diff(got.y, y) < TOL
    assert diff(got.h, c) < TOL and diff(got.c, h) < TOL  # what the user's code would read
    assert diff(got.h, h) > 1e-3
    notes = " ".join(side.notes)
    assert "'hn' is read as h by its name; the dataflow says c" in notes
    assert "'cn' is read as c by its name; the dataflow says h" in notes


def test_undecidable_input_roles_name_the_inputs_and_map(made):
    path, _ = made["summed"]
    with pytest.raises(ConversionError, match="--map") as error:
        onnx_side(path)
    assert "'a'" in str(error.value) and "'b'" in str(error.value)
    with pytest.raises(ConversionError, match="'b' reaches the LSTM's x, already 'a'"):
        onnx_side(path, mapping={"x": "a"})  # b still has no role it could play


def test_map_overrides_the_roles_read(made):
    path, module = made["bf_dynamic"]
    side = onnx_side(path, mapping={"h0": "c0", "c0": "h0"})
    assert side.names["h0"] == "c0" and side.names["c0"] == "h0"
    f = feed(2, 4)
    got = side.run(f)
    y, h, _ = torch_run(module, Feed(f.x, f.c0, f.h0))
    assert diff(got.y, y) < TOL and diff(got.h, h) < TOL
    with pytest.raises(ConversionError, match="no graph input of that name"):
        onnx_side(path, mapping={"x": "nope"})


def test_our_own_with_states_file(tmp_path):
    from equivalence.files.onnx.model import build_model

    module = lstm(True, seed=2)
    weights = to_canonical({k: v.numpy() for k, v in module.state_dict().items()}, "torch")
    path = tmp_path / "ours.onnx"
    onnx.save(build_model(weights, with_states=True), str(path))
    side = onnx_side(path)
    assert side.names == {"x": "input", "h0": "h0", "c0": "c0", "lengths": "sequence_lens",
                          "y": "output", "h": "h_n", "c": "c_n"}
    assert side.takes == {"h0", "c0", "lengths"}
    check_equal(side, module, feed(3, 6))
    f = feed(3, 6)
    lengths = np.array([6, 3, 1])
    got = side.run(Feed(f.x, f.h0, f.c0, lengths))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(f.x), torch.from_numpy(lengths), batch_first=True,
        enforce_sorted=False)
    with torch.no_grad():
        out, (h, c) = module(packed, (torch.from_numpy(f.h0), torch.from_numpy(f.c0)))
    y = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=6)[0]
    assert diff(got.y, y.numpy()) < TOL and diff(got.h, h.numpy()) < TOL
    assert diff(got.c, c.numpy()) < TOL


@pytest.mark.parametrize("batch_first", [True, False])
def test_square_fixed_shapes_layout_read_by_content(tmp_path, batch_first):
    """Batch = time = rows = 4: no shape tells the axes apart; the values do."""
    module = lstm(batch_first, seed=4)
    path = export(WithStates(module), tmp_path / "square.onnx", batch_first, dynamic=False,
                  b=4, t=4)
    side = onnx_side(path)
    assert ("batch-first" if batch_first else "time-major") in side.label
    check_equal(side, module, feed(4, 4))


def test_several_stacks_are_listed_and_layer_picks_one(tmp_path):
    path = export(Two(), tmp_path / "two.onnx", False, dynamic=False, inputs=("x",),
                  outputs=("output",))
    with pytest.raises(ConversionError, match="2 LSTM stacks found") as error:
        onnx_side(path)
    names = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "LSTM"]
    assert all(n in str(error.value) for n in names)
    side = onnx_side(path, layer=names[0])
    assert side.weights.spec.input_size == I and side.names["x"] == "x"
    assert "'output' is read as y by its name; the dataflow comes from no slot" in \
        " ".join(side.notes)  # the graph's output is the other stack's
    assert onnx_side(path, layer=names[1]).weights.spec.units == H + 1


def _retarget_weights(path: Path, out: Path, change) -> Path:
    model = onnx.load(str(path))
    first = next(n for n in model.graph.node if n.op_type == "LSTM")
    change(model, first)
    onnx.save(model, str(out))
    return out


def test_weights_the_reader_cannot_fold_still_run(made, tmp_path):
    path, module = made["bf_dynamic"]

    def through_max(model, node):  # W = Max(W, W): same values, an op the folder refuses
        w = node.input[1]
        model.graph.node.insert(0, helper.make_node("Max", [w, w], ["w_max"]))
        node.input[1] = "w_max"

    side = onnx_side(_retarget_weights(path, tmp_path / "max.onnx", through_max))
    assert side.weights is None and any("weights not read" in n for n in side.notes)
    assert side.shape.state_rows == ROWS and side.shape.output_width == 2 * H
    check_equal(side, module, feed(2, 3))


def test_external_data_inside_the_folder_runs_outside_is_refused(made, tmp_path):
    path, module = made["bf_dynamic"]
    model = onnx.load(str(path))
    inside = tmp_path / "inside" / "m.onnx"
    inside.parent.mkdir()
    onnx.save(model, str(inside), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    check_equal(onnx_side(inside), module, feed(2, 3))

    def outside(model, node):
        tensor = next(t for t in model.graph.initializer if t.name == node.input[1])
        array = numpy_helper.to_array(tensor)
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "../secret.bin"

    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    folder = tmp_path / "out"
    folder.mkdir()
    bad = _retarget_weights(path, folder / "bad.onnx", outside)
    with pytest.raises(ConversionError, match="external data"):
        onnx_side(bad)


def test_dynamo_export_matches_torch(tmp_path):
    """The default exporter: Transpose to time-major, one LSTM node per layer."""
    import logging

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    module = lstm(True, seed=3)
    args = (torch.randn(2, 5, I), torch.randn(ROWS, 2, H), torch.randn(ROWS, 2, H))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(WithStates(module), args, dynamo=True, verbose=False,
                                    input_names=["x", "h0", "c0"],
                                    output_names=["output", "hn", "cn"])
    path = tmp_path / "dynamo.onnx"
    onnx.save(program.model_proto, str(path))
    side = onnx_side(path)
    assert side.names["h"] == "hn" and (side.fixed_batch, side.fixed_steps) == (2, 5)
    check_equal(side, module, feed(2, 5))


@pytest.mark.parametrize(("name", "table", "role"), [
    ("h_n", "out", "h"), ("Y_c", "out", "c"), ("state_h", "out", "h"), ("output", "out", "y"),
    ("initial_h", "in", "h0"), ("c_0", "in", "c0"), ("seq_lens", "in", "lengths"),
    ("input", "in", "x"), ("hiddenState", "out", "h"), ("334", "out", None),
    ("/l/LSTM_output_1", "out", None), ("hc", "out", None),
])
def test_name_roles(name, table, role):
    from equivalence.artefacts.onnx_roles import IN_NAMES, OUT_NAMES

    assert name_role(name, IN_NAMES if table == "in" else OUT_NAMES) == role


def test_dynamo_export_of_one_tensor_as_h0_and_c0_drops_h0(tmp_path):
    """Example inputs (x, s, s): the dynamo exporter feeds c0 to both initial_h and
    initial_c and leaves h0 unread; the side says so, and its run shows it."""
    import logging

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    torch.manual_seed(5)
    module = torch.nn.LSTM(I, H, batch_first=True).eval()
    state = torch.randn(1, 2, H)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(WithStates(module), (torch.randn(2, 5, I), state, state),
                                    dynamo=True, verbose=False, input_names=["x", "h0", "c0"],
                                    output_names=["output", "hn", "cn"])
    path = tmp_path / "shared.onnx"
    onnx.save(program.model_proto, str(path))
    side = onnx_side(path)
    assert side.takes == {"h0", "c0"}
    assert any("'h0' is read as h0 by its name; the dataflow reaches no slot" in n
               for n in side.notes)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((1, 2, H)).astype(np.float32) for _ in range(2))
    got = side.run(Feed(x, h0, c0))
    y, _, _ = torch_run(module, Feed(x, h0, c0))
    assert diff(got.y, y) > 1e-3  # the export computes another function
    y, _, _ = torch_run(module, Feed(x, c0, c0))
    assert diff(got.y, y) < TOL  # ... the one with h0 = c0


def keras_style(path: Path, module: torch.nn.LSTM) -> Path:
    """What tf2onnx writes for a Keras LSTM(return_sequences, return_state) fed its states:
    inputs input_1 (B, T, I), input_2 / input_3 (B, H); outputs lstm (B, T, H), lstm_1 and
    lstm_2 (B, H), layer names that say no role."""
    from equivalence.convert import from_canonical

    native = from_canonical(to_canonical({k: v.numpy() for k, v in module.state_dict().items()},
                                         "torch"), "onnx")
    inits = [numpy_helper.from_array(np.ascontiguousarray(native[k]), k) for k in "WRB"]
    inits += [numpy_helper.from_array(np.array([a], np.int64), f"axis{a}") for a in (0, 1)]
    nodes = [helper.make_node("Transpose", ["input_1"], ["X"], perm=[1, 0, 2]),
             helper.make_node("Unsqueeze", ["input_2", "axis0"], ["h_init"]),
             helper.make_node("Unsqueeze", ["input_3", "axis0"], ["c_init"]),
             helper.make_node("LSTM", ["X", "W", "R", "B", "", "h_init", "c_init"],
                              ["Y", "Y_h", "Y_c"], hidden_size=H),
             helper.make_node("Squeeze", ["Y", "axis1"], ["Y_tbh"]),
             helper.make_node("Transpose", ["Y_tbh"], ["lstm"], perm=[1, 0, 2]),
             helper.make_node("Squeeze", ["Y_h", "axis0"], ["lstm_1"]),
             helper.make_node("Squeeze", ["Y_c", "axis0"], ["lstm_2"])]
    f32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "keras_style",
        [helper.make_tensor_value_info("input_1", f32, ["n", "t", I]),
         helper.make_tensor_value_info("input_2", f32, ["n", H]),
         helper.make_tensor_value_info("input_3", f32, ["n", H])],
        [helper.make_tensor_value_info("lstm", f32, ["n", "t", H]),
         helper.make_tensor_value_info("lstm_1", f32, ["n", H]),
         helper.make_tensor_value_info("lstm_2", f32, ["n", H])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_keras_style_names_and_batch_major_states(tmp_path):
    """Numbered generic names (input_2) yield to the dataflow; (B, H) states in and out."""
    torch.manual_seed(6)
    module = torch.nn.LSTM(I, H, batch_first=True).eval()
    side = onnx_side(keras_style(tmp_path / "keras.onnx", module))
    assert side.names == {"x": "input_1", "h0": "input_2", "c0": "input_3", "y": "lstm",
                          "h": "lstm_1", "c": "lstm_2"}
    assert not any("by its name" in n for n in side.notes)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((1, 3, H)).astype(np.float32) for _ in range(2))
    got = side.run(Feed(x, h0, c0))
    y, h, c = torch_run(module, Feed(x, h0, c0))
    assert got.h.shape == (1, 3, H)
    assert diff(got.y, y) < TOL and diff(got.h, h) < TOL and diff(got.c, c) < TOL


@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_inside_a_subgraph_runs_by_names_and_position(tmp_path, batch_first):
    """An LSTM in an If branch: its values are no graph outputs, so the roles come from
    names and the layouts from shapes and dim names (said in a note)."""
    from equivalence.convert import from_canonical

    torch.manual_seed(7)
    module = torch.nn.LSTM(I, H, batch_first=batch_first).eval()
    native = from_canonical(to_canonical({k: v.numpy() for k, v in module.state_dict().items()},
                                         "torch"), "onnx")
    f32 = onnx.TensorProto.FLOAT
    perm = [1, 0, 2] if batch_first else [0, 1, 2]  # time-major: X and y are as they are
    then = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["X"], perm=perm),
         helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"], hidden_size=H),
         helper.make_node("Squeeze", ["Y", "axis1"], ["Y_tbh"]),
         helper.make_node("Transpose", ["Y_tbh"], ["y_then"], perm=perm)],
        "then", [], [helper.make_tensor_value_info("y_then", f32, None)],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(native[k]), k)
                     for k in "WRB"] + [numpy_helper.from_array(np.array([1], np.int64),
                                                                "axis1")])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y_else"])], "else", [],
                              [helper.make_tensor_value_info("y_else", f32, None)])
    graph = helper.make_graph(
        [helper.make_node("If", ["go"], ["output"], then_branch=then, else_branch=other)],
        "wrapped", [helper.make_tensor_value_info(
            "x", f32, ["n", "t", I] if batch_first else ["time", "n", I])],
        [helper.make_tensor_value_info("output", f32, None)],
        initializer=[numpy_helper.from_array(np.array(True), "go")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "wrapped.onnx"
    onnx.save(model, str(path))
    side = onnx_side(path)
    assert side.names == {"x": "x", "y": "output"} and side.returns == {"y"}
    assert any("subgraph" in n for n in side.notes)
    assert ("batch-first" if batch_first else "time-major") in side.label
    f = feed(2, 5, states=False)
    y, _, _ = torch_run(module, f)
    assert diff(side.run(f).y, y) < TOL


def test_a_batch_baked_in_despite_dynamic_axes_is_found_and_fixed(tmp_path):
    """TorchScript, dynamic_axes but no input_names (the input is then named "input" and
    the axes declared dynamic, yet the trace never saw them so): nn.LSTM's zero initial
    states become Expand(a constant of the export batch), and onnxruntime runs only that
    batch (here 4). Given input_names, the same export runs any batch."""
    module = lstm(True, seed=8)
    path = tmp_path / "baked.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(4, 5, I),), str(path), dynamo=False,
                          dynamic_axes={"input": {0: "batch", 1: "time"}})
    model = onnx.load(str(path))
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][:2] == \
        ["batch", "time"]
    side = onnx_side(path)
    assert side.fixed_batch == 4 and side.fixed_steps is None
    assert any("declares a dynamic batch but runs batch 4 only" in n for n in side.notes)
    f = feed(4, 7, states=False)
    y, h, c = torch_run(module, f)
    got = side.run(f)
    assert diff(got.y, y) < TOL and diff(got.h, h) < TOL and diff(got.c, c) < TOL
    with pytest.raises(Refused, match=r"Expand|initial_h"):
        side.run(feed(2, 7, states=False))
    named = export(module, tmp_path / "named.onnx", True, dynamic=True, inputs=("input",),
                   outputs=(), b=4)
    side = onnx_side(named)
    assert side.fixed_batch is None
    check_equal(side, module, feed(2, 7, states=False))
