"""LiteRT quantization of a Keras 3 LSTM: dynamic-range, full-integer int8 and int16x8.

``tf.lite.TFLiteConverter.from_keras_model`` with ``optimizations=[Optimize.DEFAULT]``
(dynamic range), plus a representative dataset and ``TFLITE_BUILTINS_INT8`` (int8)
or ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`` (int16x8); run
in ``ai_edge_litert``'s interpreter. The quantized weights are read back from the
flatbuffer (:mod:`.litert_weights`).

Facts relied on (tensorflow 2.21, ai-edge-litert 2.3, Keras 3.15):

* A Keras 3 LSTM converts to a ``WHILE`` loop whose body holds two
  ``FULLY_CONNECTED`` ops (x and h), not a fused LSTM op.
* Dynamic range quantizes only constants of at least 1024 elements: a small LSTM's
  weights stay float32 (the note says so); the hybrid FULLY_CONNECTED quantizes its
  input per row, symmetric int8 (:data:`.oracle.LITERT_DYNAMIC`).
* Full-integer conversion of the ``WHILE`` form crashes the converter (SIGSEGV) for
  int8 and int16x8, even with float fallback: :func:`loop_form_probe` records it
  in a subprocess. ``unroll=True`` (a fixed number of steps) converts and runs, so the
  full-integer paths use it; the representative dataset holds the judged inputs, so
  calibration covers their range (no saturation).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Iterator

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.convert import from_canonical
from equivalence.quantized.litert_weights import activation_steps, dequantized_weights
from equivalence.quantized.oracle import LITERT_DYNAMIC, Allowance, Judged, Scheme, judge
from equivalence.quantized.result import (
    BATCH,
    FAILED,
    STEPS,
    QuantizedResult,
    example_inputs,
    example_weights,
    failed,
    summarize,
)
from equivalence.spec import LSTMSpec

MODES = ("dynamic", "int8", "int16x8")
_CALIBRATION_BATCHES = 16
FLOAT = Scheme("float (nothing quantized)", None)
# int16 LOGISTIC/TANH read a 256-entry table of sigmoid(k/24) with linear interpolation
# (tanh as 2 sigmoid(2x) - 1): interpolation <= (1/24)^2/8 max|sigmoid''| = 2.1e-5, the
# table's own rounding ~1.5e-5, the input's fixed-point conversion (1/(24*512), 1/(48*256))
# <= 8e-5, doubled for tanh: ~1.4e-4 in all. 2^-12 states it with margin.
INT16_TABLE_ERROR = 2.0 ** -12


def keras_model(weights: LSTMWeights, unroll: bool):
    """A Keras 3 stack of LSTMs holding ``weights``: x (BATCH, STEPS, I) -> top sequence."""
    from equivalence.runtimes.keras import import_keras3

    keras = import_keras3()
    spec = weights.spec
    x = keras.Input((STEPS, spec.input_size), batch_size=BATCH, name="x")
    y = x
    for _ in range(spec.layers):
        y = keras.layers.LSTM(spec.units, return_sequences=True, unroll=unroll)(y)
    model = keras.Model(x, y)
    model.set_weights(from_canonical(weights.astype("float32"), "keras"))
    return model


def convert(weights: LSTMWeights, mode: str, calibration: list[np.ndarray]) -> bytes:
    """The ``.tflite`` flatbuffer of ``weights`` quantized by ``mode`` (one of MODES)."""
    import tensorflow as tf

    with tf.device("/CPU:0"):
        converter = tf.lite.TFLiteConverter.from_keras_model(
            keras_model(weights, unroll=mode != "dynamic"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode != "dynamic":
            converter.representative_dataset = lambda: _dataset(calibration)
            ops = tf.lite.OpsSet
            converter.target_spec.supported_ops = [
                ops.TFLITE_BUILTINS_INT8 if mode == "int8"
                else ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        with contextlib.redirect_stdout(io.StringIO()):  # "Saved artifact at ..."
            return converter.convert()


def _dataset(calibration: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
    for batch in calibration:
        yield [batch.astype(np.float32)]


def invoke(content: bytes, x: np.ndarray) -> np.ndarray:
    """Run the flatbuffer's default signature on batch-first ``x``."""
    from ai_edge_litert import interpreter

    runner = interpreter.Interpreter(model_content=content).get_signature_runner()
    (out,) = runner(x=x.astype(np.float32)).values()
    return np.asarray(out, dtype=np.float64)


def scheme_for(mode: str, content: bytes, matched: int) -> Scheme:
    """The oracle's scheme for a converted flatbuffer (full-integer steps read from it)."""
    if mode == "dynamic":
        return LITERT_DYNAMIC if matched else FLOAT
    s = activation_steps(content)
    step = lambda *ops: max(s.get(op, 0.0) for op in ops)  # noqa: E731
    static = Allowance(
        x=step("QUANTIZE") / 2,  # the graph's input rounded once
        z=step("FULLY_CONNECTED") + step("ADD"),  # two FC outputs and up to two adds
        # a whole step (the int8 activations are exact tables), or the int16 table's error
        gate=max(step("LOGISTIC", "TANH"), INT16_TABLE_ERROR if mode == "int16x8" else 0.0),
        c=step("MUL") + step("ADD") / 2,
        h=step("MUL") / 2,
    )
    return Scheme(f"litert {mode}", None, static=static)


def run(spec: LSTMSpec, mode: str, examples: int, seed: int) -> QuantizedResult:
    """Quantize ``examples`` random LSTMs of ``spec`` by ``mode``, run, judge each."""
    import tensorflow as tf

    path = f"litert {mode}" + (" (unroll=True)" if mode != "dynamic" else "")
    version = f"tensorflow {tf.__version__}, ai-edge-litert {_litert_version()}"
    rng = np.random.default_rng(seed)
    judged: list[Judged] = []
    notes: set[str] = set()
    for _ in range(examples):
        weights = example_weights(spec, rng)
        x = example_inputs(rng, BATCH, STEPS, spec.input_size)
        calibration = [x] + [example_inputs(rng, BATCH, STEPS, spec.input_size)
                             for _ in range(_CALIBRATION_BATCHES)]
        try:
            content = convert(weights, mode, calibration)
            out = invoke(content, x)
        except Exception as exc:  # a converter or interpreter refusal is the finding
            return failed(path, version, spec, f"{type(exc).__name__}: {exc}"[:300])
        dequantized, matched = dequantized_weights(content, weights)
        scheme = scheme_for(mode, content, matched)
        notes.add(f"{matched} quantized weight tensors; oracle scheme: {scheme.name}")
        judged.append(judge(out, dequantized, weights, x, scheme))
    return summarize(path, version, spec, judged, tuple(sorted(notes)))


def loop_form_probe(spec: LSTMSpec, mode: str) -> QuantizedResult | None:
    """Full-integer conversion of the ``WHILE`` form, in a subprocess (it may crash).

    Returns a FAILED record when the converter dies or raises, None when it converts.
    """
    import tensorflow as tf

    code = (f"from equivalence.quantized.litert import _probe_child; "
            f"_probe_child({spec.input_size}, {spec.units}, {mode!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode == 0:
        return None
    why = (f"killed by signal {-done.returncode}" if done.returncode < 0
           else f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    version = f"tensorflow {tf.__version__}, ai-edge-litert {_litert_version()}"
    return failed(f"litert {mode} (WHILE loop form)", version, spec,
                  f"TFLiteConverter.convert() {why}", FAILED,
                  ("Keras LSTM without unroll; the converter crashes while calibrating",))


def _probe_child(input_size: int, units: int, mode: str) -> None:
    """The subprocess of :func:`loop_form_probe`: convert the loop form by ``mode``."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    weights = example_weights(LSTMSpec(input_size, units), rng)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model(weights, unroll=False))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    calibration = [example_inputs(rng, BATCH, STEPS, input_size) for _ in range(4)]
    converter.representative_dataset = lambda: _dataset(calibration)
    ops = tf.lite.OpsSet
    converter.target_spec.supported_ops = [
        ops.TFLITE_BUILTINS_INT8 if mode == "int8"
        else ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):
        converter.convert()


def _litert_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "not installed"
