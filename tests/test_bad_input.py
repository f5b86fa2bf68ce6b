"""Malformed native weights: every case raises a ConversionError naming the field."""

from __future__ import annotations

import copy
import re
import time

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import equivalence as eq
from equivalence.formats import FORMATS
from equivalence.strategies import lstm_specs, lstm_weights

from .helpers import format_capabilities, read_options

pytestmark = pytest.mark.cpu
GENERIC = {"kernel", "bias"}


def leaf_paths(tree, path=()):
    """Paths (tuples of keys and indices) to every array in a nested native structure."""
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in leaf_paths(v, (*path, k))]
    if isinstance(tree, list):
        return [p for i, v in enumerate(tree) for p in leaf_paths(v, (*path, i))]
    return [path]


def field_token(path) -> str:
    """The name an error message must contain for the leaf at ``path``."""
    names = [k for k in path if isinstance(k, str) and k not in GENERIC]
    if names:
        return names[-1]
    if path and isinstance(path[-1], str):  # a generic name alone still names it (mlx bias)
        return path[-1]
    return f"weights[{path[-1]}]" if path else "vector"


def parent_of(tree, path):
    for key in path[:-1]:
        tree = tree[key]
    return tree


def grow_every_axis(array: np.ndarray) -> np.ndarray:
    """One more element on every axis: never a valid shape (gate axes stop being 4H)."""
    return np.pad(array, [(0, 1)] * array.ndim)


MUTATIONS = (
    "wrong shape",
    "missing",
    "extra",
    "integer",
    "non-finite",
    "extra dimension",
    "other float dtype",
    "empty",
    "scalar",
)


def mutate(native, path, mutation: str):
    """Apply ``mutation`` at ``path``; returns (bad native, expected message token)."""
    bad = copy.deepcopy(native)
    if not path:  # a flat vector
        bad = {
            "wrong shape": np.append(bad, 0.0),
            "integer": bad.astype(np.int64),
            "empty": bad[:0],
            "scalar": bad[0],
        }.get(mutation, np.where(np.arange(bad.size) == 0, np.nan, bad))
        return bad, "vector"
    parent, key = parent_of(bad, path), path[-1]
    token = field_token(path)
    if mutation == "wrong shape":
        parent[key] = grow_every_axis(parent[key])
    elif mutation == "extra dimension":
        parent[key] = parent[key][None]
    elif mutation == "integer":
        parent[key] = np.round(parent[key]).astype(np.int64)
    elif mutation == "other float dtype":  # the rest stay float64
        parent[key] = parent[key].astype(np.float32)
    elif mutation == "empty":
        parent[key] = parent[key][..., :0]
    elif mutation == "scalar":
        parent[key] = parent[key].reshape(-1)[0]
    elif mutation == "non-finite":
        parent[key] = parent[key].copy()
        parent[key].flat[0] = np.inf
    elif mutation == "missing":
        del parent[key]
        token = token if isinstance(key, str) else "arrays"
    elif mutation == "extra":
        if isinstance(parent, dict):
            parent["unexpected_weight"] = np.zeros(2)
            token = "unexpected_weight"
        else:
            parent.append(parent[-1].copy())
            token = ""  # a count or shape error, named by index
    return bad, token


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@given(data=st.data(), mutation=st.sampled_from(MUTATIONS))
def test_malformed_weights_raise_a_named_conversion_error(fmt: str, data, mutation: str) -> None:
    spec = data.draw(
        lstm_specs(capabilities=format_capabilities(fmt), max_layers=2, dtypes=("float64",))
    )
    native = eq.from_canonical(data.draw(lstm_weights(spec)), fmt)
    path = data.draw(st.sampled_from(leaf_paths(native)), label="path")
    assume(path or mutation != "other float dtype")  # one vector cannot mix dtypes
    bad, token = mutate(native, path, mutation)
    try:
        decoded = eq.to_canonical(bad, fmt, **read_options(fmt, spec))
    except eq.ConversionError as raised:
        assert token in str(raised), f"message {str(raised)!r} does not name {token!r}"
        return
    # Dropping an optional array (ONNX P or B, MLX bias, a TF1 projection) can leave valid
    # weights of a different LSTM; that is the only way malformed input may pass. ONNX's absent
    # B and MLX's absent bias (nn.LSTM(bias=False)) are zeros.
    assert mutation == "missing", f"{mutation} at {path} was accepted"
    dropped = (spec.peepholes, spec.projection_size) != (decoded.spec.peepholes,
                                                        decoded.spec.projection_size)
    if (fmt, path[-1]) in (("onnx", "B"), ("mlx", "bias")):
        layer = path[0] if len(path) > 1 else 0
        # an ONNX node holds both directions' B; an MLX dict is one direction's
        cells = decoded.cells[layer][path[1]:path[1] + 1] if len(path) > 2 else \
            decoded.cells[layer]
        dropped = not any(cell.b_input.any() or cell.b_recurrent.any() for cell in cells)
    assert dropped, f"missing {path} was accepted as the same network"


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda: eq.convert([], source="keras", target="torch"), eq.ShapeError, "0 arrays"),
        (lambda: eq.convert({}, source="nope", target="torch"), eq.UnknownFormatError, "'nope'"),
        (lambda: eq.convert({}, source="torch", target="tf2"), eq.UnknownFormatError, "'tf2'"),
        (
            lambda: eq.convert({}, source="torch", target="keras", bogus=1),
            eq.ConversionError,
            "bogus",
        ),
        (
            lambda: eq.convert("text", source="keras", target="torch"),
            eq.ConversionError,
            "expected a list",
        ),
        (
            lambda: eq.convert(np.zeros(5), source="jax_rnn", target="torch"),
            eq.ConversionError,
            "input_size",
        ),
        (lambda: eq.LSTMSpec(0, 3), eq.SpecError, "input_size"),
        (lambda: eq.LSTMSpec(2, 3, directions=3), eq.SpecError, "directions"),
    ],
)
def test_bad_calls_raise_library_errors(call, error, text) -> None:
    with pytest.raises(error, match=text):
        call()


def test_inconsistent_units_between_arrays_are_named() -> None:
    native = eq.from_canonical(
        eq.random_weights(eq.LSTMSpec(3, 4), np.random.default_rng(0)), "torch"
    )
    native["weight_hh_l0"] = np.zeros((16, 5))
    with pytest.raises(eq.ShapeError, match=r"weight_hh_l0: shape \(16, 5\), expected \(16, 4\)"):
        eq.to_canonical(native, "torch")


# -- named errors for inputs that used to escape as raw numpy/Python exceptions ----------------


def native(fmt: str, spec: eq.LSTMSpec | None = None, **write):
    """Valid native float64 weights of ``fmt`` (a fresh copy per call)."""
    weights = eq.random_weights(spec or eq.LSTMSpec(3, 4), np.random.default_rng(0))
    return eq.from_canonical(weights, fmt, **write)


def edited(fmt: str, edit, **write):
    weights = native(fmt, **write)
    edit(weights)
    return weights


def _set(path, value):
    def edit(tree):
        parent_of(tree, path)[path[-1]] = value(parent_of(tree, path)[path[-1]])

    return edit


ZERO_D = np.float64(0.25)
RAISES_NAMED = {
    "tf1 empty dict": (lambda: eq.to_canonical({}, "tf1"), eq.MissingKeyError, "lstm_cell/kernel"),
    "tf1 0-d bias in the list": (
        lambda: eq.to_canonical([native("tf1")[0], ZERO_D], "tf1"),
        eq.ShapeError,
        r"rnn/lstm_cell/bias: shape \(\)",
    ),
    "tf1 0-d bias in a dict": (
        lambda: eq.to_canonical(
            {"rnn/lstm_cell/kernel": native("tf1")[0], "rnn/lstm_cell/bias": ZERO_D}, "tf1"
        ),
        eq.ShapeError,
        r"rnn/lstm_cell/bias: shape \(\)",
    ),
    "tf1 two scopes for one cell": (
        lambda: eq.to_canonical(
            native("tf1", layout="variables")
            | {"other/lstm_cell/kernel": native("tf1")[0]},
            "tf1",
        ),
        eq.UnexpectedKeyError,
        "'other/lstm_cell/kernel' and 'rnn/lstm_cell/kernel'",
    ),
    "tf1 shape errors use the caller's scope": (
        lambda: eq.to_canonical(
            {"encoder/lstm_cell/kernel": np.zeros((7, 16)), "encoder/lstm_cell/bias": np.zeros(15)},
            "tf1",
        ),
        eq.ShapeError,
        r"encoder/lstm_cell/bias: shape \(15,\)",
    ),
    "tf1 huge cell index": (
        lambda: eq.to_canonical({"rnn/multi_rnn_cell/cell_9999999999999/lstm_cell/kernel": 0}
                                | native("tf1", layout="variables"), "tf1"),
        eq.UnexpectedKeyError,
        "cell_9999999999999",
    ),
    "flax params None": (
        lambda: eq.to_canonical({"params": None}, "flax"),
        eq.ConversionError,
        r"flax params\['params'\]: got NoneType, expected a dict",
    ),
    "flax every leaf 0-d": (
        lambda: eq.to_canonical(
            {k: {p: ZERO_D for p in v} for k, v in native("flax").items()}, "flax"
        ),
        eq.ShapeError,
        r"layer 0 ii.kernel: shape \(\)",
    ),
    "flax 0-d bias": (
        lambda: eq.to_canonical(edited("flax", _set(("hf", "bias"), lambda a: ZERO_D)), "flax"),
        eq.ShapeError,
        r"layer 0 hf.bias: shape \(\), expected \(4,\)",
    ),
    "flax the odd gate is named (ii rows)": (
        lambda: eq.to_canonical(
            edited("flax", _set(("ii", "kernel"), lambda a: np.zeros((5, 4)))), "flax"
        ),
        eq.ShapeError,
        r"layer 0 ii.kernel: shape \(5, 4\), expected \(3, 4\)",
    ),
    "flax the odd gate is named (ig columns)": (
        lambda: eq.to_canonical(
            edited("flax", _set(("ig", "kernel"), lambda a: np.zeros((3, 5)))), "flax"
        ),
        eq.ShapeError,
        r"layer 0 ig.kernel: shape \(3, 5\), expected \(3, 4\)",
    ),
    "flax nnx 0-d kernel": (
        lambda: eq.to_canonical(
            edited("flax", _set(("dense_h", "kernel"), lambda a: ZERO_D), variant="nnx"), "flax"
        ),
        eq.ShapeError,
        r"layer 0 dense_h.kernel: shape \(\)",
    ),
    "torch int and str keys": (
        lambda: eq.to_canonical(native("torch") | {0: np.zeros(16)}, "torch"),
        eq.UnexpectedKeyError,
        r"key 0 \(int\) is not a string",
    ),
    "torch int keys only": (
        lambda: eq.to_canonical({0: np.zeros(16), 1: np.zeros(16)}, "torch"),
        eq.UnexpectedKeyError,
        "key 0",
    ),
    "torch a layer index far beyond the keys": (
        lambda: eq.to_canonical(native("torch") | {"weight_ih_l3000000": np.zeros((16, 3))},
                                "torch"),
        eq.MissingKeyError,
        "'weight_ih_l1'.*'weight_ih_l3000000'",
    ),
    "mixed dtypes name the odd array": (
        lambda: eq.to_canonical(
            native("torch") | {"bias_hh_l0": np.zeros(16, np.float32)}, "torch"
        ),
        eq.WeightValueError,
        r"bias_hh_l0: dtype float32, but 'weight_ih_l0' and 2 other weights are float64",
    ),
    "mixed dtypes inside one flax cell": (
        lambda: eq.to_canonical(
            edited("flax", _set(("io", "kernel"), lambda a: a.astype(np.float16))), "flax"
        ),
        eq.WeightValueError,
        r"layer 0 io.kernel: dtype float16",
    ),
    "float128 is refused by name": (
        lambda: eq.to_canonical(
            {k: v.astype(np.longdouble) for k, v in native("torch").items()}, "torch"
        ),
        eq.WeightValueError,
        "weight_ih_l0: dtype float128",
    ),
    "hand-built LSTMWeights with a wrong spec type": (
        lambda: eq.LSTMWeights("spec", ()),  # type: ignore[arg-type]
        eq.SpecError,
        "spec: got str, expected LSTMSpec",
    ),
    "hand-built LSTMWeights with cells not in a tuple": (
        lambda: eq.LSTMWeights(eq.LSTMSpec(3, 4), None),  # type: ignore[arg-type]
        eq.ConversionError,
        "cells: got NoneType",
    ),
    "hand-built LSTMWeights with a non-cell": (
        lambda: eq.LSTMWeights(eq.LSTMSpec(3, 4), ((1,),)),  # type: ignore[arg-type]
        eq.ConversionError,
        r"cells\[0\]\[0\]: got int, expected CellWeights",
    ),
}


def hand_cell(**changes) -> eq.CellWeights:
    cell = eq.random_weights(eq.LSTMSpec(3, 4), np.random.default_rng(0)).cell(0, 0)
    return eq.CellWeights(**{**cell.arrays(), **changes})


HAND_BUILT: dict[str, tuple[dict, type, str]] = {
    "a list": (dict(w_input=[[0.0] * 3] * 16), eq.WeightValueError, "got list"),
    "integers": (dict(b_input=np.zeros(16, np.int64)), eq.WeightValueError, "dtype int64"),
    "NaN": (dict(b_recurrent=np.full(16, np.nan)), eq.WeightValueError, "contains NaN"),
    "a wrong shape": (
        dict(w_recurrent=np.zeros((16, 5))),
        eq.ShapeError,
        r"shape \(16, 5\), expected \(16, 4\)",
    ),
    "a missing array": (dict(w_input=None), eq.ShapeError, r"shape missing, expected \(16, 3\)"),
    "a peephole the spec lacks": (
        dict(peephole=np.zeros((3, 4))), eq.SpecError, "present, but the spec does not enable it"
    ),
}


@pytest.mark.parametrize("case", sorted(RAISES_NAMED))
def test_raw_failures_become_named_conversion_errors(case: str) -> None:
    call, error, text = RAISES_NAMED[case]
    with pytest.raises(error, match=text):
        call()


@pytest.mark.parametrize("case", sorted(HAND_BUILT))
def test_hand_built_weights_are_validated_at_construction(case: str) -> None:
    changes, error, text = HAND_BUILT[case]
    field = next(iter(changes))
    with pytest.raises(error, match=rf"cells\[0\]\[0\]\.{field}: {text}"):
        eq.LSTMWeights(eq.LSTMSpec(3, 4), ((hand_cell(**changes),),))


def test_hand_built_lists_of_cells_are_kept_as_tuples() -> None:
    cell = hand_cell()
    weights = eq.LSTMWeights(eq.LSTMSpec(3, 4, dtype="float64"), [[cell]])  # type: ignore[arg-type]
    assert weights.cells == ((cell,),)


BAD_SPEC_FIELDS = {
    "input_size": ("3", 0, 2.0, True),
    "units": (None, -1),
    "layers": (1.5,),
    "directions": (3, 2.0, True, "2"),
    "projection_size": (0, "2"),
    "peepholes": ("yes", 1),
    "cell_clip": (float("nan"), float("inf"), -1.0, 0, "x", True),
    "gate_clip": (float("nan"), "x"),
    "projection_clip": (-1.0, float("inf")),
    "forget_bias": (float("nan"), float("inf"), "1", None),
    "recurrent_activation": ("tanh", ["sigmoid"]),
    "dtype": ("int8", np.float32),
}


@pytest.mark.parametrize(
    "field, value", [(f, v) for f, values in BAD_SPEC_FIELDS.items() for v in values], ids=repr
)
def test_hand_built_spec_fields_are_validated(field: str, value) -> None:
    fields = {"input_size": 3, "units": 4, "projection_size": 2, field: value}
    with pytest.raises(eq.SpecError, match=rf"^{field}: "):
        eq.LSTMSpec(**fields)


def test_spec_normalises_numpy_scalars_and_from_dict_names_missing_fields() -> None:
    numpy_scalars: dict = {"input_size": np.int64(3), "units": np.int32(4),
                           "cell_clip": np.float32(0.5)}
    spec = eq.LSTMSpec(**numpy_scalars, forget_bias=1)
    assert spec == eq.LSTMSpec(3, 4, cell_clip=0.5, forget_bias=1.0)
    assert type(spec.input_size) is int and type(spec.cell_clip) is float
    with pytest.raises(eq.SpecError, match=r"spec: missing fields \['units'\]"):
        eq.LSTMSpec.from_dict({"input_size": 3})
    with pytest.raises(eq.SpecError, match="spec: got list, expected a dict"):
        eq.LSTMSpec.from_dict([3, 4])


OPTION_CASES = [
    ("tf1", "keras", "forget_bias", value) for value in (float("nan"), float("inf"), "1", None)
] + [
    ("torch", "tf1", "forget_bias", float("nan")),  # the writer's forget_bias
    ("onnx", "torch", "clip", float("nan")),
    ("onnx", "torch", "clip", -1.0),
    ("onnx", "torch", "clip", "x"),
    ("onnx", "torch", "clip", float("inf")),
    ("tf1", "onnx", "cell_clip", 0.0),
    ("tf1", "onnx", "proj_clip", "x"),
    ("keras", "torch", "directions", 3),
    ("keras", "torch", "directions", 2.0),
    ("keras", "torch", "directions", True),
    ("cudnn", "torch", "directions", "2"),
    ("jax_rnn", "torch", "directions", 0),
    ("jax_rnn", "torch", "units", 1.5),
    ("cudnn_params", "torch", "layers", None),
]


@pytest.mark.parametrize("source, target, option, value", OPTION_CASES, ids=repr)
def test_option_values_are_checked_and_named(source, target, option, value) -> None:
    weights = native(source)
    options = {"input_size": 3, "units": 4} if source in ("jax_rnn", "cudnn_params") else {}
    named = {"clip": "gate_clip", "proj_clip": "projection_clip"}.get(option, option)
    with pytest.raises(eq.ConversionError, match=rf"{named}: {re.escape(repr(value))}"):
        eq.convert(weights, source=source, target=target, **{**options, option: value})
    # the same call with valid options works: the option alone is at fault
    eq.convert(weights, source=source, target=target, **options)


ZERO_SIZE_INPUT = {
    "keras": ((0,), "weights[0] (layer 0 kernel)"),
    "cudnn": ((0,), "weights[0] (layer 0 kernel)"),
    "torch": (("weight_ih_l0",), "weight_ih_l0"),
    "onnx": (("W",), "layer 0 W"),
    "neoml": (("input_weights",), "layer 0 input_weights"),
    "flax": (("ii", "kernel"), "layer 0 ii.kernel"),
}


@pytest.mark.parametrize("fmt", sorted(ZERO_SIZE_INPUT))
def test_a_zero_size_kernel_is_named_not_read_as_input_size_0(fmt: str) -> None:
    path, field = ZERO_SIZE_INPUT[fmt]
    axis = 0 if fmt in ("keras", "cudnn", "flax") else -1  # the input axis of each layout
    bad = edited(fmt, _set(path, lambda a: np.take(a, [], axis=axis)))
    with pytest.raises(eq.ShapeError, match=rf"{re.escape(field)}: shape .*0.*non-empty"):
        eq.to_canonical(bad, fmt)


def test_hostile_layer_index_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(eq.MissingKeyError, match="weight_ih_l1"):
        eq.to_canonical({f"weight_ih_l{10**9 - 1}": np.zeros((4, 1)),
                         "weight_ih_l0": np.zeros((4, 1))}, "torch")
    assert time.perf_counter() - started < 1.0


def test_torch_tensors_without_values_are_named() -> None:
    torch = pytest.importorskip("torch")
    state = {k: torch.from_numpy(v) for k, v in native("torch").items()}
    for bad, text in (
        (state["bias_ih_l0"].to_sparse(), "bias_ih_l0: torch.sparse_coo tensor"),
        (torch.empty(16, device="meta"), "bias_ih_l0: a meta tensor holds no values"),
        (state["bias_ih_l0"].to(torch.int32), "bias_ih_l0: dtype int32"),
        (state["bias_ih_l0"].to(torch.complex64), "bias_ih_l0: dtype complex64"),
    ):
        with pytest.raises(eq.WeightValueError, match=re.escape(text)):
            eq.convert(state | {"bias_ih_l0": bad}, source="torch", target="keras")


def test_tf1_scope_digits_that_int_refuses_are_an_ordinary_scope() -> None:
    kernel, bias = native("tf1")
    odd = {"rnn/cell_\u00b2/lstm_cell/kernel": kernel, "rnn/cell_\u00b2/lstm_cell/bias": bias}
    read = eq.to_canonical(odd, "tf1")
    assert read.spec.layers == 1
    plain = eq.to_canonical([kernel, bias], "tf1")
    np.testing.assert_array_equal(read.cell(0, 0).w_input, plain.cell(0, 0).w_input)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_finite_weights_whose_sum_overflows_are_accepted_and_one_nan_is_not(dtype: str) -> None:
    """The finiteness check sums first: an overflowing sum of finite values must fall back
    to the element check (accepted), and one NaN or infinity anywhere is still refused."""
    big = float(np.finfo(dtype).max) / 2
    spec = eq.LSTMSpec(3, 4, dtype=dtype)
    cell = {n: np.full(a.shape, big, dtype) for n, a in hand_cell().arrays().items()}
    with np.errstate(over="ignore"):
        assert np.isinf(np.add.reduce(cell["w_input"], axis=None))  # the sum really overflows
    eq.LSTMWeights(spec, ((eq.CellWeights(**cell),),))
    for bad in (np.nan, np.inf, -np.inf):
        poisoned = cell["w_recurrent"].copy()
        poisoned[7, 2] = bad
        with pytest.raises(eq.WeightValueError, match="contains NaN or infinity"):
            eq.LSTMWeights(spec, ((eq.CellWeights(**{**cell, "w_recurrent": poisoned}),),))
