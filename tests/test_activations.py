"""The cell/output activation (Keras ``activation=``, ONNX g = h): the reference computes
it, and every format and runtime that cannot hold it refuses it by name."""

from __future__ import annotations

import numpy as np
import pytest

import equivalence as eq
from equivalence import reference, table
from equivalence.canonical import LSTMWeights, random_weights
from equivalence.capabilities import Capabilities, joint_capabilities
from equivalence.case import Case
from equivalence.compare import judge
from equivalence.errors import SpecError, UnsupportedFeatureError
from equivalence.formats import FORMATS, keras
from equivalence.formats.options import reader_options
from equivalence.harness import judge as harness
from equivalence.io_types import LSTMInputs

from .format_semantics import CELL_ACTIVATIONS
from .format_semantics import keras as keras_semantics
from .runtime_support import require

pytestmark = pytest.mark.cpu


@pytest.mark.parametrize("activation", sorted(CELL_ACTIVATIONS))
def test_reference_applies_the_activation_to_candidate_and_cell(activation: str) -> None:
    spec = eq.LSTMSpec(3, 4, dtype="float64", activation=activation)
    weights = random_weights(spec, np.random.default_rng(0), scale=1.0)
    x = np.random.default_rng(1).normal(size=(2, 5, 3))
    # Keras's documented equations on the keras native layout, run independently.
    native = keras.from_canonical(LSTMWeights(spec.replace(activation="tanh"), weights.cells))
    out, _h, c = keras_semantics(native, x, spec)
    got = reference.lstm(weights, x)
    np.testing.assert_allclose(got.outputs, out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.c[0, 0], c, rtol=1e-12, atol=1e-12)


def test_relu_differs_from_tanh() -> None:
    """The field changes the numbers (a reference ignoring it would pass the test above
    only for tanh)."""
    spec = eq.LSTMSpec(3, 4, dtype="float64", activation="relu")
    weights = random_weights(spec, np.random.default_rng(0), scale=1.0)
    x = np.random.default_rng(1).normal(size=(2, 5, 3)) * 3
    tanh = LSTMWeights(spec.replace(activation="tanh"), weights.cells)
    diff = np.abs(reference.lstm(weights, x).outputs - reference.lstm(tanh, x).outputs).max()
    assert diff > 1e-2


def test_unknown_activation_is_refused_by_name() -> None:
    with pytest.raises(SpecError, match="activation: 'swish', expected one of"):
        eq.LSTMSpec(3, 4, activation="swish")


def test_spec_round_trips_and_old_dicts_default_to_tanh() -> None:
    spec = eq.LSTMSpec(3, 4, activation="relu")
    assert eq.LSTMSpec.from_dict(spec.to_dict()) == spec
    old = {k: v for k, v in spec.to_dict().items() if k != "activation"}
    assert eq.LSTMSpec.from_dict(old).activation == "tanh"
    assert "activation=relu" in spec.features()
    assert not any(f.startswith("activation") for f in spec.replace(activation="tanh").features())


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_formats_without_the_activation_refuse_it_by_name(name: str) -> None:
    fmt = FORMATS[name]
    if "activation=relu" in fmt.supported:
        pytest.skip(f"{name} holds activation=relu")
    spec = eq.LSTMSpec(3, 4, activation="relu")
    weights = random_weights(spec, np.random.default_rng(0))
    with pytest.raises(UnsupportedFeatureError, match="cannot represent activation=relu"):
        fmt.from_canonical(weights)
    assert "relu" not in fmt.capabilities().activations


def test_capabilities_refuse_and_join_activations() -> None:
    spec = eq.LSTMSpec(3, 4, activation="relu")
    assert Capabilities().refusal(spec) == "activation=relu"
    assert reference.CAPABILITIES.refusal(spec) is None
    both = joint_capabilities([reference.CAPABILITIES, Capabilities()])
    assert both.activations == frozenset({"tanh"})


def _case(activation: str, dtype: str = "float32", directions: int = 1) -> Case:
    spec = eq.LSTMSpec(3, 4, directions=directions, dtype=dtype, activation=activation)
    rng = np.random.default_rng(2)
    weights = random_weights(spec, rng, scale=1.0).astype(dtype)
    x = rng.normal(size=(2, 5, 3)).astype(dtype)
    return Case(spec, weights, LSTMInputs(x))


@pytest.mark.parametrize(("runtime", "activation"), [
    *((r, a) for r in ("keras", "keras_cell", "tf_keras", "tf1", "onnxruntime")
      for a in ("relu", "linear", "elu", "softsign")),
    ("openvino", "relu"), ("openvino", "sigmoid"),
])
def test_runtimes_build_the_activation_really(runtime: str, activation: str) -> None:
    """Keras 3 LSTM(activation=...) and tf.compat.v1 LSTMCell(activation=...) really run,
    judged against the reference under the policy; the same weights with tanh must fail
    (the activation is really applied)."""
    entry = table.entry(runtime)
    require(entry)
    case = _case(activation, directions=2)
    outcome = harness.check_against_reference(entry, case)
    assert outcome.ok, outcome.message()
    tanh = case.spec.replace(activation="tanh")
    wrong = Case(tanh, LSTMWeights(tanh, case.weights.cells), case.inputs)
    actual = harness.run(entry, wrong, harness.native_weights(entry, wrong))
    assert not judge(harness.reference_result(case), actual,
                             harness.tolerance(case, entry), harness.sensitivity(case)).ok


@pytest.mark.parametrize("runtime", ["torch", "openvino_default", "tract", "opencv"])
def test_runtimes_without_it_refuse_by_name(runtime: str) -> None:
    entry = table.entry(runtime)
    case = _case("relu")
    with pytest.raises(UnsupportedFeatureError, match=f"{runtime} cannot represent activation=re"):
        entry.load().check_supported(case.spec, case.inputs)


def test_tf1_format_carries_the_activation_beside_the_variables() -> None:
    """The variables do not hold it: the reader takes it as the spec's option, and without it
    reads tanh (so a relu checkpoint is only read as relu when told)."""
    spec = eq.LSTMSpec(3, 4, layers=2, dtype="float64", activation="relu")
    weights = random_weights(spec, np.random.default_rng(0))
    native = FORMATS["tf1"].from_canonical(weights)
    options = reader_options("tf1", spec, {})
    assert options["activation"] == "relu"
    assert FORMATS["tf1"].to_canonical(native, **options).spec == spec
    assert FORMATS["tf1"].to_canonical(native).spec.activation == "tanh"


def test_a_tf1_checkpoint_refuses_the_activation_by_name(tmp_path) -> None:
    """A checkpoint holds the variables only: written with relu it would be read back as
    tanh, so the writer refuses before anything is written."""
    from equivalence.files.tf1.checkpoint import write_checkpoint

    spec = eq.LSTMSpec(3, 4, activation="relu")
    weights = random_weights(spec, np.random.default_rng(0))
    with pytest.raises(UnsupportedFeatureError, match="TF checkpoint cannot represent "
                                                      "activation=relu"):
        write_checkpoint(tmp_path / "out", weights, 1.0)
    assert list(tmp_path.iterdir()) == []
