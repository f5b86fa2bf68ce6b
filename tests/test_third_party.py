"""Third-party converters under test: results are real, correct ones pass, known bugs are recorded.

One run of every converter (module fixture, 2 examples per configuration:
the slow part) feeds the checks on the entries. Converters that need Keras 2
and torchvision (nobuco, onnx2torch) run in the side environment; without it
their test FAILS and says how to build it (``tox -e thirdparty``), so no
converter passes over nothing. A deliberately wrong CuDNNLSTM writer and an
export of swapped gates show the judging fails and names the bug, and the
classification of results is checked on its own.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import find

from equivalence import from_canonical
from equivalence import third_party as tp
from equivalence.explore import case_features
from equivalence.third_party import base, runner
from equivalence.third_party.cudnn_h5 import CuDNNH5
from equivalence.third_party.torch_onnx_export import TorchOnnxExport

pytestmark = pytest.mark.cpu
EXAMPLES = 2
ENTRY_KEYS = {"converter", "version", "configurations", "passed", "status", "runnable"}
CONFIG_KEYS = {"name", "pair", "examples", "passed", "max_abs_diff", "minimal_failing_case",
               "diagnosis", "expected_failure_reason", "unexpected"}
BUILD_SIDE = ("build the side environment with `tox -e thirdparty` (or point "
              f"{runner.SIDE_PYTHON_ENV} at its python)")


@pytest.fixture(scope="module")
def entries() -> dict[str, dict[str, Any]]:
    return {e["converter"]: e for e in tp.run_third_party(max_examples=EXAMPLES, seed=0)}


def _configurations(entry: dict[str, Any]) -> list[tuple[tp.Configuration, dict[str, Any]]]:
    declared = {c.name: c for c in tp.BY_NAME[entry["converter"]].configurations}
    return [(declared[c["name"]], c) for c in entry["configurations"]]


def test_every_converter_has_a_well_formed_entry(entries: dict[str, dict[str, Any]]) -> None:
    assert list(entries) == [cls.name for cls in tp.CONVERTERS]
    json.dumps(list(entries.values()), allow_nan=False)  # the results JSON must hold them
    for entry in entries.values():
        assert set(entry) >= ENTRY_KEYS, entry["converter"]
        for config in entry["configurations"]:
            assert set(config) >= CONFIG_KEYS, (entry["converter"], config["name"])


@pytest.mark.parametrize("converter", tp.CONVERTERS, ids=lambda cls: cls.name)
def test_every_converter_ran_every_configuration(entries: dict[str, dict[str, Any]],
                                                 converter: type[tp.Converter]) -> None:
    entry = entries[converter.name]
    hint = f"; {BUILD_SIDE}" if converter.environment == base.SIDE else ""
    assert entry["runnable"], f"{converter.name} did not run: {entry['reason']}{hint}"
    names = [c["name"] for c in entry["configurations"]]
    assert names == [c.name for c in converter.configurations]
    for config in entry["configurations"]:
        assert config["examples"] >= 1, f"{converter.name} [{config['name']}]: no example ran"


def test_correct_configurations_pass(entries: dict[str, dict[str, Any]]) -> None:
    for entry in entries.values():
        for declared, config in _configurations(entry):
            if declared.known_failure is None:
                where = f"{entry['converter']} [{config['name']}]"
                assert config["passed"], f"{where}:\n{config['minimal_failing_case']}"
                assert config["examples"] == EXAMPLES, where
                assert config["max_abs_diff"] is not None and config["max_abs_diff"] < 1e-5


def test_known_bugs_are_recorded_as_expected_failures(
    entries: dict[str, dict[str, Any]],
) -> None:
    for entry in entries.values():
        for declared, config in _configurations(entry):
            if declared.known_failure is None:
                continue
            where = f"{entry['converter']} [{config['name']}]"
            assert not config["passed"], f"{where}: known failure did not reproduce"
            assert config["expected_failure_reason"] == declared.known_failure.reason, where
            assert declared.known_failure.signature in config["minimal_failing_case"], where
            assert config["minimal_failing_case"].startswith("case: "), where
            assert not entry["passed"], where


def test_nothing_unexpected(entries: dict[str, dict[str, Any]]) -> None:
    for entry in entries.values():
        surprises = [c["name"] for c in entry["configurations"] if c["unexpected"]]
        assert not surprises, f"{entry['converter']}: unexpected results in {surprises}"
        assert entry["status"] != "unexpected results"


@pytest.mark.parametrize(
    "converter, config",
    [(cls, config) for cls in tp.CONVERTERS for config in cls.configurations],
    ids=lambda value: getattr(value, "name", ""),
)
def test_cases_are_the_harness_cases_both_rows_run(converter: type[tp.Converter],
                                                   config: tp.Configuration) -> None:
    """A configuration's requirements can be drawn, and both rows accept every drawn case."""
    instance = converter.__new__(converter)  # rows and cases only: no framework needed
    rows = (instance.source_entry(config), instance.target_entry(config))
    case = find(instance.cases(config), lambda c: c.spec.layers == 2 or c.inputs.batch > 1)
    assert config.requires <= case_features(case), config.name
    for row in rows:
        caps = row.capabilities
        assert caps.refusal(case.spec) is None and caps.input_refusal(case.inputs) is None, row


def _keras_layout_as_cudnn(case: Any, native: Any) -> list[np.ndarray]:
    """The bug of writing Keras's kernels into a CuDNNLSTM (no flat reshape), biases padded."""
    keras = from_canonical(case.weights, "keras")
    return [np.concatenate([a, np.zeros_like(a)]) if a.ndim == 1 else a for a in keras]


def test_a_wrong_cudnn_layout_is_caught_and_diagnosed() -> None:
    converter = CuDNNH5(write_cudnn=_keras_layout_as_cudnn)
    assert converter.unavailable_reason() is None  # tf_keras and h5py are main-env packages
    config = CuDNNH5.configurations[0]
    entry = tp.run_configuration(converter, config, max_examples=10, seed=0)
    assert not entry["passed"] and entry["unexpected"]
    assert entry["expected_failure_reason"] is None
    assert "reshaped instead of transposed" in (entry["diagnosis"] or ""), entry


class _SwappedGatesExport(TorchOnnxExport):
    """torch.onnx.export of an nn.LSTM whose forget and cell gate blocks were swapped."""

    def convert(self, config: tp.Configuration, case: Any, native: Any) -> bytes:
        def swap(array: Any) -> Any:
            i, f, g, o = np.split(np.asarray(array), 4)
            return np.concatenate([i, g, f, o])

        return super().convert(config, case, {k: swap(v) for k, v in native.items()})


def test_a_wrong_exported_model_is_caught_and_diagnosed() -> None:
    converter = _SwappedGatesExport()
    config = TorchOnnxExport.configurations[4]  # TorchScript exporter: fast
    entry = tp.run_configuration(converter, config, max_examples=10, seed=0)
    assert not entry["passed"] and entry["unexpected"], entry
    assert "off: onnxruntime (torch.onnx.export)" in entry["minimal_failing_case"], entry
    assert "order" in (entry["diagnosis"] or ""), entry


KNOWN = tp.KnownFailure(reason="a known bug", signature="NotImplementedError")


@pytest.mark.parametrize(
    "known, passed, evidence, expected_reason, unexpected",
    [
        (None, True, None, None, False),  # correct and passing
        (None, False, "case: x\noutput: mismatched", None, True),  # a new failure
        (KNOWN, False, "output: NotImplementedError: no LSTM", "a known bug", False),
        (KNOWN, False, "output: mismatched elements 3 / 4", None, True),  # another failure
        (KNOWN, True, None, None, True),  # the known bug stopped reproducing
    ],
)
def test_results_are_classified(known: tp.KnownFailure | None, passed: bool,
                                evidence: str | None, expected_reason: str | None,
                                unexpected: bool) -> None:
    entry = {"passed": passed, "minimal_failing_case": evidence, "diagnosis": None,
             "expected_failure_reason": None, "unexpected": False, "note": None}
    runner.classify(entry, tp.Configuration("c", known_failure=known), "")
    assert entry["expected_failure_reason"] == expected_reason
    assert entry["unexpected"] is unexpected


def test_a_missing_side_interpreter_is_reported() -> None:
    found, error = runner.SideRun(["nobuco"], max_examples=1, seed=0,
                                  python="/nonexistent/python").entries()
    assert found == [] and error and "did not start" in error
