"""Running the converters' configurations and keeping the results as report entries.

Owns exploring a configuration with :func:`equivalence.harness.explore.explore` (with a
cap on the cost of shrinking), classifying the result against the declared
known failures, the ``third_party`` entries of the results JSON, and handing
converters that cannot import here to the side interpreter
(:data:`SIDE_PYTHON_ENV`, default ``.venv-thirdparty`` or tox's
``.tox/thirdparty`` beside the package) as ``python -m equivalence.converters``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from equivalence.case import Case
from equivalence.compare import Comparison
from equivalence.converters.base import Configuration, Converter, error_text, quiet
from equivalence.converters.cudnn_h5 import CuDNNGRUH5, CuDNNH5
from equivalence.converters.nobuco_to_keras import Nobuco
from equivalence.converters.onnx2torch_convert import Onnx2Torch
from equivalence.converters.tf2onnx_from_keras import Tf2OnnxFromKeras
from equivalence.converters.torch_onnx_export import TorchOnnxExport
from equivalence.harness.judge import Outcome, tolerance

CONVERTERS: tuple[type[Converter], ...] = (
    CuDNNH5, CuDNNGRUH5, TorchOnnxExport, Tf2OnnxFromKeras, Onnx2Torch, Nobuco
)
BY_NAME = {cls.name: cls for cls in CONVERTERS}

SIDE_PYTHON_ENV = "EQUIVALENCE_THIRD_PARTY_PYTHON"
ROOT = Path(__file__).resolve().parent.parent.parent
# Where the side environment is looked for: the .ci/run venv, then tox's (tox -e thirdparty).
SIDE_VENVS = (ROOT / ".venv-thirdparty", ROOT / ".tox" / "thirdparty")
SIDE_TIMEOUT_S = 300
# After a first failure, Hypothesis shrinks; conversions cost up to a second each,
# so shrinking stops after this many new examples (or seconds) and keeps the
# smallest failing case found so far (every recorded case really failed).
SHRINK_CALLS = 4
SHRINK_SECONDS = 4.0


class ShrinkBudget:
    """Memoizes outcomes and caps the cost of shrinking (see :data:`SHRINK_CALLS`).

    Once the cap is reached, new candidates are answered with a pass without
    running, so Hypothesis keeps the smallest failure it has verified; replays
    of a verified case return its recorded outcome.
    """

    def __init__(self, judge: Callable[[Case], Outcome]) -> None:
        self.judge = judge
        self.memo: dict[bytes, Outcome] = {}
        self.failed_at: float | None = None
        self.calls_after_failure = 0

    def __call__(self, case: Case) -> Outcome:
        key = pickle.dumps(case)
        if key in self.memo:
            return self.memo[key]
        if self.failed_at is not None:
            self.calls_after_failure += 1
            spent = time.perf_counter() - self.failed_at
            if self.calls_after_failure > SHRINK_CALLS or spent > SHRINK_SECONDS:
                return Outcome("shrink budget spent", case, Comparison((), tolerance(case)))
        outcome = self.judge(case)
        self.memo[key] = outcome
        if not outcome.ok and self.failed_at is None:
            self.failed_at = time.perf_counter()
        return outcome


def run_configuration(converter: Converter, config: Configuration, *, max_examples: int,
                      seed: int) -> dict[str, Any]:
    """Explore one configuration; its entry for the results JSON."""
    from equivalence.diagnosis.explain import diagnose
    from equivalence.harness.explore import explore

    start = time.perf_counter()
    judge = ShrinkBudget(lambda case: converter.judge(config, case))
    found = explore(converter.cases(config), judge, max_examples=max_examples, seed_value=seed)
    failure = found.failure
    diagnosis = None
    if failure is not None and failure.actual is not None:
        diagnosis = diagnose(failure.case, failure.actual)
    worst = max(found.max_abs_diff.values(), default=0.0)
    source, target = converter.source_entry(config), converter.target_entry(config)
    entry: dict[str, Any] = {
        "name": config.name,
        "pair": f"{source.name} -> {target.name}",
        "examples": found.examples,
        "passed": found.passed,
        "max_abs_diff": worst if math.isfinite(worst) else None,
        "minimal_failing_case": _describe_failure(failure) if failure else None,
        "diagnosis": diagnosis,
        "expected_failure_reason": None,
        "unexpected": False,
        "note": None,
        "seconds": round(time.perf_counter() - start, 2),
    }
    if found.error:  # the harness itself broke (judge exceptions are failures already)
        entry["minimal_failing_case"] = found.error
    classify(entry, config, found.error)
    return entry


def _describe_failure(failure: Outcome) -> str:
    lines = [f"case: {failure.case.describe()}", failure.comparison.describe()]
    return "\n".join(lines + ([failure.blame] if failure.blame else []))


def classify(entry: dict[str, Any], config: Configuration, error: str) -> None:
    """Expected failure, unexpected failure, or a known failure that stopped reproducing."""
    known = config.known_failure
    if entry["passed"]:
        if known is not None:
            entry["unexpected"] = True
            entry["note"] = f"known failure did not reproduce: {known.reason}"
        return
    evidence = " ".join(filter(None, [entry["minimal_failing_case"], entry["diagnosis"], error]))
    if known is not None and known.signature in evidence:
        entry["expected_failure_reason"] = known.reason
    else:
        entry["unexpected"] = True


def run_converter(converter: Converter, *, max_examples: int, seed: int,
                  environment: str = "main") -> dict[str, Any]:
    """Every configuration of ``converter`` (which must be runnable here)."""
    start = time.perf_counter()
    configurations = [run_configuration(converter, config, max_examples=max_examples, seed=seed)
                      for config in converter.configurations]
    return _entry(converter, configurations, environment, time.perf_counter() - start)


def _entry(converter: Converter, configurations: list[dict[str, Any]], environment: str,
           seconds: float, reason: str | None = None) -> dict[str, Any]:
    passed = bool(configurations) and all(c["passed"] for c in configurations)
    if reason is not None:
        status = "not runnable here"
    elif any(c["unexpected"] for c in configurations):
        status = "unexpected results"
    else:
        status = "passed" if passed else "known failures"
    return {
        "converter": converter.name,
        "version": converter.version(),
        "environment": environment,
        "runnable": reason is None,
        "reason": reason,
        "status": status,
        "not_claimed": converter.not_claimed or None,
        "configurations": configurations,
        "passed": passed,
        "seconds": round(seconds, 2),
    }


def side_python() -> str | None:
    """The side interpreter for converters that cannot import here, if there is one."""
    configured = os.environ.get(SIDE_PYTHON_ENV)
    if configured:
        return configured
    for venv in SIDE_VENVS:
        candidate = venv / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return None


class SideRun:
    """Converters running in the side interpreter, started before (and beside) the main ones."""

    def __init__(self, names: list[str], *, max_examples: int, seed: int, python: str) -> None:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        env.pop(SIDE_PYTHON_ENV, None)
        command = [python, "-m", "equivalence.converters", "--in-process",
                   "--max-examples", str(max_examples), "--seed", str(seed),
                   "--environment", f"side interpreter {python}"]
        command += [arg for name in names for arg in ("--only", name)]
        self.python = python
        self.process: subprocess.Popen[str] | None = None
        self.error: str | None = None
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, env=env,
                                            cwd=str(ROOT))
        except OSError as exc:
            self.error = f"side interpreter {python} did not start: {error_text(exc)}"

    def entries(self) -> tuple[list[dict[str, Any]], str | None]:
        """(entries, None), or ([], why the side run gave none)."""
        if self.process is None:
            return [], self.error
        try:
            out, err = self.process.communicate(timeout=SIDE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return [], f"side interpreter {self.python} ran past {SIDE_TIMEOUT_S} s"
        lines = out.strip().splitlines()
        if self.process.returncode != 0 or not lines:
            tail = " ".join(err.strip().splitlines()[-3:])[-400:]
            return [], f"side interpreter {self.python} exited {self.process.returncode}: {tail}"
        return json.loads(lines[-1]), None


def run_third_party(max_examples: int = 5, seed: int = 0,
                    only: Sequence[str] | None = None, *, in_process: bool = False,
                    environment: str = "main") -> list[dict[str, Any]]:
    """One ``third_party`` entry per converter (``only``: names to run, default all).

    Converters that cannot import here run in the side interpreter
    (:func:`side_python`, in parallel with the others) unless ``in_process``;
    without one they are entries marked not runnable, with the reason.
    """
    with quiet():
        import torch  # noqa: F401  (torch before TensorFlow avoids a crash at import)
    converters = {cls.name: cls() for cls in CONVERTERS if only is None or cls.name in only}
    reasons = {name: c.unavailable_reason() for name, c in converters.items()}
    elsewhere = [name for name, reason in reasons.items() if reason is not None]
    python = None if in_process else side_python()
    side = None
    if elsewhere and python:
        side = SideRun(elsewhere, max_examples=max_examples, seed=seed, python=python)
    entries = {name: run_converter(c, max_examples=max_examples, seed=seed,
                                   environment=environment)
               for name, c in converters.items() if reasons[name] is None}
    places = " or ".join(str(v) for v in SIDE_VENVS)
    side_reason = f"no side interpreter ({SIDE_PYTHON_ENV} unset, none at {places})"
    if side is not None:
        side_entries, side_error = side.entries()
        entries.update({e["converter"]: e for e in side_entries})
        side_reason = side_error or side_reason
    for name in elsewhere:
        if name not in entries:
            reason = reasons[name] if in_process else f"{reasons[name]}; {side_reason}"
            entries[name] = _entry(converters[name], [], environment, 0.0, reason)
    return [entries[name] for name in converters]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m equivalence.converters``: print the entries as one JSON line."""
    parser = argparse.ArgumentParser(description="Third-party LSTM converters under test.")
    parser.add_argument("--max-examples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME))
    parser.add_argument("--environment", default="main")
    parser.add_argument("--in-process", action="store_true",
                        help="do not hand converters to a side interpreter")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a converter did not run or gave unexpected results")
    args = parser.parse_args(argv)
    entries = run_third_party(args.max_examples, args.seed, args.only,
                              in_process=args.in_process, environment=args.environment)
    sys.stdout.write(json.dumps(entries, allow_nan=False) + "\n")
    bad = [f"{e['converter']}: {e['reason'] or e['status']}" for e in entries
           if e["status"] in ("not runnable here", "unexpected results")]
    if args.strict and bad:
        sys.stderr.write("third-party converters failed:\n  " + "\n  ".join(bad) + "\n")
        return 1
    return 0
