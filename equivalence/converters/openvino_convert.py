"""``openvino.convert_model`` of an ``nn.LSTM`` module, saved as an IR and probed as deployed.

The module is the torch runtime's ``nn.LSTM`` holding the case's weights, wrapped by
:func:`~.torch_module.lstm_module` so ``forward(x, h0, c0)`` (and ``lengths``, through
``pack_padded_sequence``) returns ``(y, h_n, c_n)``. ``convert_model`` traces it on an
example at :data:`~.torch_module.EXPORT_SHAPE`; ``ov.save_model`` writes ``model.xml``
and ``model.bin``, which compare opens as an OpenVINO IR (CPU plugin, f32 precision).
Configurations:

* ``dynamic shapes``: ``input=`` every batch and time dimension ``-1``, weights saved
  f32 (``compress_to_fp16=False``);
* ``static shapes``: ``input=`` the example's shapes: other shapes must be refused;
* ``no initial states, dynamic shapes``: ``forward(x)`` only, the zero states made
  inside the traced graph from x's dynamic batch;
* ``save_model defaults (fp16 weights)``: no ``input=`` (shapes from the example,
  left dynamic) and ``ov.save_model``'s default compression of the weights to f16,
  judged at float16's tolerance (the IR computes in f32 on f16-rounded weights);
* ``lengths (packed), dynamic shapes``: the module packs its input by ``lengths``;
  the CPU plugin ignores the sequence lengths where X's dimensions are dynamic, so
  the ``lengths`` probe is a known silent failure (``findings/
  openvino_sequence_lens_dynamic.py``, not reported upstream);
* ``lengths (packed), static shapes``: the same module at fixed shapes, where the
  plugin honours the lengths (the finding's control).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from equivalence import capabilities
from equivalence.case import Case
from equivalence.converters.base import Configuration, claims
from equivalence.converters.exporter import Exporter, fixed_shape_refusals
from equivalence.converters.torch_module import EXPORT_SHAPE, feeds, lstm_module, tensors
from equivalence.io_types import LSTMInputs
from equivalence.known import Known

DYNAMIC, STATIC, DEFAULTS = "dynamic shapes", "static shapes", "save_model defaults (fp16 weights)"
LENGTHS = "lengths (packed), dynamic shapes"
LENGTHS_STATIC = "lengths (packed), static shapes"
STATELESS = "no initial states, dynamic shapes"
_CLAIMS = claims(lacks=(capabilities.LENGTHS,))  # nn.LSTM takes lengths only through packing
_FIXED_WHY = "input= fixed every shape: batch 2 and 4 steps"
LENGTHS_IGNORED = Known(
    "silently wrong",
    "the CPU plugin keeps LSTMSequence whole where X's batch or time is dynamic and then "
    "ignores sequence_lengths: every sequence runs to its end (openvino PR #10710 disabled "
    "the decomposition for dynamic shapes); reproducer findings/"
    "openvino_sequence_lens_dynamic.py", upstream="not reported upstream")


class OpenVinoConvert(Exporter):
    name = "openvino.convert_model (torch)"
    packages = ("openvino", "torch")
    imports = ("openvino", "torch")
    source = "torch"
    target = "openvino"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration(DYNAMIC, _CLAIMS, options=(("shapes", "dynamic"),)),
        Configuration(STATIC, _CLAIMS, options=(("shapes", "static"),)),
        Configuration(STATELESS, _CLAIMS, options=(("shapes", "dynamic"), ("states", False))),
        Configuration(DEFAULTS, _CLAIMS, options=(("fp16", True),)),
        Configuration(LENGTHS, claims(), options=(("lengths", True),)),
        Configuration(LENGTHS_STATIC, claims(), options=(("lengths", True),
                                                         ("shapes", "static"))),
    )
    expected: ClassVar[dict[tuple[str, str], Known]] = {
        **fixed_shape_refusals(STATIC, _FIXED_WHY),
        **fixed_shape_refusals(LENGTHS_STATIC, _FIXED_WHY),
        (LENGTHS, "lengths"): LENGTHS_IGNORED,
    }

    def export(self, config: Configuration, case: Case, native: Any, folder: Path) -> Path:
        import openvino

        example = example_feeds(case, lengths=bool(config.option("lengths")),
                                states=config.option("states", True))
        module = lstm_module(case.spec, native, example[0])
        fed = example[1]
        options: dict[str, Any] = {}
        if config.option("shapes") == "dynamic":
            options["input"] = [tuple(-1 if axis in _batch_time(name) else size
                                      for axis, size in enumerate(value.shape))
                                for name, value in fed.items()]
        elif config.option("shapes") == "static":
            options["input"] = [tuple(value.shape) for value in fed.values()]
        model = openvino.convert_model(module, example_input=tensors(fed), **options)
        path = folder / "model.xml"
        openvino.save_model(model, str(path), compress_to_fp16=bool(config.option("fp16")))
        return path


def _batch_time(name: str) -> tuple[int, ...]:
    """The axes of an input that are batch or time: x (B, T, I); h0/c0 (rows, B, H)."""
    return {"x": (0, 1), "h0": (1,), "c0": (1,), "lengths": (0,)}[name]


def example_feeds(case: Case, *, lengths: bool, states: bool = True
                  ) -> tuple[LSTMInputs, dict[str, np.ndarray]]:
    """Zero inputs at :data:`EXPORT_SHAPE` with initial states (``states``) and lengths,
    as the module's wrapper takes them, and the same as named tensors."""
    batch, steps = EXPORT_SHAPE
    spec = case.spec
    rows = (spec.layers, spec.directions, batch)
    h0, c0 = (np.zeros((*rows, size), np.float32) if states else None
              for size in (spec.output_size, spec.units))
    inputs = LSTMInputs(np.zeros((batch, steps, spec.input_size), np.float32), h0, c0,
                        np.array([steps] + [steps - 1] * (batch - 1)) if lengths else None)
    return inputs, feeds(spec, inputs)
