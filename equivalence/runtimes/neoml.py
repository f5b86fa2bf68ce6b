"""NeoML runtime: a ``neoml.Dnn.Dnn`` of ``neoml.Dnn.Lstm`` (or ``neoml.Dnn.Gru``) layers.

This module owns running the ``neoml`` native form (see
:mod:`equivalence.formats.neoml`) through NeoML itself and normalizing the
result to the contract of :mod:`equivalence.io_types`. NeoML needs numpy < 2
and lives in its own environment, so this file imports only numpy and
equivalence modules at the top; ``neoml`` is imported lazily.

Facts verified against neoml 2.0.210 (scripts in the report):

* Blobs are 7-D ``(BatchLength, BatchWidth, ListSize, Height, Width, Depth,
  Channels)``; a sequence batch is time-major ``(T, B, 1, 1, 1, 1, I)``.
* ``Lstm`` weights: ``input_weights`` blob ``(1, 4H, 1, 1, 1, 1, I)``,
  ``recurrent_weights`` ``(1, 4H, 1, 1, 1, 1, H)``, ``input_free_term`` and
  ``recurrent_free_term`` ``(4H, 1, 1, 1, 1, 1, 1)``; rows are gates g f i o;
  both free terms are applied. Weights set before the first run are kept.
* Outputs: #0 the hidden state on every step, #1 the cell state on every step,
  both ``(T, B, 1, 1, 1, 1, H)``. With ``reverse_seq=True`` they are in the
  original time order, so the reverse direction's final state is step 0.
* Optional inputs: #1 (second) is the initial cell state, #2 (third) the
  initial hidden state, each ``(1, B, 1, 1, 1, 1, H)``.
* No sequence lengths, no float64 (blobs are float32 or int32), no peepholes
  or projection; the built-in ``hard_sigmoid`` is clip(0.5 x + 0.5, 0, 1),
  which matches neither Keras hard sigmoid.
* ``Gru`` (tests/test_neoml_gru.py): ``gate_weights`` blob ``(1, 2H, 1, 1, 1, 1, I+H)``
  (rows z then r), ``main_weights`` ``(1, H, 1, 1, 1, 1, I+H)``, columns [input,
  hidden], free terms ``(2H, 1, 1, 1, 1, 1, 1)`` and ``(H, 1, ...)``; the reset gate
  before the matmul (reset_after=False only); output #0 h on every step; optional
  input #1 (second) the initial h, ``(1, B, 1, 1, 1, 1, H)``. It has no
  ``reverse_seq``: a backward GRU runs between two ``ReverseSequence`` layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from equivalence.formats._common import layer_grid
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Row, Runtime, with_initial_states
from equivalence.spec import LSTMSpec

_WEIGHT_NAMES = {
    "lstm": ("input_weights", "recurrent_weights", "input_free_term", "recurrent_free_term"),
    "gru": ("gate_weights", "gate_free_term", "main_weights", "main_free_term"),
}


@dataclass
class _Network:
    """A built Dnn for one shape, plus handles to its layers."""

    dnn: Any
    layers: list[list[Any]]  # the Lstm or Gru of [layer][direction]


class NeoMLRuntime(Runtime):
    """``neoml.Dnn.Lstm`` layers (``reverse_seq`` for the backward direction) in one Dnn;
    ``neoml.Dnn.Gru`` layers for a GRU (reversed around for the backward direction)."""

    module: ClassVar[str] = "neoml"

    def __init__(self, entry: Row) -> None:
        super().__init__(entry)
        self._engine: Any = None
        self._networks: dict[tuple[Any, ...], _Network] = {}

    def version(self) -> str:
        from importlib.metadata import version  # neoml has no __version__

        return version("neoml")

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        cells = _cells_grid(native, spec.cell)
        batch, steps = inputs.batch, inputs.steps
        has_state = inputs.h0 is not None
        network = self._network(spec, batch, steps, has_state)
        set_weights = self._set_gru_weights if spec.cell == "gru" else self._set_weights
        for layer, row in enumerate(network.layers):
            for direction, recurrent in enumerate(row):
                set_weights(recurrent, cells[layer][direction])
        outputs = network.dnn.run(self._feeds(spec, inputs, has_state))
        return _collect(spec, outputs, batch, steps)

    def run_and_store(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, path: Path
    ) -> LSTMResult:
        """Run (through the contract), then save the very network that ran as NeoML's own
        network file (``Dnn.store``), so a reader elsewhere gets what produced the result."""
        result = self.run(spec, native, inputs)
        has_state = inputs.h0 is not None or inputs.c0 is not None  # a GRU's: h0 alone
        network = self._network(spec, inputs.batch, inputs.steps, has_state)
        network.dnn.store(str(path))
        return result

    def run_stored(self, path: Path, spec: LSTMSpec, inputs: LSTMInputs) -> LSTMResult:
        """Load a network file :meth:`run_and_store` wrote (NeoML's own loader) and run it."""
        import neoml

        dnn = neoml.Dnn.Dnn(self._math_engine())
        dnn.load(str(path))
        inputs = with_initial_states(spec, inputs)
        has_state = inputs.h0 is not None
        outputs = dnn.run(self._feeds(spec, inputs, has_state))
        return _collect(spec, outputs, inputs.batch, inputs.steps)

    def _network(self, spec: LSTMSpec, batch: int, steps: int, has_state: bool) -> _Network:
        key = (spec, batch, steps, has_state)
        if key not in self._networks:
            self._networks[key] = self._build(spec, has_state)
        return self._networks[key]

    def _math_engine(self) -> Any:
        if self._engine is None:
            import neoml

            self._engine = neoml.MathEngine.CpuMathEngine()
        return self._engine

    def _build(self, spec: LSTMSpec, has_state: bool) -> _Network:
        """Source -> Lstm (Gru) per direction -> ConcatChannels between layers; Sinks read h
        (and an LSTM's c)."""
        import neoml

        dnn = neoml.Dnn.Dnn(self._math_engine())
        layer_input: Any = neoml.Dnn.Source(dnn, "x")
        build = _gru_direction if spec.cell == "gru" else _lstm_direction
        layers = []
        for layer in range(spec.layers):
            row, outputs = [], []
            for direction in range(spec.directions):
                recurrent, output = build(dnn, layer_input, spec.units, f"{layer}_{direction}",
                                          has_state, direction == 1)
                row.append(recurrent)
                outputs.append(output)
            layers.append(row)
            if layer == spec.layers - 1:
                break  # no concat on top: a layer whose output feeds nothing crashes run()
            if len(outputs) == 1:
                layer_input = outputs[0]
            else:  # forward channels first, as the contract's concatenation
                layer_input = neoml.Dnn.ConcatChannels(outputs, name=f"concat_{layer}")
        return _Network(dnn, layers)

    def _set_weights(self, lstm: Any, cell: Mapping[str, np.ndarray]) -> None:
        import neoml

        engine = self._math_engine()
        units4, width = cell["input_weights"].shape
        hidden = cell["recurrent_weights"].shape[1]
        shapes = {
            "input_weights": (1, units4, 1, 1, 1, 1, width),
            "recurrent_weights": (1, units4, 1, 1, 1, 1, hidden),
            "input_free_term": (units4, 1, 1, 1, 1, 1, 1),
            "recurrent_free_term": (units4, 1, 1, 1, 1, 1, 1),
        }
        for name, shape in shapes.items():
            # copy=True: the blob must not alias a numpy buffer that may be freed.
            setattr(lstm, name, neoml.Blob.asblob(engine, cell[name], shape, copy=True))

    def _set_gru_weights(self, gru: Any, cell: Mapping[str, np.ndarray]) -> None:
        import neoml

        engine = self._math_engine()
        units2, columns = cell["gate_weights"].shape
        units = units2 // 2
        shapes = {
            "gate_weights": (1, units2, 1, 1, 1, 1, columns),
            "gate_free_term": (units2, 1, 1, 1, 1, 1, 1),
            "main_weights": (1, units, 1, 1, 1, 1, columns),
            "main_free_term": (units, 1, 1, 1, 1, 1, 1),
        }
        for name, shape in shapes.items():
            setattr(gru, name, neoml.Blob.asblob(engine, cell[name], shape, copy=True))

    def _feeds(self, spec: LSTMSpec, inputs: LSTMInputs, has_state: bool) -> dict[str, Any]:
        import neoml

        engine = self._math_engine()
        batch, steps = inputs.batch, inputs.steps
        x = np.ascontiguousarray(np.asarray(inputs.x, np.float32).transpose(1, 0, 2))
        feeds = {"x": neoml.Blob.asblob(engine, x, (steps, batch, 1, 1, 1, 1, spec.input_size),
                                        copy=True)}
        if not has_state:
            return feeds
        for prefix, value in (("h0", inputs.h0), ("c0", inputs.c0)):
            if value is None:  # a GRU's c0
                continue
            states = np.asarray(value, np.float32)
            for layer in range(spec.layers):
                for direction in range(spec.directions):
                    state = np.ascontiguousarray(states[layer, direction])
                    feeds[f"{prefix}_{layer}_{direction}"] = neoml.Blob.asblob(
                        engine, state, (1, batch, 1, 1, 1, 1, spec.units), copy=True)
        return feeds


def _lstm_direction(dnn: Any, layer_input: Any, units: int, tag: str, has_state: bool,
                    backward: bool) -> tuple[Any, Any]:
    """One Lstm (``reverse_seq`` backward) and its Sinks; its output #0 feeds the next layer."""
    import neoml

    sources = [layer_input]
    if has_state:  # positional optional inputs: #1 initial c, #2 initial h
        sources += [neoml.Dnn.Source(dnn, f"c0_{tag}"), neoml.Dnn.Source(dnn, f"h0_{tag}")]
    lstm = neoml.Dnn.Lstm(sources, hidden_size=units, reverse_seq=backward, name=f"lstm_{tag}")
    neoml.Dnn.Sink((lstm, 0), f"h_{tag}")
    neoml.Dnn.Sink((lstm, 1), f"c_{tag}")
    return lstm, lstm


def _gru_direction(dnn: Any, layer_input: Any, units: int, tag: str, has_state: bool,
                   backward: bool) -> tuple[Any, Any]:
    """One Gru and its Sink; backward, it runs on the reversed sequence and its output is
    reversed back, so (as the Lstm's ``reverse_seq``) h is in the original time order."""
    import neoml

    first = neoml.Dnn.ReverseSequence(layer_input, name=f"reverse_in_{tag}") if backward else (
        layer_input)
    sources = [first]
    if has_state:  # the optional input #1: the initial h
        sources.append(neoml.Dnn.Source(dnn, f"h0_{tag}"))
    gru = neoml.Dnn.Gru(sources, hidden_size=units, name=f"gru_{tag}")
    output = neoml.Dnn.ReverseSequence(gru, name=f"reverse_out_{tag}") if backward else gru
    neoml.Dnn.Sink(output, f"h_{tag}")
    return gru, output


def _collect(spec: LSTMSpec, outputs: Mapping[str, Any], batch: int, steps: int) -> LSTMResult:
    """Sink blobs -> contract: batch-major outputs, final state at the last (or first) step."""
    top, final_h, final_c = [], [], []
    for layer in range(spec.layers):
        for direction in range(spec.directions):
            tag = f"{layer}_{direction}"
            h = _sequence(outputs[f"h_{tag}"], steps, batch, spec.units)
            last = 0 if direction == 1 else steps - 1  # reverse outputs are in original order
            final_h.append(h[last])
            if "c" in spec.state_names:
                final_c.append(_sequence(outputs[f"c_{tag}"], steps, batch, spec.units)[last])
            if layer == spec.layers - 1:
                top.append(h)
    shape = (spec.layers, spec.directions, batch, spec.units)
    outputs_bm = np.concatenate(top, axis=-1).transpose(1, 0, 2)
    c = np.stack(final_c).reshape(shape) if final_c else None
    return LSTMResult(np.ascontiguousarray(outputs_bm), np.stack(final_h).reshape(shape), c)


def _sequence(blob: Any, steps: int, batch: int, units: int) -> np.ndarray:
    # reshape, not asarray's squeeze: dims of size 1 (B, T or H) must stay.
    return np.array(blob.asarray(copy=True)).reshape(steps, batch, units)


def _cells_grid(native: Any, cell: str) -> list[list[dict[str, np.ndarray]]]:
    """``native`` (checked by the contract) as ``[layer][direction]`` dicts of float32 arrays."""
    grid = layer_grid(native, "neoml weights")
    return [[{name: np.ascontiguousarray(np.asarray(weights[name], dtype=np.float32))
              for name in _WEIGHT_NAMES[cell]} for weights in row] for row in grid]
