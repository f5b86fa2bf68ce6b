"""The TFLite (LiteRT) converter crashes the Python process (SIGSEGV) on full-integer
quantization of a Keras 3 LSTM in its loop form (a ``WHILE`` op), for int8 and int16x8.

Converter: tensorflow 2.21.0 (PyPI) ``tf.lite.TFLiteConverter.from_keras_model``, Keras
3.15.1 (TensorFlow backend), x86_64 Linux, CPU. Grid cells: none (the conformance grid
runs float LSTMs). Quantized paths ``litert int8 (WHILE loop form)`` and ``litert int16x8
(WHILE loop form)`` of the report's "Quantized LSTMs" section (QUANTIZED_PATHS: path and
verdict there); the same layer with ``unroll=True`` (no loop) converts and runs, and
dynamic-range quantization of the loop form converts.

What it does: a Keras model x (3, 5, 4) -> LSTM(8, return_sequences=True), converted with
``optimizations=[Optimize.DEFAULT]``, a representative dataset of four uniform batches,
and ``supported_ops=[TFLITE_BUILTINS_INT8]`` (then the int16x8 ops set). Each conversion
runs in a child process of this interpreter, since a crash would end this one; it prints
how each child ended, and the unrolled control.

Upstream: related tensorflow/tensorflow#41305 ("[RNN] Converting network with LSTM layer
to int8 segfaults whole python", TF 2.4 nightly, closed as stalled without a fix). Not
reported upstream for Keras 3 / TF 2.21 (searched tensorflow/tensorflow issues for TFLite
converter segmentation fault full integer LSTM WHILE, 2026-12-02). Issue ready to file:

    Title: TFLiteConverter segfaults on full-integer quantization of a Keras 3 LSTM
    (WHILE loop), int8 and int16x8

    tensorflow 2.21.0 (PyPI), Keras 3.15.1, Linux x86_64, Python 3.

    Steps: run this script. It converts keras.layers.LSTM(8, return_sequences=True) on
    inputs (3, 5, 4) with Optimize.DEFAULT, a representative dataset and
    TFLITE_BUILTINS_INT8 (or EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8).

    Expected: a quantized model, or a Python exception naming what cannot be quantized.

    Actual: the process dies with SIGSEGV during convert() (calibration / quantization
    of the WHILE body). unroll=True converts; dynamic-range quantization converts.

Exits 1 while the bug reproduces, 0 once fixed, 2 when tensorflow is missing or the
control (unroll=True) fails too.
"""

from __future__ import annotations

import os
import subprocess
import sys

CELLS: list = []  # not a grid cell (see the docstring)
# (path, verdict) of the report's "Quantized LSTMs" rows this script stands for
QUANTIZED_PATHS = [("litert int8 (WHILE loop form)", "did not convert or run"),
                   ("litert int16x8 (WHILE loop form)", "did not convert or run")]
B, T, IN, H = 3, 5, 4, 8  # batch, time steps, input size, units
MODES = ("int8", "int16x8")
TIMEOUT_S = 300


def convert(mode: str, unroll: bool) -> None:
    """The conversion (in the child): raises or crashes where the converter fails."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = keras.Input((T, IN), batch_size=B, name="x")
    model = keras.Model(x, keras.layers.LSTM(H, return_sequences=True, unroll=unroll)(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    batches = [rng.uniform(-1, 1, (B, T, IN)).astype(np.float32) for _ in range(4)]
    converter.representative_dataset = lambda: ([b] for b in batches)
    ops = tf.lite.OpsSet
    converter.target_spec.supported_ops = [
        ops.TFLITE_BUILTINS_INT8 if mode == "int8"
        else ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    content = converter.convert()
    print(f"converted: {len(content)} bytes")


def child(mode: str, unroll: bool) -> tuple[int, str]:
    """Run :func:`convert` in a fresh interpreter: its exit code and last stderr line."""
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import litert_int8_while_lstm as m; m.convert({mode!r}, {unroll})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    last = (done.stderr.strip().splitlines() or [""])[-1][:200]
    return done.returncode, last


def describe(code: int, last: str) -> str:
    if code == 0:
        return "converted"
    if code < 0:
        return f"killed by signal {-code}" + (" (SIGSEGV)" if code == -11 else "")
    return f"exit {code}: {last}"


def _has(distribution: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def main() -> int:
    # the version from the metadata: importing tensorflow here too would cost ~5 s
    from importlib import metadata, util

    if util.find_spec("tensorflow") is None or util.find_spec("keras") is None:
        print("not installed: tensorflow and keras")
        return 2
    version = next((metadata.version(d) for d in ("tensorflow", "tensorflow-cpu") if _has(d)),
                   "?")
    print(f"tensorflow {version}, Keras LSTM({H}) on ({B}, {T}, {IN}), full integer")
    code, last = child("int8", unroll=True)
    print(f"  control, unroll=True, int8: {describe(code, last)}")
    if code != 0:
        print("  the control does not convert either: not judged")
        return 2
    crashed = []
    for mode in MODES:
        code, last = child(mode, unroll=False)
        print(f"  WHILE loop form, {mode}: {describe(code, last)}")
        if code != 0:
            crashed.append(mode)
    print(f"crashes: {', '.join(crashed)}" if crashed else "converts: fixed")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
