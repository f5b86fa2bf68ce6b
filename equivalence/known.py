"""Known findings: what a runtime or converter is expected to get wrong or refuse.

Owns :class:`Known`, the verdict names, and the findings recorded for each
deployment engine (upstream behaviour, not ours). A finding sits on the row it
belongs to, as OpInfo puts its skips on the entry: a table row's ``known``
maps a conformance column (or :data:`MATRIX`, its checks against the
reference) to a :class:`Known`, and a converter configuration carries its own.
Findings are expectations, never inputs: the verdicts come from generated
cases, and the suite fails when one stops reproducing. Each silently wrong
grid cell has a standalone reproducer in ``findings/``. No framework at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

MATCH, REFUSED, WRONG = "match", "refused", "silently wrong"
VERDICTS = (MATCH, REFUSED, WRONG)
BY_DESIGN = "by design"
# A row's key for its checks against the float64 reference (the matrix), beside grid columns.
MATRIX = "against the reference"


@dataclass(frozen=True)
class Known:
    """A finding expected to reproduce (upstream behaviour, not ours).

    ``fixed_in`` is the first upstream release seen to match instead: from it on
    the finding is not expected, so a regression there is a new finding again.
    ``signature`` is text a converter's failure message or diagnosis shows, so
    that another failure is not taken for the known one. ``upstream`` is where it
    is reported: an issue URL, "not reported upstream", or :data:`BY_DESIGN` (a
    refusal an exporter's configuration claims, such as a fixed-shape export).
    """

    verdict: str
    reason: str
    fixed_in: str | None = None
    signature: str = ""
    upstream: str = ""

    @property
    def by_design(self) -> bool:
        """A refusal the configuration claims (a fixed-shape export refusing other shapes)."""
        return self.upstream == BY_DESIGN


def _frozen(findings: dict[str, Known]) -> Mapping[str, Known]:
    return MappingProxyType(findings)


# ONNX cell activations (g = h) by the spec's name, with the engines' own operator names.
_ONNX_NAMES = {"relu": "Relu", "linear": "Affine", "sigmoid": "Sigmoid", "softsign": "Softsign",
               "softplus": "Softplus", "elu": "Elu"}

ONNXRUNTIME = _frozen({
    "layout=1": Known(REFUSED, "ORT: layout=1 is not supported"),
    "float64": Known(REFUSED, "ORT: LSTM does not support double yet"),
})


def _tract() -> dict[str, Known]:
    found = {
        "reverse": Known(WRONG, "tract 0.23.9 computes direction=reverse as forward"),
        "gate_clip": Known(WRONG, "tract 0.23.9 ignores the LSTM clip attribute"),
        "activations": Known(WRONG, "tract 0.23.9 ignores the activations attribute"),
        "input_forget": Known(WRONG, "tract 0.23.9 ignores input_forget"),
        "sequence lengths": Known(REFUSED, "tract: Non constant seq_len is not supported"),
        "float64": Known(REFUSED, "tract: LstmEpilogue has no float64"),
        "no initial-state input": Known(
            REFUSED, "tract: a one-layer forward LSTM without initial_h fails for batch > 1"),
        # GRU nodes (seed 0, 4 and 10 examples a cell, 2026-12-03)
        "GRU reverse": Known(WRONG, "tract 0.23.9 computes a GRU's direction=reverse as forward"),
        "GRU gate_clip": Known(WRONG, "tract 0.23.9 ignores the GRU clip attribute"),
        "GRU activations": Known(WRONG, "tract 0.23.9 ignores the GRU activations attribute"),
        "GRU sequence lengths": Known(REFUSED, "tract: Non constant seq_len is not supported "
                                      "(GRU)"),
    }
    for name in _ONNX_NAMES:  # the cell activation, found by the grid (seed 0, 2026-12-02)
        found[f"activation {name}"] = Known(
            WRONG, "tract 0.23.9 ignores the activations attribute (runs Tanh)")
        found[f"GRU activation {name}"] = Known(
            WRONG, "tract 0.23.9 ignores the GRU activations attribute (runs Tanh)")
    return found


def _opencv() -> dict[str, Known]:
    # Recorded on opencv-python-headless 5.0.0; 5.1.0 matches on reverse, peepholes,
    # layout=1 and float64 (the grid, 2026-12-02).
    found = {
        "reverse": Known(WRONG, "OpenCV: with direction=reverse, Y_h/Y_c are the state after "
                         "the first step walked (t = T-1)", fixed_in="5.1"),
        "gate_clip": Known(WRONG, "OpenCV ignores the LSTM clip attribute"),
        "input_forget": Known(WRONG, "OpenCV ignores input_forget"),
        "peepholes": Known(WRONG, "OpenCV reads P as i, f, o (ONNX: i, o, f)", fixed_in="5.1"),
        "sequence lengths": Known(WRONG, "OpenCV ignores sequence_lens: Y_h/Y_c are the "
                                  "full-length state"),
        "float64": Known(WRONG, "OpenCV computes float64 LSTM graphs wrongly", fixed_in="5.1"),
        "layout=1": Known(REFUSED, "OpenCV: transposeND assertion on layout=1", fixed_in="5.1"),
        "activations": Known(REFUSED, "OpenCV: the importer fails on activations"),
        "GRU activations": Known(REFUSED, "OpenCV: a GRU model with activations cannot be "
                                 "loaded"),
        "GRU no initial_h input": Known(
            REFUSED, "OpenCV 5.1.0: a GRU net without initial_h fails its second run "
            "(GRULayerImpl::prepareRuntimeState, batch > 1)"),
    }
    for name, onnx in _ONNX_NAMES.items():
        if name != "sigmoid":  # OpenCV 5.1 runs a one-layer forward Sigmoid node right
            found[f"activation {name}"] = Known(
                REFUSED, f"OpenCV: a model with {onnx} cell activations cannot be loaded")
        # OpenCV loads no GRU node with an activations attribute, Sigmoid g included
        found[f"GRU activation {name}"] = Known(
            REFUSED, f"OpenCV: a GRU model with {onnx} activations cannot be loaded")
    return found


def _openvino() -> dict[str, Known]:
    found = {
        "peepholes": Known(
            WRONG, "OpenVINO's ONNX frontend drops the P input and runs without peepholes"),
        "input_forget": Known(WRONG, "OpenVINO ignores input_forget"),
        "layout=1": Known(WRONG, "OpenVINO mishandles layout=1: Y comes back empty with "
                          "initial states, (B, D, T, H) without (cf. "
                          "openvinotoolkit/openvino#37820)"),
        "float64": Known(WRONG, "OpenVINO's CPU plugin runs float64 graphs in float32"),
        "activations": Known(REFUSED, "OpenVINO: Unsupported activation function"),
        "GRU activations": Known(REFUSED, "OpenVINO: Unsupported activation function (GRU)"),
    }
    for name, onnx in _ONNX_NAMES.items():
        if name not in ("relu", "sigmoid"):  # LSTMSequence and GRUSequence run these two
            found[f"activation {name}"] = Known(
                REFUSED, f"OpenVINO: ConvertLSTMSequenceToTensorIterator fails on {onnx}")
            found[f"GRU activation {name}"] = Known(
                REFUSED, f"OpenVINO: ConvertGRUSequenceToTensorIterator fails on {onnx}")
    return found


TRACT = _frozen(_tract())
OPENCV = _frozen(_opencv())
OPENVINO = _frozen(_openvino())
# The CPU plugin's default precision: the runtime says whether this machine gets it.
OPENVINO_DEFAULT = _frozen({**OPENVINO, MATRIX: Known(
    WRONG, "OpenVINO's CPU plugin runs float32 graphs at a reduced precision by default on a "
    "CPU with AVX512-BF16 or AMX: outputs off by about 1e-3 to 1e-2; "
    "INFERENCE_PRECISION_HINT=f32 (the openvino row) matches")})
