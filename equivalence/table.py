"""The one table: every runtime, and everything the rest of the project derives from it.

A row is the single source of a runtime's name, weight format, device,
environment and :class:`Capabilities` (what it claims to run), plus the
options its native weights are made with and any tolerance override with its
reason. The runtime class (imported lazily, so the table needs no framework)
only builds and runs; :class:`~equivalence.runtimes.base.Runtime` enforces the
row. Tests, ``check_conversion``, ``convert --verify``, the report and the
benchmark are generated from :data:`RUNTIMES`.

Adding a runtime on an existing format: one module in ``runtimes/`` and one
row here (README, "Adding a runtime").
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from equivalence.capabilities import LENGTHS, TIME_MAJOR, Capabilities, joint_capabilities
from equivalence.errors import UnknownFormatError
from equivalence.known import ONNXRUNTIME, OPENCV, OPENVINO, OPENVINO_DEFAULT, TRACT, Known
from equivalence.spec import ACTIVATIONS

if TYPE_CHECKING:
    from equivalence.runtimes.base import Runtime

MAIN, NEOML = "main", "neoml"
ENVIRONMENTS = (MAIN, NEOML)

# Reduced-precision dtypes that pass compare.Tolerance against the reference for Keras
# (checked for 1-2 layers, 1-2 directions, T up to 9, with states and lengths).
_ALL_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})


@dataclass(frozen=True)
class Entry:
    """One runtime row."""

    name: str
    runtime: str  # "module:Class"
    format: str
    capabilities: Capabilities
    format_options: Mapping[str, Any] = field(default_factory=dict)
    environment: str = MAIN
    device: str = "cpu"
    tolerance_scale: float = 1.0
    tolerance_reason: str = ""
    cpu_twin: str | None = None  # for GPU rows: the CPU row it must agree with
    in_pairs: bool = True  # False: checked against the reference only (reason in the row)
    packages: tuple[str, ...] = ()  # distributions whose versions the report records
    # Findings expected of this runtime: conformance column (or known.MATRIX) -> Known
    known: Mapping[str, Known] = field(default_factory=dict)

    def load(self) -> Runtime:
        """The runtime object of this row (one per process: it holds the built networks)."""
        if self.name not in _INSTANCES:
            module, _, cls = self.runtime.partition(":")
            _INSTANCES[self.name] = getattr(importlib.import_module(module), cls)(self)
        return _INSTANCES[self.name]


_INSTANCES: dict[str, Runtime] = {}


def _row(name: str, runtime: str, fmt: str, caps: Capabilities, **fields: Any) -> Entry:
    options = MappingProxyType(dict(fields.pop("format_options", {})))
    return Entry(name, f"equivalence.runtimes.{runtime}", fmt, caps, options, **fields)


# Keras LSTM(activation=...) takes every cell activation the spec names (Keras's own names).
_CELL_ACTIVATIONS = frozenset(ACTIVATIONS)
# Rows that run GRUs too: Keras GRU / GRUCell and ONNX GRU nodes, reset_after both ways
# (Keras reset_after True: 2 biases, False: one; ONNX linear_before_reset 1 and 0).
_LSTM_AND_GRU = frozenset({"lstm", "gru"})
_RESET_BEFORE = "reset_after=False"  # a GRU with the reset gate on h before the matmul
_KERAS3 = Capabilities.of(
    _RESET_BEFORE,
    # Keras 3 recurrent layers have no time-major path, so "time-major input" is not claimed
    recurrent_activations=("sigmoid", "hard_sigmoid_keras3"),
    activations=_CELL_ACTIVATIONS, dtypes=_ALL_FLOATS, cells=_LSTM_AND_GRU,
)
# Keras 3 on JAX and torch, each in its own worker process (the backend is fixed per process):
# float64 is not claimed (both backends' LSTMs were checked in float16/bfloat16/float32).
_KERAS3_OTHER_BACKENDS = _KERAS3.with_values("dtype", ("float16", "bfloat16", "float32"))
# A Keras 3 model through TFLiteConverter into the TFLite interpreter: float32 graphs only
# (Keras GRU models too, both reset_after variants).
_TFLITE = Capabilities.of(
    _RESET_BEFORE, recurrent_activations=("sigmoid", "hard_sigmoid_keras3"), cells=_LSTM_AND_GRU,
)
_TF_KERAS = Capabilities.of(
    _RESET_BEFORE,
    TIME_MAJOR,  # LSTM(time_major=True), RNN(time_major=True); mask given as (T, B)
    recurrent_activations=("sigmoid", "hard_sigmoid_tf_keras"),
    activations=_CELL_ACTIVATIONS, dtypes=_ALL_FLOATS, cells=_LSTM_AND_GRU,
)
_TF1 = Capabilities.of(
    _RESET_BEFORE,  # GRUCell: the reset-before variant only
    "projection", "projection_clip", "peepholes", "cell_clip",
    "forget_bias",  # a spec's run-time forget_bias is folded into the native bias
    TIME_MAJOR,
    # LSTMCell(activation=...): on the candidate j and on c before the output gate, as Keras.
    activations=_CELL_ACTIVATIONS, dtypes=("float32", "float64"),
    cells=_LSTM_AND_GRU, lacks=("reset_after=True",),
)
# nn.GRU: reset_after=True only (b_hn inside r * (...)); no reset_before
_TORCH = Capabilities.of("projection", TIME_MAJOR, dtypes=_ALL_FLOATS, cells=_LSTM_AND_GRU)
_ONNXRUNTIME = Capabilities.of(
    "peepholes", "gate_clip",
    # direction="reverse" and input_forget=1: attributes of the node it builds from the spec.
    "reverse", "input_forget",
    # ONNX LSTM is time-major natively (ORT refuses layout=1): both paths are that one.
    TIME_MAJOR,
    # GRU nodes, both linear_before_reset values (clip, reverse, activations, lengths too)
    _RESET_BEFORE, cells=_LSTM_AND_GRU,
    # activations g = h (Relu, Affine, Sigmoid, Softsign, Softplus, Elu): each run against the
    # reference (tests/test_activations.py, the conformance grid's "activation" cells).
    activations=_CELL_ACTIVATIONS,
    # float16 runs as float16 tensors around a float32 kernel (ORT inserts the Casts);
    # float64 has no kernel ("does not support double yet"), bfloat16 none either.
    dtypes=("float32", "float16"),
)
# gate_fn could also run "hard_sigmoid_keras3", but the flax format refuses it.
_FLAX = Capabilities.of(TIME_MAJOR, dtypes=("float32", "float64"))
# The flax row runs nn.GRUCell too (reset_after=True only); flax has no optimized GRU cell.
_FLAX_GRU = _FLAX.with_values("cell", _LSTM_AND_GRU)
_NEOML = Capabilities.of(
    _RESET_BEFORE,  # Gru: the reset-before variant only
    lacks=(LENGTHS, "reset_after=True"),  # no per-sequence lengths in the Lstm layer
    # no "time-major input": NeoML is time-major only, so the runtime always transposes
    dtypes=("float32",),  # blobs are float32 or int32
    cells=_LSTM_AND_GRU,
)
# ONNX-consuming deployment runtimes, fed the graph onnxruntime runs (runtimes/_onnx_family.py).
# Each claims only what its conformance cells match; what they get wrong (tract: reverse,
# clip, activations; OpenVINO: peepholes, input_forget, layout=1; OpenCV: reverse, clip,
# peepholes, sequence lengths) is found by the conformance grid, not declared away here.
# GRU nodes (both linear_before_reset values) run right on all three within what each row
# claims for LSTM (tests/test_gru_onnx.py); the GRU conformance rows (reverse, clip,
# activations, lengths on GRU nodes) are not built yet, so nothing more is claimed.
_ONNX_HALF = ("float32", "float16")
_TRACT = Capabilities.of("peepholes", TIME_MAJOR, _RESET_BEFORE, lacks=(LENGTHS,),
                         dtypes=_ONNX_HALF, cells=_LSTM_AND_GRU)
_OPENVINO = Capabilities.of("gate_clip", TIME_MAJOR, _RESET_BEFORE, dtypes=_ONNX_HALF,
                            cells=_LSTM_AND_GRU)
_OPENCV = Capabilities.of(TIME_MAJOR, _RESET_BEFORE, lacks=(LENGTHS,), dtypes=_ONNX_HALF,
                          cells=_LSTM_AND_GRU)
# mlx.nn.LSTM: no masks or sequence lengths, batch-first only. float64 runs but is not
# claimed: MLX's CPU exp (so sigmoid) is float32-accurate in float64 too, so the LSTM is off
# by float32-sized errors, 6e-10 on one unit and one step (tests/test_runtime_mlx.py).
_MLX = Capabilities.of(
    lacks=(LENGTHS,), dtypes=("float16", "bfloat16", "float32"),
    cells=_LSTM_AND_GRU,  # nn.GRU: reset_after=True only
)
_JAX_RNN_REF = Capabilities.of(dtypes=("float32", "float64"))
_CUDNN_LSTM = Capabilities.of(
    lacks=(LENGTHS,),  # CuDNNLSTM raises "Masking is not supported for CuDNN RNNs."
    # No "time-major input": with go_backwards, _CuDNNRNN.call reverses axis 1 even when
    # time_major=True (base_cudnn_rnn.py), i.e. the batch axis; untested on GPU.
)
_TF_CUDNN_RNN = Capabilities.of(TIME_MAJOR, dtypes=("float32", "float64"))
# cuDNN's RNN kernels take half, float and double; bfloat16 is left out until a GPU run.
_TORCH_CUDA = Capabilities.of("projection", TIME_MAJOR, dtypes=("float16", "float32", "float64"))
_JAX_RNN_GPU = Capabilities.of()

RUNTIMES: tuple[Entry, ...] = (
    _row("keras", "keras:KerasRuntime", "keras", _KERAS3, packages=("keras", "tensorflow")),
    _row("keras_cell", "keras:KerasCellRuntime", "keras", _KERAS3, packages=("keras",)),
    _row("keras_torch", "keras_backends:KerasTorchRuntime", "keras", _KERAS3_OTHER_BACKENDS,
         packages=("keras", "torch")),
    # Reference only: every new shape costs a jit compile (about 1 s) in the JAX worker and a
    # conversion (about 4 s) for TFLite, and keras / keras_torch already pair the keras format
    # with every runtime; their own code paths are what these rows check.
    _row("keras_jax", "keras_backends:KerasJaxRuntime", "keras", _KERAS3_OTHER_BACKENDS,
         in_pairs=False, packages=("keras", "jax")),
    _row("tflite", "tflite:TFLiteRuntime", "keras", _TFLITE, in_pairs=False,
         packages=("ai-edge-litert", "tensorflow")),
    _row("tf_keras", "tf_keras:TfKerasRuntime", "keras", _TF_KERAS, packages=("tf-keras",)),
    # tf_keras's LSTM runs its own fused standard_lstm, so the cell path is different code;
    # its layer twin already pairs with every runtime, so this row checks the reference only.
    _row("tf_keras_cell", "tf_keras:TfKerasCellRuntime", "keras", _TF_KERAS, in_pairs=False),
    _row("tf1", "tf1:TF1Runtime", "tf1", _TF1, format_options={"forget_bias": 1.0},
         packages=("tensorflow",)),
    _row("torch", "torch:TorchRuntime", "torch", _TORCH, packages=("torch",)),
    _row("onnxruntime", "onnxruntime:OnnxRuntime", "onnx", _ONNXRUNTIME,
         packages=("onnxruntime", "onnx"), known=ONNXRUNTIME),
    _row("flax", "flax:FlaxRuntime", "flax", _FLAX_GRU, packages=("flax", "jax")),
    _row("flax_optimized", "flax:FlaxOptimizedRuntime", "flax", _FLAX,
         format_options={"variant": "linen_optimized"}),
    # Relu and Sigmoid cell activations: the conformance grid's cells match (its others fail
    # to compile); bidirectional in tests/test_activations.py, float16 2-layer stacks by hand.
    _row("openvino", "openvino:OpenVinoRuntime", "onnx",
         _OPENVINO.with_values("activation", ("tanh", "relu", "sigmoid")),
         packages=("openvino",), known=OPENVINO),
    # The same engine and graph as `openvino` with the CPU plugin's default precision (bf16
    # where the CPU has AVX512-BF16/AMX, else f32: its version string says which): checked
    # against the reference at the normal tolerance, so a reduced precision shows as a
    # failure, never hidden. Its pairs would repeat openvino's.
    _row("openvino_default", "openvino:OpenVinoDefaultRuntime", "onnx", _OPENVINO,
         in_pairs=False, known=OPENVINO_DEFAULT),
    _row("tract", "tract:TractRuntime", "onnx", _TRACT, packages=("tract",), known=TRACT),
    _row("opencv", "opencv:OpenCvRuntime", "onnx", _OPENCV, packages=("opencv-python-headless",),
         known=OPENCV),
    _row("mlx", "mlx:MlxRuntime", "mlx", _MLX, packages=("mlx",)),
    _row("neoml", "neoml:NeoMLRuntime", "neoml", _NEOML, environment=NEOML, packages=("neoml",)),
    # jax's own CPU reference of jax.experimental.rnn: it exercises the jax_rnn flat layout
    # through jax's unpacking code. Not a production kernel, so not worth 18 more pairs.
    _row("jax_rnn_ref", "jax_rnn:JaxRnnReferenceRuntime", "jax_rnn", _JAX_RNN_REF,
         in_pairs=False),
    # tanh only: the row exists to check TensorFlow's cuDNN path, which other activations leave.
    _row("keras_gpu", "keras:KerasGpuRuntime", "keras",
         # GRU not claimed: no GPU run has checked Keras's cuDNN GRU here yet
         _KERAS3.with_values("activation", ("tanh",)).with_values("cell", ("lstm",))
         .without(_RESET_BEFORE), device="gpu",
         cpu_twin="keras"),
    _row("tf_cudnn_rnn", "tf_cudnn:TfCudnnRnnRuntime", "cudnn_params", _TF_CUDNN_RNN,
         device="gpu", cpu_twin="torch"),
    _row("tf_keras_cudnn", "tf_keras:CuDNNLSTMRuntime", "cudnn", _CUDNN_LSTM, device="gpu",
         cpu_twin="tf_keras"),
    _row("torch_cuda", "torch:TorchCudaRuntime", "torch", _TORCH_CUDA, device="gpu",
         cpu_twin="torch"),
    _row("jax_rnn", "jax_rnn:JaxRnnRuntime", "jax_rnn", _JAX_RNN_GPU, device="gpu",
         cpu_twin="torch"),
)

BY_NAME = {row.name: row for row in RUNTIMES}


def _format_runtimes() -> dict[str, tuple[str, ...]]:
    """Per format, the runtimes that run it: CPU rows first, then table order."""
    ordered = sorted(RUNTIMES, key=lambda row: row.device != "cpu")
    runners: dict[str, tuple[str, ...]] = {}
    for row in ordered:
        runners[row.format] = (*runners.get(row.format, ()), row.name)
    return runners


# The runtimes that stand for a format in check_conversion and --verify (first choice first).
FORMAT_RUNTIMES: dict[str, tuple[str, ...]] = _format_runtimes()


def packages() -> tuple[str, ...]:
    """Every distribution a row depends on, in table order (the report records their versions)."""
    return tuple(dict.fromkeys(p for row in RUNTIMES for p in row.packages))


def entry(name: str) -> Entry:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownFormatError(
            f"runtime: {name!r} is unknown, expected one of {sorted(BY_NAME)}"
        ) from None


def entries(*, environment: str = MAIN, device: str = "cpu") -> list[Entry]:
    """Rows of one environment and device, in table order."""
    return [e for e in RUNTIMES if e.environment == environment and e.device == device]


def cell_entries(cell: str, *, environment: str = MAIN, device: str = "cpu") -> list[Entry]:
    """The rows of :func:`entries` whose runtime runs ``cell`` (``"lstm"``, ``"gru"``)."""
    return [e for e in entries(environment=environment, device=device)
            if cell in e.capabilities.cells]


def cell_pairs(cell: str, *, environment: str = MAIN) -> list[tuple[Entry, Entry]]:
    """The pairs of :func:`pairs` where both runtimes run ``cell`` (a GRU: a shared variant)."""
    return [(a, b) for a, b in pairs(environment=environment)
            if cell in joint_capabilities([a.capabilities, b.capabilities]).cells]


def pairs(*, environment: str = MAIN) -> list[tuple[Entry, Entry]]:
    """Every ordered pair of distinct CPU runtimes of one environment."""
    rows = [e for e in entries(environment=environment) if e.in_pairs]
    return [(a, b) for a in rows for b in rows if a is not b]
