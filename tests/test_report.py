"""`equivalence report`: files written, bad input refused cleanly, results deterministic, merges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equivalence.cli import main
from equivalence.report.write import FILES

pytestmark = pytest.mark.cpu
SMALL = ["--only", "torch->onnxruntime", "onnxruntime->reference", "--examples", "3"]


def report(out: Path, *extra: str) -> int:
    return main(["report", *SMALL, "--out", str(out), *extra])


def stable(path: Path) -> dict:
    data = json.loads((path / "equivalence.json").read_text())
    data.pop("generated_at")
    return data


def test_report_writes_the_five_files_and_is_deterministic(tmp_path: Path) -> None:
    assert report(tmp_path / "a") == 0
    assert report(tmp_path / "b") == 0
    for name in FILES:
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    first = stable(tmp_path / "a")
    assert first == stable(tmp_path / "b")
    pairs = {(p["source"], p["target"]): p for p in first["pairs"]}
    assert set(pairs) == {("torch", "onnxruntime"), ("onnxruntime", "reference")}
    assert all(p["examples"] == 3 and p["passed"] for p in pairs.values())
    assert {r["name"] for r in first["runtimes"]} >= {"torch", "onnxruntime", "neoml"}
    assert "| **torch** |" in (tmp_path / "a" / "index.md").read_text()


def test_merge_builds_one_report_from_several_runs(tmp_path: Path) -> None:
    assert report(tmp_path / "a") == 0
    assert main(["report", "--merge", str(tmp_path / "a" / "equivalence.json"),
                 str(tmp_path / "a" / "equivalence.json"), "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "equivalence.json").read_text())
    assert len(merged["pairs"]) == 4 and len(merged["environments"]) == 2


@pytest.mark.parametrize("content, problem", [("{not json", "not valid JSON"),
                                              ('{"pairs": 3, "runtimes": []}', "'pairs'"),
                                              ('{"pairs": [{"source": "x"}], "runtimes": []}',
                                               "pairs[0] lacks")])
def test_malformed_merge_file_is_named_and_nothing_is_written(tmp_path: Path, capsys,
                                                              content: str, problem: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["report", "--merge", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and problem in err
    assert not (tmp_path / "out").exists()


def test_unknown_pair_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["report", "--only", "torch->caffe", "--out", str(tmp_path / "o")]) == 2
    assert "torch->caffe" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unwritable_output_leaves_nothing_behind(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert report(blocker / "reports") == 2
    assert "cannot write the report" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
