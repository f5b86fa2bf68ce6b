"""An ``nn.LSTM`` from the torch runtime's builder, wrapped to take a case's tensors.

``torch.onnx.export`` and nobuco convert a module from a traced call, so they
need a module whose ``forward`` takes exactly the case's inputs as tensors:
``x``, then ``h0``/``c0`` when the case has initial states, then ``lengths``
(through ``pack_padded_sequence``, the only way ``nn.LSTM`` takes them). The
``nn.LSTM`` itself and its weight loading are the torch runtime's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from equivalence.case import Case
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import split_states, zero_padding
from equivalence.spec import LSTMSpec

# Dynamic-shape exports see an example of this (batch, steps) and run the drawn shapes.
EXPORT_SHAPE = (2, 4)


def lstm_module(spec: LSTMSpec, native: Any, inputs: LSTMInputs) -> Any:
    """The torch runtime's ``nn.LSTM`` for ``spec`` holding ``native``, wrapped for ``inputs``."""
    import torch

    # Thin adapter over the torch runtime's private builder and loader (one place to
    # change if the runtime exposes them).
    from equivalence.runtimes.torch import _build_module, _load_weights

    lstm = _build_module(spec, not inputs.time_major, "cpu")
    with torch.no_grad():
        _load_weights(lstm, native)
    return _wrapper(lstm, has_state=inputs.h0 is not None, has_lengths=inputs.lengths is not None)


def _wrapper(lstm: Any, *, has_state: bool, has_lengths: bool) -> Any:
    """A module whose forward takes x [, h0, c0] [, lengths] and returns (y, h, c)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    def run(module: Any, x: Any, state: Any, lengths: Any) -> tuple[Any, Any, Any]:
        if lengths is None:
            y, (h, c) = module.lstm(x, state)
            return y, h, c
        first = module.lstm.batch_first
        packed = pack_padded_sequence(x, lengths, batch_first=first, enforce_sorted=False)
        y, (h, c) = module.lstm(packed, state)
        y, _ = pad_packed_sequence(y, batch_first=first, total_length=x.shape[1 if first else 0])
        return y, h, c

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = lstm

        def forward(self, x: Any) -> Any:
            return run(self, x, None, None)

    class Stateful(Plain):
        def forward(self, x: Any, h0: Any, c0: Any) -> Any:  # type: ignore[override]
            return run(self, x, (h0, c0), None)

    class Packed(Plain):
        def forward(self, x: Any, lengths: Any) -> Any:  # type: ignore[override]
            return run(self, x, None, lengths)

    class StatefulPacked(Plain):
        def forward(self, x: Any, h0: Any, c0: Any, lengths: Any) -> Any:  # type: ignore[override]
            return run(self, x, (h0, c0), lengths)

    chosen = {(False, False): Plain, (True, False): Stateful, (False, True): Packed,
              (True, True): StatefulPacked}[(has_state, has_lengths)]
    return chosen().eval()


def feeds(spec: LSTMSpec, inputs: LSTMInputs) -> dict[str, np.ndarray]:
    """The wrapper's inputs by name: x (B, T, I) or time-major (T, B, I), h0/c0, lengths."""
    x = np.asarray(inputs.x, dtype=np.float32)
    fed = {"x": np.ascontiguousarray(np.swapaxes(x, 0, 1) if inputs.time_major else x)}
    if inputs.h0 is not None and inputs.c0 is not None:
        for name, value in (("h0", inputs.h0), ("c0", inputs.c0)):
            flat = np.asarray(value).reshape(spec.layers * spec.directions, inputs.batch, -1)
            fed[name] = np.ascontiguousarray(flat, dtype=np.float32)
    if inputs.lengths is not None:
        fed["lengths"] = np.asarray(inputs.lengths, dtype=np.int64)
    return fed


def tensors(fed: dict[str, np.ndarray]) -> tuple[Any, ...]:
    import torch

    return tuple(torch.from_numpy(a) for a in fed.values())


def example_inputs(case: Case) -> LSTMInputs:
    """Inputs of the case's kind at :data:`EXPORT_SHAPE`: what a dynamic-shape export sees."""
    batch, steps = EXPORT_SHAPE
    spec, inputs, rng = case.spec, case.inputs, np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(np.float32)
    h0 = c0 = lengths = None
    if inputs.h0 is not None:
        h0 = np.zeros((spec.layers, spec.directions, batch, spec.output_size), np.float32)
        c0 = np.zeros((spec.layers, spec.directions, batch, spec.units), np.float32)
    if inputs.lengths is not None:
        lengths = np.array([steps] + [max(steps - 1, 1)] * (batch - 1))
    return LSTMInputs(x, h0, c0, lengths, inputs.time_major)


def to_result(case: Case, outputs: Sequence[Any]) -> LSTMResult:
    """(y, h, c) as torch or an exported model returns them -> the contract's layout."""
    y, h, c = (np.asarray(o.detach().numpy() if hasattr(o, "detach") else o) for o in outputs)
    if case.inputs.time_major:
        y = np.swapaxes(y, 0, 1)
    spec = case.spec
    return LSTMResult(zero_padding(np.ascontiguousarray(y), case.inputs),
                      split_states(h, spec), split_states(c, spec))
