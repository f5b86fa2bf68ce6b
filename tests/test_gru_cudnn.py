"""CuDNNGRU weights (issue #23): the ``cudnn`` format's GRU form, CuDNNGRU layers of tf_keras
.h5 models, and tf_keras's legacy-.h5 CuDNNGRU <-> GRU conversion.

CuDNNGRU has no CPU kernel: here its layers are built, given weights and saved (as
CuDNNLSTM's are in tests/test_files.py), and what they compute is held through tf_keras's
own ``_convert_rnn_weights`` into a ``GRU(reset_after=True)`` that really runs, compared
with the float64 reference of what the format reads. Every equivalence has its must-fail
twin: the 6H bias's halves swapped, z and r swapped.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

# torch before TensorFlow (a known crash at import), as in tests/test_files.py
torch = pytest.importorskip("torch", reason="the CuDNNGRU tests need the main environment")
tf_keras = pytest.importorskip("tf_keras")

import equivalence as eq  # noqa: E402 (after the torch guard)
from equivalence import reference  # noqa: E402
from equivalence.compare import Tolerance, compare  # noqa: E402
from equivalence.converters import run_configuration  # noqa: E402
from equivalence.converters.cudnn_h5 import CuDNNGRUH5  # noqa: E402
from equivalence.errors import (  # noqa: E402
    ConversionError,
    ShapeError,
    UnsupportedFeatureError,
)
from equivalence.files import read  # noqa: E402
from equivalence.io_types import LSTMResult  # noqa: E402
from tests.file_helpers import leftovers, run_cli  # noqa: E402

pytestmark = [
    pytest.mark.cpu,
    pytest.mark.filterwarnings("ignore:.*is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file:UserWarning"),
]

IN, H, B, T = 3, 4, 2, 6


def cudnn_gru(units: int = H, **options):
    """tf_keras's CuDNNGRU (exported in the v1 API only)."""
    from tf_keras.api._v1.keras.layers import CuDNNGRU

    return CuDNNGRU(units, **options)


def tf_keras_conversion(layer, native) -> list[np.ndarray]:
    """tf_keras's own conversion of one layer's three arrays into ``layer``'s kind."""
    from tf_keras.src.saving.legacy.hdf5_format import _convert_rnn_weights

    return _convert_rnn_weights(layer, [np.asarray(a) for a in native])


def gru_weights(layers: int = 1, directions: int = 1, seed: int = 0) -> eq.LSTMWeights:
    spec = eq.LSTMSpec(IN, H, layers, directions, cell="gru")
    return eq.random_weights(spec, np.random.default_rng(seed))


def as_float32(native: list) -> list[np.ndarray]:
    return [np.asarray(a, np.float32) for a in native]


# ---------------------------------------------------------------- the format's facts


def test_a_cudnngru_holds_the_formats_arrays() -> None:
    layer = cudnn_gru()
    layer.build((None, None, IN))  # by shape: no call, so no GPU
    held = [(w.name.split("/")[-1].split(":")[0], tuple(w.shape)) for w in layer.weights]
    assert held == [("kernel", (IN, 3 * H)), ("recurrent_kernel", (H, 3 * H)),
                    ("bias", (6 * H,))]
    written = eq.from_canonical(gru_weights(), "cudnn")
    assert [a.shape for a in written] == [shape for _, shape in held]


@pytest.mark.parametrize("layers, directions", [(1, 1), (2, 2)])
def test_the_format_is_tf_keras_own_conversion_both_ways(layers: int, directions: int) -> None:
    """tf_keras's legacy-.h5 conversion, pure numpy, takes the format's CuDNNGRU arrays to
    exactly the keras format's GRU(reset_after=True) arrays, and back."""
    weights = gru_weights(layers, directions)
    cudnn, keras = eq.from_canonical(weights, "cudnn"), eq.from_canonical(weights, "keras")
    for k in range(0, len(cudnn), 3):
        to_gru = tf_keras_conversion(tf_keras.layers.GRU(H, reset_after=True), cudnn[k:k + 3])
        to_cudnn = tf_keras_conversion(cudnn_gru(), keras[k:k + 3])
        pairs = [*zip(keras[k:k + 3], to_gru, strict=True),
                 *zip(cudnn[k:k + 3], to_cudnn, strict=True)]
        for ours, theirs in pairs:
            np.testing.assert_array_equal(theirs, ours)


def run_tf_keras_gru(cudnn_native: list, spec: eq.LSTMSpec, x: np.ndarray,
                     h0: np.ndarray) -> LSTMResult:
    """CuDNNGRU weights run as tf_keras runs them on a CPU: converted by tf_keras into its
    GRU(reset_after=True) layers (Bidirectional for two directions), which really run."""
    import tensorflow as tf

    sequence, finals = tf.constant(x), []
    for layer in range(spec.layers):
        gru = tf_keras.layers.GRU(H, reset_after=True, return_sequences=True, return_state=True)
        net = gru if spec.directions == 1 else tf_keras.layers.Bidirectional(gru)
        net.build((None, None, sequence.shape[-1]))
        arrays = cudnn_native[3 * spec.directions * layer:3 * spec.directions * (layer + 1)]
        net.set_weights([a for k in range(0, len(arrays), 3)
                         for a in tf_keras_conversion(gru, arrays[k:k + 3])])
        sequence, *states = net(sequence, initial_state=[tf.constant(h) for h in h0[layer]])
        finals += [np.asarray(s) for s in states]
    h = np.stack(finals).reshape(spec.layers, spec.directions, len(x), H)
    return LSTMResult(np.asarray(sequence), h)


def held_to_tf_keras(native: list, weights: eq.LSTMWeights, seed: int = 1):
    """(reference of ``weights``, tf_keras GRU on ``native``): one comparison's two sides."""
    spec = weights.spec
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, IN)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (spec.layers, spec.directions, B, H)).astype(np.float32)
    expected = reference.lstm(weights, x.astype(np.float64), h0=h0.astype(np.float64))
    return compare(expected, run_tf_keras_gru(native, spec, x, h0),
                   Tolerance.for_case("float32", T))


@pytest.mark.parametrize("layers, directions", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_cudnn_gru_weights_run_as_tf_keras_runs_them(layers: int, directions: int) -> None:
    native = as_float32(eq.from_canonical(gru_weights(layers, directions), "cudnn"))
    weights = eq.to_canonical(native, "cudnn", cell="gru", directions=directions)
    comparison = held_to_tf_keras(native, weights)
    assert comparison.ok, comparison


def swap_bias_halves(native: list) -> list[np.ndarray]:
    """The 6H bias read the wrong way round: recurrent biases first."""
    return [np.concatenate(np.split(a, 2)[::-1]) if a.ndim == 1 else a for a in native]


def swap_z_r(native: list) -> list[np.ndarray]:
    """z and r traded in every array (the canonical r z n order written as Keras's z r h)."""
    def blocks(a: np.ndarray) -> np.ndarray:
        z, r, h = np.split(a, 3, axis=-1)
        return np.concatenate([r, z, h], axis=-1)

    return [np.concatenate([blocks(half) for half in np.split(a, 2)]) if a.ndim == 1
            else blocks(a) for a in native]


@pytest.mark.parametrize("bug", [swap_bias_halves, swap_z_r])
def test_must_fail_a_misread_cudnngru_is_another_network(bug) -> None:
    """The same comparison catches CuDNNGRU arrays written or read with either slip."""
    weights = gru_weights(2, 2)
    native = as_float32(eq.from_canonical(weights, "cudnn"))
    comparison = held_to_tf_keras(bug(native), weights)
    assert not comparison.ok
    assert min(d.max_abs_diff for d in comparison.diffs) > 1e-3, comparison


def _cudnn_to_keras(native, *, bug=None) -> list[np.ndarray]:
    """A user's CuDNNGRU -> GRU(reset_after=True) converter: tf_keras's own, or a slip."""
    arrays = [np.asarray(a) for a in native]
    if bug is not None:
        arrays = bug(arrays)
    return [a for k in range(0, len(arrays), 3)
            for a in tf_keras_conversion(tf_keras.layers.GRU(1), arrays[k:k + 3])]


def test_check_conversion_holds_a_cudnn_gru_converter() -> None:
    result = eq.check_conversion(_cudnn_to_keras, source="cudnn", target="keras", cell="gru",
                                 max_examples=10, seed=0)
    assert result.ok, result
    assert "reference in cudnn semantics" in result.runtimes["source"]


@pytest.mark.parametrize("bug, named", [(swap_bias_halves, "split differently"),
                                        (swap_z_r, "r and z")])
def test_must_fail_check_conversion_catches_and_names_the_slip(bug, named: str) -> None:
    result = eq.check_conversion(lambda native: _cudnn_to_keras(native, bug=bug),
                                 source="cudnn", target="keras", cell="gru", max_examples=10,
                                 seed=0)
    assert not result.ok
    assert named in (result.diagnosis or ""), result.diagnosis


# ---------------------------------------------------------------- round trips and refusals


@pytest.mark.parametrize("layers, directions", [(1, 1), (2, 2)])
def test_round_trips_are_exact_and_leave_inputs_alone(layers: int, directions: int) -> None:
    weights = gru_weights(layers, directions)
    native = as_float32(eq.from_canonical(weights, "cudnn"))
    snapshot = [a.copy() for a in native]
    back = eq.to_canonical(native, "cudnn", cell="gru", directions=directions)
    assert back.spec == weights.spec.replace(dtype="float32")
    again = eq.from_canonical(back, "cudnn")
    for ours, theirs, before in zip(again, native, snapshot, strict=True):
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(theirs, before)  # the caller's arrays, untouched
    assert not np.shares_memory(again[0], native[0])
    canonical = eq.to_canonical(eq.from_canonical(weights, "cudnn"), "cudnn", cell="gru",
                                directions=directions)
    for (_, _, got), (_, _, want) in zip(canonical.iter_cells(), weights.iter_cells(),
                                         strict=True):
        for name in ("w_input", "w_recurrent", "b_input", "b_recurrent"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), name)


def _native() -> list[np.ndarray]:
    return as_float32(eq.from_canonical(gru_weights(), "cudnn"))


def _replaced(index: int, value) -> list:
    native: list = _native()
    native[index] = value
    return native


HOSTILE = [
    ("a Keras GRU's (2, 3H) bias", lambda: _replaced(2, _native()[2].reshape(2, -1)),
     ShapeError, r"weights\[2\] \(layer 0 bias\): shape \(2, 12\), expected \(24,\) "
                 r"\(CuDNNGRU keeps"),
    ("a CuDNNLSTM-sized 8H bias", lambda: _replaced(2, np.zeros(8 * H, np.float32)),
     ShapeError, r"weights\[2\] \(layer 0 bias\): shape \(32,\), expected \(24,\)"),
    ("a kernel of no whole gate count", lambda: _replaced(0, np.zeros((IN, 13), np.float32)),
     ShapeError, r"weights\[0\] \(layer 0 kernel\): shape \(3, 13\).*multiple of 3"),
    ("a transposed recurrent kernel", lambda: _replaced(1, _native()[1].T.copy()),
     ShapeError, r"weights\[1\] \(layer 0 recurrent_kernel\): shape \(12, 4\), "
                 r"expected \(4, 12\)"),
    ("four arrays", lambda: [*_native(), np.zeros(3)], ShapeError, r"4 arrays"),
    ("a string", lambda: "kernel", ConversionError, r"cudnn weights: got str, expected a list"),
]


@pytest.mark.parametrize("native, error, match", [case[1:] for case in HOSTILE],
                         ids=[case[0] for case in HOSTILE])
def test_hostile_weights_raise_the_librarys_errors(native, error, match: str) -> None:
    with pytest.raises(error, match=match):
        eq.to_canonical(native(), "cudnn", cell="gru")


def test_what_no_cudnngru_computes_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedFeatureError, match="cudnn cannot represent reset_after=False"):
        eq.to_canonical(_native(), "cudnn", cell="gru", reset_after=False)
    before = gru_weights().spec.replace(reset_after=False)
    with pytest.raises(UnsupportedFeatureError, match="cudnn cannot represent reset_after=False"):
        eq.from_canonical(eq.random_weights(before, np.random.default_rng(0)), "cudnn")
    with pytest.raises(UnsupportedFeatureError, match="cudnn cannot represent cell=rnn"):
        eq.to_canonical(_native(), "cudnn", cell="rnn")


def test_must_fail_a_cudnngru_read_as_a_cudnnlstm_names_the_kernel() -> None:
    with pytest.raises(ShapeError, match=r"recurrent_kernel\): shape \(4, 12\), expected "
                                         r"\(3, 12\)"):
        eq.to_canonical(_native(), "cudnn")


# ---------------------------------------------------------------- the legacy .h5 converter


def test_tf_keras_legacy_h5_conversion_passes_its_configurations() -> None:
    converter = CuDNNGRUH5()
    for config in CuDNNGRUH5.configurations:
        entry = run_configuration(converter, config, max_examples=2, seed=0)
        assert entry["passed"] and entry["examples"] == 2, entry
        assert entry["max_abs_diff"] < 1e-5, entry


def _bias_halves_swapped(case, native) -> list[np.ndarray]:
    return swap_bias_halves(list(native))


def test_must_fail_a_cudnngru_given_swapped_bias_halves_is_caught() -> None:
    converter = CuDNNGRUH5(write_cudnn=_bias_halves_swapped)
    entry = run_configuration(converter, CuDNNGRUH5.configurations[0], max_examples=10, seed=0)
    assert not entry["passed"] and entry["unexpected"], entry
    assert "[cell=gru]" in entry["minimal_failing_case"], entry


# ---------------------------------------------------------------- CuDNNGRU .h5 files


def _randomized(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32)
                       for w in model.get_weights()])


@pytest.fixture(scope="module")
def cudnn_gru_h5(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """Sequential CuDNNGRU(return_sequences) / Dropout / CuDNNGRU / Dense as a tf_keras .h5
    model, and the weights it was given."""
    layers = tf_keras.layers
    # Names given: tf_keras numbers unnamed layers per process.
    model = tf_keras.Sequential([
        layers.InputLayer((T, IN)),
        cudnn_gru(H, return_sequences=True, name="cu_dnngru"),
        layers.Dropout(0.2),
        cudnn_gru(H, return_sequences=True, name="cu_dnngru_1"),
        layers.Dense(2),
    ])
    _randomized(model, 1)
    path = tmp_path_factory.mktemp("cudnn_gru") / "gru_model.h5"
    model.save(path)
    return path, model.get_weights()


@pytest.fixture(scope="module")
def bidirectional_h5(tmp_path_factory) -> Path:
    model = tf_keras.Sequential([
        tf_keras.layers.InputLayer((T, IN)),
        tf_keras.layers.Bidirectional(cudnn_gru(H, return_sequences=True), name="bi_gru"),
    ])
    _randomized(model, 2)
    path = tmp_path_factory.mktemp("cudnn_gru") / "bi_gru.h5"
    model.save(path)
    return path


def tf_keras_loads(h5: Path, x: np.ndarray) -> np.ndarray:
    """tf_keras's own answer: GRU(reset_after=True) layers loading the CuDNNGRU file (its
    conversion on load), the second GRU's sequence."""
    layers = tf_keras.layers
    model = tf_keras.Sequential([
        layers.InputLayer((None, IN)),
        layers.GRU(H, return_sequences=True, reset_after=True),
        layers.Dropout(0.2),
        layers.GRU(H, return_sequences=True, reset_after=True),
        layers.Dense(2),
    ])
    model.load_weights(h5)
    return np.asarray(tf_keras.Model(model.inputs, model.layers[2].output)(x))


def test_inspect_lists_the_cudnngru_stack(cudnn_gru_h5, capsys) -> None:
    path, _ = cudnn_gru_h5
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0, err
    assert "cu_dnngru+cu_dnngru_1  cudnn   GRU   2" in out, out
    assert "two (6H: input + recurrent)" in out and "CuDNNGRU" in out
    code, out, _ = run_cli(capsys, "inspect", path, "--json")
    (item,) = json.loads(out)["lstms"]
    assert item["cell"] == "gru" and item["format"] == "cudnn"


def test_the_files_gru_is_tf_keras_own_reading_of_it(cudnn_gru_h5) -> None:
    """The arrays read are the model's exactly; the reference of what they mean matches
    tf_keras loading the file into GRU layers."""
    path, model_weights = cudnn_gru_h5
    (found,) = read(path)
    for ours, theirs in zip(found.native, model_weights[:6], strict=True):
        np.testing.assert_array_equal(ours, theirs)
    weights = found.canonical()
    assert weights.spec.cell == "gru" and weights.spec.reset_after and weights.spec.layers == 2
    x = np.random.default_rng(3).normal(size=(B, T, IN)).astype(np.float32)
    expected = reference.lstm(weights, x.astype(np.float64))
    theirs = LSTMResult(tf_keras_loads(path, x), expected.h)  # the file's model returns no h
    comparison = compare(expected, theirs, Tolerance.for_case("float32", T))
    assert comparison.ok, comparison


def test_convert_to_torch_with_verify_and_run_it(cudnn_gru_h5, tmp_path, capsys) -> None:
    path, _ = cudnn_gru_h5
    before = path.read_bytes()
    code, out, err = run_cli(capsys, "convert", path, "--to", "torch", "-o",
                             tmp_path / "gru.pt", "--verify", "--examples", "2")
    assert code == 0, out + err
    assert "torch.nn.GRU(input_size=3, hidden_size=4, num_layers=2" in out
    assert "_convert_rnn_weights" in out and "verify: PASSED" in out, out
    gru = torch.nn.GRU(IN, H, num_layers=2, batch_first=True)
    gru.load_state_dict(torch.load(tmp_path / "gru.pt"))
    x = np.random.default_rng(4).normal(size=(B, T, IN)).astype(np.float32)
    with torch.no_grad():
        ours, h = gru(torch.from_numpy(x))
    theirs = LSTMResult(tf_keras_loads(path, x), h.numpy().reshape(2, 1, B, H))
    comparison = compare(LSTMResult(ours.numpy(), theirs.h), theirs,
                         Tolerance.for_case("float32", T))
    assert comparison.ok, comparison
    assert path.read_bytes() == before and leftovers(tmp_path) == []


def test_a_bidirectional_cudnngru_converts_to_onnx_with_verify(bidirectional_h5, tmp_path,
                                                               capsys) -> None:
    code, out, err = run_cli(capsys, "convert", bidirectional_h5, "--to", "onnx", "-o",
                             tmp_path / "bi.onnx", "--verify", "--examples", "2")
    assert code == 0, out + err
    assert "Bidirectional(CuDNNGRU)" in out and "verify: PASSED" in out, out


def test_must_fail_compare_names_a_file_with_swapped_bias_halves(cudnn_gru_h5, tmp_path,
                                                                capsys) -> None:
    import h5py

    path, _ = cudnn_gru_h5
    swapped = tmp_path / "swapped.h5"
    shutil.copy(path, swapped)
    with h5py.File(swapped, "r+") as handle:
        bias = handle["model_weights/cu_dnngru/cu_dnngru/bias:0"]
        bias[...] = swap_bias_halves([bias[()]])[0]
    from equivalence.cli.main import main

    code = main(["compare", str(path), str(swapped), "--examples", "1"])
    out = capsys.readouterr().out
    assert code == 1 and "NOT EQUIVALENT" in out, out
    assert "biases (b_in, b_hn) split differently" in out, out


def test_a_cudnngru_file_with_a_short_bias_is_refused_naming_it(cudnn_gru_h5, tmp_path,
                                                               capsys) -> None:
    import h5py

    path, _ = cudnn_gru_h5
    bad = tmp_path / "short_bias.h5"
    shutil.copy(path, bad)
    with h5py.File(bad, "r+") as handle:
        group = handle["model_weights/cu_dnngru/cu_dnngru"]
        bias = group["bias:0"][()]
        del group["bias:0"]
        group.create_dataset("bias:0", data=bias[:-2])
    code, out, err = run_cli(capsys, "convert", bad, "--to", "torch", "-o", tmp_path / "x.pt")
    assert code == 2 and not (tmp_path / "x.pt").exists(), out + err
    assert "weights[2] (layer 0 bias): shape (22,), expected (24,)" in err, err
