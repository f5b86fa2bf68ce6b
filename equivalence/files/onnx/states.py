"""``convert --to onnx --with-states``: the written model takes the initial states and the
sequence lengths as inputs, so a decoder step can be ported.

The signature, the layout of a batch-first ``nn.LSTM``: inputs ``input`` (batch, time, I),
``h0`` and ``c0`` (L*D, batch, H), ``sequence_lens`` (batch,) int32; outputs ``output``
(batch, time, D*H), ``h_n`` and ``c_n`` (L*D, batch, H), the state at each sequence's last
valid step. Each layer's LSTM node takes its D rows of ``h0``/``c0`` through a ``Slice``.

``--verify`` of such a file runs the whole model through that signature in onnxruntime
(:func:`signature_side`), not the LSTM nodes cut out of it: a graph that wires ``h0`` into
a node's ``initial_c`` computes a different function, and only the whole model shows it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from equivalence.errors import ConversionError
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec

INPUTS = ("input", "h0", "c0", "sequence_lens")
OUTPUTS = ("output", "h_n", "c_n")


def layer_states(k: int, directions: int) -> tuple[list[Any], list[Any]]:
    """The nodes and initializers that give layer ``k``'s node ``initial_h_k``/``initial_c_k``."""
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([k * directions], np.int64), f"state_from_{k}"),
             numpy_helper.from_array(np.array([(k + 1) * directions], np.int64),
                                     f"state_to_{k}")]
    nodes = [helper.make_node("Slice", [whole, f"state_from_{k}", f"state_to_{k}",
                                        "state_axis"], [f"{role}_{k}"])
             for whole, role in (("h0", "initial_h"), ("c0", "initial_c"))]
    return nodes, inits


def graph_inputs(spec: LSTMSpec, elem: int) -> tuple[list[Any], list[Any]]:
    """The value infos of h0, c0, sequence_lens, and the shared Slice axis initializer."""
    from onnx import TensorProto, helper, numpy_helper

    rows = spec.layers * spec.directions
    infos = [helper.make_tensor_value_info(name, elem, [rows, "batch", spec.units])
             for name in ("h0", "c0")]
    infos.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["batch"]))
    return infos, [numpy_helper.from_array(np.array([0], np.int64), "state_axis")]


def has_signature(model: Any) -> bool:
    """Whether ``model``'s graph takes and returns exactly the states (what --with-states
    writes)."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = tuple(i.name for i in graph.input if i.name not in initializers)
    return inputs == INPUTS and tuple(o.name for o in graph.output) == OUTPUTS


def signature_side(found: Any, spec: LSTMSpec) -> Any:
    """A verify side that runs the whole written model through its state signature."""
    import onnxruntime

    from equivalence.files.runners import Side, SideAbilities

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(found.definition.model.SerializeToString(),
                                               options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime cannot run {found.source} "
                              f"({str(exc).strip().splitlines()[0][:200]})") from exc

    def run(inputs: LSTMInputs) -> LSTMResult:
        output, h, c = session.run(list(OUTPUTS), feeds(spec, inputs))
        shape = (spec.layers, spec.directions, inputs.batch, spec.units)
        return LSTMResult(output, h.reshape(shape), c.reshape(shape))

    label = (f"the whole model {found.source} in onnxruntime, fed input, h0, c0, "
             "sequence_lens")
    return Side(label, run, SideAbilities(initial_state=True, lengths=True))


def feeds(spec: LSTMSpec, inputs: LSTMInputs) -> dict[str, np.ndarray]:
    """The verify inputs as the signature takes them (zeros and full lengths when absent)."""
    dtype = inputs.x.dtype
    rows = (spec.layers * spec.directions, inputs.batch, spec.units)
    h0 = np.zeros(rows, dtype) if inputs.h0 is None else inputs.h0.reshape(rows)
    c0 = np.zeros(rows, dtype) if inputs.c0 is None else inputs.c0.reshape(rows)
    lengths = (np.full(inputs.batch, inputs.steps) if inputs.lengths is None
               else np.minimum(inputs.lengths, inputs.steps))
    return {"input": np.ascontiguousarray(inputs.x), "h0": np.ascontiguousarray(h0, dtype),
            "c0": np.ascontiguousarray(c0, dtype), "sequence_lens": lengths.astype(np.int32)}
