"""The benchmark's harness-ratio report: its fields and its floor, never its timing."""

from __future__ import annotations

import json

import pytest

from equivalence import table
from equivalence.harness import bench

from .runtime_support import require

pytestmark = pytest.mark.cpu


def test_ratio_json_has_the_fields_per_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    entry = next(e for e in table.entries() if e.name == "onnxruntime")
    require(entry)
    bench.main(["--ratio-only", "--examples", "2", "--only", "onnxruntime", "--json"])
    row = json.loads(capsys.readouterr().out)["onnxruntime"]
    assert set(row) == {"run_examples_per_second", "framework_examples_per_second",
                        "harness_ratio"}
    assert row["run_examples_per_second"] > 0 and row["framework_examples_per_second"] > 0


def test_a_ratio_under_the_floor_fails_and_names_the_runtime() -> None:
    rows = {"slow": {"harness_ratio": 0.2}, "fine": {"harness_ratio": bench.RATIO_FLOOR}}
    assert bench.under_floor(rows) == [f"slow: harness ratio 0.2 < {bench.RATIO_FLOOR}"]
