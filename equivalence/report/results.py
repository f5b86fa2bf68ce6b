"""The results file (``equivalence.json``): building rows, validating files, merging runs.

Schema (every key always present):

* ``generated_at`` (ISO time), ``seed``, ``examples``, ``platform``, ``versions``
  (framework -> version), ``environments`` (``[{name, versions}]``, one per run),
* ``runtimes``: ``[{name, version, device, environment, available, reason}]``,
* ``pairs``: ``[{source, target, environment, examples, max_abs_diff: {output, h, c},
  tolerance: {atol, rtol}, passed, worst_case, features, error}]``; a runtime checked
  against the float64 reference is a pair whose target is ``"reference"``.
* ``third_party`` and ``mutations``: lists (filled by later checks; may be empty).
* ``exporters``: ``[ExporterRun.to_dict()]`` (:mod:`equivalence.converters.exporter`):
  one per exporter configuration, its probes' verdicts and statuses (may be empty).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

from equivalence import table
from equivalence.errors import ConversionError
from equivalence.harness.explore import Exploration

# The distributions whose versions a results file records: the harness's own, then every
# package a runtime row names (equivalence.table), so a new row needs no edit here.
HARNESS_PACKAGES = ("numpy", "hypothesis", "tensorflow-cpu")


def frameworks() -> tuple[str, ...]:
    from equivalence.table import packages

    return tuple(dict.fromkeys((*HARNESS_PACKAGES, *packages())))


REQUIRED_PAIR_KEYS = ("source", "target", "examples", "max_abs_diff", "passed")


class ResultsFileError(ConversionError):
    """A results file that cannot be read or does not follow the schema."""


def installed_versions() -> dict[str, str]:
    versions = {}
    for name in frameworks():
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def platform_info() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "system": platform.system(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }


def pair_row(source: str, target: str, environment: str, found: Exploration,
             known: str | None = None, cell: str = "lstm") -> dict[str, Any]:
    """One matrix cell from an exploration; ``known``: the source's known deviation here;
    ``cell``: the cell type of the networks drawn."""
    worst = found.failure or found.worst
    tolerance = worst.comparison.tolerance if worst else None
    worst_case = None
    if worst is not None:
        worst_case = {
            "case": worst.case.describe(),
            "ok": worst.ok,
            "max_abs_diff": worst.comparison.max_abs_diff,
            "message": worst.message() if not worst.ok else "",
        }
    return {
        "source": source,
        "target": target,
        "cell": cell,
        "environment": environment,
        "examples": found.examples,
        # a GRU has no c: its column reads "-", not a difference of 0
        "max_abs_diff": {k: None if k == "c" and cell == "gru" else _finite(v)
                         for k, v in found.max_abs_diff.items()},
        "max_abs_diff_by_dtype": {k: _finite(v) for k, v in sorted(found.by_dtype.items())},
        "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol} if tolerance else None,
        "passed": found.passed,
        "worst_case": worst_case,
        "features": sorted(found.features),
        "error": found.error,
        **({"known": known} if known else {}),
    }


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


def new_results(
    *,
    seed: int,
    examples: int,
    environment: str,
    runtimes: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
) -> dict[str, Any]:
    """A results object for this process; ``EQUIVALENCE_ENV_NAME`` (set by tox) names the run."""
    versions = installed_versions()
    environment = os.environ.get("EQUIVALENCE_ENV_NAME", environment)
    return {
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "examples": examples,
        "platform": platform_info(),
        "versions": versions,
        "environments": [{"name": environment, "versions": versions}],
        "runtimes": runtimes,
        "pairs": pairs,
        "third_party": [],
        "quantized": [],
        "exporters": [],
        "mutations": [],
    }


def load(path: Path) -> dict[str, Any]:
    """Read and validate a results file; errors name the file and the problem."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    validate(data, str(path))
    return data


def validate(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ResultsFileError(f"{where}: expected a JSON object, found {type(data).__name__}")
    for key, kind in (("pairs", list), ("runtimes", list)):
        if not isinstance(data.get(key), kind):
            raise ResultsFileError(f"{where}: '{key}' missing or not a {kind.__name__}")
    for n, row in enumerate(data["pairs"]):
        missing = [k for k in REQUIRED_PAIR_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise ResultsFileError(f"{where}: pairs[{n}] lacks {missing}")


def run_name(run: dict[str, Any]) -> str:
    """The name of a run (its first environment), for the version matrix columns."""
    environments = run.get("environments") or [{}]
    return str(environments[0].get("name", "unnamed"))


def merge(runs: list[dict[str, Any]], *, seed: int) -> dict[str, Any]:
    """One results object from several runs (environments, versions, machines).

    Each pair keeps the name of the run it came from under ``run``, so the
    report can lay pairs against framework versions.
    """
    merged = new_results(
        seed=seed,
        examples=max(r.get("examples", 0) for r in runs),
        environment="merged",
        runtimes=[],
        pairs=[],
    )
    merged["environments"] = []
    seen_runs: set[str] = set()
    for run in runs:
        name = run_name(run)
        # Shards of one environment (nightly runs its pairs on several runners) are one run.
        if name not in seen_runs:
            seen_runs.add(name)
            merged["environments"] += run.get("environments") or [
                {"name": name, "versions": run.get("versions", {})}
            ]
            merged["runtimes"] += [{**r, "run": name} for r in run["runtimes"]]
        merged["pairs"] += [{"run": name, **p} for p in run["pairs"]]
        merged["third_party"] += run.get("third_party", [])
        merged["quantized"] += run.get("quantized", [])
        merged["exporters"] += run.get("exporters", [])
        merged["mutations"] += run.get("mutations", [])
    return merged


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def runtime_rows(environment: str = table.MAIN) -> list[dict[str, Any]]:
    """Availability of every runtime in the table, as seen from this environment."""
    rows = []
    for entry in table.RUNTIMES:
        runtime = entry.load()
        if entry.environment != environment:
            reason = f"runs in the {entry.environment} environment"
        else:
            reason = runtime.unavailable_reason() or ""
        version = runtime.version() if not reason else ""
        rows.append(
            {
                "name": entry.name,
                "version": version,
                "device": entry.device,
                "environment": entry.environment,
                "available": not reason,
                "reason": reason,
            }
        )
    return rows
