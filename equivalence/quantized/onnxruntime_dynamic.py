"""ONNX Runtime's ``quantize_dynamic`` of an ONNX ``LSTM`` graph (it emits ``DynamicQuantizeLSTM``).

The float graph is :func:`equivalence.runtimes.onnxruntime.build_model` with the
weights moved from graph inputs to initializers (the quantizer only quantizes
initializers). The quantized weights are read back from the quantized model's
initializers and dequantized.

Facts relied on (onnxruntime 1.32, CPU):

* Each ``LSTM`` node becomes ``com.microsoft.DynamicQuantizeLSTM`` with inputs
  ``W_quantized`` / ``R_quantized`` int8 **transposed** to (D, I, 4H) / (D, H, 4H),
  gates still i o f c along the last axis, per-tensor ``*_scale`` and
  ``*_zero_point`` (0: symmetric) for each direction; ``B`` stays float.
* Only ``direction``, ``hidden_size`` and ``input_forget`` survive on the new node.
* X is quantized at run time to uint8, per tensor, asymmetric over 8 bits
  (:data:`.oracle.ORT_DYNAMIC`): the whole sequence for the input projection, h per step
  (the closest emulation found; it leaves ~5e-4, inside the bound).
* With the default call (QInt8 weights on the full 8-bit range) the outputs are off by
  ~0.1 on this x86 AVX2 CPU, far beyond the bound; ``reduce_range=True`` (7-bit weights)
  matches. This is ONNX Runtime's documented caveat: the u8 x s8 kernel (VPMADDUBSW)
  sums pairs of products in saturating int16 (255 * 127 * 2 > 32767); numpy with that
  pairwise clip to [-32768, 32767] reproduces ORT's first step to 3.5e-8 (16x16), and
  without it misses by 0.09. QUInt8 weights
  were also off (~0.03) in a one-off probe; not investigated.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from equivalence.convert import from_canonical, to_canonical
from equivalence.errors import ConversionError
from equivalence.quantized.oracle import ORT_DYNAMIC, Judged, judge
from equivalence.quantized.result import (
    BATCH,
    STEPS,
    QuantizedResult,
    example_inputs,
    example_weights,
    summarize,
)
from equivalence.spec import LSTMSpec

PATH = "onnxruntime quantize_dynamic int8"


def quantized_model(weights, reduce_range: bool = False) -> bytes:
    """The DynamicQuantizeLSTM model of ``weights`` (serialized)."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from equivalence.runtimes.onnxruntime import build_model, layer_weights

    spec = weights.spec.replace(dtype="float32")  # ORT's LSTM kernel is float32 only
    model = build_model(spec, has_state=False, has_lengths=False)
    native = from_canonical(weights.astype("float32"), "onnx")
    constants = {f"{name}_{layer}": np.asarray(array, np.float32)
                 for layer, node in enumerate(layer_weights(native))
                 for name, array in node.items()}
    kept = [value for value in model.graph.input if value.name not in constants]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    with tempfile.TemporaryDirectory() as folder:
        source, target = os.path.join(folder, "float.onnx"), os.path.join(folder, "q.onnx")
        onnx.save(model, source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, reduce_range=reduce_range)
        return onnx.load(target).SerializeToString()


def dequantized_weights(model: bytes, spec: LSTMSpec):
    """The model's int8 W and R times their scales (and float B) as canonical weights."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model).graph
    ops = {node.op_type for node in graph.node}
    if "DynamicQuantizeLSTM" not in ops:
        raise ConversionError(f"quantized model: ops {sorted(ops)}, expected DynamicQuantizeLSTM")
    found = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    nodes = []
    for layer in range(spec.layers):
        node = {"B": found[f"B_{layer}"].astype(np.float64)}
        for name in ("W", "R"):
            q = found[f"{name}_{layer}_quantized"].astype(np.float64)
            scale = found[f"{name}_{layer}_scale"].astype(np.float64).reshape(-1, 1, 1)
            zero = found[f"{name}_{layer}_zero_point"].astype(np.float64).reshape(-1, 1, 1)
            node[name] = np.swapaxes((q - zero) * scale, 1, 2)  # (D, I, 4H) -> (D, 4H, I)
        nodes.append(node)
    return to_canonical(nodes, "onnx")


def run(spec: LSTMSpec, examples: int, seed: int, reduce_range: bool = False) -> QuantizedResult:
    """Quantize ``examples`` random LSTMs of ``spec``, run them, judge each against the oracle.

    ``reduce_range`` (7-bit weights) is ONNX Runtime's advice for x86 with AVX2/AVX512,
    whose u8 x s8 kernel (VPMADDUBSW) adds pairs of products in saturating int16.
    """
    import onnxruntime

    rng = np.random.default_rng(seed)
    judged: list[Judged] = []
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    for _ in range(examples):
        weights = example_weights(spec, rng)
        model = quantized_model(weights, reduce_range)
        session = onnxruntime.InferenceSession(model, options,
                                               providers=["CPUExecutionProvider"])
        x = example_inputs(rng, BATCH, STEPS, spec.input_size)
        top = session.run(None, {"X": np.swapaxes(x, 0, 1).astype(np.float32)})[0]
        out = top[:, 0].transpose(1, 0, 2).astype(np.float64)  # (T, D, B, H) -> (B, T, H)
        judged.append(judge(out, dequantized_weights(model, spec), weights, x, ORT_DYNAMIC))
    notes = ("W/R int8 per-tensor symmetric, stored transposed (D, I, 4H); B float",)
    path = f"{PATH}, reduce_range" if reduce_range else PATH
    return summarize(path, f"onnxruntime {onnxruntime.__version__}", spec, judged, notes)
