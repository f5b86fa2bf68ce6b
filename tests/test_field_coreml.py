"""CoreML ``.mlmodel`` files are named as CoreML models, never as damaged ONNX: kraken's real
``blla.mlmodel`` and small CoreML messages built here from protobuf wire bytes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the ONNX reader is the one that meets these files")

from equivalence.files.coreml import WireError, read_coreml, top_fields
from tests.field_packages import package_file
from tests.file_helpers import run_cli

pytestmark = pytest.mark.cpu


def key(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def message(*fields: tuple[int, bytes | int]) -> bytes:
    out = b""
    for number, value in fields:
        if isinstance(value, int):
            out += key(number, 0) + varint(value)
        else:
            out += key(number, 2) + varint(len(value)) + value
    return out


KRAKEN = ("kraken==7.1.1", "kraken/blla.mlmodel")
# kraken's four biDirectionalLSTM layers: name -> (inputVectorSize, outputVectorSize)
KRAKEN_LSTMS = {"L_10": (256, 32), "L_11_transposed": (64, 32), "L_14_transposed": (32, 32),
                "L_15": (64, 32)}


def test_kraken_mlmodel_lists_four_bidirectional_lstms(capsys):
    path = package_file(*KRAKEN)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0, err
    assert "4 LSTM(s)" in out and "damaged" not in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:2] in
            ("L_", )}
    for name, (size_in, units) in KRAKEN_LSTMS.items():
        layers, directions, i, h = rows[name][2:6]
        assert (layers, directions, i, h) == ("1", "2", str(size_in), str(units)), rows[name]
    assert "biDirectionalLSTM layer ('Gn_9' -> 'L_10')" in out
    assert "cellClipThreshold 50000 not carried" in out


def test_kraken_lstm_converts_to_torch_and_verifies(tmp_path, capsys):
    path = package_file(*KRAKEN)
    output = tmp_path / "l14.pt"
    code, out, err = run_cli(capsys, "convert", path, "--to", "torch", "--layer",
                             "L_14_transposed", "-o", output, "--verify")
    assert code == 0, err
    assert "verify: PASSED" in out and output.exists()


@pytest.mark.parametrize(("fields", "kind"), [
    (((1, 4), (2, b""), (500, message((1, b"")))), "neuralNetwork"),
    (((1, 7), (202, b"")), "pipeline"),
])
def test_small_coreml_messages_are_named(tmp_path, capsys, fields, kind):
    path = tmp_path / "m.mlmodel"
    path.write_bytes(message(*fields))
    code, _, err = run_cli(capsys, "inspect", path)
    assert code == 2 and f"a CoreML model (specification version {fields[0][1]}, {kind})" in err


def test_damaged_bytes_are_not_called_coreml(tmp_path, capsys):
    path = tmp_path / "cut.mlmodel"
    path.write_bytes(message((1, 4), (500, b"x" * 40))[:-10])  # field 500 runs past the end
    code, _, err = run_cli(capsys, "inspect", path)
    assert code == 2 and "CoreML" not in err, err


@pytest.mark.parametrize("data", [b"\x08" + b"\xff" * 11, b"\x00\x01", b"\x0b", b"\x12\x05ab"])
def test_the_wire_reader_refuses_malformed_bytes(data):
    with pytest.raises(WireError):
        top_fields(data)


# ---------------------------------------------------------------- against coremltools' own parser

# Run by an interpreter that has coremltools (it ships CoreML's proto modules): every LSTM
# layer's weight arrays as parsed by protobuf itself, saved as .npz.
DUMP = """
import sys, numpy as np
from coremltools.proto import Model_pb2
model = Model_pb2.Model()
model.ParseFromString(open(sys.argv[1], "rb").read())
out = {}
for layer in model.neuralNetwork.layers:
    kind = layer.WhichOneof("layer")
    if kind not in ("uniDirectionalLSTM", "biDirectionalLSTM"):
        continue
    params = getattr(layer, kind)
    sets = params.weightParams if kind == "biDirectionalLSTM" else [params.weightParams]
    for d, weights in enumerate(sets):
        for field, value in weights.ListFields():
            out[f"{layer.name}/{d}/{field.name}"] = np.array(value.floatValue, np.float32)
np.savez(sys.argv[2], **out)
"""
# Our ONNX-layout blocks (i o f c) and the CoreML fields each one comes from.
BLOCKS = {"W": ("inputGateWeightMatrix", "outputGateWeightMatrix", "forgetGateWeightMatrix",
                "blockInputWeightMatrix"),
          "R": ("inputGateRecursionMatrix", "outputGateRecursionMatrix",
                "forgetGateRecursionMatrix", "blockInputRecursionMatrix"),
          "B": ("inputGateBiasVector", "outputGateBiasVector", "forgetGateBiasVector",
                "blockInputBiasVector")}


def coremltools_python() -> str:
    """An interpreter with coremltools: this one, or $COREMLTOOLS_PYTHON; else skip."""
    if importlib.util.find_spec("coremltools") is not None:
        return sys.executable
    other = os.environ.get("COREMLTOOLS_PYTHON")
    if other:
        return other
    pytest.skip("coremltools is not installed here (set COREMLTOOLS_PYTHON to an interpreter "
                "that has it, e.g. a venv made with `pip install coremltools`)")


def test_kraken_weights_equal_coremltools_parse(tmp_path):
    path = package_file(*KRAKEN)
    dumped = tmp_path / "coremltools.npz"
    done = subprocess.run([coremltools_python(), "-c", DUMP, str(path), str(dumped)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = dict(np.load(dumped))
    found = {f.name: f for f in read_coreml(path)}
    assert set(found) == set(KRAKEN_LSTMS)
    compared = 0
    for name, lstm in found.items():
        units = KRAKEN_LSTMS[name][1]
        for d in range(2):
            for key, fields in BLOCKS.items():
                ours = lstm.native[key][d]
                for k, field in enumerate(fields):
                    block = ours[k * units:(k + 1) * units]
                    assert np.array_equal(block.ravel(), theirs[f"{name}/{d}/{field}"]), \
                        (name, d, field)
                    compared += 1
            assert not lstm.native["B"][d][4 * units:].any()  # no recurrent bias in CoreML
    assert compared == 4 * 2 * 12 and len(theirs) == compared
