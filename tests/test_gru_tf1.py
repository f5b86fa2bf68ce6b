"""TF1 ``GRUCell`` weights through the harness: the tf1 format held to real
``tf.compat.v1`` graphs built here (not by the runtime's builder), their own variables
read and run against the float64 reference; exact round trips; the common converter
slips (r and u swapped, the kernel's x and h rows swapped) caught; bad input refused
by the library's own errors; and the tf1 row running GRUs (reset_after=False only)."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

import equivalence as eq
from equivalence import reference, table
from equivalence.canonical import random_weights
from equivalence.compare import Tolerance, compare
from equivalence.errors import (
    MissingKeyError,
    ShapeError,
    SpecError,
    UnexpectedKeyError,
    UnsupportedFeatureError,
    WeightValueError,
)
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.cpu

IN, H, B, T = 3, 4, 2, 6
# Where tf.compat.v1.nn.rnn_cell's cells live once Keras 3 is installed (tf_keras 2.21,
# src/layers/rnn/legacy_cells.py), the module TF_USE_LEGACY_KERAS routes that name to.
RNN_CELL = "tf_keras.api._v1.keras.__internal__.legacy.rnn_cell"


def tf1_gru_graph(layers: int = 1, directions: int = 1, dtype: str = "float64",
                  h0: np.ndarray | None = None, seed: int = 0
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, LSTMResult]:
    """A GRUCell network in its own graph, its variables from its own initializers
    (biases random, so their order matters), run once: (variables, x, TF's result)."""
    rnn_cell = importlib.import_module(RNN_CELL)
    x = np.random.default_rng(seed + 1).normal(size=(B, T, IN)).astype(dtype)
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tf.compat.v1.set_random_seed(seed)

        def cell() -> object:
            return rnn_cell.GRUCell(H, bias_initializer=tf.compat.v1.random_normal_initializer(),
                                    dtype=dtype)

        def state(k: int, j: int) -> object:
            return None if h0 is None else tf.constant(h0[k, j])

        inputs = tf.constant(x)
        if directions == 2:
            (fw, bw), (h_fw, h_bw) = tf.compat.v1.nn.bidirectional_dynamic_rnn(
                cell(), cell(), inputs, initial_state_fw=state(0, 0),
                initial_state_bw=state(0, 1), dtype=dtype)
            outputs, h = tf.concat([fw, bw], -1), tf.stack([tf.stack([h_fw, h_bw])])
        else:
            stack = rnn_cell.MultiRNNCell([cell() for _ in range(layers)]) if layers > 1 else cell()
            initial = None if h0 is None else (
                tuple(state(k, 0) for k in range(layers)) if layers > 1 else state(0, 0))
            outputs, final = tf.compat.v1.nn.dynamic_rnn(stack, inputs, initial_state=initial,
                                                         dtype=dtype)
            finals = list(final) if layers > 1 else [final]
            h = tf.stack([tf.stack([f]) for f in finals])
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            variables = {v.name.removesuffix(":0"): session.run(v)
                         for v in tf.compat.v1.global_variables()}
            out, h_n = session.run([outputs, h])
    return variables, x, LSTMResult(outputs=out, h=h_n)


def ours(native: dict, x: np.ndarray, h0: np.ndarray | None = None) -> LSTMResult:
    weights = eq.to_canonical(native, "tf1", cell="gru")
    return reference.lstm(weights, x.astype(np.float64), h0=h0)


def held(expected: LSTMResult, actual: LSTMResult, dtype: str) -> bool:
    return compare(expected, actual, Tolerance.for_case(dtype, T)).ok


@pytest.mark.parametrize("layers, directions", [(1, 1), (2, 1), (1, 2)])
def test_gru_cell_variables_are_the_formats_names_and_shapes(layers: int,
                                                             directions: int) -> None:
    variables, _, _ = tf1_gru_graph(layers, directions)
    spec = LSTMSpec(IN, H, layers, directions, cell="gru", reset_after=False, dtype="float64")
    written = eq.from_canonical(random_weights(spec, np.random.default_rng(0)), "tf1",
                                layout="variables")
    assert {k: v.shape for k, v in written.items()} == {k: v.shape for k, v in
                                                         variables.items()}
    assert any(k.endswith("gru_cell/gates/kernel") for k in variables)


def test_gates_bias_starts_at_one_as_tf1_initialises_it() -> None:
    """The fact behind "one bias per gate": GRUCell's default gates/bias is 1.0, the
    candidate's 0.0 (tf_keras 2.21 legacy_cells.GRUCell.build)."""
    rnn_cell = importlib.import_module(RNN_CELL)
    with tf.Graph().as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tf.compat.v1.nn.dynamic_rnn(rnn_cell.GRUCell(H), tf.zeros((B, T, IN)), dtype=tf.float32)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            found = {v.name: session.run(v) for v in tf.compat.v1.global_variables()}
    assert np.all(found["rnn/gru_cell/gates/bias:0"] == 1.0)
    assert np.all(found["rnn/gru_cell/candidate/bias:0"] == 0.0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layers, directions", [(1, 1), (2, 1), (1, 2)])
def test_a_tf1_gru_graph_reads_and_runs_as_tensorflow_runs_it(layers: int, directions: int,
                                                              dtype: str) -> None:
    h0 = np.random.default_rng(7).normal(size=(layers, directions, B, H)).astype(dtype)
    for state in (None, h0):
        native, x, expected = tf1_gru_graph(layers, directions, dtype, h0=state)
        weights = eq.to_canonical(native, "tf1", cell="gru")
        assert weights.spec == LSTMSpec(IN, H, layers, directions, cell="gru",
                                        reset_after=False, dtype=dtype)
        assert held(expected, ours(native, x, state), dtype)


def test_round_trips_are_exact() -> None:
    native, _, _ = tf1_gru_graph(2, 1)
    before = {k: v.copy() for k, v in native.items()}
    again = eq.from_canonical(eq.to_canonical(native, "tf1", cell="gru"), "tf1")
    assert sorted(again) == sorted(native)
    assert all(np.array_equal(again[k], native[k]) for k in native)
    assert all(np.array_equal(before[k], native[k]) for k in native)  # inputs untouched
    # the single-cell list form: GRUCell.get_weights() order
    single, _, _ = tf1_gru_graph()
    as_list = eq.from_canonical(eq.to_canonical(single, "tf1", cell="gru"), "tf1")
    assert [a.shape for a in as_list] == [(IN + H, 2 * H), (2 * H,), (IN + H, H), (H,)]
    assert all(np.array_equal(a, single[k]) for a, k in zip(as_list, single, strict=True))
    # canonical -> tf1 -> canonical: exact where b_recurrent is zero, as TF1's weights read
    spec = LSTMSpec(IN, H, 1, 2, cell="gru", reset_after=False)
    weights = eq.to_canonical(eq.from_canonical(random_weights(spec, np.random.default_rng(2)),
                                                "tf1"), "tf1", cell="gru")
    back = eq.to_canonical(eq.from_canonical(weights, "tf1"), "tf1", cell="gru")
    assert all(np.array_equal(getattr(a, f), getattr(b, f))
               for (_, _, a), (_, _, b) in zip(weights.iter_cells(), back.iter_cells(),
                                               strict=True)
               for f in ("w_input", "w_recurrent", "b_input", "b_recurrent"))


def test_two_canonical_biases_are_summed_into_tf1s_one_and_compute_the_same() -> None:
    spec = LSTMSpec(IN, H, cell="gru", reset_after=False, dtype="float64")
    weights = random_weights(spec, np.random.default_rng(3))
    assert any(np.any(cell.b_recurrent) for _, _, cell in weights.iter_cells())
    x = np.random.default_rng(4).normal(size=(B, T, IN))
    read = eq.to_canonical(eq.from_canonical(weights, "tf1"), "tf1", cell="gru")
    assert held(reference.lstm(weights, x), reference.lstm(read, x), "float64")


def _swap_ru(native: dict) -> dict:
    def swap(a: np.ndarray) -> np.ndarray:
        r, u = np.split(a, 2, axis=-1)
        return np.concatenate([u, r], axis=-1)

    return {k: swap(v) if "/gates/" in k else v for k, v in native.items()}


def _swap_rows(native: dict) -> dict:
    """A converter that stacked [h; x] where TF1 stacks [x; h] (the shape is the same)."""
    return {k: np.concatenate([v[IN:], v[:IN]]) if k.endswith("kernel") else v
            for k, v in native.items()}


@pytest.mark.parametrize("slip", [_swap_ru, _swap_rows], ids=["r_u_swapped", "rows_swapped"])
def test_must_fail_each_slip_is_another_network(slip) -> None:
    native, x, expected = tf1_gru_graph()
    assert held(expected, ours(native, x), "float64")
    assert not held(expected, ours(slip(native), x), "float64")


def _keras_to_tf1(native: list, *, swap_ru: bool = False) -> dict:
    """A user's converter: one Keras GRU(reset_after=False) -> GRUCell variables."""
    kernel, recurrent, bias = (np.asarray(a) for a in native)
    # Keras columns z r h; TF1 rows [x; h], gates columns r u (u = z), candidate h
    stacked = np.concatenate([kernel, recurrent])
    (kz, kr, kn), (bz, br, bn) = np.split(stacked, 3, axis=-1), np.split(bias, 3)
    first, second = ((kz, bz), (kr, br)) if swap_ru else ((kr, br), (kz, bz))
    return {
        "rnn/gru_cell/gates/kernel": np.concatenate([first[0], second[0]], axis=-1),
        "rnn/gru_cell/gates/bias": np.concatenate([first[1], second[1]]),
        "rnn/gru_cell/candidate/kernel": kn,
        "rnn/gru_cell/candidate/bias": bn,
    }


def test_check_conversion_runs_tf1s_grucell_and_catches_an_r_u_swap() -> None:
    right = eq.check_conversion(_keras_to_tf1, source="keras", target="tf1", cell="gru",
                                max_examples=8, native="numpy")
    assert right.ok, str(right)
    assert right.runtimes["target"].startswith("tf1 ("), right.runtimes  # GRUCell ran
    wrong = eq.check_conversion(lambda n: _keras_to_tf1(n, swap_ru=True), source="keras",
                                target="tf1", cell="gru", max_examples=8, native="numpy")
    assert not wrong.ok


def _one_cell() -> dict:
    spec = LSTMSpec(IN, H, cell="gru", reset_after=False)
    written = eq.from_canonical(random_weights(spec, np.random.default_rng(5)), "tf1",
                                layout="variables")
    return {k: v.astype("float32") for k, v in written.items()}


@pytest.mark.parametrize("change, error, pattern", [
    (lambda v: v.update({"rnn/gru_cell/gates/bias": np.zeros(7, "float32")}), ShapeError,
     r"gates/bias.*\(7,\).*2\*H"),
    (lambda v: v.update({"rnn/gru_cell/gates/kernel": np.zeros((7, 12), "float32")}),
     ShapeError, r"gates/kernel.*\(7, 12\).*\(7, 8\)"),
    (lambda v: v.update({"rnn/gru_cell/candidate/kernel": np.zeros((7, 5), "float32")}),
     ShapeError, r"candidate/kernel.*\(7, 5\).*\(7, 4\)"),
    (lambda v: v.update({"rnn/gru_cell/gates/kernel": np.zeros((4, 8), "float32")}),
     ShapeError, r"gates/kernel.*\(4, 8\).*too few rows"),
    (lambda v: v.pop("rnn/gru_cell/candidate/bias"), MissingKeyError, r"candidate/bias"),
    (lambda v: v.update({"rnn/lstm_cell/kernel": np.zeros((7, 16), "float32")}),
     UnexpectedKeyError, r"lstm_cell/kernel.*not a GRUCell variable"),
    (lambda v: v.update({"rnn/gru_cell/candidate/bias": np.full(4, np.nan, "float32")}),
     WeightValueError, r"candidate/bias.*NaN"),
    (lambda v: v.update({"rnn/gru_cell/candidate/bias": np.zeros(4, "int32")}),
     WeightValueError, r"candidate/bias.*int32"),
])
def test_hostile_variables_raise_the_librarys_errors(change, error, pattern) -> None:
    variables = _one_cell()
    change(variables)
    before = {k: np.array(v, copy=True) for k, v in variables.items()}
    with pytest.raises(error, match=pattern):
        eq.to_canonical(variables, "tf1", cell="gru")
    assert all(np.array_equal(before[k], variables[k], equal_nan=True) for k in variables)


def test_hostile_lists_and_options_raise_the_librarys_errors() -> None:
    as_list = list(_one_cell().values())
    with pytest.raises(ShapeError, match=r"3 arrays.*4 arrays.*gates/kernel"):
        eq.to_canonical(as_list[:3], "tf1", cell="gru")
    with pytest.raises(UnsupportedFeatureError, match=r"tf1 cannot represent reset_after=True"):
        eq.to_canonical(as_list, "tf1", cell="gru", reset_after=True)
    with pytest.raises(UnsupportedFeatureError, match=r"tf1 cannot represent reset_after=True"):
        eq.from_canonical(random_weights(LSTMSpec(IN, H, cell="gru"),
                                         np.random.default_rng(0)), "tf1")
    with pytest.raises(UnsupportedFeatureError, match=r"cell_clip"):
        eq.to_canonical(as_list, "tf1", cell="gru", cell_clip=3.0)
    with pytest.raises(UnsupportedFeatureError, match=r"cell=rnn"):
        eq.to_canonical(as_list, "tf1", cell="rnn")
    with pytest.raises(eq.ConversionError, match=r"forget_bias: 0.0.*no forget gate"):
        eq.to_canonical(as_list, "tf1", cell="gru", forget_bias=0.0)
    # a GRU's variables read as an LSTM's are not LSTMCell variables
    with pytest.raises(UnexpectedKeyError, match=r"gru_cell/gates/kernel.*not an LSTMCell"):
        eq.to_canonical(_one_cell(), "tf1")


def test_an_lstm_only_feature_cannot_reach_a_gru_spec() -> None:
    """What keeps projection, peepholes, cell_clip and forget_bias off the tf1 row's GRUs:
    the spec refuses them for a GRU, and the strategies mask them out before drawing."""
    for feature in ({"peepholes": True}, {"projection_size": 2}, {"cell_clip": 1.0},
                    {"forget_bias": 1.0}):
        with pytest.raises(SpecError, match="cannot carry it"):
            LSTMSpec(IN, H, cell="gru", reset_after=False, **feature)


def test_the_tf1_row_runs_reset_before_grus_only() -> None:
    entry = table.entry("tf1")
    caps = entry.capabilities
    assert "gru" in caps.cells and "reset_after=False" in caps and "reset_after=True" not in caps
    assert entry in table.cell_entries("gru")
    partners = {b.name for a, b in table.cell_pairs("gru") if a.name == "tf1"}
    assert "keras" in partners and not partners & {"torch", "mlx"}  # reset-after only
    runtime = entry.load()
    x = np.random.default_rng(0).normal(size=(B, T, IN)).astype("float32")
    spec = LSTMSpec(IN, H, cell="gru")
    with pytest.raises(UnsupportedFeatureError, match=r"tf1 cannot represent reset_after=True"):
        runtime.run(spec, _one_cell(), LSTMInputs(x=x), forget_bias=1.0)


@pytest.mark.parametrize("time_major", [False, True])
def test_the_tf1_runtime_runs_a_bidirectional_stack_with_lengths_and_states(
        time_major: bool) -> None:
    spec = LSTMSpec(IN, H, 2, 2, cell="gru", reset_after=False, dtype="float64")
    weights = random_weights(spec, np.random.default_rng(6))
    rng = np.random.default_rng(7)
    x, h0 = rng.normal(size=(B, T, IN)), rng.normal(size=(2, 2, B, H))
    lengths = np.array([T, 3])
    inputs = LSTMInputs(x=x, h0=h0, lengths=lengths, time_major=time_major)
    got = table.entry("tf1").load().run(spec, eq.from_canonical(weights, "tf1"), inputs,
                                        forget_bias=1.0)
    assert got.c is None
    assert held(reference.lstm(weights, x, h0=h0, lengths=lengths), got, "float64")


def _numpy_grucell(weights: list, inputs: LSTMInputs, *, swap_ru: bool = False):
    """A user's GRUCell in numpy, from TF1's equations (one cell, no lengths); ``weights``
    is GRUCell.get_weights()'s list, as the format gives one cell."""
    gates_k, gates_b, cand_k, cand_b = (np.asarray(a, np.float64) for a in weights)
    x = np.asarray(inputs.x, np.float64)
    h = np.zeros((x.shape[0], cand_b.shape[0])) if inputs.h0 is None else inputs.h0[0, 0]
    outputs = []
    for t in range(x.shape[1]):
        value = 1 / (1 + np.exp(-(np.concatenate([x[:, t], h], 1) @ gates_k + gates_b)))
        r, u = np.split(value, 2, axis=1)
        if swap_ru:
            r, u = u, r
        c = np.tanh(np.concatenate([x[:, t], r * h], 1) @ cand_k + cand_b)
        h = u * h + (1 - u) * c
        outputs.append(h)
    return np.stack(outputs, 1), h[None, None]


def test_check_implementation_holds_a_numpy_grucell_and_catches_an_r_u_swap() -> None:
    """The tf1 format's GRUs are reset_after=False: check_implementation pins that variant
    without being told (the format holds no other)."""
    right = eq.check_implementation(_numpy_grucell, format="tf1", cell="gru", max_examples=10,
                                    lengths=False, native="numpy")
    assert right.ok, str(right)
    wrong = eq.check_implementation(lambda w, i: _numpy_grucell(w, i, swap_ru=True),
                                    format="tf1", cell="gru", max_examples=10, lengths=False,
                                    native="numpy")
    assert not wrong.ok
