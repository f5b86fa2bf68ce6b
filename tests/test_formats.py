"""Converters: exact round trips, agreement with each format's own semantics, and bugs caught."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import equivalence as eq
from equivalence import reference
from equivalence.canonical import LSTMWeights, random_weights
from equivalence.formats import FORMATS
from equivalence.strategies import lstm_specs, lstm_weights

from .format_semantics import SEMANTICS
from .helpers import batches, format_capabilities, read_options

pytestmark = pytest.mark.cpu
ALL = sorted(FORMATS)


def assert_same_weights(expected: LSTMWeights, actual: LSTMWeights, exact: bool = True) -> None:
    __tracebackhide__ = True
    assert actual.spec == expected.spec, f"spec {actual.spec}, expected {expected.spec}"
    for (layer, direction, a), (_, _, b) in zip(
        actual.iter_cells(), expected.iter_cells(), strict=True
    ):
        for name, value in b.arrays().items():
            got = a.arrays()[name]
            assert got.dtype == value.dtype, (
                f"cells[{layer}][{direction}].{name}: dtype {got.dtype}"
            )
            if exact:
                np.testing.assert_array_equal(
                    got, value, err_msg=f"cells[{layer}][{direction}].{name}"
                )
            else:
                np.testing.assert_allclose(
                    got, value, rtol=0, atol=1e-15 * max(1, np.abs(value).max())
                )


@pytest.mark.parametrize("fmt", ALL)
@given(data=st.data())
def test_round_trip_is_exact(fmt: str, data) -> None:
    spec = data.draw(
        lstm_specs(
            capabilities=format_capabilities(fmt), max_layers=3, dtypes=("float32", "float64")
        ),
        label="spec",
    )
    weights = data.draw(lstm_weights(spec), label="weights")
    # forget_bias folding is not exact in floating point; it has its own test below
    offset = {"forget_bias": 0.0} if fmt == "tf1" else {}
    native = eq.from_canonical(weights, fmt, **offset)
    back = eq.to_canonical(native, fmt, **read_options(fmt, spec), **offset)
    two_biases = FORMATS[fmt].lstm_biases == 2  # the format row's fact
    assert_same_weights(weights if two_biases else weights.with_merged_biases(), back)


GRU_FORMATS = sorted(f for f in FORMATS if "gru" in FORMATS[f].cells)
FLAT = sorted(f for f in FORMATS if FORMATS[f].flat)  # one vector: the reader needs the spec
NAMED_ARRAYS = sorted(set(FORMATS) - set(FLAT))


def test_the_format_rows_facts_hold() -> None:
    """Each row's bias count is what its writer and reader do: a one-bias format reads a
    zero recurrent bias back; a two-bias one keeps it. Flat formats write one vector."""
    weights = eq.random_weights(eq.LSTMSpec(3, 4), np.random.default_rng(0))
    for fmt, row in FORMATS.items():
        back = eq.to_canonical(eq.from_canonical(weights, fmt), fmt,
                               **read_options(fmt, weights.spec))
        kept = np.abs(back.cells[0][0].b_recurrent).max() > 0
        assert kept == (row.lstm_biases == 2), fmt
        native = eq.from_canonical(weights, fmt)
        assert (isinstance(native, np.ndarray) and native.ndim == 1) == row.flat, fmt


@pytest.mark.parametrize("fmt", GRU_FORMATS)
@given(data=st.data())
def test_gru_round_trip_is_exact(fmt: str, data) -> None:
    """A GRU through a format and back computes the same function, and the native weights
    written again from what was read are the same arrays (a one-bias format merges what it
    can: the reference, not the arrays, is the judge of that step)."""
    caps = format_capabilities(fmt)
    spec = data.draw(lstm_specs(capabilities=caps, max_layers=3, dtypes=("float64",),
                                cell="gru"), label="spec")
    weights = data.draw(lstm_weights(spec), label="weights")
    native = eq.from_canonical(weights, fmt)
    back = eq.to_canonical(native, fmt, **read_options(fmt, spec))
    assert back.spec == spec
    x = np.random.default_rng(0).normal(size=(2, 4, spec.input_size))
    np.testing.assert_allclose(reference.run(back, x).outputs, reference.run(weights, x).outputs,
                               rtol=0, atol=1e-12)
    again = eq.from_canonical(back, fmt)
    assert_same_native(native, again)


def assert_same_native(expected, actual, where: str = "native") -> None:
    __tracebackhide__ = True
    if isinstance(expected, dict):
        assert sorted(expected) == sorted(actual), f"{where}: keys {sorted(actual)}"
        for key in expected:
            assert_same_native(expected[key], actual[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), f"{where}: {len(actual)} items"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same_native(e, a, f"{where}[{i}]")
    else:
        np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected), err_msg=where)


def test_every_format_refuses_a_gru_it_does_not_declare() -> None:
    """Must fail loudly, never write LSTM-shaped arrays: a GRU into a format without
    cell=gru is refused by name."""
    spec = eq.LSTMSpec(input_size=2, units=3, cell="gru")
    weights = random_weights(spec, np.random.default_rng(0))
    for fmt in sorted(set(FORMATS) - set(GRU_FORMATS)):
        with pytest.raises(eq.UnsupportedFeatureError, match="cell=gru"):
            eq.from_canonical(weights, fmt)


@given(data=st.data(), forget_bias=st.sampled_from([0.5, 1.0, -2.0]))
def test_tf1_forget_bias_folds_and_unfolds(data, forget_bias: float) -> None:
    spec = data.draw(lstm_specs(capabilities=format_capabilities("tf1"), dtypes=("float64",)))
    weights = data.draw(lstm_weights(spec)).with_merged_biases()
    native = eq.from_canonical(weights, "tf1", forget_bias=forget_bias)
    back = eq.to_canonical(native, "tf1", forget_bias=forget_bias, **read_options("tf1", spec))
    assert_same_weights(weights, back, exact=False)


def test_caller_arrays_are_never_mutated_or_shared() -> None:
    weights = eq.random_weights(eq.LSTMSpec(3, 4, 2, 2), np.random.default_rng(0))
    for fmt in NAMED_ARRAYS:
        native = eq.from_canonical(weights, fmt)
        snapshot = repr(native)
        eq.to_canonical(native, fmt, **read_options(fmt, weights.spec))
        assert repr(native) == snapshot, fmt
    first = weights.cells[0][0].w_input
    native = eq.from_canonical(weights, "torch")
    native["weight_ih_l0"][:] = 0.0
    assert np.abs(first).sum() > 0, "from_canonical returned a view of the caller's array"


def run_semantics(fmt: str, weights: LSTMWeights, x: np.ndarray, **write) -> tuple:
    native = eq.from_canonical(weights, fmt, **write)
    return SEMANTICS[fmt](native, x, weights.spec)


def assert_matches_reference(weights: LSTMWeights, got: tuple, x: np.ndarray) -> None:
    __tracebackhide__ = True
    expected = reference.lstm(weights, x)
    for name, e, g in zip(
        ("output", "h", "c"),
        (expected.outputs, expected.h[-1, 0], expected.c[-1, 0]),
        got,
        strict=True,
    ):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("fmt", NAMED_ARRAYS)
@given(data=st.data())
def test_native_semantics_match_reference(fmt: str, data) -> None:
    """One cell: the format's own equations on converted weights == the canonical reference."""
    spec = data.draw(
        lstm_specs(capabilities=format_capabilities(fmt), single_cell=True, dtypes=("float64",))
    )
    spec = spec.replace(recurrent_activation="sigmoid")
    weights = data.draw(lstm_weights(spec))
    x = data.draw(batches(spec))
    assert_matches_reference(weights, run_semantics(fmt, weights, x), x)


@pytest.mark.parametrize("fmt", FLAT)
@given(data=st.data())
def test_flat_vector_layouts_match_reference(fmt: str, data) -> None:
    """Stacks: the flat layouts differ only across pseudo-layers, so draw several."""
    spec = eq.LSTMSpec(
        data.draw(st.integers(1, 4)),
        data.draw(st.integers(1, 4)),
        data.draw(st.integers(1, 3)),
        data.draw(st.sampled_from([1, 2])),
        dtype="float64",
    )
    weights = data.draw(lstm_weights(spec))
    x = data.draw(batches(spec))
    from .format_semantics import flat_state_dict

    state = flat_state_dict(eq.from_canonical(weights, fmt), spec, matrices_first=fmt == "jax_rnn")
    via_torch = reference.lstm(eq.to_canonical(state, "torch"), x)
    expected = reference.lstm(weights, x)
    np.testing.assert_allclose(via_torch.outputs, expected.outputs, rtol=0, atol=1e-12)


@given(data=st.data())
def test_a_cudnn_gru_buffer_runs_as_torch_nn_gru(data) -> None:
    """cuDNN's GRU buffer (reset, update, new; the r z n nn.GRU flattens) parsed by explicit
    offsets into a real ``torch.nn.GRU`` computes the reference's GRU; a reset-before GRU,
    which cuDNN cannot run, is refused by name."""
    import torch

    spec = eq.LSTMSpec(data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)),
                       data.draw(st.integers(1, 3)), data.draw(st.sampled_from([1, 2])),
                       dtype="float64", cell="gru")
    weights = data.draw(lstm_weights(spec))
    x = data.draw(batches(spec))
    from .format_semantics import flat_state_dict

    state = flat_state_dict(eq.from_canonical(weights, "cudnn_params"), spec, False)
    gru = torch.nn.GRU(spec.input_size, spec.units, spec.layers, batch_first=True,
                       bidirectional=spec.directions == 2, dtype=torch.float64)
    gru.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    with torch.no_grad():
        outputs, _ = gru(torch.from_numpy(x))
    np.testing.assert_allclose(outputs.numpy(), reference.run(weights, x).outputs,
                               rtol=0, atol=1e-12)
    with pytest.raises(eq.UnsupportedFeatureError, match="reset_after=False"):
        eq.from_canonical(random_weights(spec.replace(reset_after=False),
                                         np.random.default_rng(0)), "cudnn_params")


# -- cases that must fail: the semantics check catches each classic converter bug --------------


def _swapped_gates_keras(weights: LSTMWeights) -> list:
    """Keras written in TF1's i j f o order: f and g swapped."""
    from equivalence.formats._common import permute_gates

    kernel, recurrent, bias = eq.from_canonical(weights, "keras")
    return [permute_gates(a, (0, 2, 1, 3), axis=-1) for a in (kernel, recurrent, bias)]


def _forget_bias_dropped_tf1(weights: LSTMWeights) -> list:
    """TF1 written without subtracting forget_bias (the cell adds 1.0 again at run time)."""
    return eq.from_canonical(weights, "tf1", forget_bias=0.0)


def _one_bias_torch(weights: LSTMWeights) -> dict:
    """PyTorch written with bias_ih only (bias_hh dropped instead of kept)."""
    native = eq.from_canonical(weights, "torch")
    native["bias_hh_l0"] = np.zeros_like(native["bias_hh_l0"])
    return native


def _input_bias_only_mlx(weights: LSTMWeights) -> dict:
    """MLX written with PyTorch's bias_ih alone (bias_hh not summed in)."""
    native = eq.from_canonical(weights, "mlx")
    native["bias"] = weights.cells[0][0].b_input.copy()
    return native


@pytest.mark.parametrize(
    "fmt, buggy",
    [
        ("keras", _swapped_gates_keras),
        ("tf1", _forget_bias_dropped_tf1),
        ("torch", _one_bias_torch),
        ("mlx", _input_bias_only_mlx),
    ],
)
def test_classic_converter_bugs_are_caught(fmt: str, buggy) -> None:
    spec = eq.LSTMSpec(3, 4, dtype="float64")
    weights = eq.random_weights(spec, np.random.default_rng(7))
    x = np.random.default_rng(8).normal(size=(2, 5, 3))
    with pytest.raises(AssertionError):
        assert_matches_reference(weights, SEMANTICS[fmt](buggy(weights), x, spec), x)
    assert_matches_reference(weights, run_semantics(fmt, weights, x), x)  # the real one passes


def test_refused_features_are_named() -> None:
    weights = eq.random_weights(eq.LSTMSpec(2, 3, peepholes=True), np.random.default_rng(0))
    with pytest.raises(eq.UnsupportedFeatureError, match="keras cannot represent peepholes"):
        eq.from_canonical(weights, "keras")
    projected = eq.random_weights(eq.LSTMSpec(2, 3, projection_size=2), np.random.default_rng(0))
    with pytest.raises(eq.UnsupportedFeatureError, match="onnx cannot represent projection"):
        eq.convert(eq.from_canonical(projected, "torch"), source="torch", target="onnx")
    hard = eq.random_weights(
        eq.LSTMSpec(2, 3, recurrent_activation="hard_sigmoid_keras3"), np.random.default_rng(0)
    )
    with pytest.raises(eq.UnsupportedFeatureError, match="recurrent_activation=hard_sigmoid"):
        eq.from_canonical(hard, "torch")


# -- every dtype the file readers accept, as numpy arrays or torch tensors ---------------------

READ_DTYPES = ("float16", "bfloat16", "float32", "float64")


def map_leaves(tree, fn):
    """``tree`` with ``fn`` applied to every array (dicts and lists kept)."""
    if isinstance(tree, dict):
        return {k: map_leaves(v, fn) for k, v in tree.items()}
    if isinstance(tree, list):
        return [map_leaves(v, fn) for v in tree]
    return fn(tree)


def as_torch(array: np.ndarray):
    """The same values as a torch tensor of the same dtype (bfloat16 through float32, exact)."""
    import torch

    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(array))


@pytest.mark.parametrize("fmt", ALL)
@given(data=st.data(), dtype=st.sampled_from(READ_DTYPES))
def test_numpy_and_torch_weights_of_every_float_dtype_are_read_exactly(
    fmt: str, data, dtype: str
) -> None:
    pytest.importorskip("torch")
    spec = data.draw(lstm_specs(capabilities=format_capabilities(fmt), max_layers=2))
    spec = spec.replace(dtype=dtype)
    weights = data.draw(lstm_weights(spec), label="weights")
    native = eq.from_canonical(weights, fmt)
    from_numpy = eq.to_canonical(native, fmt, **read_options(fmt, spec))
    from_torch = eq.to_canonical(map_leaves(native, as_torch), fmt, **read_options(fmt, spec))
    assert from_numpy.spec.dtype == dtype
    assert_same_weights(from_numpy, from_torch)


def test_torch_bfloat16_converts_to_every_format() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).to(torch.bfloat16)
    state = model.state_dict()
    reference_weights = eq.to_canonical(
        {k: v.float().numpy() for k, v in state.items()}, "torch"
    )
    for target in ALL:
        offset = {"forget_bias": 0.0} if target == "tf1" else {}  # bfloat16 would round it
        moved = eq.convert(state, source="torch", target=target, **offset)
        read = read_options(target, reference_weights.spec)
        back = eq.to_canonical(moved, target, **read, **offset)
        assert back.spec.dtype == "bfloat16", target
        for (_, _, got), (_, _, want) in zip(
            back.iter_cells(), reference_weights.iter_cells(), strict=True
        ):
            np.testing.assert_array_equal(got.w_input.astype(np.float32), want.w_input)


def test_float8_tensors_are_widened_to_float32_exactly() -> None:
    torch = pytest.importorskip("torch")
    state = eq.from_canonical(eq.random_weights(eq.LSTMSpec(3, 4), np.random.default_rng(0)),
                              "torch")
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        tensors = {k: torch.from_numpy(v).to(dtype) for k, v in state.items()}
        read = eq.to_canonical(tensors, "torch")
        assert read.spec.dtype == "float32"
        np.testing.assert_array_equal(
            read.cell(0, 0).w_input, tensors["weight_ih_l0"].float().numpy()
        )


def test_onnx_missing_bias_reads_as_zeros() -> None:
    """ONNX's B input is optional; absent, it is zeros (the operator's definition)."""
    spec = eq.LSTMSpec(3, 2, layers=2, directions=2)
    weights = random_weights(spec, np.random.default_rng(5))
    zero_bias = weights.map_cells(
        lambda _l, _d, cell: replace(cell, b_input=0 * cell.b_input, b_recurrent=0 * cell.b_input)
    )
    nodes = eq.from_canonical(zero_bias, "onnx")
    without_b = [{k: v for k, v in node.items() if k != "B"} for node in nodes]
    read = eq.to_canonical(without_b, "onnx")
    for (_, _, got), (_, _, want) in zip(read.iter_cells(), zero_bias.iter_cells(), strict=True):
        for name, array in want.arrays().items():
            np.testing.assert_array_equal(got.arrays()[name], array)
