"""The conformance grid: per runtime and feature, ``match``, ``refused`` or ``silently wrong``.

For every runtime of the table and every feature it could meet, Hypothesis
draws cases with that feature forced on (``strategies.lstm_cases`` filtered
to the feature) and each case gets one of three verdicts:

* ``match``: within the harness tolerance of the float64 reference;
* ``refused``: a named error (the runtime raised, or our contract refused a
  feature the row does not claim);
* ``silently wrong``: it ran and gave other numbers (or other shapes). Its own
  class, never hidden behind a looser tolerance; Hypothesis shrinks it to a
  minimal case.

A runtime that can run ONNX graphs (:meth:`run_onnx`) is probed at the ONNX
level: the feature is set in the graph itself, whatever the table row
claims, so the grid describes the engine, and ONNX attributes the spec cannot
express (``direction="reverse"``, ``input_forget``, ``layout=1``, an omitted
initial state) get their own features, with the float64 reference computing
the intended semantics. Every other runtime is probed through the runtime
contract, on the features its weight format can hold.

GRU columns (``GRU forward``, ``GRU reverse``, ...) draw GRU cases: GRU nodes for
the ONNX rows (both ``linear_before_reset`` values, clip, f and g activations,
``sequence_lens``, ``initial_h`` given or omitted), and for the contract rows the
GRU features their format holds (lengths, initial states, time-major,
``reset_after=False``).

Known findings (each table row's ``known``) are expectations, never inputs: the verdicts
come from the generated cases, and the test suite fails when one stops
reproducing. Core: numpy, Hypothesis and the harness at import.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from equivalence.canonical import LSTMWeights
from equivalence.case import Case
from equivalence.compare import compare
from equivalence.convert import from_canonical
from equivalence.formats import get as get_format
from equivalence.harness import judge as harness
from equivalence.harness.conformance_features import (
    CONTRACT_FEATURES,
    GRU_CONTRACT_FEATURES,
    GRU_ONNX_FEATURES,
    ONNX_FEATURES,
    Feature,
)
from equivalence.harness.fresh_processes import each_in_fresh_process
from equivalence.harness.known import MATCH, REFUSED, WRONG, known_finding
from equivalence.io_types import LSTMResult
from equivalence.table import BY_NAME, MAIN, Entry, entries, entry

# A silently wrong cell stops shrinking after this many runs (OpenVINO compiles every new spec).
SHRINK_RUNS = 60


@dataclass(frozen=True)
class Probe:
    """One case of a feature, plus the ONNX attributes it sets beyond the spec."""

    feature: str
    case: Case
    onnx: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        attributes = ", ".join(f"{k}={v}" for k, v in sorted(self.onnx.items()))
        return self.case.describe() + (f" onnx({attributes})" if attributes else "")


@dataclass(frozen=True)
class Observation:
    """What one probe did."""

    probe: Probe
    verdict: str
    max_abs_diff: float | None
    detail: str = ""


# ----------------------------------------------------------------------------- reference


def expected_result(probe: Probe) -> LSTMResult:
    """The float64 reference for the probe's intended semantics.

    The ONNX attributes a probe adds (``direction="reverse"`` on a one-direction
    node, ``input_forget=1``) are spec fields the reference implements.
    """
    case = probe.case
    spec = case.spec.replace(
        reverse=probe.onnx.get("direction") == "reverse" and case.spec.directions == 1,
        input_forget=bool(probe.onnx.get("input_forget")),
    )
    return harness.reference_result(Case(spec, LSTMWeights(spec, case.weights.cells), case.inputs))


# ----------------------------------------------------------------------------- running


OnnxRunner = Callable[[bytes, Mapping[str, np.ndarray]], list[np.ndarray]]


def onnx_runner(row: Entry) -> OnnxRunner | None:
    """The row's ONNX-level entry point, or None when it runs its own format only."""
    runtime = row.load()
    if hasattr(runtime, "run_onnx"):
        return runtime.run_onnx
    if row.format == "onnx" and runtime.module == "onnxruntime":
        # The onnxruntime row's class predates run_onnx: probe it through the same provider.
        if row.name not in _SESSIONS:
            from equivalence.runtimes._onnx_family import OnnxRuntimeSessions

            _SESSIONS[row.name] = OnnxRuntimeSessions(row)
        return _SESSIONS[row.name].run_onnx
    return None


_SESSIONS: dict[str, Any] = {}


def features_for(row: Entry) -> tuple[Feature, ...]:
    """The features ``row`` could meet: ONNX-level ones, or those its format can hold."""
    if onnx_runner(row) is not None:
        return ONNX_FEATURES + GRU_ONNX_FEATURES
    supported = get_format(row.format).supported
    return tuple(f for f in CONTRACT_FEATURES + GRU_CONTRACT_FEATURES
                 if f.holds is None or f.holds(supported))


def run_probe(row: Entry, probe: Probe, runner: OnnxRunner | None) -> LSTMResult:
    """Run the probe on the row: as an ONNX graph when ``runner``, else through the contract."""
    case = probe.case
    if runner is None:
        return harness.run(row, case, harness.native_weights(row, case))
    from equivalence.runtimes import _onnx_family as onnx_family

    attributes = dict(probe.onnx)
    has_state = not attributes.pop("omit_state", False)
    runs = attributes.pop("runs", 1)
    layout = attributes.get("layout", 0)
    model = onnx_family.probe_model(case.spec, has_state=has_state,
                                    has_lengths=case.inputs.lengths is not None, **attributes)
    plain = LSTMWeights(case.spec.replace(recurrent_activation="sigmoid"), case.weights.cells)
    native = from_canonical(plain, "onnx")
    fed = onnx_family.feeds(case.spec, native, case.inputs, has_state=has_state, layout=layout)
    outputs = [runner(model, fed) for _ in range(runs)][-1]  # the last run is judged
    return onnx_family.result(case.spec, outputs, case.inputs, layout=layout)


def observe(row: Entry, probe: Probe, runner: OnnxRunner | None) -> Observation:
    """Run one probe and judge it against the reference under the harness tolerance."""
    try:
        actual = run_probe(row, probe, runner)
    except Exception as exc:  # any error raised instead of numbers is a refusal, named here
        return Observation(probe, REFUSED, None, _error_line(exc))
    comparison = compare(expected_result(probe), actual, harness.tolerance(probe.case, row))
    finite = math.isfinite(comparison.max_abs_diff)
    diff = comparison.max_abs_diff if finite else None
    if comparison.ok:
        return Observation(probe, MATCH, diff)
    return Observation(probe, WRONG, diff, comparison.describe().splitlines()[0])


def _error_line(exc: BaseException) -> str:
    """``Type: first line ... cause`` (tract and OpenVINO put the cause last, then a backtrace)."""
    text = str(exc).split("Stack backtrace:")[0].split("stack backtrace:")[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()] or [""]
    shown = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return f"{type(exc).__name__}: {shown}"[:300]


class _SilentlyWrong(Exception):
    """Raised inside the Hypothesis search so it shrinks a silently wrong probe."""


def judge(
    row: Entry, feature: Feature, *, max_examples: int, seed: int, shrink_runs: int = SHRINK_RUNS
) -> dict[str, Any]:
    """One cell of the grid: ``max_examples`` drawn probes, shrunk when silently wrong.

    Shrinking stops after ``shrink_runs`` further runs (every new spec costs
    OpenVINO a compilation); the smallest failure found by then is reported.
    """
    runner = onnx_runner(row)
    seen: dict[tuple[str, bytes], Observation] = {}
    raised: list[Observation] = []  # Hypothesis replays its minimal failure last

    # Every setting from Hypothesis's own defaults, not the ambient profile (pytest loads
    # one, a spawned worker does not): a cell is the same wherever it is judged.
    @hypothesis_seed(seed)
    @settings(settings.get_profile("default"), max_examples=max_examples, database=None,
              deadline=None,
              phases=(Phase.explicit, Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
              report_multiple_bugs=False)
    @given(feature.cases())
    def search(case: Case) -> None:
        probe = Probe(feature.name, case, feature.onnx)
        key = _identity(probe)
        if key not in seen:
            if raised and len(seen) >= max_examples + shrink_runs:
                return  # shrink budget spent: what was not run counts as not failing
            seen[key] = observe(row, probe, runner)
        if seen[key].verdict == WRONG:
            raised.append(seen[key])
            raise _SilentlyWrong

    with contextlib.suppress(_SilentlyWrong):
        search()
    return _cell(row, feature, list(seen.values()), raised[-1] if raised else None)


def _identity(probe: Probe) -> tuple[str, bytes]:
    """What makes two probes the same probe (the description alone omits the values)."""
    inputs, arrays = probe.case.inputs, [probe.case.inputs.x]
    arrays += [a for a in (inputs.h0, inputs.c0, inputs.lengths) if a is not None]
    arrays += [a for _, _, cell in probe.case.weights.iter_cells() for a in cell.arrays().values()]
    return probe.describe(), b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)


def _cell(
    row: Entry, feature: Feature, observed: list[Observation], minimal: Observation | None
) -> dict[str, Any]:
    diffs = [o.max_abs_diff for o in observed if o.max_abs_diff is not None]
    if any(o.verdict == WRONG and o.max_abs_diff is None for o in observed):
        diffs = []  # a wrong shape or a NaN has no finite difference: say none
    refused = [o for o in observed if o.verdict == REFUSED]
    if minimal is not None:
        verdict, shown = WRONG, minimal
    elif refused:
        verdict, shown = REFUSED, min(refused, key=lambda o: _size(o.probe.case))
    else:
        verdict, shown = MATCH, None
    known = known_finding(row, feature.name)
    return {
        "runtime": row.name,
        "feature": feature.name,
        "verdict": verdict,
        "max_abs_diff": max(diffs) if diffs else None,
        "minimal_case": shown.probe.describe() if shown else None,
        "detail": shown.detail if shown else "",
        "runs": len(observed),
        "claimed": _claimed(row, feature, observed),
        "claimed_off": _claimed_off(row, feature, observed),
        "known": known.reason if known and known.verdict == verdict else None,
    }


def _size(case: Case) -> tuple[int, ...]:
    spec = case.spec
    return (spec.layers, spec.directions, spec.units, spec.input_size,
            case.inputs.batch, case.inputs.steps)


def _is_claimed(row: Entry, probe: Probe) -> bool:
    """Whether the row's capabilities claim everything the probe uses."""
    caps, case = row.capabilities, probe.case
    return caps.refusal(case.spec) is None and caps.input_refusal(case.inputs) is None


def _claimed(row: Entry, feature: Feature, observed: list[Observation]) -> bool | None:
    """Whether the row claims every probe of the cell (None: an ONNX attribute outside the
    contract). A cell whose probes differ (one activation claimed, another not) is False."""
    if feature.onnx or not observed:
        return None
    return all(_is_claimed(row, o.probe) for o in observed)


def _claimed_off(row: Entry, feature: Feature, observed: list[Observation]) -> str | None:
    """The smallest probe the row claims that did not match (a false claim), or None."""
    if feature.onnx:
        return None
    off = [o for o in observed if o.verdict != MATCH and _is_claimed(row, o.probe)]
    if not off:
        return None
    worst = min(off, key=lambda o: _size(o.probe.case))
    return f"{worst.probe.describe()}: {worst.verdict}: {worst.detail}"


# ----------------------------------------------------------------------------- the grid


def rows_for(runtimes: Iterable[str | Entry] | None) -> list[Entry]:
    """Table rows by name (or given rows); None: every CPU row of the main environment."""
    if runtimes is None:
        return [e for e in entries(environment=MAIN) if e.load().unavailable_reason() is None]
    return [r if isinstance(r, Entry) else entry(r) for r in runtimes]


def run_conformance(
    runtimes: Iterable[str | Entry] | None = None,
    *,
    features: Iterable[str] | None = None,
    max_examples: int = 10,
    seed: int = 0,
    shrink_runs: int = SHRINK_RUNS,
    jobs: int | None = None,
    tick: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """The grid: one ``{runtime, feature, verdict, max_abs_diff, minimal_case, ...}`` per cell.

    ``features`` restricts the columns by name; a row that cannot run here is
    left out (the report lists unavailable runtimes elsewhere).

    ``jobs=None`` judges every row in this process. ``jobs=N`` judges each row
    in a fresh spawned process, N at a time (the report's way): a row's cells
    then depend on nothing that ran before it (runtimes keep per-process
    state, such as built networks, that can move a float32 result by its last
    bit and so a shrink path), so the grid is the same for every N. ``tick`` is
    called as each row is done (the report's progress).
    """
    wanted = None if features is None else sorted(set(features))
    rows = [row for row in rows_for(runtimes) if row.load().unavailable_reason() is None]
    args = (wanted, max_examples, seed, shrink_runs)
    if jobs is None:
        parts = []
        for row in rows:
            parts.append(_row_cells(row, *args))
            if tick is not None:
                tick()
    else:
        strangers = [row.name for row in rows if BY_NAME.get(row.name) != row]
        if strangers:
            raise ValueError(f"jobs: only table rows can be judged in other processes: "
                             f"{strangers}")
        parts = each_in_fresh_process(_row_task, [(row.name, *args) for row in rows], jobs,
                                      tick)
    return [cell for part in parts for cell in part]


def _row_task(task: tuple[Any, ...]) -> list[dict[str, Any]]:
    """``_row_cells`` of one task tuple (a worker's unit: module level, imported by name)."""
    return _row_cells(*task)


def _row_cells(
    row: str | Entry, wanted: list[str] | None, max_examples: int, seed: int, shrink_runs: int
) -> list[dict[str, Any]]:
    """One row of the grid (a worker's unit)."""
    row = row if isinstance(row, Entry) else entry(row)
    return [judge(row, feature, max_examples=max_examples, seed=seed, shrink_runs=shrink_runs)
            for feature in features_for(row) if wanted is None or feature.name in wanted]


def unexpected(cells: Iterable[Mapping[str, Any]]) -> list[str]:
    """Cells that break an expectation: a case the row claims that did not match (the
    table is wrong), a known finding that changed, or an unknown silently wrong cell."""
    problems = []
    for cell in cells:
        where = f"{cell['runtime']} / {cell['feature']}"
        known = known_finding(cell["runtime"], cell["feature"])
        if cell.get("claimed_off"):
            problems.append(f"{where}: claimed by the row, but {cell['claimed_off']}")
        elif known is not None and known.verdict != cell["verdict"]:
            problems.append(f"{where}: known {known.verdict} ({known.reason}), "
                            f"now {cell['verdict']}")
        elif known is None and cell["verdict"] == WRONG:
            problems.append(f"{where}: silently wrong: {cell['minimal_case']} "
                            f"({cell['detail']})")
    return problems
