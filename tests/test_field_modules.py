"""Whole-module torch pickles (``torch.save(model)``) read as inert records: BeatNet's real
``model-1.pt`` and modules saved here; pickles that call a function are refused by name."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="real-file tests need the main environment")

from tests.field_packages import package_file  # noqa: E402
from tests.file_helpers import leftovers, one_error_line, run_cli  # noqa: E402

pytestmark = pytest.mark.cpu
BEATNET = "BeatNet==1.1.3"


def test_beatnet_whole_module_reads_the_weights_its_state_dict_file_holds(tmp_path, capsys):
    whole = package_file(BEATNET, "BeatNet/models/model-1.pt")
    # The independent side: the package's own state_dict of the same model, torch's loader.
    state = torch.load(package_file(BEATNET, "BeatNet/models/model_1_weights.pt"),
                       weights_only=True, map_location="cpu")
    output = tmp_path / "beatnet.pt"
    code, out, err = run_cli(capsys, "convert", whole, "--to", "torch", "-o", output,
                             "--verify", "--examples", "1")
    assert code == 0 and "verify: PASSED" in out and "layers=2" in out, out + err
    converted = torch.load(output, weights_only=True)
    for name, value in converted.items():
        assert torch.equal(value, state[f"lstm.{name}"]), name
    assert len(converted) == 8


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh())
        self.rnn = torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True, batch_first=True)


def test_a_module_saved_whole_is_never_imported_and_its_lstm_is_found(tmp_path, capsys):
    net = Net()
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0 and "rnn" in out and "2" in out, out + err
    output = tmp_path / "rnn.pt"
    code, out, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", output,
                             "--layer", "rnn")
    assert code == 0, out + err
    converted = torch.load(output, weights_only=True)
    for name, value in net.rnn.state_dict().items():
        assert torch.equal(converted[name], value), name


class Calls:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


def helper_function(text):  # a plain function of an importable module: still never called
    raise AssertionError(f"called with {text}")


@pytest.mark.parametrize(("function", "named"), [
    (os.system, "system"),
    (eval, "builtin__.eval"), (exec, "builtin__.exec"),  # as protocol 2 names them
    (subprocess.check_output, ".check_output, which"),
    (helper_function, "tests.test_field_modules.helper_function(...)"),
    (np.save, "numpy.save(...)"),
])
def test_a_module_pickle_that_calls_a_function_is_refused_by_name(tmp_path, capsys, function,
                                                                  named):
    marker = tmp_path / "ran"
    net = torch.nn.LSTM(3, 4)
    net.hook = Calls(function, f"touch {marker}")
    path = tmp_path / "evil.pt"
    torch.save(net, path)
    before = path.read_bytes()
    code, _, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "o.onnx")
    assert code == 2 and one_error_line(err, path) and named in err, err
    assert not marker.exists() and path.read_bytes() == before
    assert not (tmp_path / "o.onnx").exists() and leftovers(tmp_path) == []


def test_a_class_created_by_a_call_is_refused_naming_it(tmp_path, capsys):
    # REDUCE(model.BDA, (...)) would run the class's own code: refused, the class named.
    path = tmp_path / "call.pt"
    path.write_bytes(b"\x80\x02cmodel\nBDA\nq\x00K\x01\x85R.")
    code, _, err = run_cli(capsys, "inspect", path)
    assert code == 2 and one_error_line(err, path) and "calls model.BDA(...)" in err, err
