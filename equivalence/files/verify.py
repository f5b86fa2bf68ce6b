"""``convert --verify``: run both files' networks as the files define them, and compare.

A side is the network one file defines. Where the file's kind has a runner in
the registry, that runner runs it the way the file itself would: an ONNX
file's own LSTM nodes with every stored input (:mod:`~equivalence.files.onnx_run`),
a Keras file's layers rebuilt from their own config with masks and
``go_backwards`` (:mod:`~equivalence.files.keras_run`), a TorchScript
archive's module (opt-in, it runs the archive's code). Otherwise the file is
weights only (a state_dict, a checkpoint) and the runtime
:data:`equivalence.table.FORMAT_RUNTIMES` names for its format runs them.
CuDNNLSTM has no CPU kernel: without a GPU its side runs as a tf_keras
``LSTM`` whose weights tf_keras's own ``_convert_rnn_weights`` converted.

Inputs a file stores (initial states, sequence lengths) are used as stored and
fix the batch size; so a conversion that drops one fails here. Both sides are
also compared with the float64 reference of the source's weights (and stored
inputs), so a failure says which side is off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import reference
from ..compare import Comparison, Tolerance, compare, rounding_sensitivity
from ..errors import ConversionError
from ..io_types import LSTMInputs, LSTMResult
from ..spec import LSTMSpec
from ..weight_diagnosis import explain
from ._base import FileFormatError, FoundLSTM, StoredInputs


@dataclass(frozen=True)
class SideAbilities:
    """Which verify inputs a side takes (a file runner's answer to a runtime's Capabilities)."""

    initial_state: bool = True
    lengths: bool = True


@dataclass
class Side:
    """One network: how it runs, what it is called in the printout, what the file stores."""

    label: str
    run: Callable[[LSTMInputs], LSTMResult]
    capabilities: Any
    tolerance_scale: float = 1.0
    stored: StoredInputs | None = None
    name: str = ""  # short, for a case file's "source"


def side_for(found: FoundLSTM, spec: LSTMSpec, options: dict[str, Any] | None = None) -> Side:
    """The network ``found``'s file defines, ready to run (see the module docstring)."""
    if found.runner is not None:
        from .registry import KIND, function

        runner = KIND[found.runner].runner
        if runner is not None:
            return function(runner)(found, spec, options or {})
    return runtime_side(found, spec)


def runtime_side(found: FoundLSTM, spec: LSTMSpec) -> Side:
    from ..table import FORMAT_RUNTIMES, entry

    reasons = []
    for name in FORMAT_RUNTIMES.get(found.format, ()):
        row = entry(name)
        runtime = row.load()
        reason = runtime.unavailable_reason() or runtime.capabilities.refusal(spec)
        if reason is None:
            options = {**dict(row.format_options), **found.run_options}

            def run(inputs: LSTMInputs, r: Any = runtime, o: dict = options) -> LSTMResult:
                return r.run(spec, found.native, inputs, **o)

            label = f"{name} ({found.format} weights from {found.source})"
            return Side(label, run, runtime.capabilities, row.tolerance_scale, found.stored,
                        name)
        reasons.append(f"{name}: {reason}")
    if found.format == "cudnn":
        return _cudnn_on_cpu(found, spec, reasons)
    reasons_text = "; ".join(reasons)
    raise ConversionError(f"verify: nothing here runs {found.format} weights ({reasons_text})")


def _cudnn_on_cpu(found: FoundLSTM, spec: LSTMSpec, reasons: list[str]) -> Side:
    import tf_keras
    from tf_keras.src.saving.legacy.hdf5_format import _convert_rnn_weights

    from ..table import entry

    target = tf_keras.layers.LSTM(spec.units)  # only its class name steers the conversion
    native = []
    for k in range(0, len(found.native), 3):
        native += _convert_rnn_weights(target, list(found.native[k : k + 3]))
    row = entry("tf_keras")
    runtime = row.load()
    label = (f"tf_keras LSTM with CuDNNLSTM weights from {found.source} converted by tf_keras's "
             f"own _convert_rnn_weights ({'; '.join(reasons)})")
    return Side(label, lambda inputs: runtime.run(spec, native, inputs), runtime.capabilities,
                row.tolerance_scale, name="tf_keras")


def make_inputs(spec: LSTMSpec, rng: np.random.Generator, batch: int, steps: int,
                states: bool, lengths: bool) -> LSTMInputs:
    dtype = np.dtype(spec.dtype)
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(dtype)
    h0 = c0 = None
    if states:
        shape = (spec.layers, spec.directions, batch)
        h0 = rng.uniform(-1, 1, (*shape, spec.output_size)).astype(dtype)
        c0 = rng.uniform(-1, 1, (*shape, spec.units)).astype(dtype)
    valid = None
    if lengths and steps > 1:
        valid = rng.integers(1, steps + 1, size=batch)
        valid[0] = steps  # one full-length sequence keeps the output shape at T
    return LSTMInputs(x, h0, c0, valid)


def smoke_test(side: Side, spec: LSTMSpec) -> int | None:
    """Run ``side`` on a tiny input, so a side that cannot run fails before anything is
    written; its failure is a ConversionError naming the side. Returns the batch size the
    side's network fixes (None: any): stored inputs fix theirs, and a graph that squeezes
    its batch axis away (madmom's ONNX files) runs batch 1 only, so that is what it gets."""
    if side.stored is not None:
        _run_tiny(side, spec, side.stored.batch)
        return side.stored.batch
    try:
        _run_tiny(side, spec, 2)
        return None
    except ConversionError:
        pass
    _run_tiny(side, spec, 1)
    return 1


def _run_tiny(side: Side, spec: LSTMSpec, batch: int) -> None:
    steps = 2
    if side.stored is not None and side.stored.lengths is not None and side.stored.lengths.size:
        steps = max(steps, int(side.stored.lengths.max()))
    inputs = make_inputs(spec, np.random.default_rng(0), batch, steps, False, False)
    try:
        side.run(inputs)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"{side.label} does not run ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0][:200] if str(exc) else ''})"
                              ) from exc


def _plan(examples: int, stored: StoredInputs | None, batch: int | None = None
          ) -> list[tuple[int, int, bool, bool]]:
    """(batch, steps, initial states, lengths) per example: short and long, plain and padded.
    Stored inputs (or a graph that runs one batch size only) fix the batch, and the steps
    must cover stored lengths."""
    base = [(2, 5, False, False), (3, 17, True, False), (4, 40, True, True)]
    plan = [base[k % len(base)] for k in range(examples)]
    if stored is not None:
        batch = stored.batch
    if batch is None:
        return plan
    longest = int(stored.lengths.max()) if stored is not None and stored.lengths is not None \
        and stored.lengths.size else 0
    return [(batch, max(steps, longest), states, lengths) for _, steps, states, lengths in plan]


def _line(comparison: Comparison) -> str:
    return ", ".join(f"{d.name} {d.max_abs_diff:.3g}" for d in comparison.diffs)


def _reference(weights: Any, inputs: LSTMInputs, stored: StoredInputs | None) -> LSTMResult:
    """The float64 reference of the source as its file defines it (stored inputs included)."""
    h0, c0, lengths = inputs.h0, inputs.c0, inputs.lengths
    if stored is not None:
        h0 = stored.h0 if stored.h0 is not None else h0
        c0 = stored.c0 if stored.c0 is not None else c0
        lengths = stored.lengths if stored.lengths is not None else lengths
    if (h0 is None) != (c0 is None):  # one stored, the other zeros (ONNX's default)
        h0 = h0 if h0 is not None else np.zeros_like(c0)
        c0 = c0 if c0 is not None else np.zeros_like(h0)
    if lengths is not None:
        lengths = np.minimum(np.asarray(lengths), inputs.steps)
    return reference.lstm(weights, inputs.x, h0=h0, c0=c0, lengths=lengths)


def verify(source: FoundLSTM, target: FoundLSTM, *, examples: int = 3, seed: int = 0,
           out: Callable[[str], None] | None = None,
           options: dict[str, Any] | None = None) -> bool:
    """Run both files' networks on random inputs; print diffs; True when within tolerance."""
    if examples < 1:
        raise ConversionError(f"--examples: {examples}, expected at least 1")
    say = out or (lambda text: print(text, file=sys.stderr, flush=True))
    source_weights, target_weights = source.canonical(), target.canonical()
    spec = source_weights.spec
    a = side_for(source, spec, options)
    b = side_for(target, target_weights.spec, options)
    say(f"verify: source = {a.label}")
    say(f"verify: target = {b.label}")
    fixed = a.stored or b.stored
    if a.stored is not None:
        say(f"verify: the source stores {', '.join(a.stored.names())}: both networks run "
            f"with batch {a.stored.batch}; the target must compute the same")
    only = None if fixed is not None else smoke_test(a, spec)
    if only is not None:
        say(f"verify: the source's graph runs batch {only} only (it fails on batch 2, e.g. a "
            f"Squeeze of the batch axis): both networks run with batch {only}")
    say(f"verify: {examples} random input batches through both networks (the first one "
        "also builds them)")
    rng, ok = np.random.default_rng(seed), True
    for number, (batch, steps, states, lengths) in enumerate(_plan(examples, fixed, only), 1):
        states = states and a.capabilities.initial_state and b.capabilities.initial_state and \
            not _stores(a, b, "h0")
        lengths = lengths and a.capabilities.lengths and b.capabilities.lengths and \
            not _stores(a, b, "lengths")
        inputs = make_inputs(spec, rng, batch, steps, states, lengths)
        start = time.perf_counter()
        expected, actual = a.run(inputs), b.run(inputs)
        exact = _reference(source_weights, inputs, a.stored)
        # the one policy (equivalence.compare), the source's rounding sensitivity always shown
        sensitivity = rounding_sensitivity(source_weights, inputs, spec.dtype,
                                           lambda w, i: _reference(w, i, a.stored), exact)
        tolerance = Tolerance.for_case(spec.dtype, steps, max(
            a.tolerance_scale, b.tolerance_scale)).with_sensitivity(sensitivity)
        comparison = compare(expected, actual, tolerance)
        to_ref = [compare(exact, r, tolerance).max_abs_diff for r in (expected, actual)]
        flags = ", ".join(f for f, on in (("initial states", states), ("lengths", lengths)) if on)
        flags = f" ({flags})" if flags else ""
        say(f"[{number}/{examples}] batch={batch} steps={steps}{flags}: "
            f"max abs diff {_line(comparison)}; allowed {tolerance}, decided by: "
            f"{comparison.decided_by()}; "
            f"vs float64 reference: source {to_ref[0]:.3g}, target {to_ref[1]:.3g} "
            f"[{time.perf_counter() - start:.1f}s] {'ok' if comparison.ok else 'OVER TOLERANCE'}")
        if not comparison.ok:
            say(comparison.describe())
        ok = ok and comparison.ok
    if not ok:  # the two files' weights, compared in the canonical frame, name the mistakes
        named = explain(source_weights, target_weights).message()
        say(f"verify: diagnosis: {named or 'both files hold the same weights (within rounding)'}")
    say(f"verify: {'PASSED' if ok else 'FAILED'} ({examples} random input batches)")
    return ok


def _stores(a: Side, b: Side, what: str) -> bool:
    return any(s.stored is not None and getattr(s.stored, what) is not None for s in (a, b))


# ---------------------------------------------------------------- the NeoML hand-off


def check_neoml_output(path: Path) -> None:
    if not path.name.endswith(".npz"):
        raise FileFormatError(path, "a neoml output must end in .npz (a case file)")


def write_neoml_case(path: Path, weights: Any, job: Any) -> list[str]:
    """A NeoML case file: the weights plus the source network's results on random inputs.

    The case file's inputs are the network's inputs, so stored inputs cannot travel in
    it (the registry row carries none); the source runs them as stored regardless.
    """
    from ._base import publish, temporary_name
    from .neoml import write_case

    check_neoml_output(path)
    side = side_for(job.found, weights.spec, job.options)
    stored = side.stored
    batch = stored.batch if stored is not None else 3
    states = (stored is None or stored.h0 is None) and side.capabilities.initial_state
    inputs = make_inputs(weights.spec, np.random.default_rng(job.seed), batch, 12, states, False)
    expected = side.run(inputs)
    staged = temporary_name(path)  # write_case publishes without replacing; then this does
    try:
        lines = write_case(staged, weights, inputs, expected,
                           side.name or side.label.split(" ")[0])
        publish(staged, path, job.replace)
    finally:
        staged.unlink(missing_ok=True)
    return [line.replace(str(staged), str(path)) for line in lines]
