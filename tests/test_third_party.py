"""Third-party converters under test: results are real, correct ones pass, known bugs are recorded.

One run of every converter (module fixture, 2 examples per configuration:
the slow part, about a minute) feeds the checks on the entries; a converter
that cannot run here must say why. A deliberately wrong CuDNNLSTM writer shows
the check fails and names the bug, and the classification of results is
checked on its own, so none of these tests can pass by finding nothing.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from equivalence import from_canonical
from equivalence import third_party as tp

pytestmark = pytest.mark.cpu
EXAMPLES = 2
ENTRY_KEYS = {"converter", "version", "configurations", "passed"}
CONFIG_KEYS = {"name", "examples", "passed", "max_abs_diff", "minimal_failing_case",
               "diagnosis", "expected_failure_reason"}


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


def test_runnable_converters_produced_results(entries: dict[str, dict[str, Any]]) -> None:
    for cls in tp.CONVERTERS:
        entry = entries[cls.name]
        if cls().unavailable_reason() is None:  # runnable in this very interpreter
            assert entry["runnable"], f"{cls.name}: runnable here, but {entry['reason']}"
        if not entry["runnable"]:
            assert entry["reason"], f"{cls.name}: not runnable and no reason given"
            continue
        names = [c["name"] for c in entry["configurations"]]
        assert names == [c.name for c in cls.configurations], cls.name
        for config in entry["configurations"]:
            assert config["examples"] >= 1, f"{cls.name} [{config['name']}]: no example ran"
    # Its dependencies are the suite's own (tf_keras, h5py): it must run wherever the suite does.
    assert entries[tp.CuDNNH5Converter.name]["runnable"]


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
            assert not entry["passed"], where


def test_nothing_unexpected(entries: dict[str, dict[str, Any]]) -> None:
    for entry in entries.values():
        surprises = [c["name"] for c in entry["configurations"] if c["unexpected"]]
        assert not surprises, f"{entry['converter']}: unexpected results in {surprises}"
        assert entry["status"] != "unexpected results"


def _keras_layout_as_cudnn(weights: Any) -> list[np.ndarray]:
    """The bug of writing Keras's kernels into a CuDNNLSTM (no flat reshape), biases padded."""
    native = from_canonical(weights, "keras")
    return [np.concatenate([a, np.zeros_like(a)]) if a.ndim == 1 else a for a in native]


def test_a_wrong_cudnn_layout_is_caught_and_diagnosed() -> None:
    converter = tp.CuDNNH5Converter(write_cudnn=_keras_layout_as_cudnn)
    reason = converter.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    config = tp.CuDNNH5Converter.configurations[0]
    entry = tp.run_configuration(converter, config, max_examples=10, seed=0)
    assert not entry["passed"] and entry["unexpected"]
    assert entry["expected_failure_reason"] is None
    assert "reshaped instead of transposed" in (entry["diagnosis"] or ""), entry


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
    tp._classify(entry, tp.Configuration("c", known_failure=known), None, "")
    assert entry["expected_failure_reason"] == expected_reason
    assert entry["unexpected"] is unexpected


def test_a_missing_side_interpreter_is_reported() -> None:
    found, error = tp._SideRun(["nobuco"], max_examples=1, seed=0,
                               python="/nonexistent/python").entries()
    assert found == [] and error and "did not start" in error
