"""Malformed native weights: every case raises a ConversionError naming the field."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given
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
    return f"weights[{path[-1]}]" if path else "vector"


def parent_of(tree, path):
    for key in path[:-1]:
        tree = tree[key]
    return tree


def grow_every_axis(array: np.ndarray) -> np.ndarray:
    """One more element on every axis: never a valid shape (gate axes stop being 4H)."""
    return np.pad(array, [(0, 1)] * array.ndim)


MUTATIONS = ("wrong shape", "missing", "extra", "integer", "non-finite", "extra dimension")


def mutate(native, path, mutation: str):
    """Apply ``mutation`` at ``path``; returns (bad native, expected message token)."""
    bad = copy.deepcopy(native)
    if not path:  # a flat vector
        bad = {"wrong shape": np.append(bad, 0.0), "integer": bad.astype(np.int64)}.get(
            mutation, np.where(np.arange(bad.size) == 0, np.nan, bad)
        )
        return bad, "vector"
    parent, key = parent_of(bad, path), path[-1]
    token = field_token(path)
    if mutation == "wrong shape":
        parent[key] = grow_every_axis(parent[key])
    elif mutation == "extra dimension":
        parent[key] = parent[key][None]
    elif mutation == "integer":
        parent[key] = np.round(parent[key]).astype(np.int64)
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
    bad, token = mutate(native, path, mutation)
    try:
        decoded = eq.to_canonical(bad, fmt, **read_options(fmt, spec))
    except eq.ConversionError as raised:
        assert token in str(raised), f"message {str(raised)!r} does not name {token!r}"
        return
    # Dropping an optional array (ONNX P, a TF1 projection) can leave valid weights of a
    # different LSTM; that is the only way malformed input may pass.
    assert mutation == "missing", f"{mutation} at {path} was accepted"
    dropped = (spec.peepholes, spec.projection_size) != (decoded.spec.peepholes,
                                                        decoded.spec.projection_size)
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
