"""The conformance grid's known findings: what each runtime is expected to get wrong or refuse.

Owns :data:`KNOWN`, one :class:`Known` per (runtime, feature) cell, recorded from the
grid (upstream behaviour, not ours), and :func:`known_finding`, which drops a finding
from the release it was fixed in on. The verdict names are the grid's vocabulary.
Each silently wrong cell has its standalone reproducer in ``findings/``.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

from equivalence.table import entry

MATCH, REFUSED, WRONG = "match", "refused", "silently wrong"
VERDICTS = (MATCH, REFUSED, WRONG)


@dataclass(frozen=True)
class Known:
    """A finding the grid is expected to reproduce (upstream behaviour, not ours)."""

    verdict: str
    reason: str
    # The first upstream release seen to match instead. From it on the finding is not
    # expected: the cell must match, so a regression there is a new finding again.
    fixed_in: str | None = None


def known_finding(runtime: str, feature: str) -> Known | None:
    """The finding expected of ``runtime`` on ``feature`` with the installed version."""
    known = KNOWN.get((runtime, feature))
    if known is None or known.fixed_in is None:
        return known
    return None if _release(_installed_version(runtime)) >= _release(known.fixed_in) else known


@functools.cache
def _installed_version(runtime: str) -> str:
    return entry(runtime).load().version()


def _release(version: str) -> tuple[int, ...]:
    """``"5.1.0"`` -> (5, 1, 0); the numeric leading fields only (``"4.8.0.76"`` keeps all)."""
    numbers = []
    for part in version.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


KNOWN: dict[tuple[str, str], Known] = {
    ("tract", "reverse"): Known(WRONG, "tract 0.23.9 computes direction=reverse as forward"),
    ("tract", "gate_clip"): Known(WRONG, "tract 0.23.9 ignores the LSTM clip attribute"),
    ("tract", "activations"): Known(WRONG, "tract 0.23.9 ignores the activations attribute"),
    ("tract", "input_forget"): Known(WRONG, "tract 0.23.9 ignores input_forget"),
    ("tract", "sequence lengths"): Known(REFUSED, "tract: Non constant seq_len is not supported"),
    ("tract", "float64"): Known(REFUSED, "tract: LstmEpilogue has no float64"),
    ("tract", "no initial-state input"): Known(
        REFUSED, "tract: a one-layer forward LSTM without initial_h fails for batch > 1"),
    ("onnxruntime", "layout=1"): Known(REFUSED, "ORT: layout=1 is not supported"),
    ("onnxruntime", "float64"): Known(REFUSED, "ORT: LSTM does not support double yet"),
}
KNOWN.update({
    # Recorded on opencv-python-headless 5.0.0; 5.1.0 matches on reverse, peepholes,
    # layout=1 and float64 (the grid, 2026-12-02).
    ("opencv", "reverse"): Known(WRONG, "OpenCV: with direction=reverse, Y_h/Y_c are the state "
                                "after the first step walked (t = T-1)", fixed_in="5.1"),
    ("opencv", "gate_clip"): Known(WRONG, "OpenCV ignores the LSTM clip attribute"),
    ("opencv", "input_forget"): Known(WRONG, "OpenCV ignores input_forget"),
    ("opencv", "peepholes"): Known(WRONG, "OpenCV reads P as i, f, o (ONNX: i, o, f)",
                                  fixed_in="5.1"),
    ("opencv", "sequence lengths"): Known(WRONG, "OpenCV ignores sequence_lens: Y_h/Y_c are "
                                         "the full-length state"),
    ("opencv", "float64"): Known(WRONG, "OpenCV computes float64 LSTM graphs wrongly",
                                fixed_in="5.1"),
    ("opencv", "layout=1"): Known(REFUSED, "OpenCV: transposeND assertion on layout=1",
                                 fixed_in="5.1"),
    ("opencv", "activations"): Known(REFUSED, "OpenCV: the importer fails on activations"),
})
# The cell activation (g = h), found by the grid (seed 0, 10 examples a cell, 2026-12-02).
_ONNX_NAMES = {"relu": "Relu", "linear": "Affine", "sigmoid": "Sigmoid", "softsign": "Softsign",
               "softplus": "Softplus", "elu": "Elu"}
for _name, _onnx in _ONNX_NAMES.items():
    KNOWN[("tract", f"activation {_name}")] = Known(
        WRONG, "tract 0.23.9 ignores the activations attribute (runs Tanh)")
    if _name != "sigmoid":  # OpenCV 5.1 runs a one-layer forward Sigmoid node right
        KNOWN[("opencv", f"activation {_name}")] = Known(
            REFUSED, f"OpenCV: a model with {_onnx} cell activations cannot be loaded")
    if _name not in ("relu", "sigmoid"):  # OpenVINO's LSTMSequence runs Relu and Sigmoid
        for _row in ("openvino", "openvino_default"):
            KNOWN[(_row, f"activation {_name}")] = Known(
                REFUSED, f"OpenVINO: ConvertLSTMSequenceToTensorIterator fails on {_onnx}")
for _row in ("openvino", "openvino_default"):
    KNOWN.update({
        (_row, "peepholes"): Known(
            WRONG, "OpenVINO's ONNX frontend drops the P input and runs without peepholes"),
        (_row, "input_forget"): Known(WRONG, "OpenVINO ignores input_forget"),
        (_row, "layout=1"): Known(WRONG, "OpenVINO mishandles layout=1: Y comes back empty "
                                  "with initial states, (B, D, T, H) without (cf. "
                                  "openvinotoolkit/openvino#37820)"),
        (_row, "float64"): Known(WRONG, "OpenVINO's CPU plugin runs float64 graphs in float32"),
        (_row, "activations"): Known(REFUSED, "OpenVINO: Unsupported activation function"),
    })


# GRU nodes (the grid's "GRU ..." columns, linear_before_reset=1 unless the column is the
# other variant), found by the grid (seed 0, 4 and 10 examples a cell, 2026-12-03).
KNOWN.update({
    ("tract", "GRU reverse"): Known(WRONG, "tract 0.23.9 computes a GRU's direction=reverse "
                                    "as forward"),
    ("tract", "GRU gate_clip"): Known(WRONG, "tract 0.23.9 ignores the GRU clip attribute"),
    ("tract", "GRU activations"): Known(WRONG, "tract 0.23.9 ignores the GRU activations "
                                        "attribute"),
    ("tract", "GRU sequence lengths"): Known(REFUSED, "tract: Non constant seq_len is not "
                                             "supported (GRU)"),
    ("opencv", "GRU activations"): Known(REFUSED, "OpenCV: a GRU model with activations "
                                         "cannot be loaded"),
    ("opencv", "GRU no initial_h input"): Known(
        REFUSED, "OpenCV 5.1.0: a GRU net without initial_h fails its second run "
        "(GRULayerImpl::prepareRuntimeState, batch > 1)"),
})
for _name, _onnx in _ONNX_NAMES.items():
    KNOWN[("tract", f"GRU activation {_name}")] = Known(
        WRONG, "tract 0.23.9 ignores the GRU activations attribute (runs Tanh)")
    # OpenCV loads no GRU node with an activations attribute, Sigmoid g included
    KNOWN[("opencv", f"GRU activation {_name}")] = Known(
        REFUSED, f"OpenCV: a GRU model with {_onnx} activations cannot be loaded")
    if _name not in ("relu", "sigmoid"):  # OpenVINO's GRUSequence runs Relu and Sigmoid
        for _row in ("openvino", "openvino_default"):
            KNOWN[(_row, f"GRU activation {_name}")] = Known(
                REFUSED, f"OpenVINO: ConvertGRUSequenceToTensorIterator fails on {_onnx}")
for _row in ("openvino", "openvino_default"):
    KNOWN[(_row, "GRU activations")] = Known(
        REFUSED, "OpenVINO: Unsupported activation function (GRU)")
