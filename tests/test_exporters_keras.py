"""Keras 3 ``model.export`` (SavedModel, ONNX, OpenVINO, LiteRT) and OpenVINO's
``convert_model`` of a Keras model: real exports, really run, judged through compare's probes.

The drawn cases are the smallest (one layer, one direction); one test draws two
Bidirectional layers. The must-fail case is an ONNX export whose h and c outputs are
swapped by name, which the judge must call unexpected and silently wrong.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from equivalence.converters.exporter import (
    AS_CLAIMED,
    EXPORTERS,
    KNOWN,
    UNEXPECTED,
    judge_exporter,
    load_exporter,
)
from equivalence.converters.keras_export import LITERT_FIXED, ONNX, KerasExport
from equivalence.converters.openvino_from_keras import OpenVinoFromKeras

pytestmark = pytest.mark.cpu

CONFIGS = [(cls, config) for cls in (KerasExport, OpenVinoFromKeras)
           for config in cls.configurations]


@pytest.mark.parametrize(("cls", "config"), CONFIGS,
                         ids=[f"{cls.name}: {config.name}" for cls, config in CONFIGS])
def test_every_configuration_is_as_claimed_or_known(cls, config):
    exporter = cls()
    run = judge_exporter(exporter, config, cases=1, probe_examples=2)
    assert run.cases == 1 and not run.errors, run.errors
    statuses = {p.name: p.status for p in run.probes.values()}
    assert UNEXPECTED not in statuses.values(), statuses
    assert set(statuses.values()) <= {AS_CLAIMED, KNOWN}, statuses
    assert {"exported shape", "initial states"} <= set(statuses)
    assert ("lengths" in statuses) == bool(config.option("lengths")), statuses
    for (configuration, probe), expected in exporter.expected.items():
        if configuration == config.name:
            assert run.probes[probe].verdict == expected.verdict, (probe, run.probes[probe])
    assert run.version.startswith(cls.packages[0] + " ")


class _Stacked(KerasExport):
    """Only 2-layer Bidirectional cases: stacked (rows, B, H) states, one LSTM node per layer."""

    def cases(self, config):
        return super().cases(config).filter(
            lambda case: case.spec.layers == 2 and case.spec.directions == 2)


def test_two_bidirectional_layers_with_lengths_through_onnx_are_as_claimed():
    exporter = _Stacked()
    config = next(c for c in exporter.configurations if c.name == f"{ONNX}, lengths (mask)")
    run = judge_exporter(exporter, config, cases=1, probe_examples=2)
    assert run.cases == 1 and not run.errors, run.errors
    statuses = {p.name: p.status for p in run.probes.values()}
    assert set(statuses.values()) == {AS_CLAIMED} and "lengths" in statuses, statuses


def test_fixed_shapes_are_claimed_refusals():
    fixed = {p for (c, p), e in KerasExport.expected.items() if c == LITERT_FIXED and e.by_design}
    assert {"longer time", "larger batch"} <= fixed


def test_the_keras_exporters_are_registered():
    names = {load_exporter(path).name for path in EXPORTERS}
    assert {KerasExport.name, OpenVinoFromKeras.name} <= names


class _SwappedStates(KerasExport):
    """An ONNX export whose outputs named h and c carry c and h: the classic order bug."""

    def export(self, config, case, native, folder: Path) -> Path:
        path = super().export(config, case, native, folder)
        model = onnx.load(str(path))
        h, c = (o.name for o in model.graph.output if o.name in ("h", "c")) \
            if {o.name for o in model.graph.output} >= {"h", "c"} else \
            (o.name for o in model.graph.output[1:3])
        swap = {h: c, c: h}
        for node in model.graph.node:
            node.output[:] = [swap.get(o, o) for o in node.output]
        onnx.save(model, str(path))
        return path


def test_swapped_state_outputs_are_unexpected_and_silently_wrong():
    exporter = _SwappedStates()
    config = next(c for c in exporter.configurations if c.name == ONNX)
    run = judge_exporter(exporter, config, cases=1, probe_examples=2)
    exported = run.probes["exported shape"]
    assert exported.verdict == "silently wrong" and exported.status == UNEXPECTED
    assert exported.minimal_case is not None
