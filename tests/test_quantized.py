"""Quantized LSTMs: every path really quantizes and runs, and the oracle's bound has teeth.

Each path is judged on random LSTMs of a few shapes and must match its
quantization; a deliberately wrong dequantization (gates swapped, a scale off
by 2x) given to the oracle must be judged silently wrong; the bound and the
error against the float reference are reported; the report section renders.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from equivalence.quantized import litert, onnxruntime_dynamic, openvino_nncf, torch_dynamic
from equivalence.quantized.litert_weights import dequantized_weights as litert_dequantized
from equivalence.quantized.oracle import (
    MATCHES,
    ORT_DYNAMIC,
    TORCH_DYNAMIC,
    WRONG,
    Scheme,
    judge,
    oracle,
    with_scaled_weights,
    with_swapped_gates,
)
from equivalence.quantized.result import (
    BATCH,
    FAILED,
    NOT_RUN,
    STEPS,
    example_inputs,
    example_weights,
)
from equivalence.reference import lstm
from equivalence.report import to_html, to_markdown
from equivalence.report.document import Document, Table
from equivalence.report.quantized_part import section
from equivalence.spec import LSTMSpec

pytestmark = pytest.mark.cpu
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SMALL, STACKED, WIDE = LSTMSpec(3, 4), LSTMSpec(5, 6, layers=2), LSTMSpec(16, 16)


def _reported(result) -> None:
    """A judged record carries its figures: the bound, and the error against float."""
    data = result.to_dict()
    assert data["bound"] > 0 and data["error_vs_float"] >= 0
    assert data["error_vs_oracle"] <= data["bound"] or data["verdict"] == WRONG


# ------------------------------------------------------------------ the oracle itself


def test_unquantized_oracle_is_the_float_reference():
    rng = np.random.default_rng(0)
    weights = example_weights(STACKED, rng)
    x = example_inputs(rng, BATCH, STEPS, STACKED.input_size)
    out, bound = oracle(weights, x, Scheme("float", None))
    np.testing.assert_allclose(out, lstm(weights, x).outputs, rtol=0, atol=1e-12)
    assert bound.max() < 1e-4  # only float32 slack is left


def test_emulated_input_quantization_stays_within_its_step():
    v = np.random.default_rng(1).uniform(-1.0, 1.0, (4, 7))
    for scheme in (TORCH_DYNAMIC, ORT_DYNAMIC):
        assert np.abs(scheme.quantize(v) - v).max() <= scheme.step(v, 0.0) / 2 + 1e-12


# ------------------------------------------------------------------ torch


@pytest.mark.parametrize("spec", [SMALL, STACKED, WIDE], ids=["3x4", "5x6x2", "16x16"])
def test_torch_dynamic_matches_its_quantization(spec):
    result = torch_dynamic.run(spec, examples=2, seed=0)
    assert result.verdict == MATCHES, result
    _reported(result)


def _torch_case(spec: LSTMSpec, seed: int = 5):
    import torch

    rng = np.random.default_rng(seed)
    weights = example_weights(spec, rng)
    module = torch_dynamic.quantized_module(weights)
    x = example_inputs(rng, BATCH, STEPS, spec.input_size)
    with torch.no_grad():
        out = module(torch.from_numpy(x.astype(np.float32)))[0].double().numpy()
    return out, torch_dynamic.dequantized_weights(module, spec), weights, x


@pytest.mark.parametrize("wrong", ["gates g/o swapped", "gates i/f swapped", "scale x2",
                                   "scale x0.5"])
def test_torch_wrong_dequantization_is_silently_wrong(wrong):
    out, dequantized, weights, x = _torch_case(SMALL)
    assert judge(out, dequantized, weights, x, TORCH_DYNAMIC).verdict == MATCHES
    bad = {"gates g/o swapped": lambda: with_swapped_gates(dequantized, 2, 3),
           "gates i/f swapped": lambda: with_swapped_gates(dequantized, 0, 1),
           "scale x2": lambda: with_scaled_weights(dequantized, 2.0),
           "scale x0.5": lambda: with_scaled_weights(dequantized, 0.5)}[wrong]()
    assert judge(out, bad, weights, x, TORCH_DYNAMIC).verdict == WRONG


def test_the_dequantized_weights_are_the_int8_grid():
    """The read-back weights sit on their scale's grid, within half a step of the float ones."""
    _, dequantized, weights, _ = _torch_case(SMALL)
    got, want = dequantized.cells[0][0].w_input, weights.cells[0][0].w_input
    step = np.abs(got).max() / 127  # per-tensor symmetric: the largest weight is +-127 steps
    np.testing.assert_allclose(got / step, np.rint(got / step), atol=1e-3)
    assert np.abs(got - want).max() <= step / 2 * (1 + 1e-4)


# ------------------------------------------------------------------ ONNX Runtime


@pytest.mark.parametrize("spec", [SMALL, STACKED], ids=["3x4", "5x6x2"])
def test_onnxruntime_reduce_range_matches_its_quantization(spec):
    result = onnxruntime_dynamic.run(spec, examples=2, seed=0, reduce_range=True)
    assert result.verdict == MATCHES, result
    _reported(result)


def test_onnxruntime_default_runs_and_is_judged():
    """The default call (full 8-bit weights) really runs; whether it saturates is the CPU's.

    On x86 with AVX2 the u8 x s8 kernel adds pairs of products in saturating int16, so the
    default is judged silently wrong here; the verdict is recorded, not assumed.
    """
    result = onnxruntime_dynamic.run(SMALL, examples=1, seed=0)
    assert result.verdict in (MATCHES, WRONG)
    _reported(result)


def test_onnxruntime_wrong_scale_is_silently_wrong():
    import onnxruntime

    rng = np.random.default_rng(7)
    weights = example_weights(SMALL, rng)
    model = onnxruntime_dynamic.quantized_model(weights, reduce_range=True)
    x = example_inputs(rng, BATCH, STEPS, SMALL.input_size)
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    out = session.run(None, {"X": np.swapaxes(x, 0, 1).astype(np.float32)})[0]
    out = out[:, 0].transpose(1, 0, 2)
    dequantized = onnxruntime_dynamic.dequantized_weights(model, SMALL)
    assert judge(out, dequantized, weights, x, ORT_DYNAMIC).verdict == MATCHES
    assert judge(out, with_scaled_weights(dequantized, 0.5), weights, x,
                 ORT_DYNAMIC).verdict == WRONG


# ------------------------------------------------------------------ LiteRT


@pytest.mark.parametrize("mode,spec", [("dynamic", WIDE), ("int8", SMALL), ("int16x8", SMALL),
                                       ("int8", STACKED)],
                         ids=["dynamic-16x16", "int8-3x4", "int16x8-3x4", "int8-5x6x2"])
def test_litert_matches_its_quantization(mode, spec):
    result = litert.run(spec, mode, examples=1, seed=0)
    assert result.verdict == MATCHES, result
    assert not result.notes[0].startswith("0 quantized"), result.notes  # really quantized
    _reported(result)


def test_litert_dynamic_leaves_small_weights_float():
    """Under 1024 elements a matrix, dynamic range quantizes nothing: the note says so."""
    result = litert.run(SMALL, "dynamic", examples=1, seed=0)
    assert result.verdict == MATCHES
    assert result.notes[0].startswith("0 quantized weight tensors"), result.notes


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_litert_swapped_gates_are_silently_wrong(mode):
    spec = WIDE if mode == "dynamic" else SMALL
    rng = np.random.default_rng(11)
    weights = example_weights(spec, rng)
    x = example_inputs(rng, BATCH, STEPS, spec.input_size)
    content = litert.convert(weights, mode, [x])
    out = litert.invoke(content, x)
    dequantized, matched = litert_dequantized(content, weights)
    scheme = litert.scheme_for(mode, content, matched)
    assert matched and judge(out, dequantized, weights, x, scheme).verdict == MATCHES
    assert judge(out, with_swapped_gates(dequantized, 2, 3), weights, x, scheme).verdict == WRONG


def test_litert_loop_form_full_integer_is_recorded():
    """The WHILE-loop form's full-integer conversion is probed in a subprocess, never dropped."""
    found = litert.loop_form_probe(SMALL, "int8")
    if found is not None:  # today: the converter dies with SIGSEGV
        assert found.verdict == FAILED and found.reason


# ------------------------------------------------------------------ OpenVINO/NNCF, the report


def test_openvino_nncf_is_listed_with_its_reason():
    result = openvino_nncf.run(SMALL, examples=1, seed=0)
    assert result.verdict == NOT_RUN and "nncf" in result.reason


def test_report_section_renders_the_rows():
    rows = [torch_dynamic.run(SMALL, 1, 0).to_dict(),
            openvino_nncf.run(SMALL, 1, 0).to_dict()]
    blocks = section({"quantized": rows})
    (table,) = [b for b in blocks if isinstance(b, Table)]
    assert len(table.rows) == 2 and "bound (max)" in table.header
    assert section({"quantized": []}) == []
    doc = Document("quantized")
    doc.blocks += blocks
    markdown, html = to_markdown.render(doc), to_html.render(doc)
    for text in (markdown, html):
        assert "Quantized LSTMs" in text and "matches its quantization" in text
        assert "nncf is not installed" in text
