"""``equivalence convert --to keras --with-states``: a ``.keras`` functional model taking
input, mask, h0, c0 and returning the output and every layer's h and c, with real
frameworks: Keras itself loads and runs the file, torch's ``nn.LSTM`` given the same states
is the reference; ``--verify`` runs the whole model as its config wires it, so a model whose
config feeds h0 into a c slot fails; what cannot take states is refused by name.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="real-file tests need the main environment")

from tests.file_helpers import run_cli  # noqa: E402 (after the torch guard)

pytestmark = [pytest.mark.cpu,
              pytest.mark.filterwarnings("ignore:.*is deprecated:UserWarning")]
ATOL = 1e-5


def _source(tmp_path: Path, layers: int, bidirectional: bool) -> tuple[Path, torch.nn.LSTM]:
    torch.manual_seed(7 + layers)
    lstm = torch.nn.LSTM(3, 4, num_layers=layers, bidirectional=bidirectional,
                         batch_first=True)
    path = tmp_path / "lstm.pt"
    torch.save(lstm.state_dict(), path)
    return path, lstm


def _keras_feeds(x, mask, h0, c0):
    """Keras's inputs: input, mask, then per layer and direction h then c (the docstring)."""
    states = [s for k in range(h0.shape[0]) for pair in zip(h0[k], c0[k], strict=True)
              for s in pair]
    return [x, mask, *states]


def _torch_run(lstm, x, h0, c0, lengths):
    """torch's output (zero past each length), h_n and c_n as (L, D, B, H)."""
    rows = (-1, x.shape[0], lstm.hidden_size)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        out, (h, c) = lstm(packed, (torch.from_numpy(h0.reshape(rows)),
                                    torch.from_numpy(c0.reshape(rows))))
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                    total_length=x.shape[1])
    return out.numpy(), h.numpy().reshape(h0.shape), c.numpy().reshape(c0.shape)


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, False), (2, True)])
def test_keras_runs_the_written_model_with_states_as_torch_does(capsys, tmp_path, layers,
                                                                bidirectional):
    import keras

    source, lstm = _source(tmp_path, layers, bidirectional)
    out = tmp_path / "dec.keras"
    code, text, err = run_cli(capsys, "convert", source, "--to", "keras", "-o", out,
                              "--with-states", "--verify", "--examples", "1")
    assert code == 0, err
    assert "PASSED" in text and "initial states" in text and "the whole model" in text
    assert "mask (batch, time) bool" in text
    model = keras.models.load_model(out)
    directions = 2 if bidirectional else 1
    assert len(model.inputs) == 2 + 2 * layers * directions
    rng = np.random.default_rng(layers)
    x = rng.normal(size=(3, 7, 3)).astype(np.float32)
    shape = (layers, directions, 3, 4)
    h0, c0 = (rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(2))
    lengths = np.array([7, 4, 1])
    mask = np.arange(7)[None, :] < lengths[:, None]
    got = [np.asarray(t) for t in model(_keras_feeds(x, mask, h0, c0))]
    expected = _torch_run(lstm, x, h0, c0, lengths)
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(
        (got[0], np.stack(got[1::2]).reshape(shape), np.stack(got[2::2]).reshape(shape)),
        expected, strict=True)]
    assert max(diffs) < ATOL, diffs
    zero = _torch_run(lstm, x, np.zeros_like(h0), np.zeros_like(c0), lengths)
    assert np.max(np.abs(got[0] - zero[0])) > 1e-3  # the states fed really changed the result


def _rewire_c_to_h(path: Path, tampered: Path) -> None:
    """A copy whose config feeds the first layer's h0 input into its c slot too."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    layer = next(cfg for cfg in config["config"]["layers"] if cfg["class_name"] == "LSTM")
    states = layer["inbound_nodes"][0]["kwargs"]["initial_state"]
    assert [s["config"]["keras_history"][0] for s in states] == ["h0_0", "c0_0"]
    states[1]["config"]["keras_history"][0] = "h0_0"
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_verify_catches_h0_wired_into_the_c_input(capsys, tmp_path):
    """The tampered model as a source, verified against what it is converted to: only the
    initial-state probes differ, and verify must say so (exit 1, nothing written)."""
    source, _ = _source(tmp_path, 1, False)
    out = tmp_path / "dec.keras"
    assert run_cli(capsys, "convert", source, "--to", "keras", "-o", out,
                   "--with-states")[0] == 0
    tampered = tmp_path / "tampered.keras"
    _rewire_c_to_h(out, tampered)
    code, text, err = run_cli(capsys, "convert", tampered, "--to", "torch", "-o",
                              tmp_path / "back.pt", "--verify", "--examples", "1")
    assert code == 1 and "verify: FAILED" in text, text + err
    lines = text.splitlines()
    assert any("initial states (" in line and ": match," not in line for line in lines), text
    assert any("exported shape (" in line and ": match," in line for line in lines), text
    assert not (tmp_path / "back.pt").exists()


def test_a_member_picked_alone_still_runs_as_its_layer(capsys, tmp_path):
    source, _ = _source(tmp_path, 2, False)
    out = tmp_path / "dec.keras"
    assert run_cli(capsys, "convert", source, "--to", "keras", "-o", out,
                   "--with-states")[0] == 0
    code, text, err = run_cli(capsys, "convert", out, "--layer", "lstm_1", "--to", "onnx", "-o",
                           tmp_path / "top.onnx", "--verify", "--examples", "1")
    assert code == 0 and "PASSED" in text, err


@pytest.mark.parametrize("output", ["w.h5", "w.weights.h5"])
def test_with_states_refused_for_keras_files_without_inputs(capsys, tmp_path, output):
    source, _ = _source(tmp_path, 1, False)
    code, _, err = run_cli(capsys, "convert", source, "--to", "keras", "-o",
                           tmp_path / output, "--with-states")
    assert code == 2 and "--with-states" in err and ".keras" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lstm.pt"]


def test_a_signature_model_with_other_layers_is_refused_by_name(capsys, tmp_path):
    """Verify runs only LSTM layers of a --with-states model; a Dense in its graph is said,
    not skipped (skipping it would verify another function)."""
    import keras

    x = keras.Input((None, 3), name="input")
    mask = keras.Input((None,), dtype="bool", name="mask")
    h0, c0 = keras.Input((4,), name="h0_0"), keras.Input((4,), name="c0_0")
    sequence, h, c = keras.layers.LSTM(4, return_sequences=True, return_state=True,
                                       name="lstm")(x, mask=mask, initial_state=[h0, c0])
    dense = keras.layers.Dense(4, name="head")(sequence)
    path = tmp_path / "extra.keras"
    keras.Model([x, mask, h0, c0], [dense, h, c]).save(path)
    code, _, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", tmp_path / "w.pt",
                           "--verify")
    assert code == 2 and "'head'" in err and "Dense" in err and "--with-states" in err, err
