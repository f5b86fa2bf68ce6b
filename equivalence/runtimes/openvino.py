"""OpenVINO: our ONNX ``LSTM`` graph read by OpenVINO's ONNX frontend, run on its CPU plugin.

Two runtimes, one per precision setting: :class:`OpenVinoRuntime` compiles
with ``INFERENCE_PRECISION_HINT=f32``; :class:`OpenVinoDefaultRuntime` keeps
the plugin's default, which is bf16 on CPUs with AVX512-BF16 or AMX (about
1e-2 off the reference, measured upstream of this project) and f32 on the
AVX2-only CPUs of this project's machines. Which one a run got is in
:meth:`OpenVinoRuntime.version`, so the report says it.

Facts this module relies on (verified against openvino 2026.4.1, CPU plugin):

* Weights as graph inputs and symbolic batch/time dimensions compile once per
  graph; the compiled model keeps one infer request.
* The ONNX frontend drops a ``P`` (peephole) input from the model's inputs and
  computes without peepholes; it runs float64 graphs at float32 precision;
  ``activations`` other than the defaults fail to compile; ``layout=1`` is
  read as time-major. The conformance grid finds these; the table row does
  not claim them.
* Feeds must name inputs the compiled model has, so only those are fed: the
  way a deployment builds its feeds from ``compiled.inputs``.
"""

from __future__ import annotations

from typing import ClassVar

from equivalence.runtimes._onnx_family import Compiled, Feeds, OnnxModelRuntime


class OpenVinoRuntime(OnnxModelRuntime):
    """OpenVINO CPU with float32 inference precision."""

    module: ClassVar[str] = "openvino"
    per_shape: ClassVar[bool] = True  # see the module docstring
    precision_hint: ClassVar[str | None] = "f32"

    def version(self) -> str:
        import openvino

        return f"{openvino.__version__.split('-')[0]} (inference precision {self.precision()})"

    def precision(self) -> str:
        """The inference precision compiled models get here (the hint, or the CPU default)."""
        compiled = _core().compile_model(_tiny_model(), "CPU", self._config())
        return str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())

    def compile(self, model: bytes, feeds: Feeds) -> Compiled:
        core = _core()
        compiled = core.compile_model(core.read_model(model), "CPU", self._config())
        names = [port.get_any_name() for port in compiled.inputs]
        request = compiled.create_infer_request()

        def run(fed: Feeds) -> list:
            outputs = request.infer({name: fed[name] for name in names})
            return [outputs[port] for port in compiled.outputs]

        return run

    def _config(self) -> dict[str, str | int]:
        # One thread: these graphs are tiny, and the machines run several jobs at once.
        config: dict[str, str | int] = {"INFERENCE_NUM_THREADS": 1}
        if self.precision_hint is not None:
            config["INFERENCE_PRECISION_HINT"] = self.precision_hint
        return config


class OpenVinoDefaultRuntime(OpenVinoRuntime):
    """OpenVINO CPU with the plugin's default inference precision."""

    precision_hint: ClassVar[str | None] = None

    def deviates_here(self) -> bool:
        # bf16 where the CPU has AVX512-BF16 or AMX; elsewhere the default is f32 and matches
        return self.precision() != "f32"


_CORE: list = []


def _core():  # -> openvino.Core (one per process: it owns the plugins)
    if not _CORE:
        import openvino

        _CORE.append(openvino.Core())
    return _CORE[0]


def _tiny_model():  # -> openvino.Model: one Relu, to read a compiled property
    import openvino
    import openvino.opset8 as ops

    parameter = ops.parameter([1], openvino.Type.f32)
    return openvino.Model([ops.relu(parameter)], [parameter])
