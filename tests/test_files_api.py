"""equivalence.files from Python: read, convert_file and verify do what the commands do.

Real torch and ONNX files, really run; the failing cases (a different network, an existing
output, a bad argument) must fail with the library's own errors and leave nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equivalence import ConversionError, files
from equivalence.cli import files as cli

pytestmark = pytest.mark.cpu
torch = pytest.importorskip("torch")


def _torch_file(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    torch.save(lstm.state_dict(), path)
    return path


def test_read_returns_what_inspect_lists(tmp_path: Path, capsys) -> None:
    path = _torch_file(tmp_path / "m.pt", 0)
    assert cli.main(["inspect", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["lstms"]
    assert [cli.listing(found) for found in files.read(path)] == listed
    assert listed[0]["layers"] == 2 and listed[0]["directions"] == 2


def test_convert_file_writes_and_verifies(tmp_path: Path) -> None:
    source = _torch_file(tmp_path / "m.pt", 0)
    done = files.convert_file(source, tmp_path / "m.onnx", to="onnx", verify=True)
    assert done and done.verified and done.output == tmp_path / "m.onnx"
    assert "verify:" in done.log and done.output.is_file()
    check = files.verify(source, done.output)
    assert check and "verify: source" in check.log


def test_verify_fails_on_a_different_network(tmp_path: Path) -> None:
    a, b = _torch_file(tmp_path / "a.pt", 0), _torch_file(tmp_path / "b.pt", 1)
    before = sorted(tmp_path.iterdir())
    check = files.verify(a, b)
    assert not check.ok and "FAIL" in check.log.upper()
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_existing_output_is_refused_and_kept(tmp_path: Path) -> None:
    source = _torch_file(tmp_path / "m.pt", 0)
    output = tmp_path / "m.onnx"
    output.write_bytes(b"mine")
    with pytest.raises(files.FileFormatError, match=r"m\.onnx"):
        files.convert_file(source, output, to="onnx")
    assert output.read_bytes() == b"mine"


@pytest.mark.parametrize("keywords, named", [
    ({"to": "nosuch"}, "to"), ({"to": 3}, "to"), ({"to": "onnx", "examples": 0}, "examples"),
    ({"to": "onnx", "verify": "yes"}, "verify"),
])
def test_bad_arguments_are_named(tmp_path: Path, keywords: dict, named: str) -> None:
    source = _torch_file(tmp_path / "m.pt", 0)
    with pytest.raises(ConversionError, match=named):
        files.convert_file(source, tmp_path / "m.onnx", **keywords)
    assert not (tmp_path / "m.onnx").exists()


def test_verify_refuses_bad_arguments(tmp_path: Path) -> None:
    source = _torch_file(tmp_path / "m.pt", 0)
    with pytest.raises(ConversionError, match="examples"):
        files.verify(source, source, examples=0)
    with pytest.raises(files.FileFormatError, match=r"missing\.pt"):
        files.verify(source, tmp_path / "missing.pt")
