"""NeoML in both directions, across the two environments (``.ci/run`` runs every part).

In the NeoML environment (``-m neoml``):

* NeoML against the float64 reference (Hypothesis, as for every runtime);
* every main-environment runtime's cases (``python -m equivalence.harness.exchange export``)
  converted to NeoML and run for real;
* NeoML's own cases: the network NeoML stores (``Dnn.store``) is the one that
  computed the recorded outputs, and the reader here decodes its weights exactly.

In the main environment (``-m cpu``), without NeoML:

* NeoML's cases (the committed ``tests/neoml_files`` or, with
  ``EQUIVALENCE_NEOML_CASES=DIR``, fresh ones from ``export-neoml``) read back from
  NeoML's network file, converted to every runtime, run and judged by the harness;
* a converter that forgets NeoML's gate order must fail;
* NeoML's network files through ``equivalence inspect``/``convert``, and damaged ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equivalence import files, table
from equivalence.cli.main import main
from equivalence.convert import convert
from equivalence.errors import ConversionError
from equivalence.files import FileFormatError
from equivalence.files.neoml.network import read_network_file
from equivalence.formats import neoml as neoml_format
from equivalence.harness import exchange
from equivalence.harness import judge as harness
from equivalence.strategies import lstm_cases

from .runtime_support import record, replay_command, require

NEOML = table.entry("neoml")
FILES = Path(__file__).parent / "neoml_files"
REQUIRE = os.environ.get("EQUIVALENCE_REQUIRE_EXCHANGE") == "1"


def _files(variable: str, pattern: str, fallback: list[Path]) -> list[Path]:
    folder = os.environ.get(variable)
    found = sorted(Path(folder).glob(pattern)) if folder else []
    if folder and not found and REQUIRE:
        raise RuntimeError(f"EQUIVALENCE_REQUIRE_EXCHANGE=1 but no {pattern} in {folder!r}")
    return found or fallback


# ------------------------------------------------------------------ the NeoML environment


@pytest.mark.neoml
@given(data=st.data())
def test_neoml_matches_reference(data, request) -> None:
    require(NEOML)
    case = data.draw(lstm_cases(capabilities=NEOML.capabilities))
    outcome = harness.check_against_reference(NEOML, case)
    record(request, outcome)
    assert outcome.ok, outcome.message(replay_command(request))


MAIN_CASES = _files("EQUIVALENCE_EXCHANGE_DIR", "*.npz", [])


@pytest.mark.neoml
@pytest.mark.parametrize("path", MAIN_CASES or [None], ids=lambda p: p.stem if p else "none")
def test_exchanged_case_runs_the_same_in_neoml(path: Path | None) -> None:
    if path is None:
        if REQUIRE:
            pytest.fail("EQUIVALENCE_REQUIRE_EXCHANGE=1 but EQUIVALENCE_EXCHANGE_DIR is unset")
        pytest.skip("no case files: run `python -m equivalence.harness.exchange export --out DIR` "
                    "in the main environment and set EQUIVALENCE_EXCHANGE_DIR=DIR")
    require(NEOML)
    outcome = exchange.judge(path, "neoml")
    assert outcome.ok, f"{path.name}:\n{outcome.message()}"


@pytest.mark.neoml
def test_neoml_stores_the_network_that_computed_its_cases(tmp_path: Path) -> None:
    """What NeoML exports: its stored network reloads in NeoML and reproduces the recorded
    outputs bit for bit, and the reader here decodes exactly the weights NeoML was given."""
    require(NEOML)
    for path in exchange.export_neoml(tmp_path, examples=4, seed=3):
        case = exchange.load(path)
        found = read_network_file(exchange.network_file(path))
        assert [f.name for f in found] == ["+".join(
            f"{case.spec.cell}_{layer}_{d}" for layer in range(case.spec.layers)
            for d in range(case.spec.directions))]
        keys = neoml_format.GRU_KEYS if case.spec.cell == "gru" else neoml_format.KEYS
        for mine, theirs in zip(_cells(found[0].native), _cells(case.native), strict=True):
            for key in keys:
                np.testing.assert_array_equal(mine[key], theirs[key])
        runtime = NEOML.load()
        again = runtime.run_stored(  # type: ignore[attr-defined]
            exchange.network_file(path), case.spec, case.inputs)
        for name in ("outputs", "h", "c"):
            np.testing.assert_array_equal(getattr(again, name), getattr(case.expected, name))


def _f_and_g_swapped(native: list) -> list:
    """A converter into NeoML that writes the forget block where the candidate goes."""
    def swap(array: np.ndarray) -> np.ndarray:
        blocks = np.split(np.asarray(array), 4)
        return np.concatenate([blocks[1], blocks[0], *blocks[2:]])
    return [[{key: swap(value) for key, value in cell.items()} for cell in row] for row in native]


@pytest.mark.neoml
@pytest.mark.parametrize("converter, ok", [(None, True), (_f_and_g_swapped, False)])
def test_neoml_judges_a_case_file_and_catches_a_block_swap(converter, ok: bool) -> None:
    require(NEOML)
    outcome = exchange.judge(FILES / "bidirectional.npz", "neoml", converter=converter)
    assert outcome.ok is ok, outcome.message()


def _cells(native: list | dict) -> list[dict]:
    """Every cell's weights; the neoml format writes a single cell as one dict."""
    if isinstance(native, dict):
        return [native]
    return [cell for row in native for cell in row]


# ------------------------------------------------------------------ the main environment

NEOML_CASES = _files("EQUIVALENCE_NEOML_CASES", "neoml-*.npz", [FILES / "bidirectional.npz"])


@pytest.mark.cpu
@pytest.mark.parametrize("target", exchange.pair_runtimes())
@pytest.mark.parametrize("path", NEOML_CASES, ids=lambda p: p.stem)
def test_neoml_case_runs_the_same_in(path: Path, target: str) -> None:
    """NeoML -> target: weights from NeoML's own network file, NeoML's recorded results; a
    NeoML GRU (reset_after=False) into a target without that variant is refused by name."""
    require(table.entry(target))
    case = exchange.load(path)
    if case.spec.cell == "gru" and not exchange.holds_neoml_gru(table.entry(target).capabilities):
        with pytest.raises(ConversionError, match=r"reset_after=False|cell=gru"):
            exchange.judge(path, target)
        return
    outcome = exchange.judge(path, target)
    assert outcome.ok, f"{path.name}:\n{outcome.message()}"


def _gates_not_reordered(native: list) -> dict:
    """A converter that reads NeoML's blocks (g f i o) as PyTorch's (i f g o)."""
    state = {}
    for layer, row in enumerate(native):
        for direction, cell in enumerate(row):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            state[f"weight_ih_{suffix}"] = cell["input_weights"]
            state[f"weight_hh_{suffix}"] = cell["recurrent_weights"]
            state[f"bias_ih_{suffix}"] = cell["input_free_term"]
            state[f"bias_hh_{suffix}"] = cell["recurrent_free_term"]
    return state


@pytest.mark.cpu
def test_a_converter_that_keeps_neoml_gate_order_fails() -> None:
    require(table.entry("torch"))
    outcome = exchange.judge(FILES / "bidirectional.npz", "torch", converter=_gates_not_reordered)
    assert not outcome.ok
    assert "neoml -> torch: not equivalent" in outcome.message()
    assert "neoml (recorded)" in outcome.blame and "diagnosis:" in outcome.blame


@pytest.mark.cpu
def test_neoml_network_file_weights_are_the_case_weights() -> None:
    case = exchange.load(FILES / "bidirectional.npz")
    found = read_network_file(FILES / "bidirectional.cnnarch")
    assert len(found) == 1 and found[0].problem is None
    for mine, theirs in zip(_cells(found[0].native), _cells(case.native), strict=True):
        for key in neoml_format.KEYS:
            np.testing.assert_array_equal(mine[key], theirs[key])
    spec = found[0].spec
    assert (spec.layers, spec.directions, spec.input_size, spec.units) == (2, 2, 3, 2)
    assert [p.name for p in found[0].parts] == ["lstm_0_0", "lstm_0_1", "lstm_1_0", "lstm_1_1"]
    assert "one direction of" in found[0].parts[1].problem


@pytest.mark.cpu
def test_a_tagger_network_yields_its_bidirectional_lstm_only() -> None:
    found = read_network_file(FILES / "tagger.cnnarch")
    assert [f.name for f in found] == ["forward+backward"]
    assert found[0].spec.directions == 2 and found[0].spec.input_size == 3
    assert any("MultychannelLookupLayer 'embedding'" in note for note in found[0].notes)


@pytest.mark.cpu
def test_checkpoint_dropout_and_hard_sigmoid() -> None:
    (checkpoint,) = read_network_file(FILES / "single.ckpt")
    assert checkpoint.problem is None and "checkpoint" in checkpoint.kind
    assert any("solver" in note for note in checkpoint.notes)
    (dropped,) = read_network_file(FILES / "dropout.cnnarch")
    assert dropped.problem is None and any("dropout 0.25" in note for note in dropped.notes)
    (hard,) = read_network_file(FILES / "hard_sigmoid.cnnarch")
    assert hard.native is None and "'hard_sigmoid'" in hard.problem


def _damaged(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "damaged.cnnarch"
    path.write_bytes(data)
    return path


@pytest.mark.cpu
@pytest.mark.parametrize("cut", [3, 40, 700, 13000])
def test_truncated_network_file_is_refused_by_name(tmp_path: Path, cut: int) -> None:
    path = _damaged(tmp_path, (FILES / "bidirectional.cnnarch").read_bytes()[:cut])
    with pytest.raises(FileFormatError, match=r"damaged\.cnnarch: cannot be read as a NeoML "
                                              r"network file: .*left \(truncated file\?\)"):
        read_network_file(path)


@pytest.mark.cpu
def test_huge_declared_blob_is_refused_before_allocating(tmp_path: Path) -> None:
    data = bytearray((FILES / "single.ckpt").read_bytes())
    # the input weights blob: seven dims (1, 8, 1, 1, 1, 1, 3) then its element count 24
    at = bytes(data).index(np.array([1, 8, 1, 1, 1, 1, 3, 24], "<i4").tobytes())
    data[at:at + 32] = np.array([1, 2**20, 1, 1, 1, 1, 2**10, 2**30], "<i4").tobytes()
    with pytest.raises(FileFormatError, match="needs 4294967296 bytes"):
        read_network_file(_damaged(tmp_path, bytes(data)))


@pytest.mark.cpu
def test_unknown_layer_class_is_named(tmp_path: Path) -> None:
    tagger = (FILES / "tagger.cnnarch").read_bytes()
    data = tagger.replace(b"FmlCnnTanhLayer", b"FmlCnnGeluLayer")
    with pytest.raises(FileFormatError, match="layer class 'FmlCnnGeluLayer' is not one this "
                                              "reader can decode"):
        read_network_file(_damaged(tmp_path, data))


SINGLE = (FILES / "single.ckpt").read_bytes()


@pytest.mark.cpu
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(SINGLE) - 1), st.integers(0, 255)),
                      min_size=1, max_size=4))
def test_any_corrupted_network_file_reads_or_is_refused(tmp_path: Path, edits) -> None:
    data = bytearray(SINGLE)
    for position, value in edits:
        data[position] = value
    try:
        found = read_network_file(_damaged(tmp_path, bytes(data)))
    except FileFormatError as exc:
        assert "damaged.cnnarch" in str(exc)
        return
    for item in found:  # what is read is either convertible or says why not
        assert item.problem or item.canonical().spec.units >= 1


@pytest.mark.cpu
def test_neoml_file_converts_to_torch_with_the_same_weights() -> None:
    (found,) = read_network_file(FILES / "bidirectional.cnnarch")
    torch_native = convert(found.native, source="neoml", target="torch")
    back = convert(torch_native, source="torch", target="neoml")
    for mine, theirs in zip(_cells(back), _cells(found.native), strict=True):
        for key in ("input_weights", "recurrent_weights"):
            np.testing.assert_array_equal(mine[key], theirs[key])


# ------------------------------------------------------------------ inspect and convert


@pytest.mark.cpu
def test_inspect_lists_the_lstms_of_a_neoml_network_file(capsys) -> None:
    assert main(["inspect", str(FILES / "tagger.cnnarch")]) == 0
    out = capsys.readouterr().out
    assert "forward+backward" in out and "NeoML network file" in out
    assert "['forward', 'backward']" in out


@pytest.mark.cpu
def test_convert_a_neoml_network_file_to_onnx_keeps_every_weight(tmp_path: Path) -> None:
    output = tmp_path / "lstm.onnx"
    assert main(["convert", str(FILES / "bidirectional.cnnarch"), "--to", "onnx",
                 "-o", str(output)]) == 0
    (found,) = files.read(output)
    mine, theirs = found.canonical(), read_network_file(FILES / "bidirectional.cnnarch")[0]
    assert mine.spec == theirs.canonical().spec
    flat = [[cell for row in w.cells for cell in row] for w in (mine, theirs.canonical())]
    for a, b in zip(*flat, strict=True):
        for name in ("w_input", "w_recurrent"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        # ONNX keeps both free terms: their sum is the canonical bias
        np.testing.assert_allclose(a.b_input + a.b_recurrent, b.b_input + b.b_recurrent,
                                   rtol=0, atol=1e-6)


@pytest.mark.cpu
@pytest.mark.parametrize("name, message", [
    ("hard_sigmoid.cnnarch", "recurrent activation 'hard_sigmoid'"),
    ("truncated.cnnarch", "truncated file"),
])
def test_unconvertible_neoml_file_exits_2_and_writes_nothing(tmp_path: Path, capsys, name: str,
                                                            message: str) -> None:
    source = tmp_path / name
    source.write_bytes((FILES / name).read_bytes() if (FILES / name).exists()
                       else (FILES / "single.ckpt").read_bytes()[:1000])
    output = tmp_path / "out.pt"
    assert main(["convert", str(source), "--to", "torch", "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert str(source) in err and message in err
    assert not output.exists()
