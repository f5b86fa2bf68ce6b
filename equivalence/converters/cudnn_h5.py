"""tf_keras's legacy-.h5 weight conversion between ``CuDNNLSTM`` and ``LSTM`` (and
between ``CuDNNGRU`` and ``GRU(reset_after=True)``).

tf_keras converts on load: weights saved from a ``CuDNNLSTM`` model to a .h5
file and loaded into an ``LSTM`` model of the same architecture come out in
the ``LSTM`` layout (its biases summed), and the other way round. The layers
on both sides are the tf_keras runtimes' own (``tf_keras`` and
``tf_keras_cudnn`` rows); the converted native weights run in the target row.

``CuDNNLSTM`` has no CPU kernel (it builds, takes weights and saves on a
CPU). Where no GPU is visible, its row is stood in for by the float64
reference reading the same ``cudnn`` native weights (:class:`CudnnReference`);
the GPU suite checks the real ``tf_keras_cudnn`` row against its CPU twin.

``CuDNNGRU`` (:class:`CuDNNGRUH5`) is converted by the same ``_convert_rnn_weights``:
per-gate kernels re-laid, the 6H bias reshaped to GRU's (2, 3H) and back, gate order
unchanged (both Keras z r h). No row runs CuDNNGRU (the GPU row claims LSTM only), so
its side is always the float64 reference on the ``cudnn`` weights; tf_keras raises
"... is not compatible with ..." for ``GRU(reset_after=False)``, which is not claimed.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from equivalence.case import Case
from equivalence.convert import to_canonical
from equivalence.converters.base import Configuration, Converter, claims, requires
from equivalence.formats.options import reader_options
from equivalence.harness.judge import reference_result
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Runtime
from equivalence.spec import LSTMSpec
from equivalence.table import Entry, entry

CUDNN, LSTM = "tf_keras_cudnn", "tf_keras"
# Tests swap in a wrong writer of the arrays CuDNNLSTM is given, to show the check bites.
CudnnWriter = Callable[[Case, Any], list[np.ndarray]]


class CudnnReference(Runtime):
    """The float64 reference on ``cudnn`` native weights: CuDNNLSTM's stand-in without a GPU."""

    module = "numpy"

    def execute(self, spec: LSTMSpec, native: Any, inputs: LSTMInputs,
                options: dict[str, Any]) -> LSTMResult:
        weights = to_canonical(native, "cudnn", **reader_options("cudnn", spec, options))
        return reference_result(Case(spec, weights, inputs))


@functools.cache
def cudnn_gru_row() -> Entry:
    """CuDNNGRU's side: the float64 reference on ``cudnn`` GRU weights, GPU or not."""
    row = entry(CUDNN)
    return replace(row, name=f"{CUDNN} GRU (float64 reference: no row runs CuDNNGRU)",
                   device="cpu", runtime=f"{__name__}:CudnnReference",
                   capabilities=row.capabilities.with_values("cell", ("gru",)))


@functools.cache
def cudnn_row() -> Entry:
    """``tf_keras_cudnn`` where a GPU runs it, else its float64 stand-in (same format, claims)."""
    row = entry(CUDNN)
    if row.load().unavailable_reason() is None:
        return row
    return replace(row, name=f"{CUDNN} (float64 reference: no GPU)", device="cpu",
                   runtime=f"{__name__}:CudnnReference")


def _holder(layers: list[Any]) -> Any:
    """A tf_keras model holding built layers, so the legacy .h5 save/load can run on them."""
    import tf_keras

    class Holder(tf_keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.stack = layers
            self.built = True  # the layers are built: no call, so CuDNNLSTM needs no GPU

    return Holder()


class CuDNNH5(Converter):
    """``Model.save_weights(.h5)`` from one layer kind, ``load_weights`` into the other."""

    name = "tf_keras CuDNNLSTM <-> LSTM (legacy .h5)"
    packages = ("tf_keras", "tensorflow|tensorflow-cpu", "h5py")
    imports = ("tf_keras", "h5py")
    source, target = CUDNN, LSTM
    runs_model = False  # it converts to native weights, which the target row runs
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration("CuDNNLSTM -> LSTM, 1-2 layers, 1-2 directions", claims=claims()),
        Configuration("CuDNNLSTM -> LSTM, bidirectional, 1-2 layers", claims=claims(),
                      requires=requires("bidirectional")),
        Configuration("CuDNNLSTM -> LSTM, initial states, 1-2 layers, 1-2 directions",
                      claims=claims(), requires=requires("initial state")),
        Configuration("LSTM -> CuDNNLSTM, 1-2 layers, 1-2 directions", claims=claims(),
                      source=LSTM, target=CUDNN),
    )
    not_claimed = "sequence lengths: CuDNNLSTM refuses masks ('Masking is not supported')"

    def __init__(self, write_cudnn: CudnnWriter | None = None) -> None:
        self.write_cudnn = write_cudnn or (lambda case, native: native)
        self._models: dict[tuple[LSTMSpec, str], Any] = {}

    def cudnn_entry(self) -> Entry:
        """The row standing for the cuDNN layer kind."""
        return cudnn_row()

    def source_entry(self, config: Configuration) -> Entry:
        return self.cudnn_entry() if (config.source or self.source) == CUDNN else entry(LSTM)

    def target_entry(self, config: Configuration) -> Entry:
        row = self.cudnn_entry() if (config.target or self.target) == CUDNN else entry(LSTM)
        return replace(row, name=f"{row.name} (via legacy .h5)")

    def convert(self, config: Configuration, case: Case, native: Any) -> list[np.ndarray]:
        """Save the source layers' weights to .h5, load them into the other kind; theirs."""
        to_cudnn = (config.target or self.target) == CUDNN
        if not to_cudnn:
            native = self.write_cudnn(case, native)
        source = self._model(case.spec, LSTM if to_cudnn else CUDNN)
        target = self._model(case.spec, CUDNN if to_cudnn else LSTM)
        source.set_weights([np.asarray(a) for a in native])
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "weights.h5")
            source.save_weights(path)
            target.load_weights(path)
        return target.get_weights()

    def _model(self, spec: LSTMSpec, row: str) -> Any:
        """The row's runtime's layers for ``spec`` (weights only: no feeding) in a model."""
        key = (spec, row)
        if key not in self._models:
            from equivalence.runtimes._keras_common import Feeding

            runtime: Any = entry(row).load()  # a tf_keras runtime: it builds Keras layers
            network = runtime.build(spec, Feeding(False, False))
            self._models[key] = _holder([layer for layer, _ in network.weight_layers])
        return self._models[key]


_GRU = claims().with_values("cell", ("gru",))  # the default claims, on GRU networks


class CuDNNGRUH5(CuDNNH5):
    """The same legacy .h5 round trip between ``CuDNNGRU`` and ``GRU(reset_after=True)``."""

    name = "tf_keras CuDNNGRU <-> GRU (legacy .h5)"
    cell = "gru"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration("CuDNNGRU -> GRU, 1-2 layers, 1-2 directions", claims=_GRU),
        Configuration("CuDNNGRU -> GRU, bidirectional, 1-2 layers", claims=_GRU,
                      requires=requires("bidirectional")),
        Configuration("CuDNNGRU -> GRU, initial states, 1-2 layers, 1-2 directions",
                      claims=_GRU, requires=requires("initial state")),
        Configuration("GRU -> CuDNNGRU, 1-2 layers, 1-2 directions", claims=_GRU,
                      source=LSTM, target=CUDNN),
    )
    not_claimed = ("sequence lengths: CuDNNGRU refuses masks; GRU(reset_after=False): tf_keras "
                   "refuses it ('... is not compatible with CuDNNGRU')")

    def cudnn_entry(self) -> Entry:
        return cudnn_gru_row()
