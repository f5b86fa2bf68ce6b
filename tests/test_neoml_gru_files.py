"""NeoML's own network files holding ``Gru`` layers, read without NeoML: the weights are the
case's, and the float64 reference on them gives the outputs NeoML computed (the committed
``tests/neoml_files/gru_*`` files, written by ``make.py`` in the NeoML environment)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from equivalence import reference
from equivalence.cli.main import main
from equivalence.files.neoml.archive import read_network
from equivalence.files.neoml.gru_layer import read_gru
from equivalence.files.neoml.network import read_network_file
from equivalence.files.neoml.recurrent_parts import Unreadable
from equivalence.formats.neoml import GRU_KEYS
from equivalence.harness import exchange
from tests.file_helpers import leftovers

pytestmark = pytest.mark.cpu

FILES = Path(__file__).parent / "neoml_files"
NETWORKS = {"gru_stack": (1, ["gru_0_0", "gru_1_0"]),
            "gru_bidirectional": (2, ["gru_0_0", "gru_0_1", "gru_1_0", "gru_1_1"])}


def _cells(native):
    return [cell for layer in native for cell in layer]


def _neoml_outputs(name: str):
    case = exchange.load(FILES / f"{name}.npz")
    return case, case.expected


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_gru_network_file_weights_are_the_case_weights(name: str) -> None:
    directions, parts = NETWORKS[name]
    case, _ = _neoml_outputs(name)
    (found,) = read_network_file(FILES / f"{name}.cnnarch")
    assert found.problem is None and found.read_options == {"cell": "gru"}
    for mine, theirs in zip(_cells(found.native), _cells(case.native), strict=True):
        for key in GRU_KEYS:
            np.testing.assert_array_equal(mine[key], theirs[key])
    spec = found.spec
    assert (spec.cell, spec.reset_after, spec.layers, spec.directions) == ("gru", False, 2,
                                                                             directions)
    assert [p.name for p in found.parts] == parts
    assert not any("SubSequence" in note for note in found.notes)  # the reversals are read


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_reference_on_read_weights_gives_neomls_outputs(name: str) -> None:
    case, neoml_result = _neoml_outputs(name)
    (found,) = read_network_file(FILES / f"{name}.cnnarch")
    ours = reference.run(found.canonical(), case.inputs.x, h0=case.inputs.h0)
    # NeoML ran in float32: 1e-5 is float32 rounding over 5 steps and 2 layers
    np.testing.assert_allclose(ours.outputs, neoml_result.outputs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.h, neoml_result.h, rtol=0, atol=1e-5)


def test_the_check_can_fail_update_and_reset_gates_swapped() -> None:
    case, neoml_result = _neoml_outputs("gru_bidirectional")
    (found,) = read_network_file(FILES / "gru_bidirectional.cnnarch")
    units = found.spec.units
    swapped = [[{**cell, "gate_weights": np.roll(cell["gate_weights"], units, axis=0),
                 "gate_free_term": np.roll(cell["gate_free_term"], units)}
                for cell in layer] for layer in found.native]
    wrong = dataclasses.replace(found, native=swapped)
    ours = reference.run(wrong.canonical(), case.inputs.x, h0=case.inputs.h0)
    assert np.abs(ours.outputs - neoml_result.outputs).max() > 1e-2


def test_inspect_lists_the_gru_and_the_converted_keras_model_computes_it(tmp_path: Path,
                                                                          capsys) -> None:
    """No NeoML here, so no --verify: Keras itself runs the converted file instead, against
    the reference on the read weights (which the test above holds to NeoML's outputs)."""
    keras = pytest.importorskip("keras")
    source = FILES / "gru_bidirectional.cnnarch"
    assert main(["inspect", str(source)]) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("gru_0_0+"))
    assert row[2:8] == ["GRU", "(reset_after=False)", "2", "2", "3", "2"], out
    output = tmp_path / "gru.keras"
    assert main(["convert", str(source), "--to", "keras", "-o", str(output)]) == 0
    case, _ = _neoml_outputs("gru_bidirectional")
    (found,) = read_network_file(source)
    theirs = np.asarray(keras.saving.load_model(output)(case.inputs.x))
    ours = reference.run(found.canonical(), case.inputs.x).outputs
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5)


def test_torch_refuses_neomls_reset_before_gru_by_name(tmp_path: Path, capsys) -> None:
    output = tmp_path / "gru.pt"
    assert main(["convert", str(FILES / "gru_stack.cnnarch"), "--to", "torch",
                 "-o", str(output)]) == 2
    assert "reset_after=False" in capsys.readouterr().err
    assert not output.exists() and leftovers(tmp_path) == []


def _gru_layer():
    network = read_network((FILES / "gru_stack.cnnarch").read_bytes())
    return next(layer for layer in network.layers if layer.cls == "FmlCnnGruLayer")


def _rewired(layer, inner_name: str, inputs):
    inner = [dataclasses.replace(item, inputs=inputs) if item.name == inner_name else item
             for item in layer.layers]
    return dataclasses.replace(layer, layers=inner)


@pytest.mark.parametrize(("inner_name", "inputs", "reason"), [
    ("CCnnSigmoidLayer.reset", [("CCnnSplitChannelsLayer", 0)], "'CCnnSigmoidLayer.reset'"),
    ("CCnnEltwiseMulLayer.reset", [("CCnnSigmoidLayer.update", 0), ("CCnnBackLink", 0)],
     "'CCnnEltwiseMulLayer.reset'"),
])
def test_a_gru_wired_otherwise_is_not_read(inner_name: str, inputs, reason: str) -> None:
    with pytest.raises(Unreadable, match=reason):
        read_gru(_rewired(_gru_layer(), inner_name, inputs))


def test_a_gru_repeated_or_remapped_is_not_read() -> None:
    layer = _gru_layer()
    repeated = dataclasses.replace(layer, fields={**layer.fields, "repeat_count": 2})
    with pytest.raises(Unreadable, match="repeat count 2"):
        read_gru(repeated)


def test_a_truncated_gru_file_exits_2_and_writes_nothing(tmp_path: Path, capsys) -> None:
    source = tmp_path / "cut.cnnarch"
    source.write_bytes((FILES / "gru_stack.cnnarch").read_bytes()[:700])
    output = tmp_path / "out.onnx"
    assert main(["convert", str(source), "--to", "onnx", "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert "cut.cnnarch" in err and "Traceback" not in err and len(err) < 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.cnnarch"]


def test_the_reports_neoml_rows_judge_a_gru_where_the_target_claims_it() -> None:
    """NeoML's reset-before GRU into torch (which cannot hold it) is no pair; into
    onnxruntime it is judged, and passes."""
    pytest.importorskip("onnxruntime")
    from equivalence import table
    from equivalence.report.neoml_part import exchanged_count, exchanged_rows

    files = [FILES / "gru_stack.npz"]
    assert exchanged_count(files, ["torch", "onnxruntime"]) == 1
    rows = exchanged_rows(files, ["torch", "onnxruntime"], table.MAIN)
    assert [(row["source"], row["target"], row["cell"]) for row in rows] == [
        ("neoml", "onnxruntime", "gru")], rows
    assert rows[0]["passed"] and rows[0]["examples"] == 1, rows
