"""PyTorch ``nn.LSTM`` / ``nn.GRU`` runtimes: the CPU kernel and the CUDA (cuDNN) kernel.

Owns building an ``nn.LSTM`` (an ``nn.GRU`` for a GRU spec), loading a native
``torch`` state_dict into it, running a batch (packed sequences for ``lengths``) and normalizing
the result to the contract of :mod:`equivalence.io_types`. Both runtimes share
one implementation and differ only in the device they run on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.runtimes.base import Row, Runtime, split_states
from equivalence.spec import LSTMSpec, dtype_name


class _TorchLSTMRuntime(Runtime):
    """Shared implementation; subclasses pick the torch device."""

    module: ClassVar[str] = "torch"
    torch_device: ClassVar[str]

    def __init__(self, entry: Row) -> None:
        super().__init__(entry)
        # Built modules by (spec, batch_first): Hypothesis examples of one shape
        # reuse the module and only copy weights in.
        self._modules: dict[tuple[LSTMSpec, bool], Any] = {}

    def execute(
        self, spec: LSTMSpec, native: Any, inputs: LSTMInputs, options: dict[str, Any]
    ) -> LSTMResult:
        """Load ``native`` (an ``nn.LSTM`` state_dict) into a cached module and run ``inputs``."""
        import torch

        self._prepare_backend(torch)
        module = self._module(spec, batch_first=not inputs.time_major)
        with torch.no_grad():
            _load_weights(module, native)
            return self._forward(torch, module, spec, inputs)

    def _prepare_backend(self, torch: Any) -> None:
        """Hook for device-wide settings (the CUDA runtime turns TF32 off)."""

    def _module(self, spec: LSTMSpec, batch_first: bool) -> Any:
        key = (spec, batch_first)
        if key not in self._modules:
            self._modules[key] = _build_module(spec, batch_first, self.torch_device)
        return self._modules[key]

    def _forward(self, torch: Any, module: Any, spec: LSTMSpec, inputs: LSTMInputs) -> LSTMResult:
        dtype = getattr(torch, spec.dtype)
        x = _tensor(torch, inputs.x, dtype, self.torch_device)
        if inputs.time_major:
            x = x.transpose(0, 1).contiguous()
        state = _initial_state(torch, spec, inputs, dtype, self.torch_device)
        if inputs.lengths is None:
            y, final = module(x, state)
        else:
            y, final = _run_packed(torch, module, x, state, inputs)
        if inputs.time_major:
            y = y.transpose(0, 1)
        # nn.LSTM returns (h, c), nn.GRU h alone
        h, c = final if spec.cell == "lstm" else (final, None)
        return LSTMResult(
            outputs=_to_numpy(y),
            h=split_states(_to_numpy(h), spec),
            c=None if c is None else split_states(_to_numpy(c), spec),
        )


class TorchRuntime(_TorchLSTMRuntime):
    """``torch.nn.LSTM`` on the CPU (oneDNN or the native kernel, as PyTorch picks)."""

    torch_device: ClassVar[str] = "cpu"


class TorchCudaRuntime(_TorchLSTMRuntime):
    """``torch.nn.LSTM`` on a CUDA device (cuDNN), with TF32 turned off."""

    torch_device: ClassVar[str] = "cuda"

    def device_reason(self) -> str | None:
        import torch

        if not torch.cuda.is_available():
            build = torch.version.cuda or "none (CPU-only build)"
            return f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA {build})"
        return None

    def _prepare_backend(self, torch: Any) -> None:
        # cuDNN float32 LSTMs may use TF32 on Ampere and later: 10-bit mantissas
        # would swamp the comparison with the float64 reference.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def _build_module(spec: LSTMSpec, batch_first: bool, device: str) -> Any:
    import torch

    common = {"num_layers": spec.layers, "bidirectional": spec.directions == 2,
              "batch_first": batch_first, "dtype": getattr(torch, spec.dtype), "device": device}
    if spec.cell == "gru":  # reset_after=True: PyTorch's only GRU (the row claims no other)
        return torch.nn.GRU(spec.input_size, spec.units, **common).eval()
    module = torch.nn.LSTM(spec.input_size, spec.units, proj_size=spec.projection_size or 0,
                           **common)
    return module.eval()


def _load_weights(module: Any, native: Mapping[str, Any]) -> None:
    """Copy a state_dict (keys and shapes checked by the contract) into ``module`` in place.

    ``param.copy_`` keeps the module's parameter objects (so cuDNN's flattened
    weight buffer stays valid) and casts to the module's dtype.
    """
    import torch

    for key, param in module.named_parameters():
        value = native[key]
        if hasattr(value, "detach"):
            value = value.detach()
        else:
            value = torch.from_numpy(np.ascontiguousarray(_float_array(value)))
        param.copy_(value)


def _float_array(value: Any) -> np.ndarray:
    """numpy has no bfloat16 that torch reads: widen ml_dtypes arrays to float32 first."""
    array = np.asarray(value)
    if dtype_name(array.dtype) == "bfloat16":
        return array.astype(np.float32)
    return array


def _tensor(torch: Any, array: np.ndarray, dtype: Any, device: str) -> Any:
    host = torch.from_numpy(np.ascontiguousarray(_float_array(array)))
    return host.to(device=device, dtype=dtype)


def _initial_state(
    torch: Any, spec: LSTMSpec, inputs: LSTMInputs, dtype: Any, device: str
) -> Any:
    """Contract (L, D, B, X) -> torch (L*D, B, X): (h0, c0) for an LSTM, h0 for a GRU."""
    lead = spec.layers * spec.directions
    if spec.cell == "gru":
        if inputs.h0 is None:
            return None
        return _tensor(torch, inputs.h0.reshape(lead, inputs.batch, spec.units), dtype, device)
    if inputs.h0 is None or inputs.c0 is None:
        return None
    h0 = inputs.h0.reshape(lead, inputs.batch, spec.output_size)
    c0 = inputs.c0.reshape(lead, inputs.batch, spec.units)
    return _tensor(torch, h0, dtype, device), _tensor(torch, c0, dtype, device)


def _run_packed(
    torch: Any, module: Any, x: Any, state: Any, inputs: LSTMInputs
) -> tuple[Any, Any]:
    """Run right-padded sequences as a PackedSequence; padded output steps come back zero."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    # Lengths stay on the CPU as int64, whatever the device (PyTorch requires it).
    lengths = torch.as_tensor(np.asarray(inputs.lengths, dtype=np.int64))
    packed = pack_padded_sequence(x, lengths, batch_first=module.batch_first, enforce_sorted=False)
    y, final = module(packed, state)
    y, _ = pad_packed_sequence(y, batch_first=module.batch_first, total_length=inputs.steps)
    return y, final


def _to_numpy(tensor: Any) -> np.ndarray:
    """A numpy copy in the tensor's dtype; bfloat16 (absent from numpy) comes back float32."""
    import torch

    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy().copy()
