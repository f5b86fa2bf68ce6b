"""The exporters' judge: real exports probed as deployed, known failures kept as expected.

``torch.onnx.export`` really runs and ONNX Runtime really runs its files; the
must-fail cases are exports with one deployment bug (h and c outputs swapped
by name, a fixed-shape export claimed dynamic), which the judge must report.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import onnx
import pytest

from equivalence.converters.base import Configuration
from equivalence.converters.exporter import (
    AS_CLAIMED,
    KNOWN,
    SURPRISE,
    UNEXPECTED,
    judge_exporter,
)
from equivalence.converters.torch_onnx_probed import TorchOnnxProbed
from equivalence.known import Known

pytestmark = pytest.mark.cpu


def _statuses(run) -> dict[str, str]:
    return {p.name: p.status for p in run.probes.values()}


@pytest.mark.parametrize("config", TorchOnnxProbed.configurations, ids=lambda c: c.name)
def test_torch_onnx_export_is_as_claimed_on_every_probe(config):
    run = judge_exporter(TorchOnnxProbed(), config, cases=2, probe_examples=2)
    assert run.cases == 2 and not run.errors, run.errors
    statuses = _statuses(run)
    assert set(statuses.values()) == {AS_CLAIMED}, statuses
    assert "exported shape" in statuses and "initial states" in statuses
    assert run.to_dict()["version"].startswith("torch ")


class _SwappedOutputs(TorchOnnxProbed):
    """An export whose outputs named h_n and c_n carry c and h: the classic order bug."""

    def export(self, config, case, native, folder: Path) -> Path:
        path = super().export(config, case, native, folder)
        model = onnx.load(str(path))
        outputs = {o.name: o for o in model.graph.output}
        h, c = outputs["h_n"], outputs["c_n"]
        for node in model.graph.node:
            node.output[:] = ["__c" if o == "h_n" else "__h" if o == "c_n" else o
                              for o in node.output]
        for node in model.graph.node:
            node.output[:] = ["c_n" if o == "__c" else "h_n" if o == "__h" else o
                              for o in node.output]
        h.name, c.name = "h_n", "c_n"
        onnx.save(model, str(path))
        return path


def test_swapped_state_outputs_are_unexpected_and_silently_wrong():
    exporter = _SwappedOutputs()
    run = judge_exporter(exporter, exporter.configurations[0], cases=1, probe_examples=2)
    exported = run.probes["exported shape"]
    assert exported.verdict == "silently wrong" and exported.status == UNEXPECTED
    assert exported.minimal_case is not None


def test_expected_failures_are_known_and_a_fix_is_a_surprise_pass():
    config = TorchOnnxProbed.configurations[1]  # fixed shapes

    class Claimed(TorchOnnxProbed):
        expected: ClassVar[dict] = {(config.name, "longer time"): Known(
            "refused", "fixed time length", upstream="https://example.invalid/issue"),
            (config.name, "exported shape"): Known(
            "silently wrong", "a bug that was fixed", upstream="https://example.invalid/fixed")}

    run = judge_exporter(Claimed(), config, cases=1, probe_examples=2)
    statuses = _statuses(run)
    assert statuses["longer time"] == KNOWN and statuses["exported shape"] == SURPRISE
    assert statuses["time 1"] == UNEXPECTED  # a refusal nobody declared


def test_an_export_that_raises_is_recorded_not_raised():
    class Broken(TorchOnnxProbed):
        def export(self, config, case, native, folder):
            raise RuntimeError("exporter crashed")

    run = judge_exporter(Broken(), Configuration("any"), cases=1, probe_examples=1)
    assert run.cases == 0 and "exporter crashed" in run.errors[0]
