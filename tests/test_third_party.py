"""Third-party converters under test: results are real, correct ones pass, known bugs are recorded.

Each converter runs in its own test (2 examples per configuration: the slow
part), and its report entry is checked. Converters that need Keras 2
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
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence import converters as tp
from equivalence import from_canonical
from equivalence.converters import base, runner
from equivalence.converters.cudnn_h5 import CuDNNH5
from equivalence.converters.nobuco_to_keras import Nobuco
from equivalence.converters.torch_onnx_export import TorchOnnxExport
from equivalence.harness.explore import case_features
from equivalence.known import REFUSED, Known

# Not module-wide: the side-environment converters' runs carry `sideenv` instead of `cpu`, so
# the README's `pytest -m cpu` needs no side environment and `.ci/run` runs `-m sideenv` after
# building it.
CPU, SIDE_ENV = pytest.mark.cpu, pytest.mark.sideenv
EXAMPLES = 2
ENTRY_KEYS = {"converter", "version", "configurations", "passed", "status", "runnable"}
CONFIG_KEYS = {"name", "pair", "examples", "passed", "max_abs_diff", "minimal_failing_case",
               "diagnosis", "expected_failure_reason", "unexpected"}
BUILD_SIDE = ("build the side environment with `tox -e thirdparty` (or point "
              f"{runner.SIDE_PYTHON_ENV} at its python)")


def _check_entry(converter: type[tp.Converter], entry: dict[str, Any]) -> None:
    """Well formed, ran every configuration, correct ones pass, known bugs reproduce."""
    __tracebackhide__ = True
    json.dumps(entry, allow_nan=False)  # the results JSON must hold it
    assert set(entry) >= ENTRY_KEYS and entry["converter"] == converter.name
    hint = f"; {BUILD_SIDE}" if converter.environment == base.SIDE else ""
    assert entry["runnable"], f"{converter.name} did not run: {entry['reason']}{hint}"
    assert [c["name"] for c in entry["configurations"]] == [
        c.name for c in converter.configurations]
    for declared, config in zip(converter.configurations, entry["configurations"], strict=True):
        where = f"{converter.name} [{config['name']}]"
        assert set(config) >= CONFIG_KEYS, where
        assert config["examples"] >= 1, f"{where}: no example ran"
        assert not config["unexpected"], f"{where}: unexpected\n{config['minimal_failing_case']}"
        known = declared.known_failure
        if known is None:
            assert config["passed"], f"{where}:\n{config['minimal_failing_case']}"
            assert config["examples"] == EXAMPLES, where
            assert config["max_abs_diff"] is not None and config["max_abs_diff"] < 1e-5, where
        else:
            assert not config["passed"], f"{where}: known failure did not reproduce"
            assert config["expected_failure_reason"] == known.reason, where
            assert config["minimal_failing_case"].startswith("case: "), where
            assert known.signature in config["minimal_failing_case"], where
    assert entry["status"] in ("passed", "known failures"), entry["status"]


def _by_environment(converter: type[tp.Converter]) -> Any:
    mark = SIDE_ENV if converter.environment == base.SIDE else CPU
    return pytest.param(converter, marks=mark, id=converter.name)


@pytest.mark.parametrize("converter", [_by_environment(cls) for cls in tp.CONVERTERS])
def test_converter_runs_its_configurations(converter: type[tp.Converter]) -> None:
    """One converter per test, so xdist workers share the work without repeating it."""
    [entry] = tp.run_third_party(max_examples=EXAMPLES, seed=0, only=[converter.name])
    _check_entry(converter, entry)


@CPU
@pytest.mark.parametrize(
    "converter, config",
    [(cls, config) for cls in tp.CONVERTERS for config in cls.configurations],
    ids=lambda value: getattr(value, "name", ""),
)
def test_cases_are_the_harness_cases_both_rows_run(converter: type[tp.Converter],
                                                   config: tp.Configuration) -> None:
    """A configuration's requirements can be drawn, and both rows accept every drawn case."""
    instance = converter()  # rows and cases only: nothing is converted
    rows = (instance.source_entry(config), instance.target_entry(config))

    @settings(max_examples=5, database=None, deadline=None)
    @given(st.data())
    def drawn(data: st.DataObject) -> None:
        case = data.draw(instance.cases(config))
        assert config.requires <= case_features(case), config.name
        for row in rows:
            caps = row.capabilities
            assert caps.refusal(case.spec) is None, (row.name, case.describe())
            assert caps.input_refusal(case.inputs) is None, (row.name, case.describe())

    drawn()


def _keras_layout_as_cudnn(case: Any, native: Any) -> list[np.ndarray]:
    """The bug of writing Keras's kernels into a CuDNNLSTM (no flat reshape), biases padded."""
    keras = from_canonical(case.weights, "keras")
    return [np.concatenate([a, np.zeros_like(a)]) if a.ndim == 1 else a for a in keras]


@CPU
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


@CPU
def test_a_wrong_exported_model_is_caught_and_diagnosed() -> None:
    converter = _SwappedGatesExport()
    config = TorchOnnxExport.configurations[4]  # TorchScript exporter: fast
    entry = tp.run_configuration(converter, config, max_examples=10, seed=0)
    assert not entry["passed"] and entry["unexpected"], entry
    assert "off: onnxruntime (torch.onnx.export)" in entry["minimal_failing_case"], entry
    assert "order" in (entry["diagnosis"] or ""), entry


KNOWN = Known(REFUSED, "a known bug", signature="NotImplementedError")


@CPU
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
def test_results_are_classified(known: Known | None, passed: bool,
                                evidence: str | None, expected_reason: str | None,
                                unexpected: bool) -> None:
    entry = {"passed": passed, "minimal_failing_case": evidence, "diagnosis": None,
             "expected_failure_reason": None, "unexpected": False, "note": None}
    runner.classify(entry, tp.Configuration("c", known_failure=known), "")
    assert entry["expected_failure_reason"] == expected_reason
    assert entry["unexpected"] is unexpected


@CPU
def test_a_side_converter_without_its_environment_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """No side interpreter: the converter's entry says why, and its test fails, not passes."""
    assert Nobuco().unavailable_reason() is not None, "nobuco imports in the main environment"
    monkeypatch.setenv(runner.SIDE_PYTHON_ENV, "/nonexistent/python")
    [entry] = tp.run_third_party(max_examples=1, seed=0, only=[Nobuco.name])
    assert not entry["runnable"] and "did not start" in entry["reason"], entry
    assert entry["status"] == "not runnable here" and entry["configurations"] == []
    with pytest.raises(AssertionError, match="tox -e thirdparty"):
        _check_entry(Nobuco, entry)
