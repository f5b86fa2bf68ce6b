"""IREE's ONNX import of a ``torch.onnx.export`` file, compiled for the CPU and probed as deployed.

The ONNX file is :class:`~.torch_onnx_probed.TorchOnnxProbed`'s export of the torch
runtime's ``nn.LSTM`` (``forward(x, h0, c0)``). ``iree-import-onnx`` turns it into
MLIR, ``iree.compiler.compile_file`` compiles that for ``llvm-cpu`` (the host CPU)
into ``model.vmfb``, and the ``local-task`` driver of ``iree.runtime`` runs the
module's ``main_graph`` on the ONNX graph's inputs, in the graph's order.
compare opens no ``.vmfb``, so :meth:`IreeOnnx.open_artefact` makes the side
here: its ports (names and shapes, ``None`` where dynamic) are the ONNX graph's.
Configurations:

* ``torch.onnx export, dynamic axes``: batch and time dynamic (every probe should match);
* ``torch.onnx export, fixed shapes``: other shapes must be refused (by design).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from equivalence.capabilities import LENGTHS
from equivalence.case import Case
from equivalence.converters.base import Configuration, claims
from equivalence.converters.exporter import Exporter, fixed_shape_refusals
from equivalence.converters.torch_onnx_probed import TorchOnnxProbed
from equivalence.errors import ConversionError

DYNAMIC, FIXED = "torch.onnx export, dynamic axes", "torch.onnx export, fixed shapes"
_CLAIMS = claims(lacks=(LENGTHS,))  # the stateful torch export takes no lengths


class IreeOnnx(Exporter):
    name = "IREE ONNX import"
    packages = ("iree-base-compiler", "iree-base-runtime", "torch")
    imports = ("iree.compiler", "iree.runtime", "torch")
    source = "torch"
    target = "onnxruntime"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration(DYNAMIC, _CLAIMS, options=(("dynamic", True),)),
        Configuration(FIXED, _CLAIMS, options=(("dynamic", False),)),
    )
    expected = fixed_shape_refusals(FIXED, "no dynamic axes: the graph fixes batch 2 and 4 steps")

    def export(self, config: Configuration, case: Case, native: Any, folder: Path) -> Path:
        from iree.compiler import compile_file

        source = TorchOnnxProbed().export(config, case, native, folder)
        mlir, vmfb = folder / "model.mlir", folder / "model.vmfb"
        imported = subprocess.run([sys.executable, "-m", "iree.compiler.tools.import_onnx",
                                   str(source), "-o", str(mlir)],
                                  capture_output=True, text=True, check=False)
        if imported.returncode != 0:
            raise ConversionError(f"iree-import-onnx {source.name}: {imported.stderr[-400:]}")
        compile_file(str(mlir), target_backends=["llvm-cpu"], output_file=str(vmfb),
                     extra_args=["--iree-llvmcpu-target-cpu=host"])
        return vmfb

    def open_artefact(self, path: Path) -> Any:
        return vmfb_side(path, path.with_suffix(".onnx"))


def vmfb_side(vmfb: Path, onnx_file: Path) -> Any:
    """A compare side running ``vmfb``'s ``main_graph``, ported as ``onnx_file``'s graph."""
    from importlib import metadata

    import iree.runtime
    import onnx

    from equivalence.artefacts.ports import ported_side

    graph = onnx.load(str(onnx_file)).graph
    inputs, outputs = [_port(v) for v in graph.input], [_port(v) for v in graph.output]
    content = vmfb.read_bytes()  # read now: the export's folder goes once the side is open

    def invoke(fed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        module = iree.runtime.load_vm_flatbuffer(content, driver="local-task")
        returned = module.main_graph(*(fed[p.name] for p in inputs))
        if not isinstance(returned, (list, tuple)):
            returned = [returned]
        if len(returned) != len(outputs):
            raise ConversionError(f"{vmfb.name}: main_graph returned {len(returned)} tensors, "
                                  f"expected {len(outputs)} (the ONNX graph's outputs)")
        return {p.name: np.asarray(r.to_host() if hasattr(r, "to_host") else r)
                for p, r in zip(outputs, returned, strict=True)}

    label = f"iree-base-runtime {metadata.version('iree-base-runtime')}, local-task (llvm-cpu)"
    return ported_side(str(vmfb), "IREE module", label, inputs, outputs, invoke, {})


def _port(value: Any) -> Any:
    from equivalence.artefacts.ports import Port

    dims = value.type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return Port(value.name, shape, "float32")
