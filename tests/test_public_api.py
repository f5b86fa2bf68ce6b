"""The public API's shape: real signatures without framework imports, results as data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import equivalence
from equivalence import ConversionError

pytestmark = pytest.mark.cpu


def test_import_shows_real_signatures_and_imports_no_framework() -> None:
    script = (
        "import inspect, json, sys\n"
        "import equivalence\n"
        "before = [m for m in ('hypothesis', 'torch', 'tensorflow', 'jax') if m in sys.modules]\n"
        "sig = {n: list(inspect.signature(getattr(equivalence, n)).parameters)\n"
        "       for n in ('check_conversion', 'assert_conversion', 'check_implementation')}\n"
        "doc = equivalence.check_conversion.__doc__\n"
        "after = [m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules]\n"
        "print(json.dumps([before, sig, doc, after]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    before, sig, doc, after = json.loads(done.stdout)
    assert before == [] and after == []
    assert sig["check_conversion"][:3] == ["fn", "source", "target"]
    assert {"max_examples", "seed", "layers", "directions"} <= set(sig["check_conversion"])
    assert sig["check_implementation"][:2] == ["fn", "format"]
    assert "args" not in sig["check_conversion"]
    assert doc and "Check ``fn``" in doc


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = equivalence.no_such_thing  # type: ignore[attr-defined]


def _swap_gates(weights):
    out = {k: v.detach().clone() for k, v in weights.items()}
    for name, value in out.items():
        if name.startswith("weight_ih"):  # i and f blocks swapped: a real bug, must fail
            n = value.shape[0] // 4
            out[name] = value[[*range(n, 2 * n), *range(n), *range(2 * n, 4 * n)]]
    return out


@pytest.mark.parametrize("fn, ok", [(lambda w: w, True), (_swap_gates, False)])
def test_result_round_trips_through_strict_json(fn, ok) -> None:
    result = equivalence.check_conversion(fn, source="torch", target="torch", max_examples=5)
    assert result.ok is ok
    data = json.loads(result.to_json())
    assert data == result.to_dict()
    json.dumps(data, allow_nan=False)  # plain data only, no NaN
    assert data["ok"] is ok and data["source"] == "torch" and data["examples"] >= 1
    assert data["message"] == str(result)
    if ok:
        assert data["counterexample"] is None
    else:
        failing = [d for d in data["counterexample"]["diffs"] if d["mismatched"] or d["problem"]]
        assert failing and data["diagnosis"]


def test_non_finite_difference_is_null_in_json() -> None:
    from equivalence.harness.check import CheckResult

    result = CheckResult("torch", "keras", ok=False, examples=1, max_abs_diff=float("nan"))
    assert json.loads(result.to_json())["max_abs_diff"] is None


@pytest.mark.parametrize("make, named", [
    (lambda s: s.lstm_specs(max_layers=0), "max_layers"),
    (lambda s: s.lstm_specs(dtypes="float32"), "dtypes"),
    (lambda s: s.lstm_specs(single_cell="yes"), "single_cell"),
    (lambda s: s.lstm_weights("spec"), "spec"),
    (lambda s: s.lstm_weights(equivalence.LSTMSpec(1, 1), max_scale=0), "max_scale"),
    (lambda s: s.lstm_inputs(equivalence.LSTMSpec(1, 1), max_steps=0), "max_steps"),
    (lambda s: s.lstm_cases(max_batch=1.5), "max_batch"),
    (lambda s: s.lstm_cases(capabilities="all"), "capabilities"),
])
def test_strategy_arguments_are_checked_when_made(make, named) -> None:
    from equivalence import strategies

    with pytest.raises(ConversionError, match=named):  # not at the first draw
        make(strategies)


def test_strategies_are_documented_and_draw_what_they_say() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from equivalence import strategies
    from equivalence.capabilities import Capabilities

    for name in ("lstm_specs", "lstm_weights", "lstm_inputs", "lstm_cases"):
        doc = getattr(strategies, name).__doc__
        assert doc and "default" in doc, name
    caps = Capabilities.of()  # states, lengths and two directions are assumed

    @settings(max_examples=20, deadline=None, database=None)
    @given(st.data())
    def drawn(data) -> None:
        case = data.draw(strategies.lstm_cases(capabilities=caps, max_layers=3, max_batch=2,
                                               max_steps=3))
        assert 1 <= case.spec.layers <= 3 and case.inputs.x.shape[0] <= 2
        assert case.inputs.steps <= 3 and case.spec.dtype == "float32"

    drawn()
