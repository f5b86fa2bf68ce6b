"""``equivalence convert --all`` (every LSTM of a file, one output each, all or nothing) and
``--with-states`` (initial states in, final states out), with real frameworks.

--all: the outputs are loaded by onnxruntime and compared with torch; a refused or failing
LSTM among several leaves nothing written; names are safe, capped and distinct; an input is
never an output; --force and --verify apply to each output.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="real-file tests need the main environment")

from equivalence.cli import convert_all  # noqa: E402 (after the torch guard)
from equivalence.cli.convert_all import NAME_LIMIT, output_names, safe_name  # noqa: E402
from tests.file_helpers import leftovers, one_error_line, run_cli  # noqa: E402

pytestmark = [pytest.mark.cpu,
              pytest.mark.filterwarnings("ignore:.*is deprecated:UserWarning")]
ATOL = 2e-5  # float32 round-off of two correct LSTMs over <= 12 steps (see compare.py)


def _lstms(seed: int = 0) -> dict[str, torch.nn.LSTM]:
    torch.manual_seed(seed)
    return {"enc/lstm": torch.nn.LSTM(2, 3, batch_first=True),
            "dec": torch.nn.LSTM(3, 4, num_layers=2, batch_first=True),
            "Dec": torch.nn.LSTM(4, 2, batch_first=True)}


@pytest.fixture
def several(tmp_path: Path) -> tuple[Path, dict[str, torch.nn.LSTM]]:
    lstms = _lstms()
    path = tmp_path / "in" / "model.pt"
    path.parent.mkdir()
    torch.save({name: m.state_dict() for name, m in lstms.items()}, path)
    return path, lstms


def test_names_are_safe_capped_and_distinct(tmp_path):
    paths = output_names(tmp_path / "m.weights.h5", ["a/b", "a_b", "A_B", "../x", "x" * 300, ""])
    names = [p.name for p in paths]
    assert names[:4] == ["m_a_b.weights.h5", "m_a_b_2.weights.h5", "m_A_B_3.weights.h5",
                         "m_x.weights.h5"]
    assert len(safe_name("x" * 300)) == NAME_LIMIT and names[5] == "m_lstm.weights.h5"
    assert len({n.lower() for n in names}) == len(names)
    assert all(p.parent == tmp_path for p in paths)


def test_checkpoint_names_that_would_meet_are_told_apart(tmp_path):
    """A TF1 prefix drops a trailing .index: LSTMs 'a' and 'a.index' would share one."""
    from equivalence.cli.convert_steps import output_files

    paths = output_names(tmp_path / "ckpt", ["a", "a.index"],
                         lambda path: output_files("tf1", path))
    assert [p.name for p in paths] == ["ckpt_a", "ckpt_a.index_2"]


def test_all_to_onnx_runs_each_in_onnxruntime(capsys, tmp_path, several):
    import onnxruntime as ort

    source, lstms = several
    out = tmp_path / "out" / "m.onnx"
    code, text, err = run_cli(capsys, "convert", source, "--all", "--to", "onnx", "-o", out,
                              "--verify")
    assert code == 0, err
    assert text.count("verify: PASSED") == 3 and "wrote 3 outputs" in text
    files = {"enc/lstm": "m_enc_lstm.onnx", "dec": "m_dec.onnx", "Dec": "m_Dec_2.onnx"}
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(files.values())
    rng = np.random.default_rng(1)
    for name, file in files.items():
        lstm = lstms[name]
        x = rng.normal(size=(2, 6, lstm.input_size)).astype(np.float32)
        session = ort.InferenceSession(str(out.parent / file),
                                       providers=["CPUExecutionProvider"])
        got = session.run(["output"], {"input": x})[0]
        with torch.no_grad():
            want = lstm(torch.from_numpy(x))[0].numpy()
        np.testing.assert_allclose(got, want, atol=ATOL)


def test_all_with_layer_is_refused(capsys, tmp_path, several):
    source, _ = several
    code, _, err = run_cli(capsys, "convert", source, "--all", "--layer", "dec", "--to", "onnx",
                           "-o", tmp_path / "m.onnx")
    assert code == 2 and "--all" in err and "--layer" in err
    assert not (tmp_path / "m_dec.onnx").exists()


def test_one_unwritable_lstm_writes_nothing(capsys, tmp_path):
    torch.save({"a": torch.nn.LSTM(2, 3).state_dict(),
                "p": torch.nn.LSTM(3, 4, proj_size=2).state_dict()}, tmp_path / "in.pt")
    out = tmp_path / "new" / "m.keras"
    code, _, err = run_cli(capsys, "convert", tmp_path / "in.pt", "--all", "--to", "keras",
                           "-o", out)
    assert code == 2 and "m_p.keras" in err
    assert not out.parent.exists() and leftovers(tmp_path) == []


def test_a_failure_while_writing_the_third_leaves_nothing(capsys, tmp_path, several,
                                                          monkeypatch):
    """The third writer call fails (a full disk): the first two, already written under
    temporary names, are removed and the folder made for them too."""
    source, _ = several
    real = convert_all.registry.function
    calls = []

    def writer_failing_third(name):
        found = real(name)
        if not name.endswith(":write_onnx"):
            return found

        def write(path, weights, job):
            calls.append(path)
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
            return found(path, weights, job)
        return write

    monkeypatch.setattr(convert_all.registry, "function", writer_failing_third)
    out = tmp_path / "out" / "m.onnx"
    code, _, err = run_cli(capsys, "convert", source, "--all", "--to", "onnx", "-o", out)
    assert code == 2 and len(calls) == 3 and "No space left" in err
    assert one_error_line(err, out.parent / "m_Dec_2.onnx")
    assert not out.parent.exists()


def test_a_publish_lost_to_a_racing_run_unpublishes_the_others(capsys, tmp_path, several,
                                                               monkeypatch):
    source, _ = several
    out = tmp_path / "m.onnx"
    real = convert_all.publish

    def racing(staged, target, replace):
        if target.name == "m_Dec_2.onnx":  # another run takes the last name meanwhile
            target.write_bytes(b"theirs")
        real(staged, target, replace)

    monkeypatch.setattr(convert_all, "publish", racing)
    code, _, err = run_cli(capsys, "convert", source, "--all", "--to", "onnx", "-o", out)
    assert code == 2 and "written meanwhile" in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("m_")) == [
        "m_Dec_2.onnx"]
    assert (tmp_path / "m_Dec_2.onnx").read_bytes() == b"theirs"
    assert leftovers(tmp_path) == []


def test_existing_output_needs_force_for_each(capsys, tmp_path, several):
    source, _ = several
    out = tmp_path / "m.onnx"
    (tmp_path / "m_dec.onnx").write_bytes(b"old")
    code, _, err = run_cli(capsys, "convert", source, "--all", "--to", "onnx", "-o", out)
    assert code == 2 and "m_dec.onnx" in err and "--force" in err
    assert not (tmp_path / "m_enc_lstm.onnx").exists()
    assert (tmp_path / "m_dec.onnx").read_bytes() == b"old"
    code, _, err = run_cli(capsys, "convert", source, "--all", "--to", "onnx", "-o", out,
                           "--force")
    assert code == 0, err
    assert (tmp_path / "m_dec.onnx").read_bytes() != b"old"
    assert (tmp_path / "m_enc_lstm.onnx").exists() and leftovers(tmp_path) == []


def test_an_output_that_is_the_input_is_refused(capsys, tmp_path):
    """``-o m.pt`` names the output of LSTM 'a' ``m_a.pt``: the input itself here."""
    source = tmp_path / "m_a.pt"
    torch.save({"a": torch.nn.LSTM(2, 3).state_dict(), "b": torch.nn.LSTM(2, 3).state_dict()},
               source)
    before = source.read_bytes()
    code, _, err = run_cli(capsys, "convert", source, "--all", "--to", "torch", "-o",
                           tmp_path / "m.pt", "--force")
    assert code == 2 and "is the input file" in err
    assert source.read_bytes() == before and not (tmp_path / "m_b.pt").exists()


def test_all_to_tf1_gives_each_lstm_its_own_checkpoint(capsys, tmp_path, several):
    """TF1 variable names never collide: each LSTM is its own checkpoint, verified by TF."""
    import tensorflow as tf

    source, _ = several
    code, text, err = run_cli(capsys, "convert", source, "--all", "--to", "tf1", "-o",
                              tmp_path / "ckpt", "--verify", "--examples", "1")
    assert code == 0, err
    assert text.count("verify: PASSED") == 3
    for name, layers in (("ckpt_enc_lstm", 1), ("ckpt_dec", 2), ("ckpt_Dec_2", 1)):
        variables = dict(tf.train.list_variables(str(tmp_path / name)))
        kernels = [v for v in variables if v.endswith("/kernel")]
        assert len(kernels) == layers, (name, variables)


def _writer_with_a_bug_for(victim_units: int):
    """The real ONNX writer, except that for the LSTM with ``victim_units`` it swaps the
    input and forget gate rows of the first cell (a converter bug --verify must catch)."""
    from dataclasses import replace

    from equivalence.files.onnx.model import write_onnx

    def swap(_layer, _direction, cell):
        h = victim_units
        order = np.r_[h:2 * h, 0:h, 2 * h:4 * h]
        return replace(cell, w_input=cell.w_input[order], b_input=cell.b_input[order])

    def write(path, weights, job):
        if weights.spec.units == victim_units:
            weights = weights.map_cells(swap)
        return write_onnx(path, weights, job)
    return write


@pytest.mark.parametrize("keep", [False, True])
def test_verify_failing_for_one_publishes_nothing_unless_kept(capsys, tmp_path, several,
                                                              monkeypatch, keep):
    source, _ = several
    real = convert_all.registry.function
    monkeypatch.setattr(convert_all.registry, "function", lambda name: (
        _writer_with_a_bug_for(4) if name.endswith(":write_onnx") else real(name)))
    out = tmp_path / "out" / "m.onnx"
    code, text, _ = run_cli(capsys, "convert", source, "--all", "--to", "onnx", "-o", out,
                            "--verify", "--examples", "1", *(["--keep-failed"] if keep else []))
    assert code == 1 and "verify: FAILED for ['dec']" in text
    assert text.count("verify: PASSED") == 2
    if keep:
        assert sorted(p.name for p in out.parent.iterdir()) == [
            "m_Dec_2.onnx", "m_dec.onnx", "m_enc_lstm.onnx"]
    else:
        assert "nothing written" in text and not out.parent.exists()


# ---------------------------------------------------------------- a refused pickle


def test_a_hostile_class_gets_no_state_dict_hint(capsys, tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"x": Payload()}, tmp_path / "evil.pt", pickle_module=pickle)
    code, out, err = run_cli(capsys, "inspect", tmp_path / "evil.pt")
    assert code == 2 and "ran" not in out and "refused" in err and "state_dict" not in err


# ---------------------------------------------------------------- --with-states


def _random_states(spec, batch, rng):
    shape = (spec.layers, spec.directions, batch, spec.units)
    return (rng.uniform(-1, 1, shape).astype(np.float32),
            rng.uniform(-1, 1, shape).astype(np.float32))


def _judge_against_reference(weights, x, h0, c0, lengths, got):
    """``got`` against the float64 reference, under compare.py's policy."""
    from equivalence import reference
    from equivalence.compare import Tolerance, judge, rounding_sensitivity
    from equivalence.io_types import LSTMInputs, LSTMResult

    exact = reference.lstm(weights, x, h0=h0, c0=c0, lengths=lengths)
    inputs = LSTMInputs(x, h0, c0, lengths)
    tolerance = Tolerance.for_case("float32", x.shape[1])
    comparison = judge(exact, LSTMResult(*got), tolerance,
                       lambda: rounding_sensitivity(weights, inputs, "float32"))
    return comparison


@pytest.fixture
def stacked_bidirectional(tmp_path):
    torch.manual_seed(3)
    path = tmp_path / "bi.pt"
    torch.save(torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True,
                             batch_first=True).state_dict(), path)
    from equivalence.files import read

    return path, read(path)[0].canonical()


def test_onnx_with_states_takes_h0_c0_lengths_in_onnxruntime(capsys, tmp_path,
                                                             stacked_bidirectional):
    import onnxruntime as ort

    source, weights = stacked_bidirectional
    out = tmp_path / "dec.onnx"
    code, text, err = run_cli(capsys, "convert", source, "--to", "onnx", "-o", out,
                              "--with-states", "--verify")
    assert code == 0, err
    assert "fed input, h0, c0, sequence_lens" in text
    assert "initial states (batch" in text and "lengths (batch" in text, text
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input", "h0", "c0", "sequence_lens"]
    rng = np.random.default_rng(5)
    spec = weights.spec
    x = rng.normal(size=(3, 9, 3)).astype(np.float32)
    h0, c0 = _random_states(spec, 3, rng)
    lengths = np.array([9, 4, 1])
    rows = (spec.layers * spec.directions, 3, spec.units)
    output, h, c = session.run(["output", "h_n", "c_n"], {
        "input": x, "h0": h0.reshape(rows), "c0": c0.reshape(rows),
        "sequence_lens": lengths.astype(np.int32)})
    states = (spec.layers, spec.directions, 3, spec.units)
    comparison = _judge_against_reference(weights, x, h0, c0, lengths,
                                          (output, h.reshape(states), c.reshape(states)))
    assert comparison.ok, comparison
    zero = _judge_against_reference(weights, x, None, None, lengths,
                                    (output, h.reshape(states), c.reshape(states)))
    assert not zero.ok  # the states fed really changed the result


def test_verify_catches_h0_and_c0_swapped_in_the_graph(capsys, tmp_path, stacked_bidirectional):
    """A graph whose Slice feeds c0 into initial_h (and h0 into initial_c) computes another
    function; verify runs the whole model, so it must fail."""
    import onnx

    from equivalence.artefacts.verify import verify
    from equivalence.files import read

    source, _ = stacked_bidirectional
    out = tmp_path / "dec.onnx"
    assert run_cli(capsys, "convert", source, "--to", "onnx", "-o", out, "--with-states")[0] == 0
    model = onnx.load(str(out))
    for node in model.graph.node:
        if node.op_type == "Slice":
            node.input[0] = {"h0": "c0", "c0": "h0"}[node.input[0]]
    swapped = tmp_path / "swapped.onnx"
    onnx.save(model, str(swapped))
    lines: list[str] = []
    assert verify(read(source)[0], read(swapped)[0], examples=2, out=lines.append) is False
    assert any("FAILED" in line for line in lines)
    assert verify(read(source)[0], read(out)[0], examples=2, out=lines.append) is True


def test_with_states_refused_where_the_output_has_no_inputs(capsys, tmp_path,
                                                            stacked_bidirectional):
    source, _ = stacked_bidirectional
    for output in ("w.pt", "w.weights.h5", "ckpt"):
        target = {"w.pt": "torch", "w.weights.h5": "keras", "ckpt": "tf1"}[output]
        code, _, err = run_cli(capsys, "convert", source, "--to", target, "-o",
                               tmp_path / output, "--with-states")
        assert code == 2 and "--with-states" in err, (output, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bi.pt"]
