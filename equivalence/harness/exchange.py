"""Case files that carry examples between environments (NeoML cannot share one with TF).

A case file is an ``.npz`` holding the spec (JSON), the source runtime's name
and format, its native weights (any nesting of lists and dicts, stored as a
JSON skeleton plus numbered arrays), the inputs, and the source runtime's
outputs. Numpy only, so both environments can read and write it.

Both directions go through case files:

* into NeoML: ``python -m equivalence.harness.exchange export --out DIR`` (main
  environment) runs every CPU source runtime on random weights and writes the
  files; the NeoML environment converts each to NeoML and runs it;
* out of NeoML: ``python -m equivalence.harness.exchange export-neoml --out DIR`` (NeoML
  environment) draws random NeoML weights there, runs NeoML, and writes each
  case file next to the network NeoML saved itself (``Dnn.store``,
  ``<case>.cnnarch``); ``python -m equivalence.harness.exchange judge --cases DIR``
  (main environment) reads the weights back from that network file, converts
  them to every target and runs it.

Either way :func:`judge` moves the weights with the project's converters,
runs the target for real and judges with the harness's tolerance, comparison,
float64 recheck and diagnosis: the expected result is the source's recorded one.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from equivalence import table
from equivalence.canonical import random_weights
from equivalence.capabilities import INITIAL_STATE, Capabilities, joint_capabilities
from equivalence.errors import ConversionError
from equivalence.files.neoml.case_file import CaseFile, load, network_file, save
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec


def pair_runtimes() -> tuple[str, ...]:
    """The main environment's CPU runtimes that pair with others: NeoML's row and column."""
    return tuple(e.name for e in table.entries(environment=table.MAIN) if e.in_pairs)


def source_weights(case_path: Path, case: CaseFile) -> Any:
    """The source's native weights: for NeoML, read back from the network file NeoML wrote.

    The file must hold exactly one LSTM, and it must be the case's spec; the case
    file's own copy of the weights is not used, so NeoML's serialization is what moves.
    """
    if case.source != "neoml":
        return case.native
    from equivalence.files.neoml.network import read_network_file

    path = network_file(case_path)
    found = read_network_file(path)
    if len(found) != 1 or found[0].problem:
        what = found[0].problem if len(found) == 1 else f"{len(found)} LSTMs"
        raise ConversionError(f"{path}: expected the one LSTM of {case_path.name}, found {what}")
    spec = found[0].spec
    if (spec.cell, spec.layers, spec.directions, spec.input_size, spec.units) != (
        case.spec.cell, case.spec.layers, case.spec.directions, case.spec.input_size,
        case.spec.units
    ):
        raise ConversionError(f"{path}: holds {spec}, the case file says {case.spec}")
    return found[0].native


def random_case_for(
    caps: Capabilities, rng: np.random.Generator, gru: bool | None = None
) -> tuple[LSTMSpec, Any, LSTMInputs]:
    """A random spec, canonical weights and inputs that ``caps`` can run: an LSTM, or where
    ``caps`` runs GRUs, half the time (always with ``gru=True``, never with ``gru=False``) a
    GRU of a variant it runs (and no c0)."""
    spec = LSTMSpec(
        int(rng.choice([1, 3, 5])),
        int(rng.choice([1, 2, 4, 6])),
        int(rng.integers(1, 3)),
        int(rng.choice([1, 2])) if "bidirectional" in caps else 1,
    )
    # drawn only where a GRU can be, so LSTM-only streams replay as before
    if "gru" in caps.cells and (rng.random() < 0.5 if gru is None else gru):
        after = "reset_after=True" in caps and not (
            "reset_after=False" in caps and rng.random() < 0.5)
        spec = spec.replace(cell="gru", reset_after=after)
    weights = random_weights(spec, rng, scale=float(rng.choice([0.1, 0.5, 1.0]))).astype("float32")
    batch, steps = int(rng.integers(1, 4)), int(rng.choice([1, 3, 6, 9]))
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(np.float32)
    h0 = c0 = None
    if INITIAL_STATE in caps and rng.random() < 0.5:
        h0 = rng.uniform(-1, 1, (spec.layers, spec.directions, batch, spec.units)).astype(
            np.float32
        )
        c0 = rng.uniform(-1, 1, (spec.layers, spec.directions, batch, spec.units)).astype(
            np.float32
        ) if "c" in spec.state_names else None
    return weights.spec, weights, LSTMInputs(x, h0, c0)


def _case_file(entry: table.Entry, spec: LSTMSpec, native: Any, inputs: LSTMInputs,
               result: LSTMResult) -> CaseFile:
    return CaseFile(spec, entry.name, entry.format, dict(entry.format_options), native, inputs,
                    result)


def export(
    out: Path,
    *,
    sources: tuple[str, ...] | None = None,
    examples: int = 25,
    seed: int = 0,
    target: str = "neoml",
) -> list[Path]:
    """Run each source runtime on random cases ``target`` can hold; write one file per case."""
    from equivalence.case import Case
    from equivalence.harness import judge as harness

    out.mkdir(parents=True, exist_ok=True)
    target_caps = table.entry(target).capabilities
    written: list[Path] = []
    for name in sources or pair_runtimes():
        entry = table.entry(name)
        reason = entry.load().unavailable_reason()
        if reason:
            raise SystemExit(f"cannot export cases from {name}: {reason}")
        caps = joint_capabilities([entry.capabilities, target_caps])
        # seeded by the source's name, so exporting one source alone replays its cases
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        for n in range(examples):
            spec, weights, inputs = random_case_for(caps, rng)
            case = Case(spec, weights, inputs)
            native = harness.native_weights(entry, case)
            result = harness.run(entry, case, native)
            path = out / f"{name}-{n:03d}.npz"
            save(path, _case_file(entry, spec, native, inputs, result))
            written.append(path)
    return written


def export_neoml(
    out: Path, *, targets: tuple[str, ...] | None = None, examples: int = 25, seed: int = 0
) -> list[Path]:
    """NeoML as the source (NeoML environment): random NeoML weights drawn here, NeoML run,
    each case file written next to the network NeoML stored itself."""
    from equivalence.case import Case
    from equivalence.harness import judge as harness

    entry = table.entry("neoml")
    runtime = entry.load()
    reason = runtime.unavailable_reason()
    if reason:
        raise SystemExit(f"cannot export cases from neoml: {reason}")
    chosen = targets or pair_runtimes()
    # every target must hold every LSTM case, so a NeoML case runs in the whole row; its GRUs
    # (reset_after=False only) are drawn for the targets that hold that variant, every other
    # case, and the rest refuse them by name
    lstm_caps = joint_capabilities([entry.capabilities,
                                    *(table.entry(t).capabilities for t in chosen)])
    gru_caps = joint_capabilities([entry.capabilities,
                                   *(table.entry(t).capabilities for t in gru_targets(chosen))])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, zlib.crc32(b"neoml")])
    written = []
    for n in range(examples):
        drawn_gru = n % 2 == 1
        spec, weights, inputs = random_case_for(gru_caps if drawn_gru else lstm_caps, rng,
                                                gru=drawn_gru)
        native = harness.native_weights(entry, Case(spec, weights, inputs))
        path = out / f"neoml-{n:03d}.npz"
        result = runtime.run_and_store(spec, native, inputs, network_file(path))  # type: ignore[attr-defined]
        save(path, _case_file(entry, spec, native, inputs, result))
        written.append(path)
    return written


def gru_targets(targets: tuple[str, ...]) -> tuple[str, ...]:
    """The targets that hold NeoML's GRU variant (reset_after=False)."""
    return tuple(t for t in targets if holds_neoml_gru(table.entry(t).capabilities))


def holds_neoml_gru(caps: Capabilities) -> bool:
    return "gru" in caps.cells and "reset_after=False" in caps


def judge(case_path: Path, target: str, converter: Any = None) -> Any:
    """Move a case file's source weights to ``target``, run it here, judge with the harness.

    Returns a :class:`~equivalence.harness.judge.Outcome`; ``converter`` (native -> the
    target's native) replaces the project's converters, for tests that must fail.
    """
    from equivalence.case import Case
    from equivalence.compare import judge as within_tolerance
    from equivalence.convert import to_canonical
    from equivalence.diagnosis.explain import Converted, diagnose
    from equivalence.harness import judge as harness

    case_file = load(case_path)
    source, tgt = table.entry(case_file.source), table.entry(target)
    native = source_weights(case_path, case_file)
    options = harness.reader_options(case_file.format, case_file.spec, case_file.format_options)
    case = Case(case_file.spec, to_canonical(native, case_file.format, **options),
                case_file.inputs)
    moved = converter(native) if converter else harness.move(source, tgt, case, native)
    actual = harness.run(tgt, case, moved)
    # the one policy, as check_pair applies it: the static floor, or the case's sensitivity
    comparison = within_tolerance(case_file.expected, actual, harness.tolerance(case, source, tgt),
                                  harness.sensitivity(case))
    tol = comparison.tolerance
    label = f"{source.name} -> {tgt.name}"
    if comparison.ok:
        return harness.Outcome(label, case, comparison, actual=actual)
    # the harness's float64 recheck and diagnosis, as check_pair gives them
    verdict = harness.blame(
        case, {f"{source.name} (recorded)": case_file.expected,
               f"{tgt.name} (converted)": actual}, tol)
    # the converted weights are at hand: diagnose in weight space first
    converted = Converted(moved, tgt.format,
                          harness.reader_options(tgt.format, case.spec, dict(tgt.format_options)))
    named = diagnose(case, actual, converted, tol)
    verdict += f"\ndiagnosis: {named}" if named else ""
    return harness.Outcome(label, case, comparison, verdict, actual)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equivalence.harness.exchange")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("export", help="case files from the main environment's runtimes")
    cmd.add_argument("--out", type=Path, required=True)
    cmd.add_argument("--examples", type=int, default=25, help="cases per source runtime")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--sources", default=",".join(pair_runtimes()))
    neo = sub.add_parser("export-neoml", help="NeoML environment: NeoML as the source")
    neo.add_argument("--out", type=Path, required=True)
    neo.add_argument("--examples", type=int, default=25)
    neo.add_argument("--seed", type=int, default=0)
    judged = sub.add_parser("judge", help="main environment: NeoML's cases in every target")
    judged.add_argument("--cases", type=Path, required=True)
    judged.add_argument("--targets", default=",".join(pair_runtimes()))
    args = parser.parse_args(argv)
    if args.command == "judge":
        return _judge_command(args.cases, tuple(args.targets.split(",")))
    if args.command == "export-neoml":
        paths = export_neoml(args.out, examples=args.examples, seed=args.seed)
    else:
        paths = export(args.out, sources=tuple(args.sources.split(",")),
                       examples=args.examples, seed=args.seed)
    print(f"wrote {len(paths)} case files to {args.out}")
    return 0


def _judge_command(cases: Path, targets: tuple[str, ...]) -> int:
    files = sorted(cases.glob("neoml-*.npz"))
    if not files:
        print(f"no NeoML case files (neoml-*.npz) in {cases}")
        return 2
    failed = 0
    for target in targets:
        outcomes = [judge(path, target) for path in files]
        bad = [o for o in outcomes if not o.ok]
        worst = max(o.comparison.max_abs_diff for o in outcomes)
        print(f"neoml -> {target}: {len(outcomes) - len(bad)}/{len(outcomes)} equivalent, "
              f"max abs diff {worst:.3g}")
        for outcome in bad[:1]:
            print(outcome.message())
        failed += bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
