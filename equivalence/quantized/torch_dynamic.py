"""torch dynamic quantization of ``nn.LSTM`` (``torch.ao.quantization.quantize_dynamic``).

Facts relied on (torch 2.13, CPU, fbgemm/x86 engine):

* ``quantize_dynamic`` swaps children only: a bare ``nn.LSTM`` passed as the root comes
  back unchanged (still float), so it is wrapped in ``nn.Sequential``.
* The weights become per-tensor symmetric qint8 (``MinMaxObserver``,
  ``per_tensor_symmetric``), one scale for each whole ``weight_ih_l*`` / ``weight_hh_l*``
  (all four gates); biases stay float32. ``_weight_bias()`` gives them back as quantized
  tensors (``int_repr``, ``q_scale``, ``dequantize``).
* The activations are quantized at run time, per tensor, asymmetric uint8 with
  ``reduce_range`` (7 bits): the input projection over the whole sequence at once, the
  recurrent one per step (:data:`.oracle.TORCH_DYNAMIC`).
"""

from __future__ import annotations

import warnings

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.convert import from_canonical
from equivalence.quantized.oracle import TORCH_DYNAMIC, Judged, judge
from equivalence.quantized.result import (
    BATCH,
    STEPS,
    QuantizedResult,
    example_inputs,
    example_weights,
    summarize,
)
from equivalence.spec import LSTMSpec

PATH = "torch quantize_dynamic qint8"


def quantized_module(weights: LSTMWeights):
    """The dynamically quantized LSTM holding ``weights``."""
    import torch
    from torch import nn

    spec = weights.spec
    module = nn.LSTM(spec.input_size, spec.units, num_layers=spec.layers, batch_first=True)
    native = from_canonical(weights.astype("float32"), "torch")
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in native.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization's notice
        quantized = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(module), {nn.LSTM}, dtype=torch.qint8)
    return quantized[0]


def dequantized_weights(module, spec: LSTMSpec) -> LSTMWeights:
    """The int8 weights times their scales, and the float biases, as canonical float64."""
    found = module._weight_bias()

    def read(kind: str, key: str) -> np.ndarray:
        value = found[kind][key]
        value = value.dequantize() if value.is_quantized else value
        return value.detach().double().numpy()

    cells = [(CellWeights(read("weight", f"weight_ih_l{k}"), read("weight", f"weight_hh_l{k}"),
                          read("bias", f"bias_ih_l{k}"), read("bias", f"bias_hh_l{k}")),)
             for k in range(spec.layers)]
    return LSTMWeights(spec.replace(dtype="float64"), tuple(cells))


def run(spec: LSTMSpec, examples: int, seed: int) -> QuantizedResult:
    """Quantize ``examples`` random LSTMs of ``spec``, run them, judge each against the oracle."""
    import torch

    rng = np.random.default_rng(seed)
    judged: list[Judged] = []
    for _ in range(examples):
        weights = example_weights(spec, rng)
        module = quantized_module(weights)
        x = example_inputs(rng, BATCH, STEPS, spec.input_size)
        with torch.no_grad():
            out = module(torch.from_numpy(x.astype(np.float32)))[0].double().numpy()
        judged.append(judge(out, dequantized_weights(module, spec), weights, x, TORCH_DYNAMIC))
    scales = _scales(module, spec)
    notes = (f"weights per-tensor symmetric qint8; last example's scales {scales}",)
    return summarize(PATH, f"torch {torch.__version__}", spec, judged, notes)


def _scales(module, spec: LSTMSpec) -> str:
    found = module._weight_bias()["weight"]
    return ", ".join(f"{k} {found[k].q_scale():.3g}" for k in sorted(found))
