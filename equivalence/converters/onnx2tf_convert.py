"""onnx2tf (ONNX -> SavedModel and TFLite) of a ``torch.onnx.export`` file, probed as deployed.

The ONNX file is :class:`~.torch_onnx_probed.TorchOnnxProbed`'s fixed-shape export of
the torch runtime's ``nn.LSTM`` (``forward(x, h0, c0)``, batch 2 and 4 steps).
``onnx2tf.convert`` writes a SavedModel (with its signature) and
``model_float32.tflite`` beside it; compare opens either. Configurations:

* ``fixed shapes, float32 TFLite`` and ``fixed shapes, SavedModel``: other shapes must
  be refused (by design);
* ``fixed shapes, 2 layers, batch = hidden``: the float32 TFLite of a 2-layer LSTM
  whose hidden size is the export's batch (2): silently wrong at the exported shape
  (a known failure, not reported upstream: ``findings/
  onnx2tf_stacked_batch_equals_hidden.py``).

Why ``keep_shape_absolutely_input_names``: onnx2tf's default turns every 3-D input
from NCW to NWC, ``h0``/``c0`` (rows, batch, hidden) included, and then its LSTM
refuses the transposed state (``initial_state ... not compatible with
cell.state_size``). Not claimed: dynamic batch and time (the SavedModel refuses its
own exported shape, ``Incompatible shapes [T, 4H] vs. [B, 4H]`` in its while loop,
and the TFLite conversion fails on ``tfl.squeeze``).

onnx2tf's own ``-cotof`` check (ONNX Runtime against TF on its random input at the
exported shape, atol 1e-4) is a peer: its verdict for each graph output is kept in
the run's notes beside our probes.

onnx2tf 1.29.24 pins older numpy, TensorFlow and onnx, so it is installed with
``--no-deps`` (``.ci/run``) and runs with the installed TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from equivalence.capabilities import LENGTHS
from equivalence.case import Case
from equivalence.converters.base import Configuration, claims
from equivalence.converters.exporter import Exporter, fixed_shape_refusals
from equivalence.converters.torch_module import EXPORT_SHAPE
from equivalence.converters.torch_onnx_probed import TorchOnnxProbed
from equivalence.errors import ConversionError
from equivalence.known import Known

TFLITE, SAVEDMODEL = "fixed shapes, float32 TFLite", "fixed shapes, SavedModel"
STACKED = "fixed shapes, 2 layers, batch = hidden"
_CLAIMS = claims(lacks=(LENGTHS,))  # the stateful torch export takes no lengths
_FIXED_WHY = "the ONNX export fixes batch 2 and 4 steps"
STACKED_WRONG = Known(
    "silently wrong",
    "a 2-layer LSTM exported at a batch equal to its hidden size converts and runs, but "
    "its numbers are wrong (its own -cotof says Unmatched); batch != hidden or one layer "
    "matches; reproducer findings/onnx2tf_stacked_batch_equals_hidden.py",
    upstream="not reported upstream")
_OUTPUTS = ("output", "h_n", "c_n")
# onnx2tf's output (folder, -cotof note) per ONNX file, for this process: the SavedModel
# and TFLite configurations convert the same export (about 15 s each)
_CONVERTED: dict[str, tuple[Path, str]] = {}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CHECKED = re.compile(r"onnx_output_name: (\S+) shape: \S.*?validate_result:\s+(Matches|"
                      r"Unmatched\s+max_abs_error: \S+|Skipped)")


def _stacked_at_batch(case: Case) -> bool:
    """The known failure's condition: more than one layer, one direction, H = the batch."""
    spec = case.spec
    return spec.layers > 1 and spec.directions == 1 and spec.units == EXPORT_SHAPE[0]


class Onnx2Tf(Exporter):
    name = "onnx2tf"
    packages = ("onnx2tf", "tensorflow|tensorflow-cpu", "onnx")
    imports = ("onnx2tf", "torch")
    source = "torch"
    target = "tflite"
    configurations: ClassVar[tuple[Configuration, ...]] = (
        Configuration(TFLITE, _CLAIMS, options=(("artefact", "tflite"),)),
        Configuration(SAVEDMODEL, _CLAIMS, options=(("artefact", "savedmodel"),)),
        Configuration(STACKED, _CLAIMS, options=(("artefact", "tflite"), ("stacked", True))),
    )
    expected: ClassVar[dict[tuple[str, str], Known]] = {
        **fixed_shape_refusals(TFLITE, _FIXED_WHY),
        **fixed_shape_refusals(SAVEDMODEL, _FIXED_WHY),
        **fixed_shape_refusals(STACKED, _FIXED_WHY),
        **{(STACKED, probe): STACKED_WRONG
           for probe in ("exported shape", "initial states", "streaming")}}
    not_claimed = ("dynamic batch and time: the SavedModel refuses its own exported shape "
                   "and the float32 TFLite conversion fails (tfl.squeeze squeeze_dims)")

    def __init__(self) -> None:
        self._notes: list[str] = []

    def cases(self, config: Configuration) -> Any:
        """The stacked configuration's cases: 2 layers, one direction, hidden = batch 2."""
        drawn = super().cases(config)
        if not config.option("stacked"):  # the known failure is the stacked configuration's
            return drawn.filter(lambda case: not _stacked_at_batch(case))
        return drawn.filter(lambda case: (case.spec.layers, case.spec.directions,
                                          case.spec.units, case.spec.projection_size)
                            == (2, 1, EXPORT_SHAPE[0], None))

    def export(self, config: Configuration, case: Case, native: Any, folder: Path) -> Path:
        import onnx2tf

        fixed = Configuration("fixed", options=(("dynamic", False),))
        source = TorchOnnxProbed().export(fixed, case, native, folder)
        out = folder / "tf"
        key = hashlib.sha256(source.read_bytes()).hexdigest()
        if key not in _CONVERTED:  # one conversion serves the SavedModel and the TFLite
            kept = Path(tempfile.mkdtemp(prefix="equivalence-onnx2tf-")) / "tf"
            said = io.StringIO()
            with _venv_on_path(), contextlib.redirect_stdout(said):
                onnx2tf.convert(input_onnx_file_path=str(source), output_folder_path=str(kept),
                                keep_shape_absolutely_input_names=["input", "h0", "c0"],
                                output_signaturedefs=True,
                                check_onnx_tf_outputs_elementwise_close_full=True)
            _CONVERTED[key] = (kept, cotof_note(said.getvalue()))
        kept, note = _CONVERTED[key]
        shutil.copytree(kept, out)
        self._notes.append(note)
        if config.option("artefact") == "savedmodel":
            return out
        tflite = out / "model_float32.tflite"
        if not tflite.is_file():
            raise ConversionError(f"onnx2tf wrote no {tflite.name} in {out}: "
                                  f"{sorted(p.name for p in out.iterdir())}")
        return tflite

    def take_notes(self) -> list[str]:
        notes, self._notes = self._notes, []
        return notes


def cotof_note(printed: str) -> str:
    """onnx2tf's ``-cotof`` verdict for each graph output, from what it printed."""
    found = {name: verdict for name, verdict in _CHECKED.findall(_ANSI.sub("", printed))}
    said = ", ".join(f"{name} {' '.join(found[name].split())}"
                     for name in _OUTPUTS if name in found)
    return ("onnx2tf -cotof (atol 1e-4, its random input at the exported shape): "
            + (said or "no verdict printed"))


@contextlib.contextmanager
def _venv_on_path() -> Iterator[None]:
    """onnx2tf runs ``onnxsim`` as a command: let it find the one installed beside us."""
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), before))
    try:
        yield
    finally:
        os.environ["PATH"] = before
