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
