"""NeoML hand-off files: weights converted for NeoML plus the source network's results.

NeoML cannot share an environment with TensorFlow, so weights cross as a
numpy-only ``.npz`` case file (:mod:`equivalence.exchange`): the converted
``neoml`` native weights, random inputs, and the outputs, h and c the source
network computed on them in the main environment. In the NeoML environment::

    .venv-neoml/bin/python -m equivalence.files.neoml lstm.npz

builds the NeoML network from the file, runs the inputs and compares. Only
numpy and equivalence modules are imported at the top, so this module loads
in either environment.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from ..canonical import LSTMWeights
from ..formats import get as get_format
from ..io_types import LSTMInputs, LSTMResult
from ._base import FileFormatError, FoundLSTM, atomic_output

_SPEC_OPTIONS = {"directions": "directions", "recurrent_activation": "recurrent_activation",
                 "cell_clip": "cell_clip", "proj_clip": "projection_clip", "clip": "gate_clip"}


def read_case(path: Path) -> list[FoundLSTM]:
    """The LSTM of an exchange case file (any format it was written in)."""
    from .. import exchange

    try:
        case = exchange.load(path)
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
                      biases="two (input + recurrent free terms)" if case.format == "neoml"
                      else "as the format")]


def write_case(path: Path, weights: LSTMWeights, inputs: LSTMInputs, expected: LSTMResult,
               source: str) -> list[str]:
    """Write NeoML weights with ``expected`` (the source network's results on ``inputs``)."""
    from .. import exchange

    if not path.name.endswith(".npz"):
        raise FileFormatError(path, "a neoml output must end in .npz (a case file)")
    native = get_format("neoml").from_canonical(weights)
    case = exchange.CaseFile(weights.spec, source, "neoml", {}, native, inputs, expected)
    # A handle, because np.savez would append .npz to the temporary name.
    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        exchange.save(handle, case)  # type: ignore[arg-type]  # np.savez takes a handle
    return [f"wrote {path} (NeoML weights, gates g f i o, and {source}'s results on "
            f"{inputs.batch}x{inputs.steps} random inputs)",
            f"check it in the NeoML environment: .venv-neoml/bin/python -m "
            f"equivalence.files.neoml {path}"]


def check_case(path: Path) -> tuple[bool, str]:
    """Run the case file's weights in its format's runtime here and compare with its results."""
    from .. import exchange
    from ..compare import Tolerance, compare
    from ..table import FORMAT_RUNTIMES, entry

    case = exchange.load(path)
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
    parser = argparse.ArgumentParser(prog="python -m equivalence.files.neoml",
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
