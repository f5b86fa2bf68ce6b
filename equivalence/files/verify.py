"""``convert --verify``: build both networks for real from the two files and compare them.

Each side runs in the runtime :data:`equivalence.table.FORMAT_RUNTIMES` names
for its format, on the native weights read back from its own file. CuDNNLSTM
has no CPU kernel: without a GPU its side runs as a tf_keras ``LSTM`` whose
weights tf_keras's own ``_convert_rnn_weights`` converted (the conversion
tf_keras applies when it loads a CuDNNLSTM .h5 into an LSTM), an
implementation independent of this project's converter. Both sides are also
compared with the float64 reference, so a failure says which side is off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import reference
from ..compare import Comparison, Tolerance, compare
from ..errors import ConversionError
from ..io_types import LSTMInputs, LSTMResult
from ..spec import LSTMSpec
from ._base import FoundLSTM


@dataclass
class Side:
    """One network: how it runs and what it is called in the printout."""

    label: str
    run: Callable[[LSTMInputs], LSTMResult]
    capabilities: Any
    tolerance_scale: float = 1.0


def side_for(found: FoundLSTM, spec: LSTMSpec) -> Side:
    """The runtime that runs ``found``'s native weights here (see the module docstring)."""
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
            return Side(label, run, runtime.capabilities, row.tolerance_scale)
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
                row.tolerance_scale)


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


def _plan(examples: int) -> list[tuple[int, int, bool, bool]]:
    """(batch, steps, initial states, lengths) per example: short and long, plain and padded."""
    base = [(2, 5, False, False), (3, 17, True, False), (4, 40, True, True)]
    return [base[k % len(base)] for k in range(examples)]


def _line(comparison: Comparison) -> str:
    return ", ".join(f"{d.name} {d.max_abs_diff:.3g}" for d in comparison.diffs)


def verify(source: FoundLSTM, target: FoundLSTM, *, examples: int = 3, seed: int = 0,
           out: Callable[[str], None] | None = None) -> bool:
    """Run both files' networks on random inputs; print diffs; True when within tolerance."""
    say = out or (lambda text: print(text, file=sys.stderr, flush=True))
    source_weights, target_weights = source.canonical(), target.canonical()
    spec = source_weights.spec
    a, b = side_for(source, spec), side_for(target, target_weights.spec)
    say(f"verify: source = {a.label}")
    say(f"verify: target = {b.label}")
    say(f"verify: {examples} random input batches through both networks (the first one "
        "also builds them)")
    rng, ok = np.random.default_rng(seed), True
    for number, (batch, steps, states, lengths) in enumerate(_plan(examples), 1):
        states = states and a.capabilities.initial_state and b.capabilities.initial_state
        lengths = lengths and a.capabilities.lengths and b.capabilities.lengths
        inputs = make_inputs(spec, rng, batch, steps, states, lengths)
        start = time.perf_counter()
        expected, actual = a.run(inputs), b.run(inputs)
        tolerance = Tolerance.for_case(spec.dtype, steps,
                                       max(a.tolerance_scale, b.tolerance_scale))
        comparison = compare(expected, actual, tolerance)
        exact = reference.lstm(source_weights, inputs.x, h0=inputs.h0, c0=inputs.c0,
                               lengths=inputs.lengths)
        to_ref = [compare(exact, r, tolerance).max_abs_diff for r in (expected, actual)]
        flags = ", ".join(f for f, on in (("initial states", states), ("lengths", lengths)) if on)
        flags = f" ({flags})" if flags else ""
        say(f"[{number}/{examples}] batch={batch} steps={steps}{flags}: "
            f"max abs diff {_line(comparison)}; allowed {tolerance}; "
            f"vs float64 reference: source {to_ref[0]:.3g}, target {to_ref[1]:.3g} "
            f"[{time.perf_counter() - start:.1f}s] {'ok' if comparison.ok else 'OVER TOLERANCE'}")
        if not comparison.ok:
            say(comparison.describe())
        ok = ok and comparison.ok
    say(f"verify: {'PASSED' if ok else 'FAILED'} ({examples} random input batches)")
    return ok
