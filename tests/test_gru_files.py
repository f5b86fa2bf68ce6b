"""GRU files through the command line: ``torch.save`` files of ``nn.GRU`` and ``nn.GRUCell``
inspected, converted with ``--verify`` (both sides run in torch, for real), compared, and
refused by name by the writers that build LSTM layers or nodes only."""

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
    ("keras", "out.keras", "keras files (LSTM layers)"),
    ("onnx", "out.onnx", "onnx files (LSTM nodes)"),
    ("tf1", "out.ckpt", "tf1"),
])
def test_writers_without_gru_refuse_it_by_name_and_write_nothing(tmp_path, capsys, target: str,
                                                                 name: str, writer: str) -> None:
    source = saved_gru(tmp_path / "gru.pt")
    code, _, err = run_cli(capsys, "convert", source, "--to", target, "-o", tmp_path / name)
    assert code == 2 and f"{writer} cannot represent cell=gru" in err, err
    assert not (tmp_path / name).exists() and leftovers(tmp_path) == []
