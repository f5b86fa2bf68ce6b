"""lstm-anomaly-tool==0.1.4's ``model.h5``: trained Keras ``LSTM(activation='relu')`` layers.

The package's own layers, loaded by Keras from the file and really run, agree with our
float64 reference on the weights we read; a target that cannot hold relu refuses it by name.
"""

from __future__ import annotations

import numpy as np
import pytest

from equivalence import reference
from equivalence.files.registry import read

from .field_packages import package_file
from .file_helpers import leftovers, one_error_line, run_cli

pytestmark = pytest.mark.cpu

PACKAGE, MEMBER = "lstm-anomaly-tool==0.1.4", "lstm_anomaly_tool/model.h5"


@pytest.fixture(scope="module")
def model_h5():
    return package_file(PACKAGE, MEMBER)


@pytest.fixture(scope="module")
def own_layers(model_h5):
    """The package's model as Keras itself loads it (nothing of ours in between)."""
    from equivalence.runtimes.keras import import_keras3

    keras = import_keras3()
    model = keras.models.load_model(str(model_h5), compile=False)
    return {layer.name: layer for layer in model.layers}


def test_relu_is_read_from_the_config(model_h5):
    found = {f.name: f for f in read(model_h5)}
    assert set(found) == {"lstm_6", "lstm_7"}
    for entry in found.values():
        assert entry.problem is None
        assert entry.spec.activation == "relu"


@pytest.mark.parametrize("name, width", [("lstm_6", 1), ("lstm_7", 32)])
def test_the_packages_own_layer_agrees_with_the_reference(model_h5, own_layers, name, width):
    weights = {f.name: f for f in read(model_h5)}[name].canonical()
    x = np.random.default_rng(0).normal(size=(3, 6, width)).astype("float32")
    own = np.asarray(own_layers[name](x), dtype=np.float64)  # lstm_6: the last step only
    ours = reference.lstm(weights, x).outputs
    ours = ours[:, -1] if own.ndim == 2 else ours
    assert np.abs(own - ours).max() < 1e-5
    tanh = reference.lstm(type(weights)(weights.spec.replace(activation="tanh"),
                                        weights.cells), x).outputs
    tanh = tanh[:, -1] if own.ndim == 2 else tanh
    assert np.abs(own - tanh).max() > 1e-3  # relu really mattered on these inputs


def test_convert_to_torch_refuses_relu_by_name(model_h5, tmp_path, capsys):
    out = tmp_path / "out.pt"
    code, _out, err = run_cli(capsys, "convert", model_h5, "--layer", "lstm_7", "--to", "torch",
                              "-o", out)
    assert code == 2
    assert "torch cannot represent activation=relu" in err
    assert one_error_line(err, out)
    assert not out.exists() and not leftovers(tmp_path)


def test_convert_to_onnx_carries_relu_and_onnxruntime_agrees(model_h5, own_layers, tmp_path,
                                                             capsys):
    """The converted file's LSTM node says Relu; onnxruntime running it agrees with the
    package's own Keras layer and with the reference to 1e-5."""
    import onnx
    import onnxruntime as ort

    out = tmp_path / "lstm_7.onnx"
    code, _out, err = run_cli(capsys, "convert", model_h5, "--layer", "lstm_7", "--to", "onnx",
                              "-o", out)
    assert code == 0, err
    node = next(n for n in onnx.load(str(out)).graph.node if n.op_type == "LSTM")
    names = next(a for a in node.attribute if a.name == "activations").strings
    assert [s.decode() for s in names] == ["Sigmoid", "Relu", "Relu"]
    x = np.random.default_rng(0).normal(size=(3, 6, 32)).astype("float32")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    own = np.asarray(own_layers["lstm_7"](x), dtype=np.float64)
    weights = {f.name: f for f in read(model_h5)}["lstm_7"].canonical()
    assert np.abs(got - own).max() < 1e-5
    assert np.abs(got - reference.lstm(weights, x).outputs).max() < 1e-5
    assert {f.spec.activation for f in read(out)} == {"relu"}


@pytest.mark.parametrize(("activations", "alpha", "beta", "expected"), [
    (["Sigmoid", "Relu", "Relu"], None, None, "activation=relu"),
    (["Sigmoid", "Affine", "Affine"], [1.0, 1.0], [0.0, 0.0], "activation=linear"),
    # alpha and beta are consumed in order: HardSigmoid's, then each Elu's alpha
    (["HardSigmoid", "Elu", "Elu"], [1 / 6, 1.0, 1.0], [0.5], "activation=elu"),
])
@pytest.mark.parametrize("target", ["keras", "onnx"])
def test_onnx_activations_are_read_and_verified_against_onnxruntime(
        tmp_path, capsys, activations, alpha, beta, expected, target):
    """onnxruntime runs the source file as it is; the converted file must agree with it."""
    from tests.test_field_files import attribute_model

    extra = {k: v for k, v in (("activation_alpha", alpha), ("activation_beta", beta)) if v}
    path = attribute_model(tmp_path / "in.onnx", activations=activations, **extra)
    out = tmp_path / ("out.keras" if target == "keras" else "out.onnx")
    code, text, err = run_cli(capsys, "convert", path, "--to", target, "-o", out, "--verify",
                              "--examples", "2")
    assert code == 0 and "verify: PASSED" in text, text + err
    assert {f.spec.activation for f in read(path)} == {expected.split("=")[1]}


@pytest.mark.parametrize(("activations", "extra", "named"), [
    (["Sigmoid", "Relu", "Tanh"], {}, "g=Relu, h=Tanh"),
    (["Sigmoid", "LeakyRelu", "LeakyRelu"], {"activation_alpha": [0.1, 0.1]},
     "g=LeakyRelu(alpha=0.1)"),
    (["Sigmoid", "Elu", "Elu"], {"activation_alpha": [0.5, 0.5]}, "g=Elu(alpha=0.5)"),
    (["Relu", "Tanh", "Tanh"], {}, "gate activation Relu"),
])
def test_onnx_activations_the_spec_lacks_are_refused_by_name(tmp_path, capsys, activations,
                                                             extra, named):
    from tests.test_field_files import attribute_model

    path = attribute_model(tmp_path / "in.onnx", activations=activations, **extra)
    out = tmp_path / "out.onnx"
    code, _text, err = run_cli(capsys, "convert", path, "--to", "onnx", "-o", out)
    assert code == 2 and named in err, err
    assert not out.exists() and not leftovers(tmp_path)


def test_relu_to_torch_from_onnx_is_refused_by_name(tmp_path, capsys):
    from tests.test_field_files import attribute_model

    path = attribute_model(tmp_path / "in.onnx", activations=["Sigmoid", "Relu", "Relu"])
    code, _text, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", tmp_path / "o.pt")
    assert code == 2 and "torch cannot represent activation=relu" in err, err
