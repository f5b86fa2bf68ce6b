"""Keras 3 ``LSTM``/``Bidirectional`` on the JAX and torch backends, each in a worker process.

Keras 3 fixes its backend once per process (``KERAS_BACKEND``, read at the
first import) and the harness's process runs Keras on TensorFlow. So each of
these runtimes runs Keras in a persistent :class:`._worker.Worker` started
with its backend set, one per backend, shared by every instance and reused
across examples (start-up paid once, killed at exit). The worker builds the
same backend-neutral model as the TFLite runtime (:mod:`._keras_model`),
caches it per (spec, feeding), sets the ``keras`` format's weights and runs.

The workers run on the CPU: JAX is limited to its CPU platform and torch sees
no CUDA device, so on a GPU machine these rows still test the CPU code (on a
CPU Keras takes its generic loop on both backends, not a cuDNN path).
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes._keras_common import Feeding, feeds, native_arrays, to_result
from equivalence.runtimes._worker import Worker
from equivalence.runtimes.base import Runtime
from equivalence.spec import LSTMSpec

_HANDLER = "equivalence.runtimes._keras_backend_worker"
# One worker per backend for the whole process (the table keeps one runtime per row,
# tests may build more: they share it).
_WORKERS: dict[str, Worker] = {}

# Keep the workers on the CPU whatever the machine has, and quiet.
_CPU_ONLY = {
    "jax": {"JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1"},
    "torch": {"CUDA_VISIBLE_DEVICES": ""},
}
_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def backend_worker(backend: str) -> Worker:
    """The shared worker running Keras on ``backend`` (started on its first call)."""
    if backend not in _WORKERS:
        env = {"KERAS_BACKEND": backend, **_CPU_ONLY[backend], **_QUIET}
        _WORKERS[backend] = Worker(_HANDLER, env, name=f"keras[{backend}]")
    return _WORKERS[backend]


class KerasBackendRuntime(Runtime):
    """Keras 3 on ``backend``, run in that backend's worker process."""

    module: ClassVar[str] = "keras"
    backend: ClassVar[str]

    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()
        if reason is not None:
            return reason
        keras = importlib.import_module("keras")
        major = str(getattr(keras, "__version__", "0")).split(".")[0]
        if major != "3":  # TensorFlow <= 2.15 installs Keras 2 as `keras`
            return f"keras {keras.__version__} is not Keras 3 (this runtime needs Keras 3)"
        return None

    def version(self) -> str:
        keras = importlib.import_module("keras")
        framework = importlib.import_module(self.backend)
        return f"{keras.__version__} ({self.backend} {framework.__version__})"

    @property
    def worker(self) -> Worker:
        return backend_worker(self.backend)

    def describe(self) -> dict[str, str]:
        """What the worker really runs (its Keras backend and versions); starts it if needed."""
        return dict(self.worker.call("describe"))

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        feeding = Feeding.of(inputs)
        weights = native_arrays(native, spec)
        flat = self.worker.call("run", spec, weights, feeds(spec, inputs, feeding), feeding)
        return to_result(flat, spec, inputs)


class KerasJaxRuntime(KerasBackendRuntime):
    """Keras 3 on JAX (``KERAS_BACKEND=jax``), CPU."""

    backend: ClassVar[str] = "jax"
    requires: ClassVar[tuple[str, ...]] = ("jax",)


class KerasTorchRuntime(KerasBackendRuntime):
    """Keras 3 on PyTorch (``KERAS_BACKEND=torch``), CPU."""

    backend: ClassVar[str] = "torch"
    requires: ClassVar[tuple[str, ...]] = ("torch",)
