"""Real files end to end: made by the frameworks here, converted by the CLI, loaded by the target's
own loader, compared. Plus the safety rules: bad files, existing outputs, untouched inputs.

The four scenarios of the design notes (SCENARIOS.md): a CuDNNLSTM .h5 into Keras 3 and
PyTorch; a TF1 MultiRNNCell checkpoint into Keras (layers and StackedRNNCells); a PyTorch
LSTM into Keras and ONNX; a Keras Bidirectional LSTM into a NeoML hand-off file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

# torch before TensorFlow (a known crash at import). The NeoML environment collects this
# module too, and has neither: there the module is skipped (its tests are `cpu`, not `neoml`).
torch = pytest.importorskip("torch", reason="real-file tests need the main environment")

from equivalence.files import FileFormatError, read  # noqa: E402 (after the torch guard)
from tests.file_helpers import run_cli  # noqa: E402

pytestmark = [
    pytest.mark.cpu,
    # The frameworks' own notices about the legacy APIs these files come from.
    pytest.mark.filterwarnings("ignore:.*is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file:UserWarning"),
    pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning"),
]
ATOL = 2e-5  # float32 round-off of two correct LSTMs over <= 12 steps (see compare.py)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def random_like(weights, rng, scale=0.3):
    return [rng.normal(0, scale, w.shape).astype(np.float32) for w in weights]


# ---------------------------------------------------------------- scenario 1


@pytest.fixture(scope="module")
def cudnn_h5(tmp_path_factory):
    """Scenario 1: Sequential CuDNNLSTM(return_sequences) / Dropout / CuDNNLSTM / Dense, as .h5."""
    import tf_keras
    from tf_keras.api._v1.keras.layers import CuDNNLSTM

    layers = tf_keras.layers
    # The default names, given explicitly: tf_keras numbers unnamed layers per process, so
    # another test's CuDNNLSTM in the same worker would make these cu_dnnlstm_15 and _16.
    model = tf_keras.Sequential([
        layers.InputLayer((9, 12)),
        CuDNNLSTM(16, return_sequences=True, name="cu_dnnlstm"),
        layers.Dropout(0.2),
        CuDNNLSTM(16, name="cu_dnnlstm_1"),
        layers.Dense(12, activation="softmax"),
    ])
    model.set_weights(random_like(model.get_weights(), np.random.default_rng(1)))
    path = tmp_path_factory.mktemp("cudnn") / "char_model.h5"
    model.save(path)
    return path


def laptop_sequence(h5: Path, x: np.ndarray) -> np.ndarray:
    """tf_keras's own answer: LSTM layers loading the CuDNNLSTM file (its conversion on load)."""
    import tf_keras

    layers = tf_keras.layers
    model = tf_keras.Sequential([
        layers.InputLayer((None, 12)),
        layers.LSTM(16, return_sequences=True),
        layers.Dropout(0.2),
        layers.LSTM(16, return_sequences=True),
        layers.Dense(12, activation="softmax"),
    ])
    model.load_weights(h5)
    top = tf_keras.Model(model.inputs, model.layers[2].output)
    return top(x).numpy()


def test_scenario1_cudnn_h5_into_keras3_and_torch(cudnn_h5, tmp_path, capsys):
    before = digest(cudnn_h5)
    code, out, err = run_cli(capsys, "convert", cudnn_h5, "--to", "keras",
                             "-o", tmp_path / "laptop.keras", "--verify", "--examples", "2")
    assert code == 0, out + err
    assert "verify: PASSED" in out and "_convert_rnn_weights" in out
    code, out, err = run_cli(capsys, "convert", cudnn_h5, "--to", "torch",
                             "-o", tmp_path / "laptop.pt")
    assert code == 0, out + err
    assert "torch.nn.LSTM(input_size=12, hidden_size=16, num_layers=2, batch_first=True)" in out

    import keras

    x = np.random.default_rng(2).normal(size=(3, 9, 12)).astype(np.float32)
    expected = laptop_sequence(cudnn_h5, x)
    keras_out = keras.models.load_model(tmp_path / "laptop.keras")(x).numpy()
    lstm = torch.nn.LSTM(12, 16, num_layers=2, batch_first=True)
    lstm.load_state_dict(torch.load(tmp_path / "laptop.pt"))
    with torch.no_grad():
        torch_out = lstm(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(keras_out, expected, atol=ATOL)
    np.testing.assert_allclose(torch_out, expected, atol=ATOL)
    assert digest(cudnn_h5) == before
    assert leftovers(tmp_path) == []


def test_scenario1_layers_of_the_stack_are_selectable(cudnn_h5, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "inspect", cudnn_h5)
    assert code == 0
    assert "cu_dnnlstm+cu_dnnlstm_1  cudnn   LSTM  2" in out and "two (8H" in out
    code, out, err = run_cli(capsys, "convert", cudnn_h5, "--to", "onnx", "--layer",
                             "cu_dnnlstm_1", "-o", tmp_path / "top.onnx", "--verify",
                             "--examples", "1")
    assert code == 0, out + err
    assert "I=16 H=16" in out and "verify: PASSED" in out


# ---------------------------------------------------------------- scenario 2


@pytest.fixture(scope="module")
def tf1_checkpoint(tmp_path_factory):
    """Scenario 2: a 2-layer MultiRNNCell run by dynamic_rnn, saved by Saver; with its results."""
    import tensorflow as tf

    from equivalence.runtimes.tf1 import cell_module

    cells = cell_module()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 7, 5)).astype(np.float32)
    prefix = tmp_path_factory.mktemp("tf1") / "model.ckpt"
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.compat.v1.placeholder(tf.float32, [None, None, 5])
        stack = cells.MultiRNNCell([cells.LSTMCell(8), cells.LSTMCell(8)])
        outputs, states = tf.compat.v1.nn.dynamic_rnn(stack, inputs, dtype=tf.float32)
        with tf.compat.v1.Session(graph=graph) as session:
            for variable in tf.compat.v1.global_variables():
                session.run(variable.assign(rng.normal(0, 0.4, variable.shape)))
            tf.compat.v1.train.Saver().save(session, str(prefix))
            result = session.run([outputs, states], {inputs: x})
    return prefix, x, result


def test_scenario2_tf1_multirnncell_into_keras(tf1_checkpoint, tmp_path, capsys):
    import keras

    prefix, x, (outputs, states) = tf1_checkpoint
    hashes = {p: digest(p) for p in prefix.parent.iterdir()}
    code, out, err = run_cli(capsys, "convert", prefix, "--from", "tf1", "--to", "keras",
                             "-o", tmp_path / "tf1.keras", "--verify", "--examples", "1")
    assert code == 0, out + err
    assert "forget_bias=1.0 assumed" in out
    loaded = keras.models.load_model(tmp_path / "tf1.keras")
    np.testing.assert_allclose(loaded(x).numpy(), outputs, atol=ATOL)
    # The same weights in LSTMCell x2 / StackedRNNCells, with both states per layer.
    rnn = keras.layers.RNN(keras.layers.StackedRNNCells(
        [keras.layers.LSTMCell(8), keras.layers.LSTMCell(8)]),
        return_sequences=True, return_state=True)
    rnn(x)
    rnn.set_weights(loaded.get_weights())
    sequence, (h0, c0), (h1, c1) = rnn(x)
    np.testing.assert_allclose(sequence.numpy(), outputs, atol=ATOL)
    for layer, (h, c) in enumerate([(h0, c0), (h1, c1)]):
        np.testing.assert_allclose(c.numpy(), states[layer].c, atol=ATOL)  # TF1 state is (c, h)
        np.testing.assert_allclose(h.numpy(), states[layer].h, atol=ATOL)
    assert {p: digest(p) for p in prefix.parent.iterdir()} == hashes


# ---------------------------------------------------------------- scenario 3


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 10, num_layers=2, bidirectional=True, batch_first=True)
    path = tmp_path_factory.mktemp("torch") / "lstm.pt"
    torch.save({"model_state_dict": {f"encoder.{k}": v for k, v in lstm.state_dict().items()},
                "epoch": 3}, path)
    return path, lstm


def test_scenario3_torch_into_keras_and_onnx(torch_file, tmp_path, capsys):
    import keras
    import onnxruntime

    path, lstm = torch_file
    before = digest(path)
    code, out, err = run_cli(capsys, "convert", path, "--to", "keras",
                             "-o", tmp_path / "from_torch.keras", "--verify", "--examples", "2")
    assert code == 0, out + err
    code, out, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "l.onnx")
    assert code == 0, out + err
    x = np.random.default_rng(4).normal(size=(3, 8, 6)).astype(np.float32)
    with torch.no_grad():
        expected, (h_n, c_n) = lstm(torch.from_numpy(x))
    loaded = keras.models.load_model(tmp_path / "from_torch.keras")
    np.testing.assert_allclose(loaded(x).numpy(), expected.numpy(), atol=ATOL)
    session = onnxruntime.InferenceSession(str(tmp_path / "l.onnx"),
                                           providers=["CPUExecutionProvider"])
    output, h, c = session.run(None, {"input": x})
    for actual, wanted in ((output, expected), (h, h_n), (c, c_n)):
        np.testing.assert_allclose(actual, wanted.numpy(), atol=ATOL)
    assert digest(path) == before


def test_verify_feeds_initial_states_to_a_tf_keras_h5_model(torch_file, tmp_path, capsys):
    """--verify runs the written .h5 in tf_keras with initial states too (its second batch
    has them): tf_keras's Bidirectional refused numpy states until they were fed as tensors."""
    path, _ = torch_file
    code, out, err = run_cli(capsys, "convert", path, "--to", "keras", "-o", tmp_path / "m.h5",
                             "--verify", "--examples", "3")
    assert code == 0 and "verify: PASSED" in out, out + err
    assert "verify: initial states (batch 2, time 6): match" in out, out


def test_scenario3_torch_into_tf1_checkpoint_restored_by_saver(tmp_path, capsys):
    import tensorflow as tf

    from equivalence.runtimes.tf1 import cell_module

    torch.manual_seed(1)
    lstm = torch.nn.LSTM(4, 6, num_layers=2, batch_first=True)
    torch.save(lstm.state_dict(), tmp_path / "l.pt")
    code, out, err = run_cli(capsys, "convert", tmp_path / "l.pt", "--to", "tf1",
                             "-o", tmp_path / "ckpt", "--verify", "--examples", "1")
    assert code == 0, out + err
    names = set(tf.train.load_checkpoint(str(tmp_path / "ckpt")).get_variable_to_shape_map())
    assert "rnn/multi_rnn_cell/cell_1/lstm_cell/kernel" in names
    cells = cell_module()
    x = np.random.default_rng(5).normal(size=(2, 5, 4)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.compat.v1.placeholder(tf.float32, [None, None, 4])
        stack = cells.MultiRNNCell([cells.LSTMCell(6), cells.LSTMCell(6)])
        outputs, _ = tf.compat.v1.nn.dynamic_rnn(stack, inputs, dtype=tf.float32)
        with tf.compat.v1.Session(graph=graph) as session:
            tf.compat.v1.train.Saver().restore(session, str(tmp_path / "ckpt"))
            actual = session.run(outputs, {inputs: x})
    with torch.no_grad():
        expected = lstm(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(actual, expected, atol=ATOL)


def test_scenario3_projection_is_refused_by_name(tmp_path, capsys):
    torch.save(torch.nn.LSTM(4, 6, proj_size=3).state_dict(), tmp_path / "p.pt")
    code, _, err = run_cli(capsys, "convert", tmp_path / "p.pt", "--to", "keras",
                           "-o", tmp_path / "p.keras")
    assert code == 2 and "cannot represent projection" in err and "p.keras" in err
    assert not (tmp_path / "p.keras").exists() and leftovers(tmp_path) == []


def test_torch_into_keras_weights_h5_tf_keras_h5_and_safetensors(torch_file, tmp_path, capsys):
    import keras
    import tf_keras
    from safetensors.torch import load_file

    path, lstm = torch_file
    for name in ("w.weights.h5", "m.h5", "s.safetensors"):
        code, out, err = run_cli(capsys, "convert", path, "--to",
                                 "torch" if name.endswith("safetensors") else "keras",
                                 "-o", tmp_path / name)
        assert code == 0, out + err
    x = np.random.default_rng(6).normal(size=(2, 6, 6)).astype(np.float32)
    with torch.no_grad():
        expected = lstm(torch.from_numpy(x))[0].numpy()
    bidirectional = keras.layers.Bidirectional
    model = keras.Sequential([keras.Input((None, 6)),  # the network the command printed
                              bidirectional(keras.layers.LSTM(10, return_sequences=True)),
                              bidirectional(keras.layers.LSTM(10, return_sequences=True))])
    model.load_weights(tmp_path / "w.weights.h5")
    legacy = tf_keras.models.load_model(tmp_path / "m.h5")
    other = torch.nn.LSTM(6, 10, num_layers=2, bidirectional=True, batch_first=True)
    other.load_state_dict(load_file(tmp_path / "s.safetensors"))
    with torch.no_grad():
        from_safetensors = other(torch.from_numpy(x))[0].numpy()
    for actual in (model(x).numpy(), legacy(x).numpy(), from_safetensors):
        np.testing.assert_allclose(actual, expected, atol=ATOL)


# ---------------------------------------------------------------- scenario 4


def test_scenario4_keras_bidirectional_into_neoml_case_file(tmp_path, capsys):
    import keras

    from equivalence.harness import exchange

    tokens = keras.Input((None,), dtype="int32")
    dense = keras.layers.Dense(6, activation="tanh")(keras.layers.Embedding(30, 8)(tokens))
    bilstm = keras.layers.Bidirectional(
        keras.layers.LSTM(7, return_sequences=True, return_state=True), name="bilstm")
    model = keras.Model(tokens, bilstm(dense))
    model.save(tmp_path / "tutorial.keras")
    code, out, err = run_cli(capsys, "convert", tmp_path / "tutorial.keras", "--to", "neoml",
                             "-o", tmp_path / "tutorial.npz")
    assert code == 0, out + err
    case = exchange.load(tmp_path / "tutorial.npz")
    assert case.format == "neoml" and case.spec.directions == 2
    # The expected results in the file are the Keras layer's own, on the file's inputs.
    inputs = case.inputs
    sequence, h_fw, c_fw, h_bw, c_bw = model.get_layer("bilstm")(
        inputs.x, initial_state=[inputs.h0[0, 0], inputs.c0[0, 0], inputs.h0[0, 1],
                                 inputs.c0[0, 1]])
    np.testing.assert_allclose(case.expected.outputs, sequence.numpy(), atol=ATOL)
    np.testing.assert_allclose(case.expected.h[0], np.stack([h_fw, h_bw]), atol=ATOL)
    np.testing.assert_allclose(case.expected.c[0], np.stack([c_fw, c_bw]), atol=ATOL)


def test_keras_functional_stack_through_dropout_and_object_checkpoint(tmp_path, capsys):
    import keras
    import tensorflow as tf

    inputs = keras.Input((None, 3))
    lower = keras.layers.LSTM(4, return_sequences=True, name="lower")(inputs)
    upper = keras.layers.LSTM(4, return_sequences=True, name="upper")(
        keras.layers.Dropout(0.5)(lower))
    side = keras.layers.LSTM(5, name="side")(inputs)
    model = keras.Model(inputs, [upper, side])
    model.save(tmp_path / "f.keras")
    tf.train.Checkpoint(model=model).write(str(tmp_path / "obj"))
    code, out, _ = run_cli(capsys, "inspect", tmp_path / "f.keras")
    assert code == 0 and "lower+upper" in out and "side" in out
    code, out, err = run_cli(capsys, "convert", tmp_path / "f.keras", "--layer", "lower+upper",
                             "--to", "torch", "-o", tmp_path / "f.pt")
    assert code == 0, out + err
    x = np.random.default_rng(7).normal(size=(2, 5, 3)).astype(np.float32)
    net = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    net.load_state_dict(torch.load(tmp_path / "f.pt"))
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x))[0].numpy(),
                                   model(x)[0].numpy(), atol=ATOL)
    code, out, err = run_cli(capsys, "inspect", tmp_path / "obj")
    assert code == 0 and "3 LSTM(s)" in out and "Keras LSTM layer" in out, out + err


# ---------------------------------------------------------------- safety


@pytest.fixture
def damaged(tmp_path, cudnn_h5, torch_file, tf1_checkpoint):
    """Truncated and corrupted copies of real files, one of each kind."""
    files = {}
    h5, pt = cudnn_h5.read_bytes(), torch_file[0].read_bytes()
    files["truncated.h5"] = h5[: len(h5) // 3]
    files["truncated.pt"] = pt[: len(pt) // 2]
    files["garbage.pt"] = b"\x80" + np.random.default_rng(0).bytes(300)
    files["header.h5"] = h5[:8] + b"\0" * 4000 + h5[4008:]
    files["zeros.keras"] = b"PK\x03\x04" + b"\0" * 100
    files["truncated.onnx"] = b"\x08\x0a\x12\x05hello\x3a\xff\xff"
    files["empty.safetensors"] = b""
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    prefix = tf1_checkpoint[0]
    (tmp_path / "cut.ckpt.index").write_bytes(Path(f"{prefix}.index").read_bytes())
    data = next(prefix.parent.glob(prefix.name + ".data-*")).read_bytes()
    (tmp_path / "cut.ckpt.data-00000-of-00001").write_bytes(data[: len(data) // 2])
    return [*(tmp_path / n for n in files), tmp_path / "cut.ckpt"]


def test_damaged_files_are_refused_naming_the_file(damaged, tmp_path, capsys):
    for path in damaged:
        code, _, err = run_cli(capsys, "inspect", path)
        assert code == 2 and str(path) in err, (path, err)
        code, _, err = run_cli(capsys, "convert", path, "--to", "torch",
                               "-o", tmp_path / "out.pt")
        assert code == 2 and str(path) in err, (path, err)
    assert not (tmp_path / "out.pt").exists() and leftovers(tmp_path) == []


def test_missing_empty_and_ambiguous_inputs(tmp_path, capsys):
    code, _, err = run_cli(capsys, "inspect", tmp_path / "nope.h5")
    assert code == 2 and "nope.h5: no such file" in err
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "linear.pt")
    code, _, err = run_cli(capsys, "inspect", tmp_path / "linear.pt")
    assert code == 2 and "no LSTM found" in err
    torch.save({"a": torch.nn.LSTM(2, 3).state_dict(), "b": torch.nn.LSTM(3, 3).state_dict(),
                "gru": torch.nn.GRU(3, 4).state_dict()}, tmp_path / "two.pt")
    code, out, _ = run_cli(capsys, "inspect", tmp_path / "two.pt")
    assert code == 0 and "2 LSTM(s), 1 GRU(s)" in out and "GRU" in out
    code, _, err = run_cli(capsys, "convert", tmp_path / "two.pt", "--to", "keras",
                           "-o", tmp_path / "o.keras")
    assert code == 2 and "2 LSTMs, 1 GRU found ('a', 'b', 'gru')" in err and "--layer" in err
    code, _, err = run_cli(capsys, "convert", tmp_path / "two.pt", "--to", "keras",
                           "--layer", "c", "-o", tmp_path / "o.keras")
    assert code == 2 and "no LSTM named 'c'" in err
    code, out, err = run_cli(capsys, "convert", tmp_path / "two.pt", "--to", "keras",
                             "--layer", "b", "-o", tmp_path / "o.keras")
    assert code == 0, out + err


def test_disagreeing_shapes_are_refused(tmp_path, capsys):
    state = torch.nn.LSTM(3, 4, num_layers=2).state_dict()
    state["weight_hh_l1"] = torch.zeros(16, 5)
    torch.save(state, tmp_path / "bad.pt")
    code, _, err = run_cli(capsys, "convert", tmp_path / "bad.pt", "--to", "onnx",
                           "-o", tmp_path / "bad.onnx")
    assert code == 2 and "bad.pt" in err and "weight_hh_l1: shape (16, 5), expected (16, 4)" in err
    assert not (tmp_path / "bad.onnx").exists()


def test_existing_output_needs_force_and_input_is_never_an_output(torch_file, tmp_path, capsys):
    path = torch_file[0]
    target = tmp_path / "out.keras"
    target.write_bytes(b"keep me")
    code, _, err = run_cli(capsys, "convert", path, "--to", "keras", "-o", target)
    assert code == 2 and "exists; pass --force" in err and target.read_bytes() == b"keep me"
    code, out, err = run_cli(capsys, "convert", path, "--to", "keras", "-o", target, "--force")
    assert code == 0 and target.read_bytes() != b"keep me", out + err
    before = digest(path)
    code, _, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", path, "--force")
    assert code == 2 and "is the input file" in err and digest(path) == before
    code, _, err = run_cli(capsys, "convert", path, "--to", "torch",
                           "-o", path / "under-a-file" / "x.pt")  # a missing folder is made
    assert code == 2 and "is not a folder" in err
    assert leftovers(tmp_path) == [] and leftovers(path.parent) == []


@pytest.mark.parametrize("seed", range(40))
def test_random_bytes_after_a_pickle_header_are_refused(tmp_path, seed):
    """A damaged pickle stream fails in many ways (IndexError, KeyError, ...): all refused."""
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x80" + np.random.default_rng(seed).bytes(300))
    with pytest.raises(FileFormatError, match=r"garbage\.pt"):
        read(path)
