"""The runners of ``convert --verify`` and ``compare``: each file's network as the file defines it.

A side is the network one file defines. Where the file's kind has a runner in
the registry, that runner runs it the way the file itself would: an ONNX
file's own LSTM nodes with every stored input (:mod:`~equivalence.files.onnx.run`),
a Keras file's layers rebuilt from their own config with masks and
``go_backwards`` (:mod:`~equivalence.files.keras.run`), a TorchScript
archive's module (opt-in, it runs the archive's code). Otherwise the file is
weights only (a state_dict, a checkpoint) and the runtime
:data:`equivalence.table.FORMAT_RUNTIMES` names for its format runs them.
CuDNNLSTM has no CPU kernel: without a GPU its side runs as a tf_keras
``LSTM`` whose weights tf_keras's own ``_convert_rnn_weights`` converted; a
CuDNNGRU's (which no row runs, GPU or not) as a tf_keras ``GRU(reset_after=True)``
converted the same way.

Inputs a file stores (initial states, sequence lengths) are used as stored and
fix the batch size; so a conversion that drops one fails here. Both sides are
also compared with the float64 reference of the source's weights (and stored
inputs), so a failure says which side is off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.capabilities import INITIAL_STATE, LENGTHS
from equivalence.errors import ConversionError
from equivalence.files._base import FileFormatError, FoundLSTM, StoredInputs
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec


@dataclass(frozen=True)
class SideAbilities:
    """Which verify inputs a side takes (a file runner's answer to a runtime's Capabilities)."""

    initial_state: bool = True
    lengths: bool = True

    def __contains__(self, name: object) -> bool:
        """Asked as a runtime's Capabilities are: by the input feature's name."""
        return bool({INITIAL_STATE: self.initial_state, LENGTHS: self.lengths}.get(str(name)))


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
        from equivalence.files.registry import KIND, function

        runner = KIND[found.runner].runner
        if runner is not None:
            return function(runner)(found, spec, options or {})
    return runtime_side(found, spec)


def runtime_side(found: FoundLSTM, spec: LSTMSpec) -> Side:
    from equivalence.table import FORMAT_RUNTIMES, entry

    reasons = []
    for name in FORMAT_RUNTIMES.get(found.format, ()):
        row = entry(name)
        runtime = row.load()
        reason = runtime.unavailable_reason() or runtime.capabilities.refusal(spec)
        if reason is None:
            options = {**dict(row.format_options), **found.run_options}

            def run(inputs: LSTMInputs, r: Any = runtime, o: dict = options) -> LSTMResult:
                return r.run(spec, found.native, with_stored(inputs, found.stored), **o)

            label = f"{name} ({found.format} weights from {found.source})"
            return Side(label, run, runtime.capabilities, row.tolerance_scale, found.stored,
                        name)
        reasons.append(f"{name}: {reason}")
    if found.format == "cudnn":
        return _cudnn_on_cpu(found, spec, reasons)
    reasons_text = "; ".join(reasons)
    raise ConversionError(f"verify: nothing here runs {found.format} weights ({reasons_text})")


def with_stored(inputs: LSTMInputs, stored: StoredInputs | None) -> LSTMInputs:
    """``inputs`` with the ones the file stores in place (a runtime run of weights that a
    file keeps beside their inputs, as madmom's learned hid_init: the file's function)."""
    if stored is None:
        return inputs
    lengths = inputs.lengths
    if stored.lengths is not None:
        lengths = np.minimum(stored.lengths, inputs.steps)
    return LSTMInputs(inputs.x, stored.h0 if stored.h0 is not None else inputs.h0,
                      stored.c0 if stored.c0 is not None else inputs.c0, lengths,
                      inputs.time_major)


def _cudnn_on_cpu(found: FoundLSTM, spec: LSTMSpec, reasons: list[str]) -> Side:
    import tf_keras
    from tf_keras.src.saving.legacy.hdf5_format import _convert_rnn_weights

    from equivalence.table import entry

    # Only the target's class (and a GRU's reset_after) steer the conversion.
    gru = spec.cell == "gru"
    target = (tf_keras.layers.GRU(spec.units, reset_after=True) if gru
              else tf_keras.layers.LSTM(spec.units))
    native = []
    for k in range(0, len(found.native), 3):
        native += _convert_rnn_weights(target, list(found.native[k : k + 3]))
    row = entry("tf_keras")
    runtime = row.load()
    kind = "GRU" if gru else "LSTM"
    label = (f"tf_keras {kind} with CuDNN{kind} weights from {found.source} converted by "
             f"tf_keras's own _convert_rnn_weights ({'; '.join(reasons)})")
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


# ---------------------------------------------------------------- the NeoML hand-off


def check_neoml_output(path: Path) -> None:
    if not path.name.endswith(".npz"):
        raise FileFormatError(path, "a neoml output must end in .npz (a case file)")


def write_neoml_case(path: Path, weights: Any, job: Any) -> list[str]:
    """A NeoML case file: the weights plus the source network's results on random inputs.

    The case file's inputs are the network's inputs, so stored inputs cannot travel in
    it (the registry row carries none); the source runs them as stored regardless.
    """
    from equivalence.files._base import publish, temporary_name
    from equivalence.files.neoml.case_file import write_case

    check_neoml_output(path)
    side = side_for(job.found, weights.spec, job.options)
    stored = side.stored
    batch = stored.batch if stored is not None else 3
    states = (stored is None or stored.h0 is None) and INITIAL_STATE in side.capabilities
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
