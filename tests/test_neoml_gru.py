"""NeoML's ``Gru`` (neoml 2.0.210): the neoml format's GRU form held to the layer itself.

Facts, each established here against a hand-built ``neoml.Dnn.Gru`` (not the runtime):

* blobs: ``gate_weights`` (1, 2H, 1, 1, 1, 1, I+H), ``main_weights`` (1, H, ..., I+H),
  ``gate_free_term`` (2H, 1, ...), ``main_free_term`` (H, 1, ...);
* rows of ``gate_weights``: z (update) then r (reset); every matrix's columns [x, h];
* n = tanh(W_n x + R_n (r * h) + b_n): the reset gate before the matmul, the float64
  reference's ``reset_after=False``; h' = (1 - z) * n + z * h; one free term per gate;
* input #1 (the second) is the initial h.

The neoml-marked tests need NeoML (``.venv-neoml``); the others are numpy only and run in
both environments. The must-fails: a writer that keeps z and r in canonical order, and one
that leaves the recurrent biases out of the free terms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import equivalence as eq
from equivalence import reference, table
from equivalence.canonical import LSTMWeights, random_weights
from equivalence.capabilities import joint_capabilities
from equivalence.case import Case
from equivalence.compare import Tolerance, judge
from equivalence.errors import (
    MissingKeyError,
    ShapeError,
    UnexpectedKeyError,
    UnsupportedFeatureError,
    WeightValueError,
)
from equivalence.formats import neoml as neoml_format
from equivalence.harness import exchange
from equivalence.harness import judge as harness
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.strategies import lstm_cases

from .helpers import format_capabilities
from .runtime_support import record, replay_command, require

NEOML = table.entry("neoml")
IN, H, B, T = 3, 4, 2, 6


def _gru_weights(seed: int, layers: int = 1, directions: int = 1,
                 dtype: str = "float32") -> LSTMWeights:
    """reset_after=False GRU weights with every bias nonzero, the recurrent ones too."""
    spec = eq.LSTMSpec(IN, H, layers, directions, cell="gru", reset_after=False)
    return random_weights(spec, np.random.default_rng(seed)).astype(dtype)


def _inputs(seed: int, with_h0: bool, layers: int = 1, directions: int = 1) -> LSTMInputs:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, IN)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (layers, directions, B, H)).astype(np.float32) if with_h0 else None
    return LSTMInputs(x, h0)


def _hand_built_gru(native: dict, inputs: LSTMInputs) -> LSTMResult:
    """One ``neoml.Dnn.Gru`` in a Dnn, its four blobs set from ``native``, run on ``inputs``."""
    import neoml

    engine = neoml.MathEngine.CpuMathEngine()
    dnn = neoml.Dnn.Dnn(engine)
    sources = [neoml.Dnn.Source(dnn, "x")]
    if inputs.h0 is not None:
        sources.append(neoml.Dnn.Source(dnn, "h0"))
    gru = neoml.Dnn.Gru(sources, hidden_size=H, name="gru")
    neoml.Dnn.Sink(gru, "h")
    for name, array in native.items():
        shape = (1, *array.shape[:1], 1, 1, 1, 1, array.shape[1]) if array.ndim == 2 else (
            array.shape[0], 1, 1, 1, 1, 1, 1)
        blob = neoml.Blob.asblob(engine, np.ascontiguousarray(array, np.float32), shape,
                                 copy=True)
        setattr(gru, name, blob)
    x = np.ascontiguousarray(inputs.x.transpose(1, 0, 2))
    feeds = {"x": neoml.Blob.asblob(engine, x, (T, B, 1, 1, 1, 1, IN), copy=True)}
    if inputs.h0 is not None:
        h0 = np.ascontiguousarray(inputs.h0[0, 0])
        feeds["h0"] = neoml.Blob.asblob(engine, h0, (1, B, 1, 1, 1, 1, H), copy=True)
    h = np.array(dnn.run(feeds)["h"].asarray(copy=True)).reshape(T, B, H).transpose(1, 0, 2)
    return LSTMResult(h, h[:, -1].reshape(1, 1, B, H))


def _judged(weights: LSTMWeights, inputs: LSTMInputs, actual: LSTMResult) -> bool:
    """``actual`` against the float64 reference of ``weights``, the project's tolerance."""
    exact = reference.lstm(weights.astype("float64"), inputs.x.astype(np.float64),
                           h0=None if inputs.h0 is None else inputs.h0.astype(np.float64))
    return judge(exact, actual, Tolerance.for_case("float32", inputs.steps)).ok


# ------------------------------------------------------------------ NeoML itself


@pytest.mark.neoml
def test_neoml_gru_blobs_have_the_formats_shapes() -> None:
    require(NEOML)
    import neoml

    engine = neoml.MathEngine.CpuMathEngine()
    dnn = neoml.Dnn.Dnn(engine)
    gru = neoml.Dnn.Gru(neoml.Dnn.Source(dnn, "x"), hidden_size=H, name="gru")
    neoml.Dnn.Sink(gru, "h")
    x = np.zeros((T, B, 1, 1, 1, 1, IN), np.float32)
    out = dnn.run({"x": neoml.Blob.asblob(engine, x, x.shape, copy=True)})
    assert out["h"].shape == (T, B, 1, 1, 1, 1, H)
    shapes = {name: getattr(gru, name).shape for name in neoml_format.GRU_KEYS}
    assert shapes == {"gate_weights": (1, 2 * H, 1, 1, 1, 1, IN + H),
                      "gate_free_term": (2 * H, 1, 1, 1, 1, 1, 1),
                      "main_weights": (1, H, 1, 1, 1, 1, IN + H),
                      "main_free_term": (H, 1, 1, 1, 1, 1, 1)}


@pytest.mark.neoml
@pytest.mark.parametrize("with_h0", [False, True])
def test_neoml_gru_is_the_format_with_the_reset_gate_before_the_matmul(with_h0: bool) -> None:
    """The format's arrays in a real Gru compute the reference's reset_after=False GRU,
    and not its reset_after=True one (so NeoML's variant is the reset-before one)."""
    require(NEOML)
    weights, inputs = _gru_weights(1), _inputs(2, with_h0)
    actual = _hand_built_gru(eq.from_canonical(weights, "neoml"), inputs)
    assert _judged(weights, inputs, actual)
    after = LSTMWeights(weights.spec.replace(reset_after=True), weights.cells)
    assert not _judged(after, inputs, actual)


def _written(weights: LSTMWeights) -> dict:
    return eq.from_canonical(weights, "neoml")


def _z_and_r_kept_in_canonical_order(weights: LSTMWeights) -> dict:
    """A writer that forgets NeoML's gate rows are z then r."""
    native = _written(weights)

    def swap(array: np.ndarray) -> np.ndarray:
        return np.concatenate([array[H:], array[:H]])
    return {**native, "gate_weights": swap(native["gate_weights"]),
            "gate_free_term": swap(native["gate_free_term"])}


def _recurrent_biases_dropped(weights: LSTMWeights) -> dict:
    """A writer that takes the input biases for the free terms (one-bias formats' classic)."""
    return _written(weights.map_cells(lambda _l, _d, cell: type(cell)(
        cell.w_input, cell.w_recurrent, cell.b_input, np.zeros_like(cell.b_recurrent))))


@pytest.mark.neoml
@pytest.mark.parametrize("writer, ok", [(_written, True), (_z_and_r_kept_in_canonical_order,
                                                           False),
                                        (_recurrent_biases_dropped, False)])
def test_a_z_r_swap_or_a_dropped_bias_is_caught_on_neoml(writer, ok: bool) -> None:
    """The row's runtime on the format's arrays passes; z and r swapped, or the recurrent
    biases left out of the free terms, must fail."""
    runtime = require(NEOML)
    weights, inputs = _gru_weights(3), _inputs(4, True)
    actual = runtime.run(weights.spec, writer(weights), inputs)
    assert actual.c is None
    assert _judged(weights, inputs, actual) is ok


@pytest.mark.neoml
@given(data=st.data())
def test_neoml_gru_matches_reference(data, request) -> None:
    """Stacks, both directions, initial h: every GRU the row claims, against the reference."""
    require(NEOML)
    case = data.draw(lstm_cases(capabilities=NEOML.capabilities, cell="gru"))
    assert not case.spec.reset_after  # the only variant the row draws
    outcome = harness.check_against_reference(NEOML, case)
    record(request, outcome)
    assert outcome.ok, outcome.message(replay_command(request))


@pytest.mark.neoml
def test_the_row_refuses_reset_after_true_by_name() -> None:
    runtime = require(NEOML)
    weights, inputs = _gru_weights(5), _inputs(6, False)
    native = eq.from_canonical(weights, "neoml")
    with pytest.raises(UnsupportedFeatureError, match="neoml cannot represent reset_after=True"):
        runtime.run(weights.spec.replace(reset_after=True), native, inputs)


@pytest.mark.neoml
def test_a_bidirectional_gru_stack_runs_as_the_reference() -> None:
    """The backward direction (ReverseSequence around a Gru) and the layers' concatenation."""
    require(NEOML)
    weights, inputs = _gru_weights(7, layers=2, directions=2), _inputs(8, True, 2, 2)
    outcome = harness.check_against_reference(NEOML, Case(weights.spec, weights, inputs))
    assert outcome.ok, outcome.message()


# ------------------------------------------------------------------ the format (numpy only)


@pytest.mark.cpu
@pytest.mark.neoml
def test_native_gru_round_trips_to_the_same_arrays() -> None:
    rng = np.random.default_rng(9)
    native = [[{"gate_weights": rng.normal(size=(2 * H, width + H)),
                "gate_free_term": rng.normal(size=2 * H),
                "main_weights": rng.normal(size=(H, width + H)),
                "main_free_term": rng.normal(size=H)} for _ in range(2)]
              for width in (IN, 2 * H)]
    snapshot = repr(native)
    weights = eq.to_canonical(native, "neoml", cell="gru")
    assert repr(native) == snapshot  # the caller's arrays untouched
    assert weights.spec == eq.LSTMSpec(IN, H, 2, 2, cell="gru", reset_after=False,
                                       dtype="float64")
    back = eq.from_canonical(weights, "neoml")
    for row, again in zip(native, back, strict=True):
        for cell, other in zip(row, again, strict=True):
            for key in cell:
                np.testing.assert_array_equal(other[key], cell[key], err_msg=key)


@pytest.mark.cpu
@pytest.mark.neoml
def test_canonical_gru_round_trips_to_the_same_network() -> None:
    """Two biases in, one free term per gate out: the same function (reset_after=False),
    the recurrent biases read back as zeros and their sums in the input ones."""
    weights = _gru_weights(10, layers=2, directions=2, dtype="float64")
    back = eq.to_canonical(eq.from_canonical(weights, "neoml"), "neoml", cell="gru")
    assert back.spec == weights.spec
    for (_, _, cell), (_, _, read) in zip(weights.iter_cells(), back.iter_cells(), strict=True):
        np.testing.assert_array_equal(read.w_input, cell.w_input)
        np.testing.assert_array_equal(read.w_recurrent, cell.w_recurrent)
        np.testing.assert_array_equal(read.b_input, cell.b_input + cell.b_recurrent)
        assert not read.b_recurrent.any()
    x = np.random.default_rng(11).normal(size=(B, T, IN))
    np.testing.assert_allclose(reference.lstm(back, x).outputs, reference.lstm(weights, x).outputs,
                               rtol=0, atol=1e-12)


@pytest.mark.cpu
@pytest.mark.neoml
def test_the_gate_rows_are_z_then_r_and_columns_input_then_hidden() -> None:
    weights = _gru_weights(12, dtype="float64")
    cell = weights.cells[0][0]
    native = eq.from_canonical(weights, "neoml")
    np.testing.assert_array_equal(native["gate_weights"][:H],  # z
                                  np.hstack([cell.w_input[H:2 * H], cell.w_recurrent[H:2 * H]]))
    np.testing.assert_array_equal(native["gate_weights"][H:],  # r
                                  np.hstack([cell.w_input[:H], cell.w_recurrent[:H]]))
    np.testing.assert_array_equal(native["main_weights"],  # n
                                  np.hstack([cell.w_input[2 * H:], cell.w_recurrent[2 * H:]]))


@pytest.mark.cpu
@pytest.mark.neoml
def test_a_reset_after_gru_is_refused_by_name_even_without_b_hn() -> None:
    """r * (R_n h + b_hn) has no NeoML form at all: refused, never written as reset-before."""
    spec = eq.LSTMSpec(IN, H, cell="gru")
    weights = random_weights(spec, np.random.default_rng(13))
    zero_b_hn = weights.map_cells(lambda _l, _d, cell: type(cell)(
        cell.w_input, cell.w_recurrent, cell.b_input,
        np.concatenate([cell.b_recurrent[:2 * H], np.zeros(H)])))
    for given_weights in (weights, zero_b_hn):
        with pytest.raises(UnsupportedFeatureError,
                           match="neoml cannot represent reset_after=True: NeoML's Gru"):
            eq.from_canonical(given_weights, "neoml")


@pytest.mark.cpu
@pytest.mark.neoml
def test_the_format_and_row_draw_only_the_reset_before_gru() -> None:
    caps = format_capabilities("neoml")
    assert "gru" in caps.cells and "reset_after=False" in caps and "reset_after=True" not in caps
    gru = eq.LSTMSpec(IN, H, cell="gru")
    assert NEOML.capabilities.refusal(gru) == "reset_after=True"
    assert NEOML.capabilities.refusal(gru.replace(reset_after=False)) is None
    # PyTorch's GRU is reset-after only, NeoML's reset-before only: no GRU in common
    assert "gru" not in joint_capabilities([NEOML.capabilities,
                                            table.entry("torch").capabilities]).cells
    with pytest.raises(eq.ConversionError, match=r"reset_after=True: .* pass reset_after=False"):
        eq.check_conversion(lambda w: w, source="neoml", target="neoml", cell="gru",
                            reset_after=True, max_examples=1)


def _good() -> dict:
    return eq.from_canonical(_gru_weights(14), "neoml")


@pytest.mark.cpu
@pytest.mark.neoml
@pytest.mark.parametrize("edit, error, message", [
    (lambda n: n.pop("main_free_term"), MissingKeyError, r"layer 0: missing \['main_free_term'\]"),
    (lambda n: n.update(bias=n["main_free_term"]), UnexpectedKeyError, r"unexpected \['bias'\]"),
    (lambda n: n.update(gate_weights=n["gate_weights"][:, :-1]), ShapeError,
     r"layer 0 gate_weights.*\(8, 6\).*\(8, 7\)"),
    (lambda n: n.update(gate_free_term=n["gate_free_term"][:H]), ShapeError,
     r"layer 0 gate_free_term.*\(4,\).*\(8,\)"),
    (lambda n: n.update(main_weights=n["main_weights"][:, :H]), ShapeError,
     r"layer 0 main_weights.*\(4, 4\).*at least one input column"),
    (lambda n: n.update(main_weights=n["main_weights"].ravel()), ShapeError,
     r"layer 0 main_weights.*\(28,\).*\(H, I\+H\)"),
    (lambda n: n.update(main_free_term=np.full(H, np.nan, np.float32)), WeightValueError,
     r"main_free_term: contains NaN"),
    (lambda n: n.update(gate_weights=n["gate_weights"].astype(np.int32)), WeightValueError,
     r"gate_weights: dtype int32"),
    (lambda n: n.update(main_free_term=n["main_free_term"].astype(np.float64)), WeightValueError,
     r"main_free_term: dtype float64, but"),
])
def test_hostile_gru_weights_raise_the_librarys_errors(edit, error, message: str) -> None:
    native = _good()
    edit(native)
    snapshot = {key: np.array(value, copy=True) for key, value in native.items()}
    with pytest.raises(error, match=message):
        eq.to_canonical(native, "neoml", cell="gru")
    for key, value in snapshot.items():
        np.testing.assert_array_equal(native[key], value)


@pytest.mark.cpu
@pytest.mark.neoml
def test_lstm_weights_read_as_a_gru_and_a_gru_as_an_lstm_are_refused() -> None:
    lstm = eq.from_canonical(random_weights(eq.LSTMSpec(IN, H), np.random.default_rng(15)),
                             "neoml")
    with pytest.raises(MissingKeyError, match="gate_weights"):
        eq.to_canonical(lstm, "neoml", cell="gru")
    with pytest.raises(MissingKeyError, match="input_weights"):
        eq.to_canonical(_good(), "neoml")
    with pytest.raises(UnsupportedFeatureError, match="neoml cannot represent cell=rnn"):
        eq.to_canonical(_good(), "neoml", cell="rnn")


@pytest.mark.cpu
@pytest.mark.neoml
def test_a_second_layer_of_the_wrong_width_is_named() -> None:
    weights = _gru_weights(16, layers=2)
    native = eq.from_canonical(weights, "neoml")
    native[1][0]["main_weights"] = native[1][0]["main_weights"][:, 1:]
    with pytest.raises(ShapeError, match=r"layer 1 main_weights.*\(4, 7\).*\(4, 8\)"):
        eq.to_canonical(native, "neoml", cell="gru")


# ------------------------------------------------------------------ the case exchange

# Keras's GRU(reset_after=False), 2 layers, bidirectional, with h0, and its recorded results:
# case 9 of `python -m equivalence.harness.exchange export --sources keras --examples 10`
# (main environment, seed 0).
GRU_CASE = Path(__file__).parent / "neoml_files" / "gru_keras.npz"


def _keras_to_neoml_with_z_and_r_swapped(native: list) -> list:
    moved = eq.convert(native, source="keras", target="neoml",
                       source_options={"directions": 2, "cell": "gru", "reset_after": False})

    def swap(cell: dict) -> dict:
        units = cell["main_free_term"].shape[0]
        return {**cell, **{key: np.concatenate([cell[key][units:], cell[key][:units]])
                           for key in ("gate_weights", "gate_free_term")}}
    return [[swap(cell) for cell in row] for row in moved]


@pytest.mark.neoml
@pytest.mark.parametrize("converter, ok", [(None, True),
                                           (_keras_to_neoml_with_z_and_r_swapped, False)])
def test_a_keras_gru_case_runs_the_same_in_neoml(converter, ok: bool) -> None:
    """Keras's recorded GRU results, its weights moved to NeoML and run; a converter that
    swaps z and r must fail, named by the harness's float64 recheck."""
    require(NEOML)
    outcome = exchange.judge(GRU_CASE, "neoml", converter=converter)
    assert outcome.ok is ok, outcome.message()
    if not ok:
        assert "keras -> neoml: not equivalent" in outcome.message()
        assert "off: neoml (converted)" in outcome.blame


@pytest.mark.cpu
@pytest.mark.neoml
def test_a_gru_case_file_carries_h_alone(tmp_path: Path) -> None:
    case = exchange.load(GRU_CASE)
    assert (case.spec.cell, case.spec.reset_after, case.source) == ("gru", False, "keras")
    assert case.expected.c is None and case.inputs.c0 is None and case.inputs.h0 is not None
    exchange.save(tmp_path / "again.npz", case)
    again = exchange.load(tmp_path / "again.npz")
    assert again.spec == case.spec and again.expected.c is None
    np.testing.assert_array_equal(again.expected.h, case.expected.h)
    assert "c" not in np.load(tmp_path / "again.npz").files
