"""Case files that carry an example between environments (NeoML cannot share one with TF).

A case file is an ``.npz`` holding the spec (JSON), the source runtime's name
and format, its native weights (any nesting of lists and dicts, stored as a
JSON skeleton plus numbered arrays), the inputs, and the source runtime's
outputs. Numpy only, so both environments can read and write it.

``python -m equivalence.exchange export --out DIR`` (main environment) runs
the source runtimes and writes the files; the NeoML environment's tests read
them, convert the weights to NeoML with the project's converters, and compare.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .canonical import random_weights
from .capabilities import Capabilities
from .io_types import LSTMInputs, LSTMResult
from .spec import LSTMSpec

EXPORT_SOURCES = ("keras", "torch", "tf1", "onnxruntime")


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
        )
        if value is not None
    }
    np.savez(
        path,
        meta=json.dumps(meta),
        x=case.inputs.x,
        outputs=case.expected.outputs,
        h=case.expected.h,
        c=case.expected.c,
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
        LSTMResult(get["outputs"], get["h"], get["c"]),
    )


def random_case_for(
    caps: Capabilities, rng: np.random.Generator
) -> tuple[LSTMSpec, Any, LSTMInputs]:
    """A random spec, canonical weights and inputs that ``caps`` can run."""
    spec = LSTMSpec(
        int(rng.choice([1, 3, 5])),
        int(rng.choice([1, 2, 4, 6])),
        int(rng.integers(1, 3)),
        int(rng.choice([1, 2])) if caps.bidirectional else 1,
    )
    weights = random_weights(spec, rng, scale=float(rng.choice([0.1, 0.5, 1.0]))).astype("float32")
    batch, steps = int(rng.integers(1, 4)), int(rng.choice([1, 3, 6, 9]))
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(np.float32)
    h0 = c0 = None
    if caps.initial_state and rng.random() < 0.5:
        h0 = rng.uniform(-1, 1, (spec.layers, spec.directions, batch, spec.units)).astype(
            np.float32
        )
        c0 = rng.uniform(-1, 1, (spec.layers, spec.directions, batch, spec.units)).astype(
            np.float32
        )
    return weights.spec, weights, LSTMInputs(x, h0, c0)


def export(
    out: Path,
    *,
    sources: tuple[str, ...] = EXPORT_SOURCES,
    examples: int = 25,
    seed: int = 0,
    target: str = "neoml",
) -> list[Path]:
    """Run each source runtime on random cases ``target`` can hold; write one file per case."""
    from . import harness, table
    from .strategies import Case, joint_capabilities

    out.mkdir(parents=True, exist_ok=True)
    target_caps = table.entry(target).load().capabilities
    written: list[Path] = []
    for name in sources:
        entry = table.entry(name)
        reason = entry.load().unavailable_reason()
        if reason:
            raise SystemExit(f"cannot export cases from {name}: {reason}")
        caps = joint_capabilities([entry.load().capabilities, target_caps])
        rng = np.random.default_rng([seed, len(written)])
        for n in range(examples):
            spec, weights, inputs = random_case_for(caps, rng)
            case = Case(spec, weights, inputs)
            native = harness.native_weights(entry, case)
            result = harness.run(entry, case, native)
            path = out / f"{name}-{n:03d}.npz"
            save(
                path,
                CaseFile(
                    spec, name, entry.format, dict(entry.format_options), native, inputs, result
                ),
            )
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equivalence.exchange")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("export", help="write case files from the main environment's runtimes")
    cmd.add_argument("--out", type=Path, required=True)
    cmd.add_argument("--examples", type=int, default=25, help="cases per source runtime")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--sources", default=",".join(EXPORT_SOURCES))
    args = parser.parse_args(argv)
    paths = export(
        args.out, sources=tuple(args.sources.split(",")), examples=args.examples, seed=args.seed
    )
    print(f"wrote {len(paths)} case files to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
