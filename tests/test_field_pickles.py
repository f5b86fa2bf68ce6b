"""Pickles of numpy arrays read as data: g2pM's real ``np_ckpt.pkl`` (a dict of arrays named
like ``nn.LSTM`` parameters) and hostile variants that must be refused by name."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="real-file tests need the main environment")

from tests.field_packages import package_file  # noqa: E402
from tests.file_helpers import leftovers, one_error_line, run_cli  # noqa: E402

pytestmark = pytest.mark.cpu
G2PM = ("g2pM==0.1.2.5", "g2pM/np_ckpt.pkl")


def test_g2pm_numpy_pickle_converts_to_the_arrays_numpy_itself_loads(tmp_path, capsys):
    path = package_file(*G2PM)
    with open(path, "rb") as handle:  # the independent reader: numpy's own unpickling
        arrays = pickle.load(handle)  # a pinned package's file, in a test
    output = tmp_path / "g2pm.pt"
    code, out, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", output, "--verify",
                             "--examples", "1")
    assert code == 0 and "verify: PASSED" in out and "I=64 H=32" in out, out + err
    state = torch.load(output, weights_only=True)
    worst = 0.0
    for name, value in state.items():
        expected = arrays[f"lstm.{name}"]
        assert value.shape == expected.shape
        worst = max(worst, float(np.abs(value.numpy() - expected).max()))
    assert len(state) == 8 and worst == 0.0  # the same bytes, all eight parameters


def dump(tmp_path, value, name="x.pkl", protocol=4):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_dict_of_lstm_arrays_reads_in_both_pickle_protocols(tmp_path, capsys, protocol):
    lstm = torch.nn.LSTM(3, 4)
    value = {k: v.detach().numpy() for k, v in lstm.state_dict().items()}
    value["weight_hh_l0"] = np.asfortranarray(value["weight_hh_l0"])  # Fortran order too
    path = dump(tmp_path, value, protocol=protocol)
    output = tmp_path / "o.pt"
    code, out, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", output)
    assert code == 0, out + err
    state = torch.load(output, weights_only=True)
    for name, expected in lstm.state_dict().items():
        assert torch.equal(state[name], expected), name


class Runs:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(("value", "named"), [
    ({"weight_ih_l0": np.zeros((16, 3), np.float32), "x": Runs()}, "system"),
    ({"weight_ih_l0": np.array([None, 1], dtype=object)}, "dtype 'O8'"),
    ({"weight_ih_l0": np.zeros(3, np.complex64)}, "dtype 'c8'"),
])
def test_pickles_that_call_or_hold_objects_are_refused_by_name(tmp_path, capsys, value, named):
    path = dump(tmp_path, value)
    before = path.read_bytes()
    code, out, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "o.onnx")
    assert code == 2 and one_error_line(err, path) and named in err, err
    assert path.read_bytes() == before and not (tmp_path / "o.onnx").exists()
    assert leftovers(tmp_path) == [] and len(out + err) < 20_000


def test_array_bytes_that_do_not_match_the_shape_are_refused(tmp_path, capsys):
    data = pickle.dumps({"weight_ih_l0": np.zeros((16, 3), np.float32)}, protocol=3)
    declared = b"C" + bytes([192])  # SHORT_BINBYTES of 192 (no framing in protocol 3)
    assert data.count(declared) == 1
    index = data.index(declared) + 1  # cut the payload to 12 bytes, its length to match
    bad = data[:index] + bytes([12]) + data[index + 1: index + 1 + 12] + \
        data[index + 1 + 192:]
    path = tmp_path / "short.pkl"
    path.write_bytes(bad)
    code, _, err = run_cli(capsys, "inspect", path)
    assert code == 2 and one_error_line(err, path) and "holds 12 bytes, expected 192" in err, err
