"""The one table: which runtimes exist, how their weights are made, and their overrides.

Tests, ``check_conversion``, the report and the benchmark are all generated
from :data:`RUNTIMES`. A row names the runtime class (imported lazily, so the
table itself needs no framework), the options its native weights are written
and read with, the environment it lives in, and any tolerance override with
its reason. Adding a framework is a row here plus a format and a runtime module.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import UnknownFormatError
from .runtimes.base import Runtime

MAIN, NEOML = "main", "neoml"


@dataclass(frozen=True)
class Entry:
    """One runtime row."""

    name: str
    runtime: str  # "module:Class"
    format: str
    format_options: Mapping[str, Any] = field(default_factory=dict)
    environment: str = MAIN
    device: str = "cpu"
    tolerance_scale: float = 1.0
    tolerance_reason: str = ""
    cpu_twin: str | None = None  # for GPU rows: the CPU row it must agree with
    in_pairs: bool = True  # False: checked against the reference only (reason in the row)

    def load(self) -> Runtime:
        return _instance(self.runtime)


@functools.cache
def _instance(path: str) -> Runtime:
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)()


RUNTIMES: tuple[Entry, ...] = (
    Entry("keras", "equivalence.runtimes.keras:KerasRuntime", "keras"),
    Entry("keras_cell", "equivalence.runtimes.keras:KerasCellRuntime", "keras"),
    Entry("tf_keras", "equivalence.runtimes.tf_keras:TfKerasRuntime", "keras"),
    # tf_keras's LSTM runs its own fused standard_lstm, so the cell path is different code;
    # its layer twin already pairs with every runtime, so this row checks the reference only.
    Entry("tf_keras_cell", "equivalence.runtimes.tf_keras:TfKerasCellRuntime", "keras",
          in_pairs=False),
    Entry("tf1", "equivalence.runtimes.tf1:TF1Runtime", "tf1", {"forget_bias": 1.0}),
    Entry("torch", "equivalence.runtimes.torch:TorchRuntime", "torch"),
    Entry("onnxruntime", "equivalence.runtimes.onnxruntime:OnnxRuntime", "onnx"),
    Entry("flax", "equivalence.runtimes.flax:FlaxRuntime", "flax"),
    Entry(
        "flax_optimized",
        "equivalence.runtimes.flax:FlaxOptimizedRuntime",
        "flax",
        {"variant": "linen_optimized"},
    ),
    Entry("neoml", "equivalence.runtimes.neoml:NeoMLRuntime", "neoml", environment=NEOML),
    # jax's own CPU reference of jax.experimental.rnn: it exercises the jax_rnn flat layout
    # through jax's unpacking code. Not a production kernel, so not worth 18 more pairs.
    Entry(
        "jax_rnn_ref",
        "equivalence.runtimes.jax_rnn:JaxRnnReferenceRuntime",
        "jax_rnn",
        in_pairs=False,
    ),
    Entry(
        "keras_gpu",
        "equivalence.runtimes.keras:KerasGpuRuntime",
        "keras",
        device="gpu",
        cpu_twin="keras",
    ),
    Entry(
        "tf_cudnn_rnn",
        "equivalence.runtimes.tf_cudnn:TfCudnnRnnRuntime",
        "cudnn_params",
        device="gpu",
        cpu_twin="torch",
    ),
    Entry(
        "tf_keras_cudnn",
        "equivalence.runtimes.tf_keras:CuDNNLSTMRuntime",
        "cudnn",
        device="gpu",
        cpu_twin="tf_keras",
    ),
    Entry(
        "torch_cuda",
        "equivalence.runtimes.torch:TorchCudaRuntime",
        "torch",
        device="gpu",
        cpu_twin="torch",
    ),
    Entry(
        "jax_rnn",
        "equivalence.runtimes.jax_rnn:JaxRnnRuntime",
        "jax_rnn",
        device="gpu",
        cpu_twin="torch",
    ),
)

BY_NAME = {entry.name: entry for entry in RUNTIMES}

# The runtime that stands for a format in check_conversion (first choice first).
FORMAT_RUNTIMES: dict[str, tuple[str, ...]] = {
    "keras": ("keras", "tf_keras"),
    "cudnn": ("tf_keras_cudnn",),
    "tf1": ("tf1",),
    "torch": ("torch",),
    "onnx": ("onnxruntime",),
    "neoml": ("neoml",),
    "flax": ("flax",),
}


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


def pairs(*, environment: str = MAIN) -> list[tuple[Entry, Entry]]:
    """Every ordered pair of distinct CPU runtimes of one environment."""
    rows = [e for e in entries(environment=environment) if e.in_pairs]
    return [(a, b) for a in rows for b in rows if a is not b]
