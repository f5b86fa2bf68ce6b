"""The hand-off case file: one example carried between environments as numpy-only ``.npz``.

NeoML cannot share an environment with TensorFlow, so weights cross as a case
file (:mod:`equivalence.harness.exchange` writes and judges them): the spec
(JSON), the source runtime's name and format, its native weights (any nesting
of lists and dicts, stored as a JSON skeleton plus numbered arrays), random
inputs, and the outputs, h and c (a GRU: h alone) the source network computed on them. In the
NeoML environment::

    .venv-neoml/bin/python -m equivalence.files.neoml.case_file lstm.npz

builds the NeoML network from the file, runs the inputs and compares.

Only numpy and equivalence modules are imported at the top, so this module
loads in either environment.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.files._base import FileFormatError, FoundLSTM, atomic_output
from equivalence.formats import get as get_format
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec

NETWORK_SUFFIX = ".cnnarch"  # NeoML's usual name for a stored network
_SPEC_OPTIONS = {"directions": "directions", "recurrent_activation": "recurrent_activation",
                 "cell_clip": "cell_clip", "proj_clip": "projection_clip", "clip": "gate_clip",
                 "cell": "cell", "reset_after": "reset_after"}


@dataclass(frozen=True)
class CaseFile:
    """One exchanged example."""

    spec: LSTMSpec
    source: str
    format: str
    format_options: dict[str, Any]
    native: Any
    inputs: LSTMInputs
    expected: LSTMResult


def _skeleton(tree: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(tree, dict):
        return {"dict": {str(k): _skeleton(v, arrays) for k, v in tree.items()}}
    if isinstance(tree, (list, tuple)):
        return {"list": [_skeleton(v, arrays) for v in tree]}
    arrays.append(np.asarray(tree))
    return {"array": len(arrays) - 1}


def _rebuild(skeleton: dict[str, Any], arrays: Any) -> Any:
    if "dict" in skeleton:
        return {k: _rebuild(v, arrays) for k, v in skeleton["dict"].items()}
    if "list" in skeleton:
        return [_rebuild(v, arrays) for v in skeleton["list"]]
    return arrays[f"weight_{skeleton['array']}"]


def save(path: Path, case: CaseFile) -> None:
    """Write ``case`` to ``path`` (an .npz)."""
    arrays: list[np.ndarray] = []
    meta = {
        "spec": case.spec.to_dict(),
        "source": case.source,
        "format": case.format,
        "format_options": case.format_options,
        "weights": _skeleton(case.native, arrays),
        "time_major": case.inputs.time_major,
    }
    # optional inputs and the weight arrays travel as extra named arrays
    optional: dict[str, Any] = {f"weight_{n}": a for n, a in enumerate(arrays)}
    optional |= {
        name: value
        for name, value in (
            ("h0", case.inputs.h0),
            ("c0", case.inputs.c0),
            ("lengths", case.inputs.lengths),
            ("c", case.expected.c),  # a GRU's result has none
        )
        if value is not None
    }
    np.savez(
        path,
        meta=json.dumps(meta),
        x=case.inputs.x,
        outputs=case.expected.outputs,
        h=case.expected.h,
        **optional,
    )


def load(path: Path) -> CaseFile:
    """Read a case file written by :func:`save`."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        get = {k: data[k] for k in data.files}
    inputs = LSTMInputs(
        get["x"], get.get("h0"), get.get("c0"), get.get("lengths"), meta["time_major"]
    )
    return CaseFile(
        LSTMSpec.from_dict(meta["spec"]),
        meta["source"],
        meta["format"],
        meta["format_options"],
        _rebuild(meta["weights"], get),
        inputs,
        LSTMResult(get["outputs"], get["h"], get.get("c")),
    )


def network_file(case_path: Path) -> Path:
    """Where the network NeoML stored for a NeoML-sourced case file lies (next to it)."""
    return case_path.with_suffix(NETWORK_SUFFIX)


def read_case(path: Path) -> list[FoundLSTM]:
    """The LSTM of an exchange case file (any format it was written in)."""
    try:
        case = load(path)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise FileFormatError(path, f"corrupted, truncated or not an equivalence case file "
                                    f"({type(exc).__name__}: {exc})") from exc
    accepted = {p.name for p in inspect.signature(get_format(case.format).to_canonical)
                .parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    options = {k: getattr(case.spec, v) for k, v in _SPEC_OPTIONS.items() if k in accepted}
    options.update({k: v for k, v in case.format_options.items() if k in accepted})
    return [FoundLSTM(name="lstm", format=case.format, native=case.native, source=str(path),
                      kind=f"equivalence case file (expected results from {case.source})",
                      read_options=options, run_options=dict(case.format_options),
                      biases=_biases(case))]


def _biases(case: CaseFile) -> str:
    if case.format != "neoml":
        return "as the format"
    return "one free term per gate" if case.spec.cell == "gru" else (
        "two (input + recurrent free terms)")


def write_case(path: Path, weights: LSTMWeights, inputs: LSTMInputs, expected: LSTMResult,
               source: str) -> list[str]:
    """Write NeoML weights with ``expected`` (the source network's results on ``inputs``)."""
    if not path.name.endswith(".npz"):
        raise FileFormatError(path, "a neoml output must end in .npz (a case file)")
    native = get_format("neoml").from_canonical(weights)
    case = CaseFile(weights.spec, source, "neoml", {}, native, inputs, expected)
    # A handle, because np.savez would append .npz to the temporary name.
    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        save(handle, case)  # type: ignore[arg-type]  # np.savez takes a handle
    gates = "z r, then n" if weights.spec.cell == "gru" else "g f i o"
    return [f"wrote {path} (NeoML weights, gates {gates}, and {source}'s results on "
            f"{inputs.batch}x{inputs.steps} random inputs)",
            f"check it in the NeoML environment: .venv-neoml/bin/python -m "
            f"equivalence.files.neoml.case_file {path}"]


def check_case(path: Path) -> tuple[bool, str]:
    """Run the case file's weights in its format's runtime here and compare with its results."""
    from equivalence.compare import Tolerance, compare
    from equivalence.table import FORMAT_RUNTIMES, entry

    case = load(path)
    runtime = entry(FORMAT_RUNTIMES[case.format][0]).load()
    reason = runtime.unavailable_reason()
    if reason:
        return False, f"{runtime.name} cannot run here: {reason}"
    actual = runtime.run(case.spec, case.native, case.inputs, **case.format_options)
    comparison = compare(case.expected, actual,
                         Tolerance.for_case(case.spec.dtype, case.inputs.steps))
    lines = [f"{runtime.name} vs {case.source} ({path}):"]
    lines += [f"  {d.name}: max abs diff {d.max_abs_diff:.3g}" for d in comparison.diffs]
    lines.append(f"  allowed: {comparison.tolerance} -> {'OK' if comparison.ok else 'FAILED'}")
    return comparison.ok, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equivalence.files.neoml.case_file",
                                     description=check_case.__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        try:
            ok, text = check_case(path)
        except Exception as exc:  # report every file, then fail
            ok, text = False, f"{path}: {type(exc).__name__}: {exc}"
        print(text)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
