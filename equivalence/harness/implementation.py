"""``check_implementation``: judge a user's own LSTM written in a format's weight layout.

A kernel, an embedded port or a numpy re-implementation is called as
``fn(weights, inputs)`` on the same draws as ``check_conversion``: ``weights``
in the format's native layout (the framework's own objects by default, or
numpy), ``inputs`` an :class:`~equivalence.io_types.LSTMInputs` (``x``
batch-first, ``h0``/``c0`` in the contract layout or None, ``lengths`` or None).
It returns ``(output, h, c)`` or an :class:`~equivalence.io_types.LSTMResult`
in the contract layout, judged against the float64 reference under the one
tolerance policy (:mod:`equivalence.compare`). A failure carries the
output-only diagnosis: a known bug that reproduces it, else the first
diverging step, layer, direction, h or c, and the gate change that mimics it.
``fn`` is untrusted as in ``check_conversion``: whatever it raises or returns
is a failed example with the reason; SystemExit and KeyboardInterrupt stop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from equivalence.capabilities import TIME_MAJOR
from equivalence.compare import Tolerance
from equivalence.compare import judge as within_tolerance
from equivalence.convert import from_canonical
from equivalence.diagnosis.explain import diagnose
from equivalence.diagnosis.native_names import in_target_terms
from equivalence.errors import ConversionError, UnknownFormatError, brief
from equivalence.formats import FORMATS
from equivalence.formats import get as get_format
from equivalence.harness import judge as harness
from equivalence.harness.check import (
    CheckResult,
    Side,
    _check_run_options,
    _explore,
    _Judge,
    _numpy_nest,
    _problem,
    _short,
)
from equivalence.harness.draws import parse
from equivalence.harness.framework_objects import as_given
from equivalence.harness.judge import Outcome
from equivalence.harness.time_limit import DEFAULT_TIME_LIMIT, FunctionFailed, TimedOut, limited
from equivalence.io_types import LSTMResult
from equivalence.strategies import Case

# What fn is told is its weights and inputs: what the weights do not carry (a layer's
# configuration) is not drawn, as fn could not know it; peepholes and projection are arrays.
NOT_IN_WEIGHTS = ("reverse", "cell_clip", "projection_clip", "gate_clip", "input_forget",
                  "forget_bias", TIME_MAJOR)
CARRIED_BY_NONE = "clips, reverse, coupled gates or other activation"


class ImplementationResult(CheckResult):
    """What ``check_implementation`` found (``source`` is the format, ``target`` the function)."""

    def __str__(self) -> str:
        verdict = "matches the float64 reference" if self.ok else "does NOT match the reference"
        head = (f"{self.target} ({self.source} layout): {verdict} over {self.examples} examples "
                f"(max abs diff {self.max_abs_diff:.3g})")
        return "\n".join([head, *super().__str__().splitlines()[2:]])


def _result(output: Any, states: tuple[str, ...] = ("h", "c")) -> LSTMResult:
    """``fn``'s answer as numpy ``LSTMResult``: (output, h, c) for an LSTM, (output, h) for a
    GRU (``states``); a WeightValueError/ConversionError if it is not."""
    if isinstance(output, LSTMResult):
        output = (output.outputs, *output.states.values())
    expected = ", ".join(("output", *states))
    if not isinstance(output, (tuple, list)) or len(output) != 1 + len(states):
        raise ConversionError(f"returned {brief(output)}, expected ({expected}) or an "
                              "LSTMResult")
    arrays = [np.asarray(a, dtype=np.float64) for a in _numpy_nest(list(output))]
    return LSTMResult(*arrays)


def judge_implementation(fn: Callable[[Any], Any], fmt: str, case: Case,
                         given: str = "framework") -> Outcome:
    """Run ``fn`` on one example; every problem is a failed Outcome (``fn`` as in ``judge``)."""
    native = from_canonical(case.weights, fmt, **harness.writer_options(fmt, {}))
    tolerance = Tolerance.for_case(case.spec.dtype, case.inputs.steps)
    label = f"{fmt} implementation vs float64 reference"
    try:
        answer = fn((as_given(native, fmt, given), copy.deepcopy(case.inputs)))
    except FunctionFailed as exc:
        return _problem(label, case, tolerance, str(exc).replace("conversion", "implementation"))
    except Exception as exc:  # the user's code failing is a result, not a crash
        return _problem(label, case, tolerance, f"the implementation raised {_short(exc)}")
    try:
        actual = _result(answer, case.spec.state_names)
        comparison = within_tolerance(harness.reference_result(case), actual, tolerance,
                                      harness.sensitivity(case))
    except Exception as exc:  # what fn returned is foreign: any failure reading it is its own
        return _problem(label, case, tolerance, f"the implementation's result cannot be "
                                                f"judged: it {_short(exc)}")
    return Outcome(label, case, comparison, "" if comparison.ok else "outputs differ", actual)


class _ImplementationJudge(_Judge):
    """``_Judge``'s bookkeeping (timeouts repeated, stops carried) around one implementation."""

    def __init__(self, fn: Callable[[Any], Any], fmt: str, given: str) -> None:
        super().__init__(fn, (Side(fmt, None), Side(fmt, None)), given)
        self.format = fmt

    def _judge(self, case: Case) -> Outcome:
        if self.timed_out is not None:
            return self.timed_out
        hung: list[Case] = []

        def watched(args: Any) -> Any:
            try:
                return self.fn(args)
            except TimedOut:
                hung.append(case)
                raise

        outcome = judge_implementation(watched, self.format, case, self.given)
        if hung:
            self.timed_out = outcome
        return outcome


def check_implementation(
    fn: Callable[[Any, Any], Any],
    *,
    format: str,
    max_examples: int = 50,
    seed: int = 0,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    layers: int | Iterable[int] = 1,
    directions: int | Iterable[int] = 1,
    input_size: int | Iterable[int] | None = None,
    units: int | Iterable[int] | None = None,
    projection: bool | int | None = None,
    dtypes: str | Iterable[str] = ("float32",),
    native: str = "framework",
    cell: str = "lstm",
    reset_after: bool | None = None,
    **features: bool,
) -> ImplementationResult:
    """Check ``fn(weights, inputs) -> (output, h, c)``, an LSTM in ``format``'s weight layout.

    ``weights``: the format's native stack layout, as ``check_conversion`` gives
    it (``native="numpy"`` for plain numpy); ``inputs``: an ``LSTMInputs``, ``x``
    batch-first ``(B, T, I)``, ``h0``/``c0`` ``(L, D, B, O)``/``(L, D, B, H)`` or
    None, ``lengths`` ``(B,)`` or None. Return ``(output, h, c)`` or an
    ``LSTMResult``: ``output`` ``(B, T, D*O)`` (zero past each length), ``h``
    and ``c`` the final states ``(L, D, B, ...)``. Same keywords as
    :func:`~equivalence.harness.check.check_conversion`; with ``cell="gru"``, ``fn``
    returns ``(output, h)`` and is given no ``c0``. What the weights alone do not
    say is not drawn: the activations are the sigmoid and tanh, and there are no
    clips, reverse-only or coupled-gate LSTMs (peepholes and projections, which
    are arrays, are drawn where the format has them). Judged against the float64
    reference under the one tolerance policy. Raises ConversionError only for a
    bad call.
    """
    if not callable(fn):
        raise ConversionError(f"fn: {brief(fn)} is not callable")
    if not isinstance(format, str) or format not in FORMATS:
        raise UnknownFormatError(f"format: {brief(format)}, expected one of {sorted(FORMATS)}")
    _check_run_options(max_examples, seed, time_limit, native)
    caps = (get_format(format).capabilities().without(*NOT_IN_WEIGHTS)
            .with_values("recurrent_activation", ("sigmoid",)).with_values("activation", ("tanh",)))
    draws = parse(caps, f"the {format} weights alone (they carry no {CARRIED_BY_NONE})",
                  layers=layers, directions=directions,
                  input_size=input_size, units=units, projection=projection, dtypes=dtypes,
                  features=features, cell=cell,
                  # the variant is configuration, not weights: pinned (True unless asked, or
                  # the format holds only reset_after=False: tf1's GRUCell)
                  reset_after=(("reset_after=True" in caps) if reset_after is None else reset_after)
                  if cell == "gru" else reset_after)
    name = getattr(fn, "__name__", type(fn).__name__)
    result = ImplementationResult(format, str(name) if isinstance(name, str) else "fn",
                                  runtimes={"source": "float64 reference",
                                            "target": f"{name!s:.60}"})
    judged = _ImplementationJudge(limited(lambda args: fn(*args), time_limit), format, native)
    found = _explore(draws, judged, max_examples, seed, (format,))
    result.examples = found.examples
    result.max_abs_diff = max(found.max_abs_diff.values())
    result.ok = found.passed
    if found.error:
        raise RuntimeError(f"check_implementation could not run the reference: {found.error}")
    if found.failure is not None:
        result.counterexample = found.failure
        result.diagnosis = _diagnosis(found.failure, format)
    return result


def _diagnosis(failure: Outcome, fmt: str) -> str | None:
    """The output-only diagnosis in ``fmt``'s names; never raises."""
    if failure.actual is None:
        return None
    try:
        found = diagnose(failure.case, failure.actual)
        return in_target_terms(found, failure.case.spec, fmt) if found else found
    except Exception as exc:  # outputs of odd values the localization cannot fit
        return f"not diagnosed: {_short(exc)}"


def assert_implementation(fn: Callable[[Any, Any], Any], *, format: str,
                          **options: Any) -> ImplementationResult:
    """``check_implementation`` for pytest: raises AssertionError with the readable result."""
    __tracebackhide__ = True
    result = check_implementation(fn, format=format, **options)
    if not result.ok:
        raise AssertionError(str(result))
    return result
