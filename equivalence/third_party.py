"""Third-party LSTM converters under test, judged the way the suite judges its own.

This module owns the list of converters people use to move an LSTM between
frameworks, the configurations each one claims to support (stacked layers,
bidirectional, initial states, sequence lengths, dynamic shapes), running
Hypothesis-drawn cases through each configuration, and the entries the
report's results JSON keeps under ``third_party``.

Converters (each one runs the real framework code people call):

* ``tf_keras CuDNNLSTM <-> LSTM (.h5)``: weights saved from a ``CuDNNLSTM``
  model to a legacy .h5 file and loaded into an ``LSTM`` model of the same
  architecture (tf_keras converts on load), and the other way round.
* ``torch.onnx.export``: an ``nn.LSTM`` exported (default dynamo exporter and
  the TorchScript one) and run in ONNX Runtime, judged against PyTorch itself.
* ``tf2onnx``: a Keras 3 LSTM model converted with ``from_keras`` and run in
  ONNX Runtime, judged against the Keras model itself.
* ``onnx2torch``: an ONNX graph of ``LSTM`` nodes converted to a torch module.
* ``nobuco``: an ``nn.LSTM`` converted to a Keras model, judged against PyTorch.

Judging: a case's result is compared with the source framework's own output
(or the float64 reference where the source cannot run on a CPU), under the
suite's tolerance; a failure gets the float64 recheck and
:func:`equivalence.diagnose.diagnose`. A converter that raises, or produces a
model that refuses the inputs, is a failed example with the error as the
problem, so Hypothesis shrinks it like any mismatch.

Known third-party bugs are declared on their configuration
(:class:`KnownFailure`, with text the failure must show). Such a failure is
recorded as an expected failure with its reason and minimal case; a failure
that is not declared, or a declared one that stops reproducing, is
``unexpected`` (the tests fail on it). Configurations are never narrowed to
dodge a bug.

Converters that cannot import next to the main environment's frameworks
(nobuco needs Keras 2 and torchvision; onnx2torch needs torchvision, whose
PyPI wheels need a CUDA build of torch) run in a side interpreter
(:data:`SIDE_PYTHON_ENV`, default ``.venv-thirdparty`` beside the package) as
``python -m equivalence.third_party``; without one they are recorded as not
runnable here, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import math
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import reference
from .compare import Comparison, TensorDiff, Tolerance, compare
from .convert import from_canonical, to_canonical
from .io_types import LSTMInputs, LSTMResult
from .runtimes.base import split_states, zero_padding
from .spec import LSTMSpec
from .strategies import BATCHES, INPUT_SIZES, STEPS, UNITS, Case

SIDE_PYTHON_ENV = "EQUIVALENCE_THIRD_PARTY_PYTHON"
DEFAULT_SIDE_VENV = Path(__file__).resolve().parent.parent / ".venv-thirdparty"
SIDE_TIMEOUT_S = 300
# After a first failure, Hypothesis shrinks; conversions cost up to a second each,
# so shrinking stops after this many new examples (or seconds) and keeps the
# smallest failing case found so far (every recorded case really failed).
SHRINK_CALLS = 4
SHRINK_SECONDS = 4.0
# Configurations over 1-2 layers and 1-2 directions.
_STACKED_BIDI: dict[str, Any] = {"layers": (1, 2), "directions": (1, 2)}
# Dynamic-shape configurations export at this (batch, steps) and run the drawn shapes.
EXPORT_SHAPE = (2, 4)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes some converters put in their errors

# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class KnownFailure:
    """A third-party bug: why it fails, and text its failure message or diagnosis shows."""

    reason: str
    signature: str


@dataclass(frozen=True)
class Configuration:
    """One claimed configuration: the shapes drawn, the inputs given, converter options."""

    name: str
    layers: tuple[int, ...] = (1,)
    directions: tuple[int, ...] = (1,)
    initial_state: bool = False
    lengths: bool = False
    options: tuple[tuple[str, Any], ...] = ()
    known_failure: KnownFailure | None = None

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


def _draw_inputs(draw: Any, spec: LSTMSpec, config: Configuration) -> LSTMInputs:
    """Inputs with exactly the configuration's features (states and lengths always present)."""
    from hypothesis import strategies as st

    batch = draw(st.sampled_from(BATCHES))
    steps = draw(st.sampled_from(STEPS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(np.float32)
    h0 = c0 = lengths = None
    if config.initial_state:
        shape = (spec.layers, spec.directions, batch)
        h0 = rng.uniform(-1, 1, (*shape, spec.output_size)).astype(np.float32)
        c0 = rng.uniform(-1, 1, (*shape, spec.units)).astype(np.float32)
    if config.lengths:
        lengths = rng.integers(1, steps + 1, size=batch)
        lengths[rng.integers(batch)] = steps  # frameworks size outputs by the longest sequence
    return LSTMInputs(x, h0, c0, lengths)


def configuration_cases(config: Configuration) -> Any:
    """Hypothesis strategy of float32 cases for ``config``."""
    from hypothesis import strategies as st

    from .strategies import lstm_weights

    @st.composite
    def cases(draw: Any) -> Case:
        spec = LSTMSpec(
            input_size=draw(st.sampled_from(INPUT_SIZES)),
            units=draw(st.sampled_from(UNITS)),
            layers=draw(st.sampled_from(config.layers)),
            directions=draw(st.sampled_from(config.directions)),
        )
        weights = draw(lstm_weights(spec))
        return Case(spec, weights, _draw_inputs(draw, spec, config))

    return cases()


# --------------------------------------------------------------------------- judging


def _tolerance(case: Case) -> Tolerance:
    return Tolerance.for_case(case.spec.dtype, case.inputs.steps)


def reference_result(case: Case) -> LSTMResult:
    inputs = case.inputs
    return reference.lstm(case.weights, inputs.x, h0=inputs.h0, c0=inputs.c0,
                          lengths=inputs.lengths)


def failed(label: str, case: Case, problem: str) -> Any:
    """A failed example whose converted model could not be made or run (``problem`` says why)."""
    from .harness import Outcome

    diff = TensorDiff("output", math.inf, (), 0, 0, problem)
    return Outcome(label, case, Comparison((diff,), _tolerance(case)))


def judge_result(label: str, case: Case, expected: LSTMResult, actual: LSTMResult,
                 expected_name: str) -> Any:
    """Compare the converted model's result with ``expected``; recheck in float64 on failure."""
    from .harness import Outcome, blame

    tol = _tolerance(case)
    comparison = compare(expected, actual, tol)
    if comparison.ok:
        return Outcome(label, case, comparison, actual=actual)
    results = {expected_name: expected, "converted": actual}
    if expected_name == "reference":
        results = {"converted": actual}
    return Outcome(label, case, comparison, blame(case, results, tol), actual=actual)


def _error_text(exc: BaseException) -> str:
    text = " ".join(_ANSI.sub("", str(exc)).split())
    return f"{type(exc).__name__}: {text[:400]}"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the converters' warnings and progress prints while they run."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        yield


class _BoundedJudge:
    """Memoizes outcomes and caps the cost of shrinking (see :data:`SHRINK_CALLS`).

    Once the cap is reached, new candidates are answered with a pass without
    running, so Hypothesis keeps the smallest failure it has verified; replays
    of a verified case return its recorded outcome.
    """

    def __init__(self, judge: Callable[[Case], Any]) -> None:
        self.judge = judge
        self.memo: dict[bytes, Any] = {}
        self.failed_at: float | None = None
        self.calls_after_failure = 0

    def __call__(self, case: Case) -> Any:
        from .harness import Outcome

        key = pickle.dumps(case)
        if key in self.memo:
            return self.memo[key]
        if self.failed_at is not None:
            self.calls_after_failure += 1
            spent = time.perf_counter() - self.failed_at
            if self.calls_after_failure > SHRINK_CALLS or spent > SHRINK_SECONDS:
                return Outcome("shrink budget spent", case, Comparison((), _tolerance(case)))
        outcome = self.judge(case)
        self.memo[key] = outcome
        if not outcome.ok and self.failed_at is None:
            self.failed_at = time.perf_counter()
        return outcome


# --------------------------------------------------------------------------- converters


class Converter:
    """A third-party converter: its configurations and how one case is judged."""

    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]]  # distributions whose versions identify the run
    imports: ClassVar[tuple[str, ...]]  # modules that must import for it to run here
    configurations: ClassVar[tuple[Configuration, ...]]
    not_claimed: ClassVar[str] = ""  # configurations left out, and why

    def unavailable_reason(self) -> str | None:
        """None when it can run in this interpreter, else why not."""
        for module in self.imports:
            try:
                with quiet():
                    importlib.import_module(module)
            except Exception as exc:  # any import failure means "not runnable here"
                return f"import {module} failed: {_error_text(exc)}"
        return None

    def version(self) -> str:
        """``name version`` of each package (``a|b``: the first of the two installed)."""
        return ", ".join(_version(p) for p in self.packages)

    def judge(self, config: Configuration, case: Case) -> Any:
        """Convert, run and compare one case; a raising converter is a failed example."""
        label = f"{self.name} [{config.name}]"
        try:
            with quiet():
                return self.check(label, config, case)
        except Exception as exc:  # the converter or its output failing is the finding
            return failed(label, case, _error_text(exc))

    def check(self, label: str, config: Configuration, case: Case) -> Any:
        raise NotImplementedError


def _version(package: str) -> str:
    names = package.split("|")
    for name in names:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return f"{names[0]} not installed"


# ----- tf_keras legacy .h5 CuDNNLSTM <-> LSTM


class CuDNNH5Converter(Converter):
    """tf_keras's legacy-.h5 weight conversion between ``CuDNNLSTM`` and ``LSTM``.

    ``CuDNNLSTM`` has no CPU kernel but builds, takes weights and saves on a
    CPU. CuDNNLSTM -> LSTM: the LSTM model's loaded weights run in the suite's
    tf_keras runtime (the same layers) against the float64 reference.
    LSTM -> CuDNNLSTM: the CuDNNLSTM model's loaded weights are read by
    equivalence's ``cudnn`` format (cuDNN itself needs a GPU) and run in the
    reference. ``write_cudnn`` makes the CuDNNLSTM weights (tests swap in a
    wrong writer to show the check bites).
    """

    name = "tf_keras CuDNNLSTM <-> LSTM (legacy .h5)"
    packages = ("tf_keras", "tensorflow|tensorflow-cpu", "h5py")
    imports = ("tf_keras", "h5py")
    configurations = (
        Configuration("CuDNNLSTM -> LSTM, 1-2 layers", layers=(1, 2)),
        Configuration("CuDNNLSTM -> LSTM, bidirectional, 1-2 layers", layers=(1, 2),
                      directions=(2,)),
        Configuration("CuDNNLSTM -> LSTM, initial states, 1-2 layers, 1-2 directions",
                      layers=(1, 2), directions=(1, 2), initial_state=True),
        Configuration("LSTM -> CuDNNLSTM, 1-2 layers, 1-2 directions", layers=(1, 2),
                      directions=(1, 2), options=(("direction", "to_cudnn"),)),
    )
    not_claimed = "sequence lengths: CuDNNLSTM refuses masks ('Masking is not supported')"

    def __init__(self, write_cudnn: Callable[[Any], list[np.ndarray]] | None = None) -> None:
        self.write_cudnn = write_cudnn or (lambda weights: from_canonical(weights, "cudnn"))
        self._models: dict[tuple[LSTMSpec, str], Any] = {}

    def check(self, label: str, config: Configuration, case: Case) -> Any:
        spec = case.spec
        cudnn, lstm = self._model(spec, "cudnn"), self._model(spec, "lstm")
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "weights.h5")
            if config.option("direction") == "to_cudnn":
                lstm.set_weights(from_canonical(case.weights, "keras"))
                lstm.save_weights(path)
                cudnn.load_weights(path)
                weights = to_canonical(cudnn.get_weights(), "cudnn", directions=spec.directions)
                inputs = case.inputs
                actual = reference.lstm(weights, inputs.x, h0=inputs.h0, c0=inputs.c0,
                                        lengths=inputs.lengths)
            else:
                cudnn.set_weights(self.write_cudnn(case.weights))
                cudnn.save_weights(path)
                lstm.load_weights(path)
                actual = self._run_lstm(case, lstm.get_weights())
        return judge_result(label, case, reference_result(case), actual, "reference")

    @staticmethod
    def _run_lstm(case: Case, native: list[np.ndarray]) -> LSTMResult:
        from . import harness, table

        return harness.run(table.entry("tf_keras"), case, native)

    def _model(self, spec: LSTMSpec, kind: str) -> Any:
        key = (spec, kind)
        if key not in self._models:
            import tf_keras

            from .runtimes.tf_keras import CUDNN_LSTM_IMPORT

            layer_class = (importlib.import_module(CUDNN_LSTM_IMPORT).CuDNNLSTM
                           if kind == "cudnn" else tf_keras.layers.LSTM)
            model = tf_keras.Sequential([tf_keras.Input((None, spec.input_size))])
            for _ in range(spec.layers):
                # Zero initializers: the weights are overwritten, and QR is slow.
                layer = layer_class(spec.units, return_sequences=True,
                                    kernel_initializer="zeros", recurrent_initializer="zeros")
                model.add(tf_keras.layers.Bidirectional(layer) if spec.directions == 2 else layer)
            self._models[key] = model
        return self._models[key]


# ----- torch.onnx.export


_DYNAMIC_TIME_BUG = KnownFailure(
    reason=(
        "torch.onnx.export(dynamo=True) fixes nn.LSTM's time dimension to the example "
        "input's length although dynamic_shapes marks it dynamic: torch.export raises "
        "'Constraints violated (time)', torch.onnx catches that and re-exports with its "
        "suggested fix (time = 4) without a word, so the ONNX model's x is declared with "
        "T=4 and ONNX Runtime refuses other lengths"
    ),
    signature="Got invalid dimensions",
)
_PACKED_DYNAMO = KnownFailure(
    reason=(
        "sequence lengths are not expressible with the default (dynamo) exporter: "
        "torch.export cannot trace pack_padded_sequence/pad_packed_sequence, so export "
        "fails (TorchExportError); the TorchScript exporter maps them to sequence_lens"
    ),
    signature="TorchExportError",
)


class TorchOnnxExportConverter(Converter):
    """``torch.onnx.export`` of an ``nn.LSTM`` (batch_first), run in ONNX Runtime.

    Judged against PyTorch's own output of the exported module. Initial states
    are model inputs; sequence lengths go through ``pack_padded_sequence`` (the
    only way to give them to ``nn.LSTM``). Each example is a new export: the
    weights are baked into the ONNX file, which is what is under test.
    """

    name = "torch.onnx.export"
    packages = ("torch", "onnxscript", "onnx", "onnxruntime")
    imports = ("torch", "onnx", "onnxruntime", "onnxscript")
    configurations = (
        Configuration("dynamo exporter (default), 1-2 layers, 1-2 directions", **_STACKED_BIDI),
        Configuration("dynamo exporter, initial states as inputs, 1-2 layers, 1-2 directions",
                      initial_state=True, **_STACKED_BIDI),
        Configuration("dynamo exporter, dynamic batch and time (dynamic_shapes), exported at "
                      "B=2 T=4, 1-2 layers, 1-2 directions", options=(("dynamic", True),),
                      known_failure=_DYNAMIC_TIME_BUG, **_STACKED_BIDI),
        Configuration("dynamo exporter, sequence lengths (pack_padded_sequence)", lengths=True,
                      known_failure=_PACKED_DYNAMO),
        Configuration("TorchScript exporter (dynamo=False), initial states, 1-2 layers, "
                      "1-2 directions", initial_state=True, options=(("dynamo", False),),
                      **_STACKED_BIDI),
        Configuration("TorchScript exporter, sequence lengths (pack_padded_sequence -> "
                      "sequence_lens), 1-2 layers, 1-2 directions", lengths=True,
                      options=(("dynamo", False),), **_STACKED_BIDI),
        Configuration("TorchScript exporter, dynamic batch and time (dynamic_axes), exported "
                      "at B=2 T=4, 1-2 layers, 1-2 directions",
                      options=(("dynamo", False), ("dynamic", True)), **_STACKED_BIDI),
    )

    def __init__(self) -> None:
        self._modules: dict[tuple[LSTMSpec, bool, bool], Any] = {}

    def check(self, label: str, config: Configuration, case: Case) -> Any:
        import torch

        has_state, has_lengths = config.initial_state, config.lengths
        module = self._module(case.spec, has_state, has_lengths)
        native = from_canonical(case.weights, "torch")
        module.lstm.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in
                                     native.items()})
        feeds = _torch_feeds(case, has_state, has_lengths)
        with torch.no_grad():
            expected = _torch_result(case, module(*[torch.from_numpy(a) for a in feeds.values()]))
        example = feeds
        if config.option("dynamic"):
            example = _torch_feeds(_example_case(case), has_state, has_lengths)
        model = _export(torch, module, example, dynamo=config.option("dynamo", True),
                        dynamic=bool(config.option("dynamic")))
        outputs = _onnxruntime_run(model, feeds)
        actual = _torch_result(case, outputs)
        return judge_result(label, case, expected, actual, "torch")

    def _module(self, spec: LSTMSpec, has_state: bool, has_lengths: bool) -> Any:
        key = (spec, has_state, has_lengths)
        if key not in self._modules:
            self._modules[key] = _torch_wrapper(spec, has_state, has_lengths)
        return self._modules[key]


def _torch_wrapper(spec: LSTMSpec, has_state: bool, has_lengths: bool,
                   batch_first: bool = True) -> Any:
    """An nn.Module around nn.LSTM whose forward takes exactly the configured inputs."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    lstm = torch.nn.LSTM(spec.input_size, spec.units, num_layers=spec.layers,
                         bidirectional=spec.directions == 2, batch_first=batch_first)

    def run(lstm: Any, x: Any, state: Any, lengths: Any) -> Any:
        if lengths is None:
            y, (h, c) = lstm(x, state)
            return y, h, c
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        y, (h, c) = lstm(packed, state)
        steps = x.shape[1 if batch_first else 0]
        y, _ = pad_packed_sequence(y, batch_first=batch_first, total_length=steps)
        return y, h, c

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = lstm

        def forward(self, x: Any) -> Any:
            return run(self.lstm, x, None, None)

    class Stateful(Plain):
        def forward(self, x: Any, h0: Any, c0: Any) -> Any:  # type: ignore[override]
            return run(self.lstm, x, (h0, c0), None)

    class Packed(Plain):
        def forward(self, x: Any, lengths: Any) -> Any:  # type: ignore[override]
            return run(self.lstm, x, None, lengths)

    if has_state and has_lengths:
        raise ValueError("initial states with lengths: not a configuration here")
    chosen = Stateful if has_state else Packed if has_lengths else Plain
    return chosen().eval()


def _torch_feeds(case: Case, has_state: bool, has_lengths: bool) -> dict[str, np.ndarray]:
    """Named model inputs: x (B, T, I), h0/c0 (L*D, B, H), lengths (B,) int64."""
    spec, inputs = case.spec, case.inputs
    feeds = {"x": np.ascontiguousarray(inputs.x, dtype=np.float32)}
    if has_state:
        for name, value in (("h0", inputs.h0), ("c0", inputs.c0)):
            flat = np.asarray(value).reshape(spec.layers * spec.directions, inputs.batch, -1)
            feeds[name] = np.ascontiguousarray(flat, dtype=np.float32)
    if has_lengths:
        feeds["lengths"] = np.asarray(inputs.lengths, dtype=np.int64)
    return feeds


def _example_case(case: Case) -> Case:
    """The case's spec at :data:`EXPORT_SHAPE`: the example a dynamic-shape export sees."""
    batch, steps = EXPORT_SHAPE
    spec, rng = case.spec, np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(np.float32)
    h0 = c0 = lengths = None
    if case.inputs.h0 is not None:
        h0 = np.zeros((spec.layers, spec.directions, batch, spec.units), np.float32)
        c0 = np.zeros_like(h0)
    if case.inputs.lengths is not None:
        lengths = np.array([steps] + [max(steps - 1, 1)] * (batch - 1))
    return Case(spec, case.weights, LSTMInputs(x, h0, c0, lengths))


def _export(torch: Any, module: Any, example: dict[str, np.ndarray], *, dynamo: bool,
            dynamic: bool) -> bytes:
    """Export ``module`` on the example inputs; the serialized ONNX model."""
    names = list(example)
    args = tuple(torch.from_numpy(a) for a in example.values())
    outputs = ["y", "h", "c"]
    if dynamo:
        options: dict[str, Any] = {}
        if dynamic:
            batch, steps = torch.export.Dim("batch"), torch.export.Dim("time")
            axes = {"x": {0: batch, 1: steps}, "h0": {1: batch}, "c0": {1: batch},
                    "lengths": {0: batch}}
            options["dynamic_shapes"] = tuple(axes[n] for n in names)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(module, args, dynamo=True, input_names=names,
                                    output_names=outputs, verbose=False, **options)
        return program.model_proto.SerializeToString()
    buffer = io.BytesIO()
    axes = {"x": {0: "batch", 1: "time"}, "h0": {1: "batch"}, "c0": {1: "batch"},
            "lengths": {0: "batch"}, "y": {0: "batch", 1: "time"}, "h": {1: "batch"},
            "c": {1: "batch"}}
    dynamic_axes = {n: axes[n] for n in names + outputs} if dynamic else None
    torch.onnx.export(module, args, buffer, dynamo=False, input_names=names,
                      output_names=outputs, dynamic_axes=dynamic_axes)
    return buffer.getvalue()


def _onnxruntime_run(model: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    return session.run(None, {name: feeds[name] for name in wanted})


def _torch_result(case: Case, outputs: Sequence[Any]) -> LSTMResult:
    """(y (B, T, D*H), h, c (L*D, B, H)) from torch or ORT -> the contract."""
    y, h, c = (np.asarray(o.detach().numpy() if hasattr(o, "detach") else o) for o in outputs)
    return LSTMResult(y, split_states(h, case.spec), split_states(c, case.spec))


# ----- tf2onnx


class Tf2OnnxConverter(Converter):
    """tf2onnx's ``convert.from_keras`` on a Keras 3 functional LSTM model, run in ORT.

    Judged against the Keras model's own output (the converter's job is to
    reproduce it); how far that model itself is from the float64 reference is
    kept in the configuration's note. Sequence lengths use a ``Masking``
    layer (padded steps of x set to 0), as Keras users give them.
    """

    name = "tf2onnx"
    packages = ("tf2onnx", "tensorflow|tensorflow-cpu", "keras", "onnxruntime")
    imports = ("tf2onnx", "keras", "onnxruntime")
    configurations = (
        Configuration("LSTM / Bidirectional(LSTM), 1-2 layers, 1-2 directions", **_STACKED_BIDI),
        Configuration("initial states as inputs, 1-2 layers, 1-2 directions",
                      initial_state=True, **_STACKED_BIDI),
        Configuration("sequence lengths (Masking layer), 1-2 layers, 1-2 directions",
                      lengths=True, **_STACKED_BIDI),
        Configuration("sequence lengths (Masking layer) and initial states, 1-2 layers, "
                      "1-2 directions", lengths=True, initial_state=True, **_STACKED_BIDI),
    )

    def __init__(self) -> None:
        self._models: dict[tuple[LSTMSpec, bool, bool], Any] = {}
        self.notes: dict[str, str] = {}
        self._worst: dict[str, float] = {}

    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()
        if reason is None:
            from .runtimes.keras import import_keras3

            backend = import_keras3().backend.backend()
            if backend != "tensorflow":
                return f"Keras 3 backend is {backend!r}; tf2onnx needs 'tensorflow'"
        return reason

    def check(self, label: str, config: Configuration, case: Case) -> Any:
        import tensorflow as tf
        import tf2onnx

        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        spec, has_state, has_mask = case.spec, config.initial_state, config.lengths
        model = self._model(spec, has_state, has_mask)
        model.set_weights(from_canonical(case.weights, "keras"))
        feeds = _keras_feeds(case, has_state)
        signature = [tf.TensorSpec(i.shape, tf.float32, name=n)
                     for n, i in zip(feeds, model.inputs, strict=True)]
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature)
        outputs = _onnxruntime_run(proto.SerializeToString(), feeds)
        own = model(list(feeds.values()) if len(feeds) > 1 else feeds["x"], training=False)
        expected = _keras_result(case, [np.asarray(t) for t in own])
        actual = _keras_result(case, outputs)
        self._note_source(config, case, expected)
        return judge_result(label, case, expected, actual, "keras")

    def _note_source(self, config: Configuration, case: Case, keras_result: LSTMResult) -> None:
        """Note the Keras source model's worst distance from the float64 reference, and why.

        Not tf2onnx's fault (it is judged against that model), but worth
        knowing: the converted model is only as right as its source.
        """
        tol = _tolerance(case)
        comparison = compare(reference_result(case), keras_result, tol)
        worst = self._worst.get(config.name, 0.0)
        if comparison.ok or comparison.max_abs_diff <= worst:
            return
        self._worst[config.name] = comparison.max_abs_diff
        why = ""
        if case.inputs.lengths is not None and compare(_unmasked(case), keras_result, tol).ok:
            why = ("; it matches the reference run without the lengths: the Keras model "
                   "ignored the mask")
        self.notes[config.name] = (
            f"the Keras source model itself is {comparison.max_abs_diff:.3g} from the float64 "
            f"reference on {case.describe()}{why}")

    def _model(self, spec: LSTMSpec, has_state: bool, has_mask: bool) -> Any:
        key = (spec, has_state, has_mask)
        if key not in self._models:
            self._models[key] = _keras3_model(spec, has_state, has_mask)
        return self._models[key]


def _keras3_model(spec: LSTMSpec, has_state: bool, has_mask: bool) -> Any:
    """Input x [, h/c per layer and direction] -> [sequence, h, c per layer and direction]."""
    from .runtimes.keras import import_keras3

    keras = import_keras3()
    x = keras.Input((None, spec.input_size), name="x")
    inputs, sequence = [x], x
    finals: list[Any] = []
    if has_mask:
        sequence = keras.layers.Masking(0.0)(sequence)
    for layer in range(spec.layers):
        state = []
        if has_state:
            for direction in range(spec.directions):
                for part in ("h", "c"):
                    state.append(keras.Input((spec.units,), name=f"{part}{layer}_{direction}"))
        inputs += state
        lstm = keras.layers.LSTM(spec.units, return_sequences=True, return_state=True)
        wrapped = keras.layers.Bidirectional(lstm) if spec.directions == 2 else lstm
        returned = wrapped(sequence, initial_state=state) if state else wrapped(sequence)
        sequence, finals = returned[0], finals + list(returned[1:])
    return keras.Model(inputs, [sequence, *finals])


def _unmasked(case: Case) -> LSTMResult:
    """The reference on what the Keras model was fed (padded x zeroed), ignoring the lengths."""
    inputs = case.inputs
    x = np.where(inputs.valid_mask()[:, :, None], inputs.x, 0.0)
    result = reference.lstm(case.weights, x, h0=inputs.h0, c0=inputs.c0)
    return LSTMResult(zero_padding(result.outputs, inputs), result.h, result.c)


def _keras_feeds(case: Case, has_state: bool) -> dict[str, np.ndarray]:
    """x with padded steps zeroed (what Masking reads), then states named as the model's inputs."""
    spec, inputs = case.spec, case.inputs
    x = np.where(inputs.valid_mask()[:, :, None], inputs.x, 0.0).astype(np.float32)
    feeds = {"x": x}
    if has_state and inputs.h0 is not None and inputs.c0 is not None:
        for layer in range(spec.layers):
            for direction in range(spec.directions):
                feeds[f"h{layer}_{direction}"] = inputs.h0[layer, direction]
                feeds[f"c{layer}_{direction}"] = inputs.c0[layer, direction]
    return feeds


def _keras_result(case: Case, outputs: Sequence[np.ndarray]) -> LSTMResult:
    """[sequence, h, c per layer and direction] -> the contract (padded steps zeroed)."""
    spec = case.spec
    shape = (spec.layers, spec.directions, case.inputs.batch, spec.units)
    h = np.stack([np.asarray(a) for a in outputs[1::2]]).reshape(shape)
    c = np.stack([np.asarray(a) for a in outputs[2::2]]).reshape(shape)
    return LSTMResult(zero_padding(np.asarray(outputs[0]), case.inputs), h, c)


# ----- onnx2torch


_ONNX2TORCH_NO_LSTM = KnownFailure(
    reason=("onnx2torch has no converter for the ONNX LSTM operator: convert() raises "
            "NotImplementedError for every LSTM node, whatever its configuration"),
    signature="NotImplementedError",
)


class Onnx2TorchConverter(Converter):
    """onnx2torch's ``convert`` on ONNX graphs of ``LSTM`` nodes (weights as initializers).

    The graphs are the onnxruntime runtime's (one node per layer, time-major);
    the converted module is judged against the float64 reference.
    """

    name = "onnx2torch"
    packages = ("onnx2torch", "torch", "torchvision", "onnx")
    imports = ("torch", "onnx", "onnx2torch")
    configurations = (
        Configuration("ONNX LSTM node, 1 layer, forward", known_failure=_ONNX2TORCH_NO_LSTM),
        Configuration("ONNX LSTM nodes, 1-2 layers, 1-2 directions, initial states",
                      layers=(1, 2), directions=(1, 2), initial_state=True,
                      known_failure=_ONNX2TORCH_NO_LSTM),
        Configuration("ONNX LSTM nodes, 1-2 layers, 1-2 directions, sequence_lens",
                      layers=(1, 2), directions=(1, 2), lengths=True,
                      known_failure=_ONNX2TORCH_NO_LSTM),
    )

    def check(self, label: str, config: Configuration, case: Case) -> Any:
        import onnx2torch
        import torch

        spec, inputs = case.spec, case.inputs
        model = _onnx_model_with_weights(case, config.initial_state, config.lengths)
        module = onnx2torch.convert(model)
        feeds = [np.ascontiguousarray(np.swapaxes(inputs.x, 0, 1))]
        if config.lengths:
            feeds.append(np.asarray(inputs.lengths, dtype=np.int32))
        states = [s for s in (inputs.h0, inputs.c0) if s is not None]
        for layer in range(spec.layers if config.initial_state else 0):
            feeds += [np.ascontiguousarray(s[layer]) for s in states]
        with torch.no_grad():
            outputs = module(*[torch.from_numpy(a) for a in feeds])
        outputs = [o.numpy() for o in outputs]
        top, states = outputs[0], outputs[1:]
        flat = top.transpose(2, 0, 1, 3).reshape(inputs.batch, inputs.steps, -1)
        actual = LSTMResult(zero_padding(flat, inputs), np.stack(states[0::2]),
                            np.stack(states[1::2]))
        return judge_result(label, case, reference_result(case), actual, "reference")


def _onnx_model_with_weights(case: Case, has_state: bool, has_lengths: bool) -> Any:
    """The onnxruntime runtime's graph with the case's weights turned into initializers."""
    from onnx import numpy_helper

    from .runtimes.onnxruntime import build_model

    spec = case.spec
    model = build_model(spec, has_state=has_state, has_lengths=has_lengths)
    native = from_canonical(case.weights, "onnx")
    layers = [native] if isinstance(native, dict) else list(native)
    values = {f"{name}_{k}": np.asarray(a, dtype=np.float32)
              for k, weights in enumerate(layers) for name, a in weights.items()}
    graph = model.graph
    kept = [i for i in graph.input if i.name not in values]
    del graph.input[:]
    graph.input.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(a, name) for name, a in values.items())
    return model


# ----- nobuco


_NOBUCO_PACKED = KnownFailure(
    reason=("nobuco cannot convert packed sequences: its nn.LSTM converter calls .dim() on the "
            "PackedSequence ('PackedSequence' object has no attribute 'dim', printed as a "
            "conversion error) and rebuilding the PackedSequence from traced tensors then "
            "fails (AssertionError); sequence lengths are not expressible"),
    signature="AssertionError",
)


class NobucoConverter(Converter):
    """nobuco's ``pytorch_to_keras`` on an ``nn.LSTM``, judged against PyTorch's own output.

    nobuco traces a call of the module, so it sees tensors: initial states are
    the ``(h0, c0)`` argument, ``batch_first=False`` is the time-major path,
    lengths go through ``pack_padded_sequence``.
    """

    name = "nobuco"
    packages = ("nobuco", "torch", "torchvision", "tensorflow|tensorflow-cpu", "keras")
    imports = ("torch", "nobuco")
    configurations = (
        Configuration("nn.LSTM, 1-2 layers, 1-2 directions", **_STACKED_BIDI),
        Configuration("initial states, 1-2 layers, 1-2 directions", initial_state=True,
                      **_STACKED_BIDI),
        Configuration("time-major (batch_first=False), 1-2 layers, 1-2 directions",
                      options=(("batch_first", False),), **_STACKED_BIDI),
        Configuration("sequence lengths (pack_padded_sequence)", lengths=True,
                      known_failure=_NOBUCO_PACKED),
    )

    def __init__(self) -> None:
        self._modules: dict[tuple[LSTMSpec, bool, bool, bool], Any] = {}

    def check(self, label: str, config: Configuration, case: Case) -> Any:
        import nobuco
        import torch

        batch_first = config.option("batch_first", True)
        key = (case.spec, config.initial_state, config.lengths, batch_first)
        if key not in self._modules:
            self._modules[key] = _torch_wrapper(case.spec, *key[1:])
        module = self._modules[key]
        native = from_canonical(case.weights, "torch")
        module.lstm.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in
                                     native.items()})
        feeds = _torch_feeds(case, config.initial_state, config.lengths)
        if not batch_first:
            feeds["x"] = np.ascontiguousarray(np.swapaxes(feeds["x"], 0, 1))
        args = [torch.from_numpy(a) for a in feeds.values()]
        with torch.no_grad():
            own = [t.numpy() for t in module(*args)]
        keras_model = nobuco.pytorch_to_keras(
            module, args=args, inputs_channel_order=nobuco.ChannelOrder.PYTORCH,
            outputs_channel_order=nobuco.ChannelOrder.PYTORCH)
        returned = keras_model(list(feeds.values()) if len(feeds) > 1 else feeds["x"])
        converted = [np.asarray(t) for t in _flatten(returned)]
        if not batch_first:
            own[0], converted[0] = (np.swapaxes(a, 0, 1) for a in (own[0], converted[0]))
        expected, actual = _torch_result(case, own), _torch_result(case, converted)
        return judge_result(label, case, expected, actual, "torch")


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


CONVERTERS: tuple[type[Converter], ...] = (
    CuDNNH5Converter,
    TorchOnnxExportConverter,
    Tf2OnnxConverter,
    Onnx2TorchConverter,
    NobucoConverter,
)
BY_NAME = {cls.name: cls for cls in CONVERTERS}


# --------------------------------------------------------------------------- running


def run_configuration(converter: Converter, config: Configuration, *, max_examples: int,
                      seed: int) -> dict[str, Any]:
    """Explore one configuration; its entry for the results JSON."""
    from .diagnose import diagnose
    from .explore import explore

    start = time.perf_counter()
    judge = _BoundedJudge(lambda case: converter.judge(config, case))
    found = explore(configuration_cases(config), judge, max_examples=max_examples,
                    seed_value=seed)
    failure = found.failure
    diagnosis = None
    if failure is not None and failure.actual is not None:
        diagnosis = diagnose(failure.case, failure.actual)
    worst = max(found.max_abs_diff.values(), default=0.0)
    entry: dict[str, Any] = {
        "name": config.name,
        "examples": found.examples,
        "passed": found.passed,
        "max_abs_diff": worst if math.isfinite(worst) else None,
        "minimal_failing_case": _describe_failure(failure) if failure else None,
        "diagnosis": diagnosis,
        "expected_failure_reason": None,
        "unexpected": False,
        "note": getattr(converter, "notes", {}).get(config.name),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if found.error:  # the harness itself broke (judge exceptions are failures already)
        entry["minimal_failing_case"] = found.error
    _classify(entry, config, failure, found.error)
    return entry


def _describe_failure(failure: Any) -> str:
    lines = [f"case: {failure.case.describe()}", failure.comparison.describe()]
    return "\n".join(lines + ([failure.blame] if failure.blame else []))


def _classify(entry: dict[str, Any], config: Configuration, failure: Any, error: str) -> None:
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
    candidate = DEFAULT_SIDE_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() else None


class _SideRun:
    """Converters running in the side interpreter, started before (and beside) the main ones."""

    def __init__(self, names: list[str], *, max_examples: int, seed: int, python: str) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        env.pop(SIDE_PYTHON_ENV, None)
        command = [python, "-m", "equivalence.third_party", "--in-process",
                   "--max-examples", str(max_examples), "--seed", str(seed),
                   "--environment", f"side interpreter {python}"]
        command += [arg for name in names for arg in ("--only", name)]
        self.python = python
        self.process: subprocess.Popen[str] | None = None
        self.error: str | None = None
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, env=env, cwd=root)
        except OSError as exc:
            self.error = f"side interpreter {python} did not start: {_error_text(exc)}"

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
        side = _SideRun(elsewhere, max_examples=max_examples, seed=seed, python=python)
    entries = {name: run_converter(c, max_examples=max_examples, seed=seed,
                                   environment=environment)
               for name, c in converters.items() if reasons[name] is None}
    side_reason = f"no side interpreter ({SIDE_PYTHON_ENV} unset, no {DEFAULT_SIDE_VENV})"
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
    """``python -m equivalence.third_party``: print the entries as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME))
    parser.add_argument("--environment", default="main")
    parser.add_argument("--in-process", action="store_true",
                        help="do not hand converters to a side interpreter")
    args = parser.parse_args(argv)
    entries = run_third_party(args.max_examples, args.seed, args.only,
                              in_process=args.in_process, environment=args.environment)
    sys.stdout.write(json.dumps(entries, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
