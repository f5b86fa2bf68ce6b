"""ONNX graph rewriters people run before deploying (onnxslim, onnxsim, onnxoptimizer),
each applied to two ONNX files and probed as deployed.

A rewriter folds constants, fuses and removes nodes, and (asked to) fixes input
shapes; done wrong, that changes the function while every check at the one shape
it was given passes. Each rewriter is an :class:`~.exporter.Exporter` whose
artefact is its rewrite of:

* ``torch.onnx export``: :class:`~.torch_onnx_probed.TorchOnnxProbed`'s file of a
  batch-first ``nn.LSTM`` (TorchScript exporter, batch and time dynamic, ``h0`` and
  ``c0`` as inputs), judged against the torch row;
* ``our ONNX graph``: the project's own writer (:func:`equivalence.files.onnx.model.build_model`
  with ``with_states``: ``input``, ``h0``, ``c0`` and ``sequence_lens`` as inputs, the
  weights as initializers), judged against the onnxruntime row, with the node
  attributes that file can hold (peepholes, clip, input_forget);
* ``torch.onnx export, input shapes fixed`` (onnxslim, onnxsim): the rewriter told the
  export shape (batch 2, 4 steps), so other shapes must be refused, never wrong.

Reverse-only LSTMs are not claimed: the streaming probe cuts a sequence into chunks
fed forward, which a reverse direction cannot be (it reads the sequence's end first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from equivalence.capabilities import LENGTHS
from equivalence.case import Case
from equivalence.converters.base import Configuration, claims
from equivalence.converters.exporter import Exporter, fixed_shape_refusals
from equivalence.converters.torch_module import EXPORT_SHAPE
from equivalence.converters.torch_onnx_probed import TorchOnnxProbed
from equivalence.errors import ConversionError

TORCH, OURS, FIXED = "torch.onnx export", "our ONNX graph", "torch.onnx export, input shapes fixed"
# nn.LSTM takes lengths only through packing, which the stateful export does not do
_TORCH_CLAIMS = claims(lacks=(LENGTHS,))
_OURS_CLAIMS = claims("peepholes", "gate_clip", "input_forget")
_FIXED_WHY = "input shapes fixed by the rewriter: batch 2 and 4 steps"


def _configurations(*, fixed: bool) -> tuple[Configuration, ...]:
    found: tuple[Configuration, ...] = (
        Configuration(TORCH, _TORCH_CLAIMS, options=(("input", TORCH),)),
        Configuration(OURS, _OURS_CLAIMS, source="onnxruntime", options=(("input", OURS),)))
    if fixed:
        found += (Configuration(FIXED, _TORCH_CLAIMS, options=(("input", TORCH),
                                                               ("fixed", True))),)
    return found


class OnnxRewriter(Exporter):
    """An ONNX file (torch's export or ours), rewritten by :meth:`rewrite`, saved."""

    name: ClassVar[str]
    target = "onnxruntime"
    source = "torch"

    def rewrite(self, model: Any, shapes: dict[str, list[int]] | None) -> Any:
        """The rewriter's output for ``model``; ``shapes``: input shapes to fix, or None."""
        raise NotImplementedError

    def export(self, config: Configuration, case: Case, native: Any, folder: Path) -> Path:
        import onnx

        path = folder / "model.onnx"
        if config.option("input") == TORCH:
            dynamic = Configuration(TORCH, options=(("dynamic", True),))
            model = onnx.load(str(TorchOnnxProbed().export(dynamic, case, native, folder)))
        else:
            from equivalence.files.onnx.model import build_model

            model = build_model(case.weights, with_states=True)
        shapes = export_shapes(model, case) if config.option("fixed") else None
        onnx.save(self.rewrite(model, shapes), str(path))
        return path


def export_shapes(model: Any, case: Case) -> dict[str, list[int]]:
    """Every graph input's shape at :data:`EXPORT_SHAPE` (x batch-first, states (L*D, B, H))."""
    batch, steps = EXPORT_SHAPE
    spec = case.spec
    rows = spec.layers * spec.directions
    known = {"input": [batch, steps, spec.input_size], "h0": [rows, batch, spec.output_size],
             "c0": [rows, batch, spec.units], "sequence_lens": [batch]}
    initializers = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    missing = [n for n in names if n not in known]
    if missing:
        raise ConversionError(f"graph inputs {missing}: no export shape known (expected "
                              f"inputs among {sorted(known)})")
    return {name: known[name] for name in names}


class OnnxSlim(OnnxRewriter):
    name = "onnxslim"
    packages = ("onnxslim", "onnx", "torch", "onnxruntime")
    imports = ("onnxslim", "onnx", "torch", "onnxruntime")
    configurations: ClassVar[tuple[Configuration, ...]] = _configurations(fixed=True)
    expected = fixed_shape_refusals(FIXED, _FIXED_WHY)

    def rewrite(self, model: Any, shapes: dict[str, list[int]] | None) -> Any:
        import onnxslim

        if shapes is None:
            return onnxslim.slim(model)
        # onnxslim's input_shapes: "name:d0,d1,..." per input
        return onnxslim.slim(model, input_shapes=[f"{name}:{','.join(map(str, dims))}"
                                                  for name, dims in shapes.items()])


class OnnxSim(OnnxRewriter):
    name = "onnxsim"
    packages = ("onnxsim", "onnx", "torch", "onnxruntime")
    imports = ("onnxsim", "onnx", "torch", "onnxruntime")
    configurations: ClassVar[tuple[Configuration, ...]] = _configurations(fixed=True)
    expected = fixed_shape_refusals(FIXED, _FIXED_WHY)

    def rewrite(self, model: Any, shapes: dict[str, list[int]] | None) -> Any:
        import onnxsim

        simplified, checked = onnxsim.simplify(model, overwrite_input_shapes=shapes)
        if not checked:  # check_n=0 runs no comparison, so False is its own failure
            raise ConversionError("onnxsim.simplify: its check of the simplified model failed")
        return simplified


class OnnxOptimizer(OnnxRewriter):
    """``onnxoptimizer.optimize`` with its default passes (the fuse and elimination ones);
    it fixes no shapes."""

    name = "onnxoptimizer"
    packages = ("onnxoptimizer", "onnx", "torch", "onnxruntime")
    imports = ("onnxoptimizer", "onnx", "torch", "onnxruntime")
    configurations: ClassVar[tuple[Configuration, ...]] = _configurations(fixed=False)

    def rewrite(self, model: Any, shapes: dict[str, list[int]] | None) -> Any:
        import onnxoptimizer

        return onnxoptimizer.optimize(model)
