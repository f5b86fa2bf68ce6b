"""Flax GRUs: the flax format held to real ``GRUCell``s built here (linen and nnx, params from
the cell's own init, run by flax, compared with the float64 reference on what the format
read), exact round trips, user converters into flax checked (a right one passes, a z/r swap
and b_hn moved into ``in`` are caught), and hostile trees refused by the library's errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

import equivalence as eq
from equivalence import reference, table
from equivalence.compare import Tolerance, compare
from equivalence.errors import (
    MissingKeyError,
    ShapeError,
    UnexpectedKeyError,
    UnsupportedFeatureError,
)
from equivalence.io_types import LSTMInputs, LSTMResult

jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")
pytestmark = pytest.mark.cpu

BATCH, STEPS, INPUT, UNITS = 2, 5, 3, 4


def _inputs(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, STEPS, INPUT)).astype(np.float32)
    return x, rng.normal(size=(BATCH, UNITS)).astype(np.float32)


def _linen_gru() -> tuple[object, dict]:
    """An nn.RNN over nn.GRUCell and its own init's variables; biases drawn (flax's default
    is zeros), so where each bias sits changes the numbers."""
    rnn = nn.RNN(nn.GRUCell(features=UNITS, bias_init=nn.initializers.normal(0.5)),
                 return_carry=True)
    return rnn, rnn.init(jax.random.key(0), _inputs()[0])


def _agrees_with_reference(weights: eq.LSTMWeights, outputs: np.ndarray, h: np.ndarray,
                           x: np.ndarray, h0: np.ndarray) -> bool:
    expected = reference.run(weights, x, h0=h0[None, None])
    actual = LSTMResult(np.asarray(outputs), np.asarray(h)[None, None])
    return compare(expected, actual, Tolerance.for_case("float32", STEPS)).ok


def test_a_linen_gru_cell_computes_what_the_format_reads() -> None:
    rnn, variables = _linen_gru()
    x, h0 = _inputs()
    h, outputs = rnn.apply(variables, x, initial_carry=h0)
    weights = eq.to_canonical(variables["params"]["cell"], "flax", cell="gru")
    assert weights.spec == eq.LSTMSpec(INPUT, UNITS, cell="gru", dtype="float32")
    assert _agrees_with_reference(weights, outputs, h, x, h0)


def test_must_fail_hn_bias_moved_into_in_is_another_network() -> None:
    """The twin: b_hn summed into ``in.bias`` (a one-bias habit) runs differently in flax."""
    rnn, variables = _linen_gru()
    x, h0 = _inputs()
    cell = {k: dict(v) for k, v in variables["params"]["cell"].items()}
    cell["in"]["bias"] = cell["in"]["bias"] + cell["hn"]["bias"]
    cell["hn"]["bias"] = np.zeros(UNITS, np.float32)
    h, outputs = rnn.apply({"params": {"cell": cell}}, x, initial_carry=h0)
    weights = eq.to_canonical(variables["params"]["cell"], "flax", cell="gru")
    assert not _agrees_with_reference(weights, outputs, h, x, h0)


def test_an_nnx_gru_cell_computes_what_the_format_reads() -> None:
    nnx = pytest.importorskip("flax.nnx")
    cell = nnx.GRUCell(INPUT, UNITS, bias_init=nnx.initializers.normal(0.5), rngs=nnx.Rngs(0))
    x, h0 = _inputs()
    h, outputs = h0, []
    for t in range(STEPS):
        h, y = cell(h, x[:, t])
        outputs.append(y)
    weights = eq.to_canonical(nnx.state(cell, nnx.Param), "flax", cell="gru")
    assert weights.spec.cell == "gru" and not weights.cells[0][0].b_recurrent.any()
    assert _agrees_with_reference(weights, np.stack(outputs, axis=1), h, x, h0)


def _numpy_tree(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def test_linen_round_trips_are_exact_and_leave_their_inputs_alone() -> None:
    params = _numpy_tree(_linen_gru()[1]["params"]["cell"])
    snapshot = repr(params)
    weights = eq.to_canonical(params, "flax", cell="gru")
    again = eq.from_canonical(weights, "flax")
    assert repr(params) == snapshot
    assert jax.tree_util.tree_structure(again) == jax.tree_util.tree_structure(params)
    for got, want in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(params),
                         strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    # canonical -> flax -> canonical: the r and z recurrent biases move to the input side
    spec = eq.LSTMSpec(INPUT, UNITS, 2, 2, cell="gru", dtype="float64")
    canonical = eq.random_weights(spec, np.random.default_rng(0))
    back = eq.to_canonical(eq.from_canonical(canonical, "flax"), "flax", cell="gru")
    for before, after in zip((c for row in canonical.cells for c in row),
                             (c for row in back.cells for c in row), strict=True):
        assert np.array_equal(after.b_recurrent[:2 * UNITS], np.zeros(2 * UNITS))
        assert np.array_equal(after.b_recurrent[2 * UNITS:], before.b_recurrent[2 * UNITS:])
        assert np.allclose(after.b_input, before.b_input + np.concatenate(
            [before.b_recurrent[:2 * UNITS], np.zeros(UNITS)]), rtol=0, atol=1e-15)
        assert np.array_equal(after.w_input, before.w_input)


def _torch_gru_to_flax(gates: str = "rzn", hn_bias_in_in: bool = False):
    """A user's converter, nn.GRU state_dict -> one linen GRUCell tree; ``gates`` is the
    order it reads PyTorch's row blocks as (a z/r swap is "zrn")."""

    def convert(state):
        wi, wh, bi, bh = (np.split(np.asarray(state[f"{k}_l0"]), 3) for k in
                          ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        tree = {}
        for k, g in enumerate(gates):
            moved = bh[k] if g != "n" or hn_bias_in_in else 0.0
            tree[f"i{g}"] = {"kernel": wi[k].T, "bias": bi[k] + moved}
            tree[f"h{g}"] = {"kernel": wh[k].T}
        n = gates.index("n")
        tree["hn"]["bias"] = np.zeros_like(bh[n]) if hn_bias_in_in else bh[n]
        return tree

    return convert


@pytest.mark.parametrize("converter, ok", [
    (_torch_gru_to_flax(), True),
    (_torch_gru_to_flax("zrn"), False),
    (_torch_gru_to_flax(hn_bias_in_in=True), False),
], ids=["right", "must-fail z/r swap", "must-fail b_hn in in.bias"])
def test_check_conversion_into_flax_passes_the_right_converter_only(converter, ok) -> None:
    pytest.importorskip("torch")
    result = eq.check_conversion(converter, source="torch", target="flax", cell="gru",
                                 max_examples=8, native="numpy")
    assert result.ok is ok, str(result)


def _tree() -> dict:
    weights = eq.random_weights(eq.LSTMSpec(INPUT, UNITS, cell="gru"), np.random.default_rng(0))
    return eq.from_canonical(weights, "flax")


def _edited(path: tuple[str, ...], value=None, drop: bool = False) -> dict:
    tree = {k: dict(v) for k, v in _tree().items()}
    *parents, last = path
    holder = tree
    for key in parents:
        holder = holder[key]
    if drop:
        del holder[last]
    else:
        holder[last] = value
    return tree


@pytest.mark.parametrize("tree, error, message", [
    (_edited(("hn",), drop=True), MissingKeyError, "flax layer 0: missing ['hn']"),
    (_edited(("hn", "bias"), drop=True), MissingKeyError, "layer 0 hn: missing ['bias']"),
    (_edited(("hr", "bias"), np.zeros(UNITS)), UnexpectedKeyError,
     "layer 0 hr: unexpected ['bias']"),
    (_edited(("hz", "kernel"), np.zeros((UNITS, 5))), ShapeError,
     "layer 0 hz.kernel: shape (4, 5), expected (4, 4)"),
    (_edited(("in", "bias"), np.zeros(5)), ShapeError,
     "layer 0 in.bias: shape (5,), expected (4,)"),
    (_edited(("iz", "kernel"), np.zeros((5, UNITS))), ShapeError,
     "layer 0 iz.kernel: shape (5, 4), expected (3, 4)"),
    (_edited(("ir", "kernel"), np.zeros(())), ShapeError, "layer 0 ir.kernel: shape ()"),
    (eq.from_canonical(eq.random_weights(eq.LSTMSpec(INPUT, UNITS), np.random.default_rng(0)),
                       "flax"), MissingKeyError, "flax layer 0: missing"),
], ids=["no hn", "no hn bias", "a bias on hr", "hz columns", "in bias", "iz rows", "0-d",
        "an LSTM tree"])
def test_hostile_gru_trees_are_refused_by_name(tree, error, message) -> None:
    with pytest.raises(error, match=re.escape(message)):
        eq.to_canonical(tree, "flax", cell="gru")


def test_what_flax_cannot_hold_is_refused_by_name() -> None:
    spec = eq.LSTMSpec(INPUT, UNITS, cell="gru")
    weights = eq.random_weights(spec, np.random.default_rng(0))
    with pytest.raises(UnsupportedFeatureError, match="reset_after=False"):
        eq.from_canonical(eq.random_weights(spec.replace(reset_after=False),
                                            np.random.default_rng(0)), "flax")
    with pytest.raises(UnsupportedFeatureError, match="cell=gru: variant 'linen_optimized'"):
        eq.from_canonical(weights, "flax", variant="linen_optimized")
    # nnx.GRUCell's dense_h has no bias: b_hn is refused, never dropped; without it, written
    with pytest.raises(UnsupportedFeatureError, match=re.escape("b_hn (variant 'nnx')")):
        eq.from_canonical(weights, "flax", variant="nnx")
    no_hn = weights.map_cells(lambda _l, _d, cell: type(cell)(
        cell.w_input, cell.w_recurrent, cell.b_input,
        np.concatenate([cell.b_recurrent[:2 * UNITS], np.zeros(UNITS, cell.b_recurrent.dtype)])))
    tree = eq.from_canonical(no_hn, "flax", variant="nnx")
    assert sorted(tree["dense_h"]) == ["kernel"] and tree["dense_i"]["bias"].shape == (12,)


def test_flax_optimized_runs_no_gru_and_says_so() -> None:
    spec = eq.LSTMSpec(INPUT, UNITS, cell="gru", dtype="float32")
    native = eq.from_canonical(eq.random_weights(spec, np.random.default_rng(0)), "flax")
    runtime = table.BY_NAME["flax_optimized"].load()
    with pytest.raises(UnsupportedFeatureError, match="flax_optimized cannot represent cell=gru"):
        runtime.run(spec, native, LSTMInputs(_inputs()[0]))
    assert "gru" in table.BY_NAME["flax"].capabilities.cells
